//! Real programs for the real-tools tests: Debian's nginx on loopback with its access log in a
//! temporary directory, a keep-alive client that sends it numbered requests, logrotate run with
//! its own config and state file, and a writer that appends numbered lines through one
//! `O_APPEND` descriptor. Nothing here imitates a tool: the agent meets the files exactly as
//! these programs create, fill, copy, truncate, compress and delete them.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";
pub const LOGROTATE: &str = "/usr/sbin/logrotate";
/// The load client's `User-Agent`, the last field of every access-log line it causes.
pub const USER_AGENT: &str = "log-agent-test";

/// A temporary directory for one test, kept (and its path printed) when the test fails and
/// `TOOLS_KEEP=1` is set, so that the files, the agent's logs and its output can be looked at.
pub struct Scene {
    dir: Option<tempfile::TempDir>,
}

impl Scene {
    pub fn new(name: &str) -> Scene {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tools-{name}-"))
            .tempdir()
            .unwrap();
        Scene { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `<scene>/<name>`, created as a directory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let keep = std::env::var("TOOLS_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
        if keep && std::thread::panicking() {
            let path = self.dir.take().unwrap().keep();
            eprintln!(
                "TOOLS_KEEP: the failed test's files are in {}",
                path.display()
            );
        }
    }
}

/// Sends `signal` to `pid`; false when there is no such process any more.
pub fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port on 127.0.0.1 that was free a moment ago (nginx binds it right after; a start that
/// finds it taken is retried with another).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's nginx, master and one worker, on a loopback port, with every file it writes in its
/// directory and its access log (format `combined`) where the test wants it. Stopped on drop.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx with its config, pid file, error log and temp dirs in `dir`, writing its
    /// access log to `access_log`; returns once it answers.
    pub fn start(dir: &Path, access_log: &Path) -> Nginx {
        fs::create_dir_all(dir).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("nginx.conf");
            fs::write(&conf, nginx_conf(dir, access_log, port)).unwrap();
            let stderr = fs::File::create(dir.join("nginx.stderr")).unwrap();
            let child = Command::new(NGINX)
                // -e: the error log before the config is read (not the packaged /var/log one).
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {NGINX} (.ci/deps installs it): {e}"));
            let mut nginx = Nginx {
                child,
                dir: dir.to_owned(),
                port,
            };
            if nginx.wait_until_it_answers() {
                return nginx;
            }
            let logs = nginx.logs();
            if !logs.contains("Address already in use") {
                panic!("nginx did not start; its logs:\n{logs}");
            }
        }
        panic!("nginx found every port it was given taken");
    }

    /// True once a connection to the port succeeds; false if nginx exited first (10 s at most).
    fn wait_until_it_answers(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(self.address()).is_ok() {
                return true;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not answer within 10 s; its logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("nginx.pid")
    }

    /// Its stderr and error log.
    pub fn logs(&self) -> String {
        let stderr = fs::read_to_string(self.dir.join("nginx.stderr")).unwrap_or_default();
        let error = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        format!("{stderr}{error}")
    }

    /// SIGUSR1: the master and its worker reopen the logs (what `postrotate` does).
    pub fn reopen(&self) {
        assert!(signal(self.child.id(), libc::SIGUSR1), "nginx is gone");
    }

    /// The `postrotate` script of Debian's own /etc/logrotate.d/nginx, in substance: USR1 to the
    /// pid in the pid file.
    pub fn postrotate_reopen(&self) -> String {
        format!(
            "postrotate\n    kill -USR1 $(cat {})\n  endscript",
            self.pid_file().display()
        )
    }
}

fn nginx_conf(dir: &Path, access_log: &Path, port: u16) -> String {
    // Workers reopen the log on USR1 themselves; as root they would run as `nobody`, who cannot
    // enter a 0700 temporary directory: the reopen fails and nginx goes on writing the rotated
    // file. So the workers keep the test's own user.
    let user = if is_root() { "user root;" } else { "" };
    let d = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log {access} combined;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # One connection carries the whole load.
    keepalive_requests 1000000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
    }}
}}
",
        access = access_log.display(),
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful; then SIGTERM; then SIGKILL of the master (its worker exits when
        // the master's pipe closes).
        for (sig, patience) in [(libc::SIGQUIT, 3), (libc::SIGTERM, 2)] {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            signal(self.child.id(), sig);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(patience) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A thread that runs until stopped, with a shared counter, returning what it counted.
pub struct Worker {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    what: String,
}

impl Worker {
    fn spawn(what: String, body: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, count) = (stop.clone(), count.clone());
            move || body(&stop, &count)
        });
        Worker {
            stop,
            count,
            thread: Some(thread),
            what,
        }
    }

    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Stops the thread, waits for it, returns the final count; a panic in the thread fails the
    /// test here, with its message.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(panic) = self.thread.take().unwrap().join() {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{} failed: {message}", self.what);
        }
        self.count()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sleeps until `n` events at `rate` per second from `start` are due (no pause without a rate).
