//! The labels selectors give, as patterns, and the check that every label a
//! route opens is one that some route of the same context seals (and the
//! reverse). PURE.
//!
//! A value's label is its member path from its record (array indices
//! dropped). A selector with wildcards or descendants gives many labels;
//! its pattern says which: `$.ssn` → `ssn`, `$.cards[*].number` →
//! `cards.number` (an array wildcard or a member wildcard: `cards.*?.number`
//! allows both), `$..ssn` → `**.ssn`. Two patterns overlap when some label
//! matches both; an opened pattern that overlaps no sealed one of its context
//! can never open what those routes wrote.

use std::collections::BTreeMap;
use std::fmt;

use jsonpath_rust::parser::model::{Segment, Selector as JpSelector};

use super::selector::Selector;
use super::PolicySet;

/// One part of a label pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Exactly this member name.
    Name(String),
    /// One of these member names.
    Names(Vec<String>),
    /// One member name of any spelling, or nothing (a wildcard, filter or
    /// slice: over an object it adds a member name, over an array none).
    AnyOrNone,
    /// Any number of member names (a descendant segment).
    AnyMany,
}

/// The labels one selector can give, relative to its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPattern(Vec<Part>);

impl LabelPattern {
    /// The pattern of a selector's labels.
    pub fn of(selector: &Selector) -> LabelPattern {
        let mut parts = Vec::new();
        for segment in &selector.query().segments {
            push_segment(segment, &mut parts);
        }
        LabelPattern(parts)
    }

    /// True when the pattern is one fixed label.
    pub fn is_exact(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Part::Name(_)))
    }

    /// True when some label matches both patterns.
    pub fn overlaps(&self, other: &LabelPattern) -> bool {
        // product of the two patterns' automata: state (i, j) = parts
        // consumed; explored depth first with a visited set
        let (a, b) = (&self.0, &other.0);
        let mut seen = vec![false; (a.len() + 1) * (b.len() + 1)];
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, j)) = stack.pop() {
            let at = i * (b.len() + 1) + j;
            if seen[at] {
                continue;
            }
            seen[at] = true;
            if i == a.len() && j == b.len() {
                return true;
            }
            // moves that consume no member name
            if let Some(Part::AnyOrNone | Part::AnyMany) = a.get(i) {
                stack.push((i + 1, j));
            }
            if let Some(Part::AnyOrNone | Part::AnyMany) = b.get(j) {
                stack.push((i, j + 1));
            }
            // moves that consume one member name on both sides
            if let (Some(pa), Some(pb)) = (a.get(i), b.get(j)) {
                if one_name_in_common(pa, pb) {
                    let ni = if *pa == Part::AnyMany { i } else { i + 1 };
                    let nj = if *pb == Part::AnyMany { j } else { j + 1 };
                    stack.push((ni, nj));
                }
            }
        }
        false
    }
}

fn push_segment(segment: &Segment, parts: &mut Vec<Part>) {
    match segment {
        Segment::Descendant(inner) => {
            parts.push(Part::AnyMany);
            push_segment(inner, parts);
        }
        Segment::Selector(s) => push_selectors(std::slice::from_ref(s), parts),
        Segment::Selectors(list) => push_selectors(list, parts),
    }
}

fn push_selectors(list: &[JpSelector], parts: &mut Vec<Part>) {
    let mut names = Vec::new();
    let mut indices = false;
    let mut other = false;
    for s in list {
        match s {
            JpSelector::Name(n) => names.push(n.clone()),
            JpSelector::Index(_) => indices = true,
            _ => other = true,
        }
    }
    if other || (indices && !names.is_empty()) {
        parts.push(Part::AnyOrNone);
    } else if indices {
        // array positions add nothing to a label
    } else if names.len() == 1 {
        parts.push(Part::Name(names.remove(0)));
    } else {
        names.sort();
        names.dedup();
        parts.push(Part::Names(names));
    }
}

fn one_name_in_common(a: &Part, b: &Part) -> bool {
    match (a, b) {
        (Part::Name(x), Part::Name(y)) => x == y,
        (Part::Name(x), Part::Names(ys)) | (Part::Names(ys), Part::Name(x)) => ys.contains(x),
        (Part::Names(xs), Part::Names(ys)) => xs.iter().any(|x| ys.contains(x)),
        _ => true,
    }
}

impl fmt::Display for LabelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(the record itself)");
        }
        let mut first = true;
        for p in &self.0 {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            match p {
                Part::Name(n) => write!(f, "{}", escape(n))?,
                Part::Names(ns) => {
                    let list: Vec<String> = ns.iter().map(|n| escape(n)).collect();
                    write!(f, "{{{}}}", list.join("|"))?;
                }
                Part::AnyOrNone => f.write_str("*?")?,
                Part::AnyMany => f.write_str("**")?,
            }
        }
        Ok(())
    }
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '.' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a finding is about a field opened that nothing seals, or sealed that nothing opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelGap {
    /// A decrypt selector whose labels no seal of the context produces:
    /// what the context's routes write never opens here.
    OpensUnsealed,
    /// A seal whose labels no decrypt selector of the context opens.
    SealsUnopened,
}

