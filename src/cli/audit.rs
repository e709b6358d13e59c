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

/// Why `audit verify` failed: the file, or the first line that breaks the chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditCliError {
    /// The file does not exist (a wrong path, not a broken chain).
    #[error("audit log {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file exists but does not open.
    #[error("cannot open audit log {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The chain breaks at a line.
    #[error("{}: {source}", .path.display())]
    Chain {
        /// The file.
        path: PathBuf,
        /// The first bad line.
        source: crate::audit::VerifyError,
    },
}

/// Runs an audit subcommand; the error names the file and the first bad line.
pub fn run(cmd: AuditCommand) -> Result<(), AuditCliError> {
    match cmd {
        AuditCommand::Verify { file } => {
            // opened here rather than by `verify_file`, whose error is a
            // chain error at "line 0": a missing file is a different mistake
            let f = std::fs::File::open(&file).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    AuditCliError::Missing(file.clone())
                } else {
                    AuditCliError::Open {
                        path: file.clone(),
                        source,
                    }
                }
            })?;
            let report = crate::audit::verify(std::io::BufReader::new(f)).map_err(|source| {
                AuditCliError::Chain {
                    path: file.clone(),
                    source,
                }
            })?;
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
