//! A foreign gRPC client: Python grpcio, which knows huddle's API only
//! through server reflection (v1alpha, as grpcio-reflection speaks it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Data, output_timeout};

const PY_PACKAGES: &[&str] = &["grpcio", "grpcio-reflection", "grpcio-health-checking", "protobuf"];
const PY_IMPORTS: &str = "import grpc, grpc_reflection, grpc_health, google.protobuf.message_factory";

/// The cargo target directory: `CARGO_TARGET_DIR` when absolute, else the
/// one the huddle binary was built into.
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).filter(|d| d.is_absolute()) {
        return d;
    }
    let exe = Path::new(crate::common::BIN);
    exe.parent().and_then(Path::parent).expect("binary lives in <target>/<profile>/").to_path_buf()
}

fn has_packages(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", PY_IMPORTS])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python with the grpc packages: `HUDDLE_TEST_PYTHON`, else a venv under
/// the target directory, created once and reused. Panics with what to do
/// when that fails; this test never skips.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HUDDLE_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(has_packages(&p), "HUDDLE_TEST_PYTHON={} lacks some of {PY_PACKAGES:?}", p.display());
        return p;
    }
    let venv = target_dir().join("huddle-py-venv");
    let py = venv.join("bin").join("python");
    if has_packages(&py) {
        return py;
    }
    if !py.exists() {
        let out = Command::new("python3").arg("-m").arg("venv").arg(&venv).output();
        let out = out.unwrap_or_else(|e| {
            panic!("cannot run python3 to create a venv: {e}; install python3 or set HUDDLE_TEST_PYTHON")
        });
        assert!(
            out.status.success(),
            "`python3 -m venv {}` failed: {}\ninstall python3-venv, or set HUDDLE_TEST_PYTHON to a Python with {PY_PACKAGES:?}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PY_PACKAGES)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "pip install {PY_PACKAGES:?} into {} failed:\n{}{}",
        venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has_packages(&py), "{} still cannot `{PY_IMPORTS}` after pip install", py.display());
    py
}

#[test]
fn python_grpcio_client_through_reflection() {
    let python = python();
    let data = Data::new();
    let node = data.start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/foreign_client.py");
    let child = Command::new(&python)
        .arg(&script)
        .arg(node.grpc.to_string())
        .arg(&node.key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let (status, stdout, stderr) = output_timeout(child, Duration::from_secs(120));
    let status = status.unwrap_or_else(|| panic!("foreign client hung:\n{stdout}\n{stderr}"));
    assert!(
        status.success(),
        "foreign client failed ({status}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        node.logs()
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.starts_with("foreign client: ") && summary.ends_with(" passed, 0 failed"), "{stdout}");
}
