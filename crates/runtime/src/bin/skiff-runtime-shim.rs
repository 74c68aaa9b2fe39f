//! A stand-in for `skiff shim …` used by this crate's integration tests: the same entry point, nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(cmd) if cmd == "shim" => skiff_runtime::shim_main(args),
        _ => {
            eprintln!("usage: skiff-runtime-shim shim ...");
            ExitCode::from(64)
        }
    }
}
