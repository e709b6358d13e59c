//! JSONPath selectors (RFC 9535, via `jsonpath-rust`), compiled once when a
//! policy loads, and the Normalized Paths of the nodes they select.

use std::fmt;

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use serde_json::Value;

use super::rewrite::fast::{plan, PathStep};

/// A selector that does not compile, or fails while selecting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text is not a valid RFC 9535 query.
    #[error("not a valid JSONPath query: {0}")]
    Invalid(String),
    /// Evaluation did not yield nodes of the document (e.g. a function result).
    #[error("the query did not yield document nodes: {0}")]
    Evaluation(String),
    /// The library returned a path this module cannot read back.
    #[error("unreadable normalized path from the JSONPath engine")]
    BadPath,
}

/// One step of a Normalized Path: an object member name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// `['name']`
    Member(String),
    /// `[3]`
    Index(usize),
}

/// A node a selector picked: the value, its Normalized Path (`$['a'][0]`) and the path's steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected<'a> {
    /// The selected value.
    pub value: &'a Value,
    /// The Normalized Path as text, as RFC 9535 section 2.7 spells it.
    pub path: String,
    /// The same path as steps from the root.
    pub steps: Vec<Step>,
}

/// A compiled JSONPath query together with its source text.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    query: JpQuery,
    /// The plain-path plan the rewrite's fast path walks, when the query is one.
    plain: Option<Vec<PathStep>>,
}

impl Selector {
    /// Compiles `text` (an RFC 9535 query, starting with `$`).
    pub fn compile(text: &str) -> Result<Selector, SelectorError> {
        let query = parse_json_path(text).map_err(|e| SelectorError::Invalid(e.to_string()))?;
        Ok(Selector {
            text: text.to_owned(),
            query,
            plain: plan(text),
        })
    }

    /// The plain-path plan (computed once, here), or `None` for a query the
    /// fast path does not handle.
    pub(super) fn plain_path(&self) -> Option<&[PathStep]> {
        self.plain.as_deref()
    }

    /// The compiled query.
    pub(super) fn query(&self) -> &JpQuery {
        &self.query
    }

    /// The query as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `other` is the same query, however it is spelled: the
    /// compiled forms are compared, so `$.email`, `$['email']` and
    /// `$["email"]` (or `$.*` and `$[*]`) are the same query. (Selectors
    /// that merely overlap, such as `$.*` and `$.email`, are not.)
    pub fn same_query(&self, other: &Selector) -> bool {
        self.query == other.query
    }

    /// True when the query is `$` alone, i.e. selects the whole document.
    pub fn selects_root_only(&self) -> bool {
        self.query.segments.is_empty()
    }

