//! Rewriting selected fields of a JSON body in place.
//!
//! The body is parsed once with `serde_json` (which validates it and bounds
//! nesting), the selectors run on that value, and a small scanner over the
//! ORIGINAL bytes records where every value starts and ends. Each selected
//! node's byte span is handed to the caller, and the bytes it returns are
//! spliced in; every other byte — key order, whitespace, number spelling —
//! stays exactly as the client or upstream wrote it.

use std::borrow::Cow;

use serde_json::Value;

use super::selector::{SelectorError, SelectorSet, Step};

/// Deepest nesting the span scanner follows; `serde_json` stops at 128 first.
const MAX_DEPTH: usize = 256;

/// One selected value, as the rewrite callback sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSite<'a> {
    /// Member names of the value's path joined by `.`, array indices dropped
    /// (`$['cards'][3]['number']` → `cards.number`). Meant for the AAD.
    pub label: &'a str,
    /// The value's JSON text exactly as it appears in the body.
    pub raw: &'a [u8],
    /// Where the value starts in the body (see [`path_at`]).
    pub offset: usize,
}

/// The Normalized Path (`$['items'][0]['ssn']`) of the value that starts at
/// byte `offset` of `body`, for error messages (the rewrite itself does not
/// keep paths). `None` if the body is not JSON or no value starts there.
pub fn path_at(body: &[u8], offset: usize) -> Option<String> {
    let root = Scanner::index::<()>(body, &[]).ok()?;
    let mut path = String::from("$");
    let mut node = &root;
    while node.start != offset {
        match &node.children {
            Children::Array(items) => {
                let i = items
                    .iter()
                    .position(|c| c.start <= offset && offset < c.end)?;
                path.push_str(&format!("[{i}]"));
                node = &items[i];
            }
            Children::Object(members) => {
                let (name, child) = members
                    .iter()
                    .find(|(_, c)| c.start <= offset && offset < c.end)?;
                let quoted = name.replace('\\', "\\\\").replace('\'', "\\'");
                path.push_str(&format!("['{quoted}']"));
                node = child;
            }
            Children::Scalar => return None,
        }
    }
    Some(path)
}

/// A node to visit: where it starts and ends in the body, and its label
/// (borrowed from the selector plan when the plan fixes it).
type Site<'a> = (usize, usize, Cow<'a, str>);

/// Why a body could not be rewritten. Never carries body content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError<E> {
    /// Not UTF-8, or not one JSON value (the message says where).
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// Nested deeper than the parser allows.
    #[error("body nests JSON too deeply")]
    TooDeep,
    /// An object has the same member name twice; one copy could escape the selectors.
    #[error("body has a duplicate object member name (object at byte {offset})")]
    DuplicateKey {
        /// Byte offset of the object that holds the duplicate.
        offset: usize,
    },
    /// A member name differs from a sealed member name only by case (or
    /// Unicode simple case folding): Go's `encoding/json`, case-insensitive
    /// Jackson and ASP.NET Core would bind it, unsealed, to the sealed field.
    #[error("body has a member name that differs from a sealed member name only by case (object at byte {offset})")]
    FoldedKey {
        /// Byte offset of the object that holds it.
        offset: usize,
    },
    /// A selector failed while running on this body.
    #[error("selector {selector} failed: {source}")]
    Selector {
        /// The selector's text.
        selector: String,
        /// What went wrong.
        source: SelectorError,
    },
    /// A selected node could not be found in the raw bytes (a bug, reported rather than ignored).
    #[error("selected node could not be located in the body")]
    Unlocatable,
    /// The callback refused a field.
    #[error("field could not be rewritten: {0}")]
    Field(E),
}

/// Replaces each node `selectors` pick in `body` with the bytes `f` returns for it.
///
/// `f` gets the node's label and raw JSON text and returns `Ok(Some(json))` to
/// replace it, `Ok(None)` to leave it. A node selected twice is visited once;
/// a node inside another selected node is not visited (the outer one wins).
/// Nodes are visited in document order. Returns `Ok(None)` when nothing was
/// replaced, so the caller can forward the original bytes.
pub fn rewrite<E>(
    body: &[u8],
    selectors: &SelectorSet,
    mut f: impl FnMut(FieldSite<'_>) -> Result<Option<Vec<u8>>, E>,
) -> Result<Option<Vec<u8>>, RewriteError<E>> {
    rewrite_into(
        body,
        selectors,
        |_| Ok(()),
        |site, out, ()| {
            Ok(f(site)?.map(|new| {
                out.extend_from_slice(&new);
            }))
        },
    )
}

/// The nodes a rewrite will visit, told to [`rewrite_into`]'s `prepare`
/// before the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SitesSummary {
    /// How many nodes will be visited.
    pub count: usize,
    /// Their raw JSON text's bytes, all together.
    pub raw_bytes: usize,
}