/// A selector whose labels do not meet the other side's in its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFinding {
    /// Which way the gap runs.
    pub gap: LabelGap,
    /// The policy file of the route.
    pub file: String,
    /// The route's name.
    pub route: String,
    /// e.g. `response.decrypt`.
    pub rule: String,
    /// The selector as written.
    pub selector: String,
    /// Its label pattern.
    pub label: String,
    /// The context template the routes share.
    pub context: String,
    /// The labels the other side of the context has (`'label' (routes)`).
    pub other_side: Vec<String>,
    /// A hint when a record root would make the labels meet.
    pub hint: Option<String>,
}

impl fmt::Display for LabelFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, other, done) = match self.gap {
            LabelGap::OpensUnsealed => ("opens", "seals", "sealed"),
            LabelGap::SealsUnopened => ("seals", "opens", "opened"),
        };
        write!(
            f,
            "{}: route '{}' {} '{}' {verb} label '{}', which no route of context '{}' {other}",
            self.file, self.route, self.rule, self.selector, self.label, self.context
        )?;
        if self.other_side.is_empty() {
            write!(f, " (no route of the context {other} anything)")?;
        } else {
            write!(f, " ({done} there: {})", self.other_side.join(", "))?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

struct Site<'a> {
    file: &'a str,
    route: &'a str,
    rule: String,
    selector: &'a Selector,
    pattern: LabelPattern,
}

/// Matches, per context, the labels routes open against the labels routes
/// seal. Routes that open every envelope found (`open_all`) or that list
/// `open_labels` are taken to open any label.
pub fn check_labels(set: &PolicySet) -> Vec<LabelFinding> {
    let mut by_context: BTreeMap<&str, (Vec<Site<'_>>, Vec<Site<'_>>, bool)> = BTreeMap::new();
    for r in set.routes() {
        let entry = by_context.entry(r.context_template()).or_default();
        if r.open_all || !r.open_labels.is_empty() {
            entry.2 = true;
        }
        for (side, rules) in [("request", &r.request), ("response", &r.response)] {
            for (op, sel_set, seals) in [
                ("encrypt", &rules.encrypt, true),
                ("deterministic", &rules.deterministic, true),
                ("decrypt", &rules.decrypt, false),
            ] {
                for selector in sel_set {
                    let site = Site {
                        file: r.file(),
                        route: &r.name,
                        rule: format!("{side}.{op}"),
                        selector,
                        pattern: LabelPattern::of(selector),
                    };
                    if seals {
                        entry.0.push(site);
                    } else {
                        entry.1.push(site);
                    }
                }
            }
        }
    }
    let mut findings = Vec::new();
    for (context, (seals, opens, opens_anything)) in &by_context {
        let mut report = |gap: LabelGap, from: &[Site<'_>], against: &[Site<'_>]| {
            for s in from {
                if against.iter().any(|o| o.pattern.overlaps(&s.pattern)) {
                    continue;
                }
                let hint = against
                    .iter()
                    .find_map(|o| record_hint(s.selector, &o.pattern));
                // each label once, with the routes that have it
                let mut other_side: Vec<(String, Vec<&str>)> = Vec::new();
                for o in against.iter() {
                    let label = o.pattern.to_string();
                    match other_side.iter_mut().find(|(l, _)| *l == label) {
                        Some((_, routes)) if !routes.contains(&o.route) => routes.push(o.route),
                        Some(_) => {}
                        None => other_side.push((label, vec![o.route])),
                    }
                }
                let other_side: Vec<String> = other_side
                    .into_iter()
                    .map(|(l, routes)| format!("'{l}' ({})", routes.join(", ")))
                    .collect();
                findings.push(LabelFinding {
                    gap,
                    file: s.file.to_owned(),
                    route: s.route.to_owned(),
                    rule: s.rule.clone(),
                    selector: s.selector.as_str().to_owned(),
                    label: s.pattern.to_string(),
                    context: (*context).to_owned(),
                    other_side,
                    hint,
                });
            }
        };
        report(LabelGap::OpensUnsealed, opens, seals);
        if !opens_anything {
            report(LabelGap::SealsUnopened, seals, opens);
        }
    }
    findings
}

/// When `selector` is a plain path whose tail gives exactly the label of
/// `other`, the fix is a record root at its head: say which.
fn record_hint(selector: &Selector, other: &LabelPattern) -> Option<String> {
    use super::rewrite::fast::PathStep;
    if other.0.is_empty() {
        return None;
    }
    let steps = selector.plain_path()?;
    for cut in 1..steps.len() {
        if !matches!(steps[cut], PathStep::Name(_)) {
            // a record root takes the list's wildcard or index with it
            continue;
        }
        let tail = LabelPattern(
            steps[cut..]
                .iter()
                .filter_map(|s| match s {
                    PathStep::Name(n) => Some(Part::Name(n.to_string())),
                    PathStep::Wild => Some(Part::AnyOrNone),
                    PathStep::Index(_) => None,
                })
                .collect(),
        );
        if !tail.overlaps(other) {
            continue;
        }
        let text = |steps: &[PathStep]| {
            let mut t = String::from("$");
            for s in steps {
                match s {
                    PathStep::Name(n) if is_plain_name(n) => {
                        t.push('.');
                        t.push_str(n);
                    }
                    PathStep::Name(n) => t.push_str(&format!("['{}']", n.replace('\'', "\\'"))),
                    PathStep::Index(i) => t.push_str(&format!("[{i}]")),
                    PathStep::Wild => t.push_str("[*]"),
                }
            }
            t
        };
        return Some(format!(
            "its records sit at '{}': write records = \"{}\" and the selector '{}'",
            text(&steps[..cut]),
            text(&steps[..cut])
                .replace('\\', "\\\\")
                .replace('"', "\\\""),
            text(&steps[cut..]),
        ));
    }
    None
}

