//! `sealgate completions SHELL` and `sealgate man`: shell completions and
//! roff man pages generated from the clap definition in [`super::Cli`], so
//! they always describe the parser this binary really has (packagers run
//! the installed binary; no build script, no checked-in copies to go stale).

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

/// Flags of `sealgate completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `sealgate man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The subcommand whose page to print, e.g. `keys create`; none: the
    /// page of `sealgate` itself.
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page (sealgate.1, sealgate-serve.1, sealgate-keys-create.1,
    /// …) into DIR instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}

/// Errors of `completions` and `man`.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// `sealgate man NAME…` named no subcommand.
    #[error("no subcommand `sealgate {0}`; `sealgate --help` lists them")]
    NoSuchCommand(String),
    /// Writing to stdout or the output directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs) -> Result<(), GenerateError> {
    let mut out = std::io::stdout().lock();
    match write_completions(args.shell, &mut out) {
        // `sealgate completions bash | head`: the reader stopped, not a failure
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|source| GenerateError::Io {
            what: "writing completions to stdout".into(),
            source,
        }),
    }
}

/// The completion script for `shell`, written to `out` (the testable core
/// of [`completions`]).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = super::Cli::command();
    // clap_complete panics on a failed write; render into memory first so an
    // EPIPE (`sealgate completions bash | head`) is an error, not a panic
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sealgate", &mut buf);
    out.write_all(&buf)?;
    out.flush()
}

/// Prints one man page, or writes every page to `--out-dir`.
pub fn man(args: ManArgs) -> Result<(), GenerateError> {
    if let Some(dir) = args.out_dir {
        return write_all_man(&root_command(), &dir).map_err(|source| GenerateError::Io {
            what: format!("writing man pages to {}", dir.display()),
            source,
        });
    }
    let mut out = std::io::stdout().lock();
    match write_man(&args.command, &mut out) {
        // `sealgate man | head`: the reader stopped, not a failure
        Err(GenerateError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        r => r,
    }
}

/// The top-level command, built, without the `help` subcommand (`--help`
/// and these pages cover it). Building names subcommands
/// `sealgate-keys-create`, which become the page titles and file names.
fn root_command() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// A page for `cmd`, its footer naming sealgate and its version (a
/// subcommand has no version of its own: the default would say "create ").
fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(format!("sealgate {}", env!("CARGO_PKG_VERSION")))
}

/// Writes the page of `cmd` and of every visible subcommand below it.
fn write_all_man(cmd: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_all_man(sub, dir)?;
    }
    page(cmd.clone()).generate_to(dir).map(|_| ())
}

/// The roff page of `sealgate` or of the subcommand path `command` (e.g.
/// `["keys", "create"]`), written to `out`.
pub fn write_man(command: &[String], out: &mut dyn Write) -> Result<(), GenerateError> {
    let mut cmd = root_command();
    for name in command {
        cmd = cmd
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| GenerateError::NoSuchCommand(command.join(" ")))?;
    }
    let io = |source| GenerateError::Io {
        what: "writing the man page to stdout".into(),
        source,
    };
    page(cmd).render(out).map_err(io)?;
    out.flush().map_err(io)
}
