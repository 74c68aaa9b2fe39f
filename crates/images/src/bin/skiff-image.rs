//! `skiff-image NAME [ARGS…]`: runs one built-in image program, as `skiff image NAME [ARGS…]` does. Used by
//! this crate's process-level tests.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, rest)) = args.split_first() else {
        eprintln!("usage: skiff-image NAME [ARGS...]");
        for b in skiff_images::BUILTINS {
            eprintln!("  {:<15} {} (stands in for {})", b.name, b.summary, b.stands_in_for);
        }
        return ExitCode::from(64);
    };
    skiff_images::run(name, rest).await
}
