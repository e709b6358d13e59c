//! The packaging files agree with the binary and the docs: the systemd unit
//! (`packaging/sealgate.service`) has the hardening docs/reliability.md asks
//! for and passes `systemd-analyze verify`; the Dockerfile is multi-stage,
//! non-root and passes hadolint; every command line they run parses; the
//! `completions` and `man` subcommands generate from the real definition.
//!
//! Tools that may be missing (systemd-analyze, hadolint) make their test
//! print why it skipped; with `CI=true` a missing tool is a failure.

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `Key=Value` lines of a unit file, in order (a key may repeat).
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('[')
        })
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Whether `CI=true`: there, a tool this test needs must be present.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(what: &str) {
    assert!(
        !in_ci(),
        "{what} (CI=true: a skip here would hide a broken package)"
    );
    eprintln!("SKIPPED: {what}");
}

#[test]
fn unit_has_the_hardening_the_docs_ask_for() {
    let unit = read("packaging/sealgate.service");
    let entries = unit_entries(&unit);
    let values = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let required = [
        ("User", "sealgate"),
        // docs/reliability.md: mlockall only under an unlimited RLIMIT_MEMLOCK
        ("LimitMEMLOCK", "infinity"),
        ("LimitCORE", "0"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/sealgate"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
    ];
    let missing: Vec<String> = required
        .iter()
        .filter(|(k, v)| !values(k).contains(v))
        .map(|(k, v)| format!("{k}={v} (has {:?})", values(k)))
        .collect();
    assert!(
        missing.is_empty(),
        "packaging/sealgate.service lacks: {missing:#?}"
    );
    // an empty bounding set must not be widened again by a later line
    assert_eq!(
        values("CapabilityBoundingSet"),
        [""],
        "only the empty capability set"
    );
    assert!(values("AmbientCapabilities").iter().all(|v| v.is_empty()));
    // the root key must not travel in the environment (docs/threat-model.md)
    assert!(
        !unit.contains("SEALGATE_ROOT_KEY"),
        "the unit passes the root key by credential, never by Environment="
    );
    // the docs name the limit the unit sets
    let reliability = read("docs/reliability.md");
    assert!(
        reliability.contains("LimitMEMLOCK=infinity"),
        "docs/reliability.md names LimitMEMLOCK=infinity"
    );
}

/// argv of an `ExecStart=`-style line with the binary named `sealgate`,
/// systemd specifiers replaced by plausible paths.
fn exec_argv(line: &str) -> Vec<String> {
    line.replace("%d", "/run/credentials/sealgate.service")
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                "sealgate".to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[test]
fn the_unit_and_the_image_run_commands_the_cli_accepts() {
    let unit = read("packaging/sealgate.service");
    let entries = unit_entries(&unit);
    let exec: Vec<&String> = entries
        .iter()
        .filter(|(k, _)| k == "ExecStart")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(exec.len(), 1, "one ExecStart");
    assert!(
        exec[0].starts_with("/usr/bin/sealgate serve "),
        "{}",
        exec[0]
    );
    let argv = exec_argv(exec[0]);
    let cli = sealgate::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("ExecStart {argv:?}: {e}"));
    assert!(matches!(cli.command, sealgate::cli::Command::Serve(_)));

    // the image: ENTRYPOINT ["sealgate"] + CMD [...] is what `docker run` executes
    let dockerfile = read("Dockerfile");
    let json_list = |directive: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .rfind(|l| l.starts_with(directive))
            .unwrap_or_else(|| panic!("Dockerfile has no {directive}"));
        serde_json::from_str(line[directive.len()..].trim())
            .unwrap_or_else(|e| panic!("{directive} is not an exec-form JSON list: {e}"))
    };
    let entrypoint = json_list("ENTRYPOINT");
    let cmd = json_list("CMD");
    assert_eq!(entrypoint, ["sealgate"]);
    assert_eq!(cmd, ["serve", "--config", "/etc/sealgate/sealgate.toml"]);
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    sealgate::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("CMD {argv:?}: {e}"));
    // and a wrong flag would have been caught
    assert!(sealgate::cli::Cli::try_parse_from(["sealgate", "serve", "--confg", "x"]).is_err());
}

#[test]
fn dockerfile_is_multi_stage_locked_and_non_root() {
    let d = read("Dockerfile");
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].contains("debian:bookworm-slim") || froms[1].contains("distroless/cc"),
        "minimal runtime: {}",
        froms[1]
    );
    assert!(d.contains("cargo build --release --locked"));
    // the runtime stage takes only the binary from the builder
    let copies: Vec<&str> = d
        .lines()
        .filter(|l| l.starts_with("COPY --from=builder"))
        .collect();
    assert_eq!(
        copies,
        ["COPY --from=builder /usr/local/bin/sealgate /usr/local/bin/sealgate"]
    );
    let user = d
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .unwrap_or("USER root");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "runs as non-root: {user}"
    );
    assert!(d.contains("VOLUME [\"/var/lib/sealgate\"]"));
    assert!(d.lines().any(|l| l == "EXPOSE 8080 8443 9090"));
    // the builder's toolchain is not older than the crate's rust-version
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("Cargo.toml has no rust-version"));
    let image_version = d
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .unwrap_or_else(|| panic!("Dockerfile has no ARG RUST_VERSION"));
    let minor = |v: &str| -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        minor(image_version) >= minor(&rust_version),
        "{image_version} < {rust_version}"
    );
}

/// Runs `systemd-analyze` on `unit` as a file named sealgate.service in a
/// fresh directory; `None` when the tool is not installed.
fn analyze(unit: &str, args: &[&str]) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path: PathBuf = dir.path().join("sealgate.service");
    std::fs::write(&path, unit).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match Command::new("systemd-analyze")
        .args(args)
        .arg(&path)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("systemd-analyze: {e}"),
    }
}