/// [`rewrite`] without a `Vec` per replaced node: `prepare` learns how many
/// nodes there are (e.g. to reserve one data key for all of them) and
/// returns state that `f` then gets with each node and the output buffer.
/// `f` appends the replacement to the buffer and returns `Ok(Some(()))`,
/// or returns `Ok(None)` to leave the node (whatever it appended is dropped).
/// `prepare` is not called when no node is selected.
pub fn rewrite_into<E, S>(
    body: &[u8],
    selectors: &SelectorSet,
    prepare: impl FnOnce(SitesSummary) -> Result<S, E>,
    mut f: impl FnMut(FieldSite<'_>, &mut Vec<u8>, &mut S) -> Result<Option<()>, E>,
) -> Result<Option<Vec<u8>>, RewriteError<E>> {
    if selectors.is_empty() {
        return Ok(None);
    }
    let mut sites = match fast::plans(selectors) {
        Some(plans) => fast::find(body, plans).map_err(|f| match f {
            fast::Fail::NotJson(msg) => RewriteError::NotJson(msg),
            fast::Fail::TooDeep => RewriteError::TooDeep,
            fast::Fail::Duplicate(offset) => RewriteError::DuplicateKey { offset },
            fast::Fail::Folded(offset) => RewriteError::FoldedKey { offset },
        })?,
        None => general_sites(body, selectors)?,
    };
    if sites.is_empty() {
        return Ok(None);
    }
    // JSON spans are nested or disjoint: after sorting by start (outer first),
    // a span that starts before the last kept one ends is a duplicate or inside it.
    sites.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut kept_end = 0;
    sites.retain(|(start, end, _)| {
        if *start < kept_end {
            return false;
        }
        kept_end = *end;
        true
    });
    let summary = SitesSummary {
        count: sites.len(),
        raw_bytes: sites.iter().map(|(s, e, _)| e.saturating_sub(*s)).sum(),
    };
    let mut state = prepare(summary).map_err(RewriteError::Field)?;
    let mut out: Vec<u8> = Vec::new();
    let mut copied = 0;
    let mut replaced = false;
    for (start, end, label) in &sites {
        let raw = body.get(*start..*end).ok_or(RewriteError::Unlocatable)?;
        if !replaced {
            // room for the body and some growth: sealing grows a value by
            // a third (base64) plus an envelope header
            out.reserve(body.len() + summary.raw_bytes / 2 + 128 * summary.count);
        }
        let mark = out.len();
        out.extend_from_slice(body.get(copied..*start).ok_or(RewriteError::Unlocatable)?);
        let site = FieldSite {
            label,
            raw,
            offset: *start,
        };
        match f(site, &mut out, &mut state).map_err(RewriteError::Field)? {
            Some(()) => {
                copied = *end;
                replaced = true;
            }
            None => out.truncate(mark),
        }
    }
    if !replaced {
        return Ok(None);
    }
    out.extend_from_slice(body.get(copied..).ok_or(RewriteError::Unlocatable)?);
    Ok(Some(out))
}

/// The general path: any RFC 9535 query, run by the JSONPath engine on a
/// `serde_json::Value` of the body, its nodes located by [`Scanner`].
fn general_sites<E>(
    body: &[u8],
    selectors: &SelectorSet,
) -> Result<Vec<Site<'static>>, RewriteError<E>> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            RewriteError::TooDeep
        } else {
            RewriteError::NotJson(e.to_string())
        }
    })?;
    let names: Vec<String> = selectors.iter().flat_map(|s| s.member_names()).collect();
    let index = Scanner::index(body, &names)?;

    let mut sites: Vec<Site<'static>> = Vec::new();
    for selector in selectors {
        let found = selectors
            .select_in_records(selector, &doc)
            .map_err(|source| RewriteError::Selector {
                selector: selector.as_str().to_owned(),
                source,
            })?;
        for node in found {
            let (start, end) = index.locate(&node.steps).ok_or(RewriteError::Unlocatable)?;
            sites.push((start, end, Cow::Owned(node.label)));
        }
    }
    Ok(sites)
}

/// Where one value sits in the raw body, with its children.
#[derive(Debug)]
struct SpanNode<'a> {
    start: usize,
    end: usize,
    children: Children<'a>,
}

#[derive(Debug)]
enum Children<'a> {
    Scalar,
    Array(Vec<SpanNode<'a>>),
    /// Sorted by member name, for lookup and duplicate detection.
    Object(Vec<(Cow<'a, str>, SpanNode<'a>)>),
}