    /// Runs the query on `doc`; nodes come in the order the query yields them.
    pub fn select<'a>(&self, doc: &'a Value) -> Result<Vec<Selected<'a>>, SelectorError> {
        let found = jsonpath_rust::query::js_path_process(&self.query, doc)
            .map_err(|e| SelectorError::Evaluation(e.to_string()))?;
        found
            .into_iter()
            .map(|r| {
                let steps = parse_normalized_path(&r.path).ok_or(SelectorError::BadPath)?;
                Ok(Selected {
                    value: r.val,
                    path: r.path,
                    steps,
                })
            })
            .collect()
    }

    /// The member names the query steps through by name, anywhere in it
    /// (not in filters): a body member that differs from one of them only
    /// by case is refused (see `rewrite::folds_to`).
    pub(super) fn member_names(&self) -> Vec<String> {
        use jsonpath_rust::parser::model::{Segment, Selector as Sel};
        fn walk(seg: &Segment, out: &mut Vec<String>) {
            match seg {
                Segment::Descendant(inner) => walk(inner, out),
                Segment::Selector(Sel::Name(n)) => out.push(n.clone()),
                Segment::Selector(_) => {}
                Segment::Selectors(list) => out.extend(list.iter().filter_map(|s| match s {
                    Sel::Name(n) => Some(n.clone()),
                    _ => None,
                })),
            }
        }
        let mut out = Vec::new();
        for seg in &self.query.segments {
            walk(seg, &mut out);
        }
        out
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compiled selectors of one rule (e.g. `request.encrypt`), and where the
/// records they apply to sit in a body.
///
/// Without record roots the whole body is the one record, and selectors are
/// absolute (`$.items[*].ssn`). With record roots (a route's `records`),
/// every selector runs on every node a root selects, and a value's label is
/// its member path from that record: `$.ssn` under `records = "$.items[*]"`
/// selects `$['items'][0]['ssn']` with the label `ssn`, the same label that
/// `$.ssn` gives on a bare `{"ssn":…}` record.
#[derive(Debug, Clone, Default)]
pub struct SelectorSet {
    selectors: Vec<Selector>,
    records: Vec<Selector>,
    /// The fast path's plans (record root + selector), one per pair, when
    /// every root and every selector is a plain path.
    plain: Option<Vec<Plan>>,
}

/// A plain path for the rewrite's fast path: the record root's steps, then
/// the selector's; labels start after the first `record_len` steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::policy) struct Plan {
    pub(in crate::policy) steps: Vec<PathStep>,
    pub(in crate::policy) record_len: usize,
    /// The label of every node the plan reaches, when its steps after the
    /// record name every member (no `*`): made once here rather than per
    /// body and node.
    pub(in crate::policy) label: Option<Box<str>>,
}

impl SelectorSet {
    /// A set of already compiled selectors, applied to the whole body.
    pub fn new(selectors: Vec<Selector>) -> SelectorSet {
        let mut set = SelectorSet {
            selectors,
            records: Vec::new(),
            plain: None,
        };
        set.plan();
        set
    }

    /// The same selectors, applied to every record `records` selects
    /// (none: the whole body is the record).
    pub fn with_records(mut self, records: Vec<Selector>) -> SelectorSet {
        self.records = records;
        self.plan();
        self
    }

    fn plan(&mut self) {
        let roots: Vec<Option<&[PathStep]>> = if self.records.is_empty() {
            vec![Some(&[])]
        } else {
            self.records.iter().map(Selector::plain_path).collect()
        };
        let mut plans = Vec::with_capacity(roots.len() * self.selectors.len());
        for root in roots {
            let Some(root) = root else {
                self.plain = None;
                return;
            };
            for s in &self.selectors {
                let Some(steps) = s.plain_path() else {
                    self.plain = None;
                    return;
                };
                // the label is the selector's member names unless a `*` picks them
                let label = steps
                    .iter()
                    .map(|step| match step {
                        PathStep::Name(n) => Some(Step::Member(n.to_string())),
                        PathStep::Index(i) => Some(Step::Index(*i)),
                        PathStep::Wild => None,
                    })
                    .collect::<Option<Vec<Step>>>()
                    .map(|steps| label_of(&steps).into());
                plans.push(Plan {
                    steps: root.iter().chain(steps).cloned().collect(),
                    record_len: root.len(),
                    label,
                });
            }
        }
        self.plain = Some(plans);
    }

    /// The fast path's plans, or `None` when some root or selector is not a plain path.
    pub(in crate::policy) fn plain_plans(&self) -> Option<&[Plan]> {
        self.plain.as_deref()
    }

