//! Fixtures: a data directory that outlives server restarts, a running
//! `huddle serve` child process, and running the `huddle` CLI against it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_huddle");

/// How long a server gets to print its `huddle serving` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// 32 random hex characters.
pub fn random_key() -> String {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The models directory the huddle-models tests use, so the weights are fetched once
/// per target directory.
pub fn models_dir() -> std::path::PathBuf {
    match std::env::var_os("HUDDLE_MODELS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("models"),
    }
}

/// A command for the `huddle` binary with no `HUDDLE*` variables inherited.
pub fn huddle(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env("NO_COLOR", "1");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HUDDLE") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A data directory (SQLite file, logs) and an admin key, kept across
/// restarts of the server.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub key: String,
    starts: AtomicUsize,
}

impl Data {
    pub fn new() -> Data {
        Data { dir: tempfile::tempdir().expect("tempdir"), key: random_key(), starts: AtomicUsize::new(0) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}/h.db", self.path().display())
    }

    /// `huddle serve` on free ports with this directory's database and key.
    pub fn start(&self) -> Node {
        self.start_env(&[])
    }

    /// Like [`Data::start`], with extra environment variables.
    pub fn start_env(&self, envs: &[(&str, &str)]) -> Node {
        let db = self.db_url();
        self.start_with(
            &["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--database", &db, "--admin-key", &self.key],
            envs,
        )
    }

    /// `huddle serve ARGS` with extra environment variables.
    pub fn start_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Node {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        let log = self.path().join(format!("server-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = huddle(self.path());
        cmd.arg("serve").args(args).envs(envs.iter().copied());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn huddle serve");

        // Read stdout on a thread (and keep draining it), hand lines over.
        let (line_tx, line_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let serving = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) if line.starts_with("huddle serving ") => break line,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "huddle serve printed no `huddle serving` line ({e}; exit {status:?})\n--- log ---\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        let (grpc, http) = parse_serving_line(&serving);
        Node { child, grpc, http, key: self.key.clone(), dir: self.path().to_path_buf(), log }
    }
}

/// `huddle serving grpc=A http=B` -> (A, B).
pub fn parse_serving_line(line: &str) -> (SocketAddr, SocketAddr) {
    let mut grpc = None;
    let mut http = None;
    for word in line.split_whitespace() {
        if let Some(a) = word.strip_prefix("grpc=") {
            grpc = a.parse().ok();
        } else if let Some(a) = word.strip_prefix("http=") {
            http = a.parse().ok();
        }
    }
    match (grpc, http) {
        (Some(g), Some(h)) => (g, h),
        _ => panic!("cannot parse serving line `{line}`"),
    }
}

/// A running `huddle serve` child; killed on drop if still running.
pub struct Node {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub key: String,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The server's stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `huddle ARGS --server URL --key KEY`.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_with_key(&self.key.clone(), args)
    }

    pub fn cli_with_key(&self, key: &str, args: &[&str]) -> Run {
        let url = self.url();
        run(huddle(&self.dir).args(args).args(["--server", &url, "--key", key]))
    }

    /// `huddle ARGS --server URL --key KEY` as a child with piped stdout.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        huddle(&self.dir)
            .args(args)
            .args(["--server", &self.url(), "--key", &self.key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn huddle client")
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed: {}", self.pid(), std::io::Error::last_os_error());
    }

    /// SIGKILL, and reap the process.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL the server");
        let status = self.child.wait().expect("reap the server");
        assert!(!status.success(), "a SIGKILLed server cannot exit cleanly: {status}");
    }

    /// Waits up to `timeout` for the server to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// A channel to the gRPC server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("valid URL").connect().await.expect("connect to huddle")
    }

    /// A request carrying `authorization: Bearer <admin key>`.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("authorization", format!("Bearer {}", self.key).parse().expect("ascii key"));
        req
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Hands the child's stdout over line by line (the channel closes at EOF).
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line until the channel closes; panics after `timeout`.
pub fn collect_lines(rx: &mpsc::Receiver<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("output did not end within {timeout:?}: {lines:?}")
            }
        }
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits for a child with piped output; kills it after `timeout`.
pub fn output_timeout(mut child: Child, timeout: Duration) -> (Option<ExitStatus>, String, String) {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (status, out.join().unwrap_or_default(), err.join().unwrap_or_default())
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.stdin(Stdio::null()).output().expect("run huddle");
    Run { status, stdout: String::from_utf8_lossy(&stdout).into(), stderr: String::from_utf8_lossy(&stderr).into() }
}

impl Run {
    /// Stdout, after asserting exit code 0.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "huddle failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Stdout as one JSON object, after asserting exit code 0.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"))
    }

    /// Stdout as JSON lines, after asserting exit code 0.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect()
    }

    /// Stderr, after asserting exit code 1.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit code 1:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(self.stdout.is_empty(), "a failed command printed to stdout: {}", self.stdout);
        &self.stderr
    }
}

/// A string field of a JSON object.
#[track_caller]
pub fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no string `{field}` in {v}"))
}

/// The cargo target directory: `CARGO_TARGET_DIR` when absolute, else the
/// one the huddle binary was built into.
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).filter(|d| d.is_absolute()) {
        return d;
    }
    let exe = Path::new(BIN);
    exe.parent().and_then(Path::parent).expect("binary lives in <target>/<profile>/").to_path_buf()
}

fn has_imports(python: &Path, imports: &str) -> bool {
    Command::new(python)
        .args(["-c", imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python that can `imports`: `HUDDLE_TEST_PYTHON` if it can, else the venv
/// `venv_name` under the target directory, created once (pip-installing
/// `packages`) and reused. Panics with what to do when that fails; tests that
/// need a Python peer never skip.
pub fn venv_python(venv_name: &str, packages: &[&str], imports: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("HUDDLE_TEST_PYTHON").map(PathBuf::from)
        && has_imports(&p, imports)
    {
        return p;
    }
    // tests run on threads: one of them creates a venv while the others wait
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let venv = target_dir().join(venv_name);
    let py = venv.join("bin").join("python");
    if has_imports(&py, imports) {
        return py;
    }
    if !py.exists() {
        let out = Command::new("python3").arg("-m").arg("venv").arg(&venv).output();
        let out = out.unwrap_or_else(|e| {
            panic!("cannot run python3 to create a venv: {e}; install python3 or set HUDDLE_TEST_PYTHON")
        });
        assert!(
            out.status.success(),
            "`python3 -m venv {}` failed: {}\ninstall python3-venv, or set HUDDLE_TEST_PYTHON to a Python with {packages:?}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "pip install {packages:?} into {} failed:\n{}{}",
        venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has_imports(&py, imports), "{} still cannot `{imports}` after pip install", py.display());
    py
}
