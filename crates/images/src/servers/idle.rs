//! `sleep` (for `kiamol/ch03-sleep`) and `pause` (for `registry.k8s.io/pause` and `agnhost pause`): processes
//! that do nothing until told to stop, then exit 0. The real kiamol sleep image is an Alpine shell loop with a
//! `trap` so that it ends promptly on SIGTERM; the real pause program exits 0 on SIGINT or SIGTERM. Tools for
//! `kubectl exec` (ping, curl, nslookup, ...) come from the node's filesystem.

use super::{ImageError, RunOptions, say};
use crate::flags::Flags;

/// Waits for the stop signal and returns exit code 0. Takes no flags.
pub async fn main(name: &str, args: &[String], opts: &RunOptions) -> Result<u8, ImageError> {
    Flags::parse(args, &[])?;
    opts.stop.cancelled().await;
    if name == "pause" {
        say("Shutting down, got signal: Terminated");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn idles_until_stopped_then_exits_zero() {
        for name in ["sleep", "pause"] {
            let opts = RunOptions::default();
            let stop = opts.stop.clone();
            let task = tokio::spawn(async move { super::super::run_with(name, &[], opts).await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!task.is_finished(), "{name} must keep running");
            stop.cancel();
            let code = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
            assert_eq!(code, 0, "{name}");
        }
    }

    #[tokio::test]
    async fn refuses_arguments() {
        let opts = RunOptions::default();
        assert!(main("sleep", &["10".to_string()], &opts).await.is_err());
    }
}
