//! What happens to the model's agent (`kill -9`, a clean stop, a restart) and to its sink
//! (failing, stalled, restored), and what each allows the oracle to expect.

use std::collections::HashSet;
use std::fs;
use std::process::Command;
use std::time::Duration;

use super::support::{key_and_offset, tag_and_seq};
use super::*;

impl Model {
    pub(super) fn kill(&mut self) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        agent.kill9();
        self.kills += 1;
        self.settle_captures();
        // Every line delivered at or past its file's persisted checkpoint is read again.
        let checkpoints = self.checkpoints();
        let delivered = self.delivered();
        let mut repeatable = HashSet::new();
        for event in &delivered.events {
            let (Some((tag, seq)), Some((key, offset))) =
                (tag_and_seq(event), key_and_offset(event))
            else {
                continue;
            };
            if !checkpoints.iter().any(|&(k, at)| k == key && offset < at) {
                repeatable.insert((tag.to_owned(), seq));
            }
        }
        let repeats = repeatable.len();
        for line in repeatable {
            *self.allowed_repeats.entry(line).or_default() += 1;
        }
        // Deleted files die with the descriptors the agent held.
        let mut lost = 0;
        for stream in 0..self.streams.len() {
            if self.streams[stream].gone {
                lost += self.mark_undelivered_optional(stream, false);
            }
        }
        self.journal.push(format!(
            "  killed: {} events delivered, {repeats} lines past the checkpoints may repeat, \
             {lost} undelivered lines of deleted files optional",
            delivered.events.len()
        ));
    }

    pub(super) fn stop(&mut self) {
        if self.sink != SinkState::Ok {
            // A drain cannot finish while the sink is broken: it would only wait for its
            // deadline. A stop then is a kill.
            self.journal.push("  (sink broken: killed instead)".into());
            return self.kill();
        }
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        let status = agent.terminate(Duration::from_secs(30));
        assert_eq!(
            status.code(),
            Some(0),
            "the drain did not exit 0: {status}; logs:\n{}",
            agent.logs(40)
        );
        self.settle_captures();
        // The drain read every open file to its end; only the unterminated last line of a
        // deleted file, which ships only when the file is let go, may be lost.
        for stream in 0..self.streams.len() {
            if self.streams[stream].gone {
                self.mark_undelivered_optional(stream, true);
            }
        }
    }

    pub(super) fn restart(&mut self) {
        if self.agent.is_none() {
            self.agent = Some(AgentProcess::start(&self.config, &self.stderr()));
        }
    }

    pub(super) fn sink_fail(&mut self) {
        if self.sink != SinkState::Ok {
            return;
        }
        let root = self.root();
        fs::rename(root.join("out"), root.join("out.held")).unwrap();
        fs::write(root.join("out"), b"not a directory").unwrap();
        self.sink = SinkState::Failing;
    }

    pub(super) fn sink_stall(&mut self) {
        if self.sink != SinkState::Ok {
            return;
        }
        let root = self.root();
        // Made aside, then swapped in: the sink would create its file in an empty directory.
        let stall = root.join("stall.next");
        fs::create_dir(&stall).unwrap();
        let status = Command::new("mkfifo")
            .arg(stall.join("sink.ndjson"))
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo failed");
        fs::rename(root.join("out"), root.join("out.held")).unwrap();
        fs::rename(&stall, root.join("out")).unwrap();
        self.sink = SinkState::Stalled;
    }

    pub(super) fn sink_restore(&mut self) {
        let root = self.root();
        match self.sink {
            SinkState::Ok => return,
            SinkState::Failing => fs::remove_file(root.join("out")).unwrap(),
            SinkState::Stalled => {
                self.stalls += 1;
                let aside = root.join(format!("stall{}", self.stalls));
                fs::rename(root.join("out"), &aside).unwrap();
                let at =
                    fs::metadata(root.join("out.held").join("sink.ndjson")).map_or(0, |m| m.len());
                // Opened before the real directory is back: the sink, blocked in its open,
                // writes its batch into the FIFO; its next batch goes to the real file.
                self.captures
                    .push(Capture::start(aside.join("sink.ndjson"), at));
            }
        }
        fs::rename(root.join("out.held"), root.join("out")).unwrap();
        self.sink = SinkState::Ok;
    }

    /// Once the agent is gone, the FIFOs opened so far are read to their end.
    pub(super) fn settle_captures(&mut self) {
        for capture in &mut self.captures {
            capture.finish();
        }
    }
}
