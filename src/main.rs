//! Entry point: parse the command line, set up logging, run, map the result to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ghl_mirror::cli::Cli::parse();
    ghl_mirror::cli::init_tracing(args.verbose);
    match ghl_mirror::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