    /// Compiles every text; the first failure is returned with its index.
    pub fn compile<S: AsRef<str>>(texts: &[S]) -> Result<SelectorSet, (usize, SelectorError)> {
        let selectors = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Selector::compile(t.as_ref()).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SelectorSet::new(selectors))
    }

    /// True when there is nothing to select.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// How many selectors.
    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    /// The selectors, in policy order.
    pub fn iter(&self) -> std::slice::Iter<'_, Selector> {
        self.selectors.iter()
    }

    /// The record roots (empty: the whole body is the record).
    pub fn records(&self) -> &[Selector] {
        &self.records
    }

    /// Runs one selector of this set on every record of `doc`: each node
    /// with its path from the body's root and its label (its member path
    /// from the record). A node that several roots reach is listed once,
    /// labelled from the innermost record.
    pub fn select_in_records<'a>(
        &self,
        selector: &Selector,
        doc: &'a Value,
    ) -> Result<Vec<InRecord<'a>>, SelectorError> {
        let mut out: Vec<(InRecord<'a>, usize)> = Vec::new();
        let whole = [Selected {
            value: doc,
            path: "$".to_owned(),
            steps: Vec::new(),
        }];
        let found_roots;
        let roots: &[Selected<'a>] = if self.records.is_empty() {
            &whole
        } else {
            let mut all = Vec::new();
            for r in &self.records {
                all.extend(r.select(doc)?);
            }
            found_roots = all;
            &found_roots
        };
        for root in roots {
            for node in selector.select(root.value)? {
                let label = label_of(&node.steps);
                let mut steps = root.steps.clone();
                steps.extend(node.steps);
                let depth = root.steps.len();
                match out.iter_mut().find(|(n, _)| n.steps == steps) {
                    Some((seen, seen_depth)) => {
                        if depth > *seen_depth {
                            seen.label = label;
                            *seen_depth = depth;
                        }
                    }
                    None => out.push((
                        InRecord {
                            value: node.value,
                            steps,
                            label,
                        },
                        depth,
                    )),
                }
            }
        }
        Ok(out.into_iter().map(|(n, _)| n).collect())
    }
}

/// A node a selector picked inside a record (see [`SelectorSet::select_in_records`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InRecord<'a> {
    /// The selected value.
    pub value: &'a Value,
    /// Its path from the body's root.
    pub steps: Vec<Step>,
    /// Its label: member names from its record, as [`label_of`] spells them.
    pub label: String,
}

impl<'a> IntoIterator for &'a SelectorSet {
    type Item = &'a Selector;
    type IntoIter = std::slice::Iter<'a, Selector>;
    fn into_iter(self) -> Self::IntoIter {
        self.selectors.iter()
    }
}

/// Reads a Normalized Path (`$`, then `['name']` or `[index]` steps) back into steps.
pub fn parse_normalized_path(path: &str) -> Option<Vec<Step>> {
    let mut chars = path.strip_prefix('$')?.chars().peekable();
    let mut steps = Vec::new();
    while let Some(c) = chars.next() {
        if c != '[' {
            return None;
        }
        match chars.peek()? {
            '\'' => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        '\\' => name.push(match chars.next()? {
                            'b' => '\u{0008}',
                            'f' => '\u{000C}',
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            '\'' => '\'',
                            '\\' => '\\',
                            '/' => '/',
                            'u' => {
                                let hex: String =
                                    (0..4).map(|_| chars.next()).collect::<Option<_>>()?;
                                char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                            }
                            _ => return None,
                        }),
                        other => name.push(other),
                    }
                }
                steps.push(Step::Member(name));
            }
            _ => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                steps.push(Step::Index(digits.parse().ok()?));
            }
        }
        if chars.next()? != ']' {
            return None;
        }
    }
    Some(steps)
}

/// The label of a path: member names joined by `.`, array indices dropped.
///
/// `$['cards'][3]['number']` → `cards.number`; `$[0]['ssn']` → `ssn`. A `.` or
/// `\` inside a member name is escaped with `\`, so `{"a.b": …}` and
/// `{"a": {"b": …}}` get different labels.
pub fn label_of(steps: &[Step]) -> String {
    let mut label = String::new();
    for step in steps {
        if let Step::Member(name) = step {
            if !label.is_empty() {
                label.push('.');
            }
            for c in name.chars() {
                if c == '.' || c == '\\' {
                    label.push('\\');
                }
                label.push(c);
            }
        }
    }
    label
}

