//! A foreign gRPC client: Python grpcio, which knows huddle's API only
//! through server reflection (v1alpha, as grpcio-reflection speaks it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Data, output_timeout};

const PY_PACKAGES: &[&str] = &["grpcio", "grpcio-reflection", "grpcio-health-checking", "protobuf"];
const PY_IMPORTS: &str = "import grpc, grpc_reflection, grpc_health, google.protobuf.message_factory";

fn python() -> PathBuf {
    crate::common::venv_python("huddle-py-venv", PY_PACKAGES, PY_IMPORTS)
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
