//! Every `sealgate …` command line shown in README.md and docs/*.md parses
//! with the real command-line definition, so the docs cannot drift from the
//! CLI unnoticed (a renamed flag or subcommand fails here, naming file:line).
//!
//! Scope: lines in fenced code blocks tagged `sh`, `bash`, `shell`,
//! `console` or untagged, that run `sealgate …` or `cargo run [--release] --
//! …` (the package's default binary is sealgate). Other programs (curl,
//! cargo test, openssl, python) are out of scope.

use clap::Parser;
use std::path::{Path, PathBuf};

/// Fewer than this many commands found means the extractor broke (or the
/// docs lost their examples), not that everything parses.
const MIN_COMMANDS: usize = 30;

/// One command line found in the docs.
#[derive(Debug)]
struct DocCommand {
    /// `file:line` of the line the command starts on.
    at: String,
    /// The logical line as written (continuations joined).
    text: String,
    /// argv, `sealgate` first.
    argv: Vec<String>,
}

/// A shell token: a word, or an operator (`|`, `>`, `&&`, …) that ends or
/// redirects the command. Quoting is resolved in words.
#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Op(String),
}

/// Splits one logical shell line with POSIX quoting rules: single quotes,
/// double quotes (backslash escapes `"`, `\`, `$`, `` ` ``), backslash
/// outside quotes, `#` starting a word begins a comment, and the control
/// and redirection operators. Enough for documentation examples; an
/// unterminated quote is an error so a broken example is reported.
fn lex(line: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |cur: &mut String, in_word: &mut bool, toks: &mut Vec<Tok>| {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(cur)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut cur, &mut in_word, &mut toks),
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            '|' | ';' | '&' | '<' | '>' => {
                // `2>` / `2>&1`: a digit word directly before a redirection is its fd
                let fd =
                    in_word && (c == '>' || c == '<') && cur.chars().all(|d| d.is_ascii_digit());
                let mut op = if fd {
                    std::mem::take(&mut cur)
                } else {
                    String::new()
                };
                if fd {
                    in_word = false;
                } else {
                    flush(&mut cur, &mut in_word, &mut toks);
                }
                op.push(c);
                while let Some(&n) = chars.peek() {
                    if matches!(n, '|' | '&' | '>' | '<') {
                        op.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                // `>&1`, `<&-`: the target fd is part of the operator
                if op.ends_with("&") && op.len() > 1 && op.contains(['>', '<']) {
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_digit() || n == '-' {
                            op.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                toks.push(Tok::Op(op));
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    flush(&mut cur, &mut in_word, &mut toks);
    Ok(toks)
}

/// The argv of a sealgate invocation on a logical line, or `None` when the
/// line runs something else. Drops a `$ ` prompt, `VAR=value` prefixes,
/// everything from the first control operator (`|`, `&&`, `;`, `&`) and
/// redirections with their targets.
fn sealgate_argv(line: &str) -> Result<Option<Vec<String>>, String> {
    let line = line.trim_start();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    // only lines that run sealgate are lexed: other programs' lines (a
    // multi-line `python3 -c '…'`) need not split on their own
    let first = line.split_whitespace().find(|w| !is_env(w));
    if !matches!(first, Some("sealgate" | "cargo")) {
        return Ok(None);
    }
    let mut words = Vec::new();
    let mut toks = lex(line)?.into_iter();
    while let Some(t) = toks.next() {
        match t {
            Tok::Word(w) => words.push(w),
            Tok::Op(op) if op.contains('>') || op.contains('<') => {
                // `2>&1` carries its target; `> file` takes the next word
                if !op.ends_with('&') && !op.chars().last().is_some_and(|c| c.is_ascii_digit()) {
                    toks.next();
                }
            }
            Tok::Op(_) => break,
        }
    }
    let start = words.iter().take_while(|w| is_env(w)).count();
    let words = &words[start..];
    let rest = match words {
        [first, rest @ ..] if first == "sealgate" => rest,
        [cargo, run, rest @ ..] if cargo == "cargo" && run == "run" => match rest {
            [dd, rest @ ..] if dd == "--" => rest,
            [rel, dd, rest @ ..] if rel == "--release" && dd == "--" => rest,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(
        std::iter::once("sealgate".to_string())
            .chain(rest.iter().cloned())
            .collect(),
    ))
}

/// Whether a word is a `VAR=value` assignment prefixing a command.
fn is_env(w: &str) -> bool {
    w.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// Shell code blocks of one Markdown text: `(first line number, lines)` per
/// logical line, continuations joined and heredoc bodies left out.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // (marker, is shell, is console: only `$ ` lines are commands, the rest output)
    let mut fence: Option<(String, bool, bool)> = None;
    let mut heredoc: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = raw.trim_start();
        if let Some((marker, is_shell, is_console)) = &fence {
            if trimmed.starts_with(marker.as_str()) && trimmed.trim_end() == marker.as_str() {
                if let Some(p) = pending.take() {
                    out.push(p);
                }
                fence = None;
                heredoc = None;
                continue;
            }
            if !*is_shell {
                continue;
            }
            if let Some(end) = &heredoc {
                if raw.trim() == end {
                    heredoc = None;
                }
                continue;
            }
            if *is_console && pending.is_none() && !trimmed.starts_with("$ ") {
                continue;
            }
            let (start, mut joined) = pending.take().unwrap_or((lineno, String::new()));
            if let Some(body) = raw.strip_suffix('\\') {
                joined.push_str(body);
                joined.push(' ');
                pending = Some((start, joined));
                continue;
            }
            joined.push_str(raw);
            if let Some(pos) = joined.find("<<") {
                let word = joined[pos + 2..]
                    .trim_start_matches('-')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c| c == '\'' || c == '"');
                if !word.is_empty() {
                    heredoc = Some(word.to_string());
                }
            }
            out.push((start, joined));
        } else if let Some((marker, info)) = fence_open(trimmed) {
            let lang = info.split_whitespace().next().unwrap_or("");
            let is_shell = matches!(lang, "" | "sh" | "bash" | "shell" | "console");
            fence = Some((marker, is_shell, lang == "console"));
        }
    }
    out
}

/// An opening code fence: its marker (three or more backticks or tildes,
/// which the closing fence repeats) and its info string.
fn fence_open(line: &str) -> Option<(String, &str)> {
    let ch = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = line.chars().take_while(|&c| c == ch).count();
    (n >= 3).then(|| (line[..n].to_string(), line[n..].trim()))
}

/// README.md and docs/*.md, in a stable order.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap_or_else(|e| panic!("docs/: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every sealgate command of every doc file; a line that does not split is
/// returned as an error with its place.
fn doc_commands() -> (Vec<DocCommand>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for path in doc_files() {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (lineno, line) in shell_lines(&text) {
            let at = format!("{name}:{lineno}");
            match sealgate_argv(&line) {
                Ok(Some(argv)) => found.push(DocCommand {
                    at,
                    text: line.trim().to_string(),
                    argv,
                }),
                Ok(None) => {}
                Err(e) => errors.push(format!("{at}: {e}: {}", line.trim())),
            }
        }
    }
    (found, errors)
}

/// Parses argv with the real CLI; `--help` and `--version` count as
/// parsing (clap reports them as "errors" that print and exit 0), a
/// missing subcommand does not.
fn parse(argv: &[String]) -> Result<(), clap::Error> {
    match sealgate::cli::Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[test]
fn every_documented_command_parses() {
    let (commands, mut failures) = doc_commands();
    // visible with --nocapture: what was checked, to review the extraction
    for c in &commands {
        println!("{}: {:?}", c.at, &c.argv[1..]);
    }
    for c in &commands {
        if let Err(e) = parse(&c.argv) {
            // clap's own message (usage and all), indented under the place
            let msg = e.render().to_string();
            let msg = msg.trim_end().replace('\n', "\n    ");
            failures.push(format!("{}: {}\n    {msg}", c.at, c.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documented sealgate commands do not parse:\n\n{}",
        failures.len(),
        commands.len(),
        failures.join("\n\n")
    );
    assert!(
        commands.len() >= MIN_COMMANDS,
        "only {} sealgate commands found in README.md and docs/ (expected at least {MIN_COMMANDS}): {:#?}",
        commands.len(),
        commands
    );
}

#[test]
fn the_checker_catches_a_wrong_flag() {
    // the CLI really refuses what a stale doc line would say
    let argv = sealgate_argv("sealgate keys create --no-such-flag x")
        .unwrap()
        .unwrap();
    assert!(parse(&argv).is_err());
    let argv = sealgate_argv("sealgate keys create [--alias A]")
        .unwrap()
        .unwrap();
    assert!(parse(&argv).is_err(), "a usage synopsis is not a command");
    let argv = sealgate_argv("sealgate keys").unwrap().unwrap();
    assert!(parse(&argv).is_err(), "a missing subcommand is an error");
    let argv = sealgate_argv("sealgate keys create --alias users")
        .unwrap()
        .unwrap();
    assert!(parse(&argv).is_ok());
    let argv = sealgate_argv("sealgate --help").unwrap().unwrap();
    assert!(parse(&argv).is_ok());
}

#[test]
fn extraction_follows_shell_rules() {
    let md = "text\n\
        ```sh\n\
        sealgate serve --upstream http://a \\\n  --policies 'my dir'  # a comment\n\
        FOO=1 BAR=2 sealgate policy suggest --capture c.jsonl > out.toml 2>&1\n\
        $ sealgate audit verify \"a b.jsonl\" | head\n\
        cargo run --release -- keys list\n\
        cargo run --release --example demo -- 127.0.0.1:3000\n\
        cat > f <<'EOF'\n\
        sealgate not-a-command\n\
        EOF\n\
        curl -s localhost:8080\n\
        ```\n\
        ```toml\n\
        sealgate = \"not shell\"\n\
        ```\n\
        ```\n\
        sealgate keys list --json\n\
        ```\n\
        ```console\n\
        $ sealgate config check\n\
        sealgate: output, not a command\n\
        ```\n";
    let lines = shell_lines(md);
    let got: Vec<(usize, Vec<String>)> = lines
        .iter()
        .filter_map(|(n, l)| sealgate_argv(l).unwrap().map(|a| (*n, a)))
        .collect();
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (
                3,
                v(&[
                    "sealgate",
                    "serve",
                    "--upstream",
                    "http://a",
                    "--policies",
                    "my dir"
                ])
            ),
            (
                5,
                v(&["sealgate", "policy", "suggest", "--capture", "c.jsonl"])
            ),
            (6, v(&["sealgate", "audit", "verify", "a b.jsonl"])),
            (7, v(&["sealgate", "keys", "list"])),
            (18, v(&["sealgate", "keys", "list", "--json"])),
            (21, v(&["sealgate", "config", "check"])),
        ]
    );
    assert!(sealgate_argv("sealgate keys import 'unterminated").is_err());
}
