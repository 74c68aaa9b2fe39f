//! Running `nft`: a script goes in through `nft -f -` as one transaction — all of it applies or none of it does.

use std::io::Write as _;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft rejected the transaction: {0}")]
    Rejected(String),
}

/// Applies `script` atomically.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Removes the proxy's table; a table that is not there is no error.
pub fn delete_table(table: &str) -> Result<(), NftError> {
    apply(&format!("add table inet {table}\ndelete table inet {table}\n"))
}
