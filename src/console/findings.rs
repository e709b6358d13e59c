//! Shadow findings: the capture file shadow mode writes (`shadow_capture`,
//! JSON lines of [`Observation`]s: field paths and value classes, never
//! values), read as it grows and summed per route and field. A draft for
//! the findings a person selects comes from [`draft_policy`], the generator
//! behind `sealgate policy suggest`.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::policy::suggest::{draft_policy, Direction, Observation, ValueClass};

/// Most times one (finding, class) is repeated into a draft: the counts in
/// the draft's comments stop there, and so does the memory a draft takes.
const MAX_REPEAT: u64 = 100_000;

/// Most distinct findings kept (a capture is bounded too; this bounds memory
/// whatever the file holds).
const MAX_FINDINGS: usize = 10_000;

/// One field seen on one route in one direction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FindingKey {
    /// HTTP method.
    pub(crate) method: String,
    /// Path template (ids and sensitive segments are `{param}`s).
    pub(crate) path: String,
    /// Which body (or the path, for a `{param}` field).
    pub(crate) direction: Direction,
    /// JSONPath of the field, or `{name}` for a path segment.
    pub(crate) field: String,
}

impl FindingKey {
    /// A short stable id for a form: 16 hex digits of its SHA-256.
    pub(crate) fn id(&self) -> String {
        let dir = match self.direction {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let mut h = Sha256::new();
        for part in [self.method.as_str(), &self.path, dir, &self.field] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// What the capture held when last read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// Per finding, how often each class was seen.
    pub(crate) findings: BTreeMap<FindingKey, BTreeMap<ValueClass, u64>>,
    /// Lines that were not observations.
    pub(crate) bad_lines: u64,
    /// Findings not kept past [`MAX_FINDINGS`].
    pub(crate) dropped: u64,
    /// Why the file could not be read, if it could not.
    pub(crate) error: Option<String>,
}

#[derive(Debug, Default)]
struct Reader {
    offset: u64,
    partial: Vec<u8>,
    summary: Summary,
}

/// The capture file, read incrementally (only what was appended since the
/// last read; a file that shrank is read again from the start).
#[derive(Debug)]
pub(crate) struct Findings {
    file: PathBuf,
    reader: Mutex<Reader>,
}

/// The shape a value of `class` has, with no value in it: what the console
/// shows beside a finding.
pub(crate) fn shape(class: ValueClass) -> &'static str {
    match class {
        ValueClass::Email => "aaaa@aaaa.aaa",
        ValueClass::CardNumber => "9999 9999 9999 9999",
        ValueClass::NationalId => "999-99-9999 / AA999999A",
        ValueClass::Phone => "+99 999 999 9999",
        ValueClass::Iban => "AA99 AAAA 9999 9999 99",
        ValueClass::Secret => "(secret or token)",
    }
}

/// The class's name as the capture writes it.
pub(crate) fn class_name(class: ValueClass) -> &'static str {
    match class {
        ValueClass::Email => "email",
        ValueClass::CardNumber => "card_number",
        ValueClass::NationalId => "national_id",
        ValueClass::Phone => "phone",
        ValueClass::Iban => "iban",
        ValueClass::Secret => "secret",
    }
}

impl Findings {
    /// Findings from the capture at `file` (read on [`refresh`](Self::refresh)).
    pub(crate) fn new(file: PathBuf) -> Self {
        Findings {
            file,
            reader: Mutex::new(Reader::default()),
        }
    }

    /// The capture file.
    pub(crate) fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Reads what was appended since the last call; returns the summary.
    /// Blocking (file I/O).
    pub(crate) fn refresh(&self) -> Summary {
        let mut r = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = read_new(&self.file, &mut r) {
            r.summary.error = Some(format!("cannot read {}: {e}", self.file.display()));
        }
        r.summary.clone()
    }