fn pace(start: Instant, n: u64, rate: Option<u32>) {
    if let Some(rate) = rate {
        let due = start + Duration::from_secs_f64(n as f64 / f64::from(rate));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Sends `GET /r/<tag>-<n>` for n = 0, 1, 2... over one keep-alive connection, each after the
/// previous response, at `rate` requests per second (as fast as nginx answers without one),
/// until stopped. Each number is sent once and answered, so it is in the access log once;
/// [`Worker::stop`] returns how many were sent (numbers `0..sent`).
pub fn load(address: SocketAddr, tag: &str, rate: Option<u32>) -> Worker {
    let tag = tag.to_owned();
    Worker::spawn(
        format!("the load client on {address}"),
        move |stop, sent| {
            let mut connection = connect(address);
            let mut response = Vec::with_capacity(1024);
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                pace(start, n, rate);
                let request = format!(
                    "GET /r/{tag}-{n} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
                );
                connection
                    .write_all(request.as_bytes())
                    .unwrap_or_else(|e| panic!("request {n}: {e}"));
                read_head(&mut connection, &mut response, n);
                let head = String::from_utf8_lossy(&response);
                assert!(
                    head.starts_with("HTTP/1.1 204 "),
                    "request {n} answered {head:?}"
                );
                n += 1;
                sent.store(n, Ordering::SeqCst);
                if head.to_ascii_lowercase().contains("connection: close") {
                    connection = connect(address);
                }
            }
        },
    )
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect: {e}"));
    // One small request at a time: Nagle would hold each for the previous one's ACK.
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads one response head (a 204 has no body) into `into`.
fn read_head(connection: &mut TcpStream, into: &mut Vec<u8>, n: u64) {
    into.clear();
    let mut buffer = [0u8; 1024];
    while !into.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = connection
            .read(&mut buffer)
            .unwrap_or_else(|e| panic!("response to request {n}: {e}"));
        assert!(read > 0, "nginx closed the connection at request {n}");
        into.extend_from_slice(&buffer[..read]);
    }
}

/// Appends `numbered(tag, n, width)` for n = 0, 1, 2... to `path` through ONE descriptor opened
/// with `O_APPEND`, one `write_all` per line, at `rate` lines per second (or flat out), until
/// stopped: a process that never reopens its log, as copytruncate assumes.
pub fn appender(path: &Path, tag: &str, width: usize, rate: Option<u32>) -> Worker {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let tag = tag.to_owned();
    Worker::spawn(
        format!("the writer of {}", path.display()),
        move |stop, written| {
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                pace(start, n, rate);
                file.write_all(super::numbered(&tag, n, width).as_bytes())
                    .unwrap();
                n += 1;
                written.store(n, Ordering::SeqCst);
            }
        },
    )
}

/// logrotate with a config of its own (one log, given directives) and a state file of its own.
pub struct Logrotate {
    conf: PathBuf,
    state: PathBuf,
}

impl Logrotate {
    /// Writes `<dir>/logrotate.conf`: `log { directives }`. logrotate refuses a config that is
    /// group or world writable (or owned by another user than root or itself): 0644.
    pub fn new(dir: &Path, log: &Path, directives: &str) -> Logrotate {
        let conf = dir.join("logrotate.conf");
        let text = format!("{} {{\n  {}\n}}\n", log.display(), directives.trim());
        fs::write(&conf, text).unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
        Logrotate {
            conf,
            state: dir.join("logrotate.state"),
        }
    }

    pub fn config(&self) -> String {
        fs::read_to_string(&self.conf).unwrap()
    }

    /// Runs logrotate once (`-f`: rotate whatever the size and the last rotation's time);
    /// panics with its output unless it succeeds.
    pub fn run(&self, force: bool) {
        let mut command = Command::new(LOGROTATE);
        if force {
            command.arg("-f");
        }
        let output = command
            .arg("-s")
            .arg(&self.state)
            .arg(&self.conf)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {LOGROTATE} (.ci/deps installs it): {e}"));
        assert!(
            output.status.success(),
            "logrotate failed ({}): {}{}\nconfig:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.config()
        );
    }

    /// Runs logrotate every `every` (between the end of one run and the start of the next)
    /// from a thread until stopped; [`Worker::stop`] waits for a run under way and returns the
    /// number of runs.
    pub fn every(self: &Arc<Self>, every: Duration, force: bool) -> Worker {
        let logrotate = self.clone();
        Worker::spawn("logrotate".into(), move |stop, runs| {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                logrotate.run(force);
                runs.fetch_add(1, Ordering::SeqCst);
            }
        })
    }
}
