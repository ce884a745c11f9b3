//! A Tansu broker (a Kafka-API broker, `tansu` on the PATH or in `$TANSU`; `.ci/test` installs
//! it) started by the tests on a loopback port.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Tansu broker on a loopback port, killed when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
}

pub fn tansu() -> String {
    std::env::var("TANSU").unwrap_or_else(|_| "tansu".into())
}

impl Broker {
    /// Starts a broker on `port` (0: a free one) with `storage` (`memory://tansu/`,
    /// `sqlite://tansu.db`) in the working directory `dir`.
    pub fn start(dir: &Path, port: u16, storage: &str) -> Broker {
        Broker::start_with(dir, port, storage, &[])
    }

    /// [`Broker::start`] with extra `tansu broker` arguments (`--authentication`).
    pub fn start_with(dir: &Path, port: u16, storage: &str, extra: &[&str]) -> Broker {
        let port = if port == 0 {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}): install it with .ci/test or set $TANSU",
                    tansu()
                )
            });
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str) {
        let status = Command::new(tansu())
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                "1",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {name} failed");
    }

    /// Creates a SCRAM-SHA-512 user (before the broker requires authentication).
    pub fn create_user(&self, name: &str, password: &str) {
        let status = Command::new(tansu())
            .args(["user", "create", name, password, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu user create {name} failed");
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
