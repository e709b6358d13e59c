//! `sealgate audit verify <file>`: checks an audit log's hash chain and
//! reports the first line that breaks it.

use std::path::PathBuf;

/// `sealgate audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain; exits non-zero at the first bad line.
    Verify {
        /// The audit log file (JSON lines).
        file: PathBuf,
    },
}

/// Runs an audit subcommand; the error names the first bad line.
pub fn run(cmd: AuditCommand) -> Result<(), crate::audit::VerifyError> {
    match cmd {
        AuditCommand::Verify { file } => {
            let report = crate::audit::verify_file(&file)?;
            println!("{}: {} lines, chain intact", file.display(), report.lines);
            if report.closed {
                println!("last record is audit_close: the writer stopped cleanly there");
            } else {
                println!(
                    "last record is not audit_close: the log is still being written, the process \
                     stopped uncleanly, or its tail was cut"
                );
            }
            Ok(())
        }
    }
}
