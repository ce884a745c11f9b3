//! What a source's chunks meet on their way: at each point (the source itself, or one output of
//! a transform) the sinks that take them and the transforms that take them, as a tree unfolded
//! from the config's graph ([`crate::transform::topology`]).
//!
//! Invariant: each point has its own lane, and a sink's acks of chunks that reached it at a
//! point count under that (sink, lane) pair only ([`ack_id`]), so a sink reached along two
//! paths holds the checkpoint back until both delivered.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::buffer::BufferSender;
use crate::checkpoint::{SinkId, ack_id};
use crate::transform::Transform;
use crate::transform::topology::Branch;

/// A sink taking the chunks of a stage.
#[derive(Clone)]
pub struct StageSink {
    /// Its id.
    pub id: SinkId,
    /// Its tap point, `sink:NAME`.
    pub point: Arc<str>,
    /// Its buffer.
    pub sender: BufferSender,
}

/// One point of a source's tree.
#[derive(Clone, Default)]
pub struct Stage {
    /// The point's name, for taps: the source's, or a transform output's.
    pub point: Arc<str>,
    /// The lane of the chunks at this point.
    pub lane: u32,
    /// The sinks taking the chunks here.
    pub sinks: Vec<StageSink>,
    /// The transforms taking the chunks here, each with one stage per output.
    pub transforms: Vec<(Arc<dyn Transform>, Vec<Stage>)>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("lane", &self.lane)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.id).collect::<Vec<_>>(),
            )
            .field(
                "transforms",
                &self.transforms.iter().map(|(_, s)| s).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Stage {
    /// The tree of `branch`, with the running sinks and transforms by name; one not running
    /// (a sink that could not start) is left out.
    pub fn build(
        branch: &Branch,
        sinks: &BTreeMap<String, (SinkId, BufferSender)>,
        transforms: &BTreeMap<String, Arc<dyn Transform>>,
    ) -> Stage {
        Stage {
            point: branch.point.as_str().into(),
            lane: branch.lane,
            sinks: branch
                .sinks
                .iter()
                .filter_map(|name| {
                    let (id, sender) = sinks.get(name)?;
                    Some(StageSink {
                        id: *id,
                        point: format!("sink:{name}").into(),
                        sender: sender.clone(),
                    })
                })
                .collect(),
            transforms: branch
                .transforms
                .iter()
                .filter_map(|(name, outputs)| {
                    let transform = Arc::clone(transforms.get(name)?);
                    let stages = outputs
                        .iter()
                        .map(|output| Stage::build(output, sinks, transforms))
                        .collect();
                    Some((transform, stages))
                })
                .collect(),
        }
    }

    /// The ack id of every (sink, lane) pair of the tree: what the checkpoints wait for.
    pub fn ack_ids(&self) -> Vec<SinkId> {
        let mut ids: Vec<SinkId> = self
            .sinks
            .iter()
            .map(|sink| ack_id(sink.id, self.lane))
            .collect();
        for (_, stages) in &self.transforms {
            for stage in stages {
                ids.extend(stage.ack_ids());
            }
        }
        ids
    }

    /// True when sink `id` is somewhere in the tree.
    pub fn has_sink(&self, id: SinkId) -> bool {
        self.sinks.iter().any(|sink| sink.id == id)
            || self
                .transforms
                .iter()
                .any(|(_, stages)| stages.iter().any(|s| s.has_sink(id)))
    }
}