    /// A policy draft (TOML) for the findings whose ids are `selected`,
    /// under `key`, made by `policy suggest`'s generator from the same
    /// observations, repeated as often as they were seen. `None` when no id
    /// names a finding. Blocking (reads the file first).
    pub(crate) fn draft(&self, selected: &[String], key: &str) -> Option<String> {
        let summary = self.refresh();
        let mut observations = Vec::new();
        for (k, classes) in &summary.findings {
            if !selected.contains(&k.id()) {
                continue;
            }
            for (class, n) in classes {
                for _ in 0..(*n).min(MAX_REPEAT) {
                    observations.push(Observation {
                        method: k.method.clone(),
                        path: k.path.clone(),
                        direction: k.direction,
                        field: k.field.clone(),
                        class: *class,
                    });
                }
            }
        }
        (!observations.is_empty()).then(|| draft_policy(&observations, key))
    }
}

fn read_new(file: &std::path::Path, r: &mut Reader) -> std::io::Result<()> {
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    if len < r.offset {
        // truncated or replaced: start again
        *r = Reader::default();
    }
    f.seek(SeekFrom::Start(r.offset))?;
    let mut buf = Vec::new();
    f.take(len - r.offset).read_to_end(&mut buf)?;
    r.offset += buf.len() as u64;
    r.summary.error = None;
    let mut data = std::mem::take(&mut r.partial);
    data.extend_from_slice(&buf);
    let complete = match data.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    r.partial = data.split_off(complete);
    for line in data.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(o) = serde_json::from_slice::<Observation>(line) else {
            r.summary.bad_lines += 1;
            continue;
        };
        let key = FindingKey {
            method: o.method,
            path: o.path,
            direction: o.direction,
            field: o.field,
        };
        let s = &mut r.summary;
        if !s.findings.contains_key(&key) && s.findings.len() >= MAX_FINDINGS {
            s.dropped += 1;
            continue;
        }
        *s.findings
            .entry(key)
            .or_default()
            .entry(o.class)
            .or_default() += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(method: &str, path: &str, dir: &str, field: &str, class: &str) -> String {
        format!(
            "{{\"method\":\"{method}\",\"path\":\"{path}\",\"direction\":\"{dir}\",\"field\":\"{field}\",\"class\":\"{class}\"}}\n"
        )
    }

    #[test]
    fn appended_lines_are_summed_and_a_selection_drafts_a_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("capture.jsonl");
        std::fs::write(&file, line("POST", "/users", "request", "$.email", "email")).unwrap();
        let f = Findings::new(file.clone());
        assert_eq!(f.refresh().findings.len(), 1);
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        out.write_all(line("POST", "/users", "request", "$.email", "email").as_bytes())
            .unwrap();
        out.write_all(line("POST", "/users", "request", "$.ssn", "national_id").as_bytes())
            .unwrap();
        // half a line: kept for the next read
        out.write_all(b"{\"method\":\"GET\"").unwrap();
        let s = f.refresh();
        assert_eq!(s.findings.len(), 2);
        let email = s.findings.keys().find(|k| k.field == "$.email").unwrap();
        assert_eq!(s.findings[email][&ValueClass::Email], 2);
        assert_eq!(s.bad_lines, 0);
        out.write_all(b",\"path\":\"/x\",\"direction\":\"response\",\"field\":\"$.t\",\"class\":\"secret\"}\nnot json\n")
            .unwrap();
        let s = f.refresh();
        assert_eq!((s.findings.len(), s.bad_lines), (3, 1));

        let draft = f.draft(&[email.id()], "pii").unwrap();
        assert!(
            draft.contains("\"$.email\"") && !draft.contains("$.ssn"),
            "{draft}"
        );
        assert!(draft.contains("(2×)"), "{draft}");
        // the same text `policy suggest` writes for the same observations
        let obs = vec![
            Observation {
                method: "POST".into(),
                path: "/users".into(),
                direction: Direction::Request,
                field: "$.email".into(),
                class: ValueClass::Email,
            };
            2
        ];
        assert_eq!(draft, draft_policy(&obs, "pii"));
        assert!(f.draft(&["nope".into()], "pii").is_none());
    }

    #[test]
    fn a_missing_capture_is_reported_not_fatal() {
        let f = Findings::new(PathBuf::from("/nonexistent/capture.jsonl"));
        let s = f.refresh();
        assert!(s.error.is_some() && s.findings.is_empty());
    }
}