fn is_plain_name(n: &str) -> bool {
    n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && n.chars().next().is_some_and(|c| !c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(text: &str) -> LabelPattern {
        LabelPattern::of(&Selector::compile(text).unwrap())
    }

    #[test]
    fn patterns_read_as_labels() {
        assert_eq!(pat("$.ssn").to_string(), "ssn");
        assert_eq!(pat("$.cards[*].number").to_string(), "cards.*?.number");
        assert_eq!(pat("$.cards[0].number").to_string(), "cards.number");
        assert_eq!(pat("$..ssn").to_string(), "**.ssn");
        assert_eq!(pat("$['a.b']").to_string(), "a\\.b");
        assert_eq!(pat("$['x','y']").to_string(), "{x|y}");
        assert!(pat("$.a.b").is_exact());
        assert!(!pat("$.a[*]").is_exact());
    }

    #[test]
    fn overlap_is_a_common_label() {
        for (a, b) in [
            ("$.ssn", "$.ssn"),
            ("$.ssn", "$[*].ssn"),
            ("$.cards[*].number", "$.cards[0].number"),
            ("$.cards[*].number", "$.cards.*.number"),
            ("$..ssn", "$.a.b.ssn"),
            ("$..ssn", "$.ssn"),
            ("$.*", "$.ssn"),
            ("$['x','ssn']", "$.ssn"),
            ("$..*", "$.a.b"),
        ] {
            assert!(pat(a).overlaps(&pat(b)), "{a} vs {b}");
            assert!(pat(b).overlaps(&pat(a)), "{b} vs {a}");
        }
        for (a, b) in [
            ("$.ssn", "$.items[*].ssn"),
            ("$.ssn", "$.email"),
            ("$..ssn", "$.email"),
            ("$.a.ssn", "$.b.ssn"),
            ("$['x','y']", "$.ssn"),
            ("$.*", "$.a.b"),
        ] {
            assert!(!pat(a).overlaps(&pat(b)), "{a} vs {b}");
            assert!(!pat(b).overlaps(&pat(a)), "{b} vs {a}");
        }
    }

    fn findings(policy: &str) -> Vec<LabelFinding> {
        let set = PolicySet::from_sources(&[("p.toml".into(), policy.into())]).unwrap();
        check_labels(&set)
    }

    #[test]
    fn a_list_route_without_records_is_reported_with_both_labels() {
        let f = findings(
            r#"
[[route]]
name = "create"
methods = ["POST"]
path = "/users"
key = "k"
context = "users"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]

[[route]]
name = "list"
methods = ["GET"]
path = "/users"
key = "k"
context = "users"
response.decrypt = ["$.items[*].ssn"]
"#,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        let text = f[0].to_string();
        assert_eq!(f[0].gap, LabelGap::OpensUnsealed);
        assert!(text.contains("p.toml") && text.contains("'list'"), "{text}");
        assert!(
            text.contains("items.*?.ssn") && text.contains("'ssn' (create)"),
            "{text}"
        );
        assert!(text.contains("records = \"$.items[*]\""), "{text}");
    }

    #[test]
    fn records_make_the_labels_meet() {
        let f = findings(
            r#"
[[route]]
name = "create"
methods = ["POST"]
path = "/users"
key = "k"
context = "users"
request.encrypt = ["$.ssn"]
response.decrypt = ["$.ssn"]

[[route]]
name = "list"
methods = ["GET"]
path = "/users"
key = "k"
context = "users"
records = "$.items[*]"
response.decrypt = ["$.ssn"]
"#,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn a_seal_nothing_opens_is_reported_the_other_way() {
        let f = findings(
            r#"
[[route]]
name = "bulk"
path = "/bulk"
key = "k"
context = "docs"
request.encrypt = ["$.docs[*].name"]

[[route]]
name = "get"
path = "/docs/{id}"
key = "k"
context = "docs"
response.decrypt = ["$.name"]
"#,
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f
            .iter()
            .any(|x| x.gap == LabelGap::SealsUnopened && x.route == "bulk"));
        let seals = f.iter().find(|x| x.gap == LabelGap::SealsUnopened).unwrap();
        let hint = seals.hint.as_deref().unwrap_or("");
        assert!(hint.contains("records = \"$.docs[*]\""), "{seals}");
    }
}