#[test]
fn unit_passes_systemd_analyze() {
    // verify checks that ExecStart's binary exists: point it at the one cargo
    // built; --man=no because the page is not installed here
    let unit = read("packaging/sealgate.service")
        .replace("/usr/bin/sealgate", env!("CARGO_BIN_EXE_sealgate"));
    let Some(out) = analyze(&unit, &["verify", "--man=no"]) else {
        return skip("systemd-analyze not found (Debian package `systemd`): unit not verified");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on settings it ignores (a typo'd value): any message is a failure
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify packaging/sealgate.service: {}\n{stderr}",
        out.status
    );
    // the check does read the file: a broken value is reported
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystem=bogus");
    let out = analyze(&broken, &["verify", "--man=no"])
        .unwrap_or_else(|| panic!("systemd-analyze vanished"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "verify did not see the broken line"
    );

    // systemd's own exposure score; 1.4 when written, "OK" is below 4.0
    let Some(out) = analyze(&unit, &["security", "--offline=yes", "--no-pager"]) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for sealgate.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure score in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0: hardening was lost\n{text}"
    );
}

/// Runs packaging/hadolint.sh on `dockerfile`; `None` when hadolint could
/// not be installed (the script's exit 77).
fn hadolint(dockerfile: &Path) -> Option<std::process::Output> {
    let out = Command::new("bash")
        .arg(root().join("packaging/hadolint.sh"))
        .arg(dockerfile)
        .output()
        .unwrap_or_else(|e| panic!("bash packaging/hadolint.sh: {e}"));
    (out.status.code() != Some(77)).then_some(out)
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(out) = hadolint(&root().join("Dockerfile")) else {
        return skip("hadolint could not be installed (packaging/hadolint.sh exit 77): Dockerfile not linted");
    };
    assert!(
        out.status.success(),
        "hadolint Dockerfile: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // and it does lint: a root runtime with an unpinned, uncleaned apt install fails
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y curl\n",
    )
    .unwrap_or_else(|e| panic!("{}: {e}", bad.display()));
    let out = hadolint(&bad).unwrap_or_else(|| panic!("hadolint vanished"));
    assert!(!out.status.success(), "hadolint passed a bad Dockerfile");
}

#[test]
fn completions_name_every_subcommand() {
    let mut buf = Vec::new();
    sealgate::cli::generate::write_completions(clap_complete::Shell::Bash, &mut buf)
        .unwrap_or_else(|e| panic!("bash completions: {e}"));
    let text = String::from_utf8_lossy(&buf);
    for sub in [
        "serve",
        "keys",
        "credentials",
        "policy",
        "config",
        "rewrap",
        "dev-cert",
        "audit",
        "completions",
        "man",
    ] {
        assert!(text.contains(sub), "bash completions lack `{sub}`");
    }
    // nested subcommands and flags are there too
    assert!(text.contains("schedule-deletion") && text.contains("--kms-listen"));
    assert!(text.contains("complete -F"), "not a bash completion script");
    for shell in [
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
        clap_complete::Shell::Elvish,
        clap_complete::Shell::PowerShell,
    ] {
        let mut buf = Vec::new();
        sealgate::cli::generate::write_completions(shell, &mut buf)
            .unwrap_or_else(|e| panic!("{shell}: {e}"));
        assert!(
            String::from_utf8_lossy(&buf).contains("rotate"),
            "{shell} completions lack `keys rotate`"
        );
    }
}

/// The first roff request of a page, past the `Aq` string definition
/// (`.ie \n(.g .ds Aq …` / `.el .ds Aq '`) the roff crate puts before
/// every page so apostrophes render on groff and other troffs alike.
fn first_request(page: &str) -> &str {
    page.lines()
        .find(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .unwrap_or("")
}

#[test]
fn man_page_is_roff_and_names_the_subcommands() {
    let mut buf = Vec::new();
    sealgate::cli::generate::write_man(&[], &mut buf).unwrap_or_else(|e| panic!("man: {e}"));
    let page = String::from_utf8_lossy(&buf);
    assert!(first_request(&page).starts_with(".TH sealgate 1"), "{page}");
    assert!(page.contains("\n.SH SUBCOMMANDS"), "{page}");
    for sub in ["serve", "keys", "dev\\-cert", "completions"] {
        assert!(
            page.contains(&format!("sealgate\\-{sub}(1)")),
            "page lacks sealgate-{sub}(1):\n{page}"
        );
    }

    let mut buf = Vec::new();
    let path = ["keys".to_string(), "create".to_string()];
    sealgate::cli::generate::write_man(&path, &mut buf)
        .unwrap_or_else(|e| panic!("man keys create: {e}"));
    let page = String::from_utf8_lossy(&buf);
    assert!(
        first_request(&page).starts_with(".TH sealgate-keys-create 1"),
        "{page}"
    );
    assert!(
        page.contains(&format!("\"sealgate {}\"", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    assert!(page.contains("\\-\\-alias"), "{page}");

    let err = sealgate::cli::generate::write_man(&["nope".to_string()], &mut Vec::new());
    assert!(err.is_err(), "an unknown subcommand is an error");
}

#[test]
fn man_out_dir_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("sealgate man: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "sealgate.1",
        "sealgate-serve.1",
        "sealgate-keys.1",
        "sealgate-keys-create.1",
        "sealgate-man.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(first_request(&text).starts_with(".TH "), "{page}: {text}");
    }
    assert!(
        !dir.path().join("sealgate-help.1").exists(),
        "no page for the help subcommand"
    );
}
