//! `muster`: the operator's CLI. The work is in `muster_coordinator::cli`.

use std::process::ExitCode;

use clap::Parser as _;
use muster_coordinator::cli::{Cli, CliError, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`muster … | head`): what it wanted was written; not an error.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