/// A label and each shorter tail of it at a member boundary, longest first:
/// `items.cards.number` → `items.cards.number`, `cards.number`, `number`.
/// (The label of a value inside a record wrapped in lists or pages the
/// reader does not know is one of these.)
pub fn label_tails(label: &str) -> Vec<&str> {
    let mut tails = vec![label];
    let mut escaped = false;
    for (i, c) in label.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '.' if !escaped => tails.push(&label[i + 1..]),
            _ => escaped = false,
        }
    }
    tails
}

#[cfg(test)]
mod tests {
    use super::Selector;

    #[test]
    fn label_tails_split_at_unescaped_dots() {
        assert_eq!(
            super::label_tails("items.cards.number"),
            ["items.cards.number", "cards.number", "number"]
        );
        assert_eq!(super::label_tails("a\\.b.c"), ["a\\.b.c", "c"]);
        assert_eq!(super::label_tails("ssn"), ["ssn"]);
    }
    use crate::policy::PolicySet;

    fn same(a: &str, b: &str) -> bool {
        Selector::compile(a)
            .unwrap()
            .same_query(&Selector::compile(b).unwrap())
    }

    #[test]
    fn spellings_of_one_query_are_the_same_query() {
        for (a, b) in [
            ("$.email", "$['email']"),
            ("$.email", "$[\"email\"]"),
            ("$['email']", "$[\"email\"]"),
            ("$.contact.email", "$['contact'][\"email\"]"),
            ("$[*].email", "$.*['email']"),
            ("$..email", "$..['email']"),
            ("$['caf\\u00e9']", "$['café']"),
        ] {
            assert!(same(a, b), "{a} vs {b}");
        }
        for (a, b) in [
            ("$.email", "$.mail"),
            ("$.email", "$..email"),
            ("$.a.email", "$.email"),
            ("$[0]", "$['0']"),
        ] {
            assert!(!same(a, b), "{a} vs {b}");
        }
    }

    fn load(rules: &str) -> Result<PolicySet, String> {
        let text = format!("[[route]]\nname = \"r\"\npath = \"/p\"\nkey = \"k\"\n{rules}");
        PolicySet::from_sources(&[("f.toml".into(), text)]).map_err(|e| e.to_string())
    }

    #[test]
    fn deterministic_and_encrypt_overlap_is_refused_whatever_the_spelling() {
        for (side, det, other_op, other) in [
            ("request", "$['email']", "encrypt", "$.email"),
            ("request", "$[\"email\"]", "encrypt", "$.email"),
            ("request", "$.email", "encrypt", "$['email']"),
            ("request", "$.user.email", "decrypt", "$['user'][\"email\"]"),
            ("response", "$['email']", "decrypt", "$.email"),
            ("response", "$.email", "encrypt", "$[\"email\"]"),
        ] {
            let e = load(&format!(
                "{side}.deterministic = [{det:?}]\n{side}.{other_op} = [{other:?}]\n"
            ))
            .unwrap_err();
            assert!(e.contains(&format!("{side}.deterministic")), "{e}");
            assert!(e.contains(&format!("'{det}'")), "{e}");
            assert!(e.contains(&format!("'{other}'")), "{e}");
            assert!(e.contains(other_op), "{e}");
        }
        // the same field in deterministic on one side and decrypt on the other is fine
        load("request.deterministic = [\"$['email']\"]\nresponse.decrypt = [\"$.email\"]\n")
            .unwrap();
    }

    #[test]
    fn encrypt_and_decrypt_overlap_and_repeats_are_refused_whatever_the_spelling() {
        let e = load("request.encrypt = [\"$.a\"]\nrequest.decrypt = [\"$['a']\"]\n").unwrap_err();
        assert!(e.contains("both encrypted and decrypted"), "{e}");
        assert!(e.contains("'$.a'") && e.contains("'$['a']'"), "{e}");
        let e = load("request.encrypt = [\"$.a\", \"$[\\\"a\\\"]\"]\n").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        assert!(e.contains("'$.a'") && e.contains("'$[\"a\"]'"), "{e}");
    }
}
