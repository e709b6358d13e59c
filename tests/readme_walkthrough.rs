//! The README's walkthrough, run as written: the three terminals of its first
//! `sh` block after "## Walkthrough" — the demo upstream, `sealgate serve`
//! with the shipped demo policy on a new data directory, and the `curl` lines
//! — with only the ports changed (8080 and 3000 may be taken). What the
//! README says the reader sees is what this test checks: the upstream stores
//! envelopes and prints them, the client reads its values back, the list
//! opens, and one CMK, `demo`, exists.
//!
//! The demo upstream is the `demo_upstream` example, which `cargo test`
//! builds beside the test binaries; `curl` must be on the PATH (`.ci/run`
//! installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A child killed when the test ends, its output lines sent to `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command, stdout: bool) -> Running {
        if stdout {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd.stdin(Stdio::null()).spawn().unwrap();
        let out: Box<dyn std::io::Read + Send> = if stdout {
            Box::new(child.stdout.take().unwrap())
        } else {
            Box::new(child.stderr.take().unwrap())
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line printed so far (without waiting).
    fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The logical lines (continuations joined, comments kept out) of the first
/// `sh` block after the "## Walkthrough" heading.
fn walkthrough_lines(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Walkthrough")
        .expect("README has a Walkthrough section");
    let rest = &readme[start..];
    let open = rest
        .find("```sh\n")
        .expect("the walkthrough has an sh block")
        + 6;
    let close = rest[open..].find("```").expect("the sh block is closed") + open;
    let mut lines = Vec::new();
    let mut cur = String::new();
    for raw in rest[open..close].lines() {
        let line = raw.trim();
        if cur.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(line);
            lines.push(std::mem::take(&mut cur));
        }
    }
    lines
}

/// Splits `line` at spaces outside single quotes, without the quotes, and
/// drops a trailing `# comment`.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !quoted && !in_word => break,
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn example_bin(name: &str) -> PathBuf {
    // target/debug/deps/<test> → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    debug.join("examples").join(name)
}

fn curl(args: &[String]) -> String {
    let out = Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is on the PATH (.ci/run installs it)");
    assert!(out.status.success(), "curl {args:?}: {:?}", out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = walkthrough_lines(&readme);
    let upstream_line = lines
        .iter()
        .find(|l| l.contains("--example demo_upstream"))
        .expect("terminal 1 runs the demo upstream");
    let serve_line = lines
        .iter()
        .find(|l| l.contains("-- serve "))
        .expect("terminal 2 runs sealgate serve");
    let curls: Vec<&String> = lines.iter().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 4, "the walkthrough's curl lines: {curls:?}");

    // 1. the demo upstream, on a free port instead of the README's
    let bin = example_bin("demo_upstream");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds the examples (run the whole suite, or \
         `cargo build --example demo_upstream` first)",
        bin.display()
    );
    let readme_upstream = words(upstream_line)
        .last()
        .cloned()
        .expect("demo_upstream takes its address");
    let mut upstream = Running::spawn(
        {
            let mut c = Command::new(&bin);
            c.arg("127.0.0.1:0");
            c
        },
        true,
    );
    let listening = upstream.wait_for("demo upstream listening on http://");
    let upstream_addr = listening.rsplit("http://").next().unwrap().to_string();

    // 2. sealgate as the README starts it, from a new directory, with the
    // upstream's port and a free listen port
    let argv = words(serve_line);
    let at = argv.iter().position(|w| w == "serve").unwrap();
    let mut args: Vec<String> = argv[at..].to_vec();
    for w in args.iter_mut() {
        if *w == format!("http://{readme_upstream}") {
            *w = format!("http://{upstream_addr}");
        }
    }
    let p = args.iter().position(|w| w == "--policies").unwrap();
    args[p + 1] = root.join(&args[p + 1]).display().to_string();
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let cwd = tempfile::tempdir().unwrap();
    let mut sealgate = Running::spawn(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_sealgate"));
            c.args(&args)
                .current_dir(cwd.path())
                .env_remove("RUST_LOG")
                .env_remove("SEALGATE_CONFIG")
                .env_remove("SEALGATE_DATA_DIR")
                .env_remove("SEALGATE_ROOT_KEY")
                .env("NO_COLOR", "1");
            c
        },
        false,
    );
    let started = sealgate.wait_for("sealgate proxy listening");
    let proxy_addr = started
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .expect("the start line names its address")
        .to_string();

    // 3. the client's lines, ports swapped
    let mut outputs = Vec::new();
    for line in &curls {
        let args: Vec<String> = words(line)[1..]
            .iter()
            .map(|w| {
                w.replace("localhost:8080", &proxy_addr)
                    .replace("localhost:3000", &upstream_addr)
            })
            .collect();
        outputs.push((line.to_string(), curl(&args)));
    }
    let answer = |needle: &str| -> Value {
        let (line, out) = outputs
            .iter()
            .find(|(l, _)| l.contains(needle) && !l.contains("-XPOST"))
            .unwrap_or_else(|| panic!("no curl line for {needle}"));
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{line}: {e}: {out}"))
    };
    let clear = |v: &Value| {
        assert_eq!(v["name"], "Ann", "{v}");
        assert_eq!(v["email"], "ann@example.com", "{v}");
        assert_eq!(v["ssn"], "123-45-6789", "{v}");
        assert_eq!(v["cards"][0]["number"], "4111111111111111", "{v}");
    };
    // "through sealgate: the original values"
    clear(&answer("localhost:8080/users/1"));
    // "the list opens too"
    let list = answer("localhost:8080/users ");
    let list = list.as_array().expect("GET /users is a bare list");
    assert_eq!(list.len(), 1, "{list:?}");
    clear(&list[0]);
    // "straight from the upstream: sg1.… envelopes"
    let stored = answer("localhost:3000/users/1");
    assert_eq!(stored["name"], "Ann", "{stored}");
    for field in [
        &stored["email"],
        &stored["ssn"],
        &stored["cards"][0]["number"],
    ] {
        let s = field.as_str().unwrap_or_default();
        assert!(s.starts_with("sg1."), "{stored}");
    }
    let raw = stored.to_string();
    for secret in ["ann@example.com", "123-45-6789", "4111111111111111"] {
        assert!(!raw.contains(secret), "{raw}");
    }

    // terminal 1 "prints stored users/1: {…"email":"sg1.…": envelopes only
    let printed = upstream.wait_for("stored users/1: ");
    assert!(printed.contains("\"email\":\"sg1."), "{printed}");
    for line in upstream.drain() {
        for secret in ["ann@example.com", "123-45-6789", "4111111111111111"] {
            assert!(!line.contains(secret), "the upstream saw {secret}: {line}");
        }
    }

    // "creates ./sealgate-data/ with a root key … and the one CMK the demo
    // policy names, demo"
    drop(sealgate);
    let data = cwd.path().join("sealgate-data");
    assert!(data.join("root.key").exists());
    let store = sealgate::keys::KeyStore::open(
        &data,
        sealgate::keys::RootKeySource::File(data.join("root.key")),
        sealgate::keys::StoreOptions::default(),
    )
    .unwrap();
    let keys = store.list(0, 100);
    assert_eq!(keys.total_count, 1, "{:?}", keys.keys);
    assert!(store.resolve("demo").is_ok());
}
