//! The Python `kubernetes` client (from PyPI) as a second, independent client of the API server.

use std::process::Command;

use super::cluster::{Cluster, repo};

#[test]
fn python_client_crud_watch_and_errors() {
    let c = Cluster::start();
    let script = repo().join("crates/skiff/tests/e2e/python_client.py");
    let out = Command::new("python3").arg(script).arg(c.kubeconfig()).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
