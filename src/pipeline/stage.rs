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

/// One point of a source's tree.
#[derive(Clone, Default)]
pub struct Stage {
    /// The lane of the chunks at this point.
    pub lane: u32,
    /// The sinks taking the chunks here: their ids and buffers.
    pub sinks: Vec<(SinkId, BufferSender)>,
    /// The transforms taking the chunks here, each with one stage per output.
    pub transforms: Vec<(Arc<dyn Transform>, Vec<Stage>)>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("lane", &self.lane)
            .field(
                "sinks",
                &self.sinks.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .field(
                "transforms",
                &self.transforms.iter().map(|(_, s)| s).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Stage {
    /// The sinks of a source that goes to them directly, as read.
    pub fn direct(sinks: Vec<(SinkId, BufferSender)>) -> Stage {
        Stage {
            lane: 0,
            sinks,
            transforms: Vec::new(),
        }
    }

    /// The tree of `branch`, with the running sinks and transforms by name; one not running
    /// (a sink that could not start) is left out.
    pub fn build(
        branch: &Branch,
        sinks: &BTreeMap<String, (SinkId, BufferSender)>,
        transforms: &BTreeMap<String, Arc<dyn Transform>>,
    ) -> Stage {
        Stage {
            lane: branch.lane,
            sinks: branch
                .sinks
                .iter()
                .filter_map(|name| sinks.get(name).cloned())
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
            .map(|(id, _)| ack_id(*id, self.lane))
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
        self.sinks.iter().any(|(routed, _)| *routed == id)
            || self
                .transforms
                .iter()
                .any(|(_, stages)| stages.iter().any(|s| s.has_sink(id)))
    }
}