impl SpanNode<'_> {
    fn locate(&self, steps: &[Step]) -> Option<(usize, usize)> {
        let mut node = self;
        for step in steps {
            node = match (step, &node.children) {
                (Step::Index(i), Children::Array(items)) => items.get(*i)?,
                (Step::Member(name), Children::Object(members)) => {
                    let at = members
                        .binary_search_by(|(k, _)| k.as_ref().cmp(name.as_str()))
                        .ok()?;
                    &members.get(at)?.1
                }
                _ => return None,
            };
        }
        Some((node.start, node.end))
    }
}

/// A span-recording walk over bytes `serde_json` has already accepted.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Member names the selectors step through; see [`folds_to`].
    sealed: &'a [String],
}

/// The scanner's own failures; input serde_json accepted never produces them.
fn malformed<E>(at: usize) -> RewriteError<E> {
    RewriteError::NotJson(format!("unexpected byte at offset {at}"))
}

impl<'a> Scanner<'a> {
    fn index<E>(bytes: &'a [u8], sealed: &'a [String]) -> Result<SpanNode<'a>, RewriteError<E>> {
        let mut s = Scanner {
            bytes,
            pos: 0,
            sealed,
        };
        s.skip_ws();
        let root = s.value(0)?;
        s.skip_ws();
        if s.pos != bytes.len() {
            return Err(malformed(s.pos));
        }
        Ok(root)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect<E>(&mut self, byte: u8) -> Result<(), RewriteError<E>> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(malformed(self.pos))
        }
    }

    fn value<E>(&mut self, depth: usize) -> Result<SpanNode<'a>, RewriteError<E>> {
        if depth > MAX_DEPTH {
            return Err(RewriteError::TooDeep);
        }
        let start = self.pos;
        let children = match self.peek() {
            Some(b'{') => Children::Object(self.object(depth)?),
            Some(b'[') => Children::Array(self.array(depth)?),
            Some(b'"') => {
                self.string()?;
                Children::Scalar
            }
            Some(_) => {
                while matches!(self.peek(), Some(b) if !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(malformed(start));
                }
                Children::Scalar
            }
            None => return Err(malformed(start)),
        };
        Ok(SpanNode {
            start,
            end: self.pos,
            children,
        })
    }

    fn array<E>(&mut self, depth: usize) -> Result<Vec<SpanNode<'a>>, RewriteError<E>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(malformed(self.pos)),
            }
        }
    }

    fn object<E>(
        &mut self,
        depth: usize,
    ) -> Result<Vec<(Cow<'a, str>, SpanNode<'a>)>, RewriteError<E>> {
        let offset = self.pos;
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            self.skip_ws();
            let key = self.key()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            members.push((key, self.value(depth + 1)?));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(malformed(self.pos)),
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(RewriteError::DuplicateKey { offset });
        }
        // the general path does not know which object a name applies to
        // (descendants, filters): any object is checked against every name
        if members
            .iter()
            .any(|(k, _)| self.sealed.iter().any(|n| folds_to(k, n)))
        {
            return Err(RewriteError::FoldedKey { offset });
        }
        Ok(members)
    }

    /// Scans a string; returns its span (quotes included) and whether it has escapes.
    fn string<E>(&mut self) -> Result<(usize, usize, bool), RewriteError<E>> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
                None => return Err(malformed(self.pos)),
            }
        }
    }

    fn key<E>(&mut self) -> Result<Cow<'a, str>, RewriteError<E>> {
        let (start, end, escaped) = self.string()?;
        let raw = self.bytes.get(start..end).ok_or_else(|| malformed(start))?;
        if escaped {
            serde_json::from_slice::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| malformed(start))
        } else {
            let inner = raw.get(1..raw.len() - 1).ok_or_else(|| malformed(start))?;
            std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|_| malformed(start))
        }
    }
}

/// True when `key` is not `name` but equals it under Unicode simple case
/// folding (`SSN`, `Ssn`, `ſſn` for `ssn`; `K` KELVIN SIGN for `k`).
///
/// ASCII pairs, the usual case, compare without folding. Otherwise each
/// char is folded on its own as `to_uppercase` then `to_lowercase` when both
/// map one char to one char: that is simple folding (what Go's
/// `strings.EqualFold` and .NET's `OrdinalIgnoreCase` use) without a table
/// crate, and it is only reached for non-ASCII names.
pub(super) fn folds_to(key: &str, name: &str) -> bool {
    if key.is_ascii() && name.is_ascii() {
        // ASCII folds byte for byte: names of other lengths never match
        return key.len() == name.len() && key != name && key.eq_ignore_ascii_case(name);
    }
    if key == name {
        return false;
    }
    key.chars().map(fold).eq(name.chars().map(fold))
}

fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut up = c.to_uppercase();
    let upper = match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    };
    let mut low = upper.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        _ => upper,
    }
}

pub(super) mod fast;
#[cfg(test)]
mod tests;
