//! The `sealgate` binary: parse the command line and call into the library.

use clap::Parser;
use sealgate::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // admin commands: warnings (e.g. where the root key was created) to stderr
        sealgate::cli::serve::init_tracing("warn", sealgate::config::LogFormat::Pretty);
    }
    let result = match cli.command {
        Command::Serve(args) => sealgate::cli::serve::run(args).map_err(|e| e.to_string()),
        Command::Keys(cmd) => sealgate::cli::keys::run(cmd).map_err(|e| e.to_string()),
        Command::Credentials(cmd) => {
            sealgate::cli::credentials::run(cmd).map_err(|e| e.to_string())
        }
        Command::Policy(cmd) => sealgate::cli::policy::run(cmd).map_err(|e| e.to_string()),
        Command::Config(cmd) => sealgate::cli::config::run(cmd).map_err(|e| e.to_string()),
        Command::Rewrap(args) => sealgate::cli::rewrap::run(args),
        Command::DevCert(args) => sealgate::cli::devcert::run(args).map_err(|e| e.to_string()),
        Command::Audit(cmd) => sealgate::cli::audit::run(cmd).map_err(|e| e.to_string()),
        Command::Completions(args) => {
            sealgate::cli::generate::completions(args).map_err(|e| e.to_string())
        }
        Command::Man(args) => sealgate::cli::generate::man(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
