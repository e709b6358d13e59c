//! The fast path of [`rewrite`](super::rewrite), for selectors that are
//! plain paths: `$`, then any of `.name`, `['name']`, `["name"]`, `.*`,
//! `[*]` and `[n]`. These are what policies almost always use, and they
//! need neither a `serde_json::Value` of the body nor the JSONPath engine.
//!
//! One pass over the bytes does everything: it validates the body exactly
//! as strictly as `serde_json::from_slice::<Value>` does (UTF-8, grammar,
//! escapes and lone surrogates, numbers that overflow an `f64`, nesting
//! deeper than 127), refuses duplicate member names anywhere, and records
//! the span of every node the selectors reach. Subtrees no selector can
//! reach are only validated: nothing is allocated for them.
//!
//! Any other selector (descendants, filters, slices, unions, negative
//! indices, quoted names with escapes) sends the whole body down the
//! general path instead; `tests.rs` checks both paths agree.

use std::borrow::Cow;

use super::super::selector::{Plan, SelectorSet};

/// Containers nested this deep are refused, as `serde_json` refuses them.
const DEPTH_LIMIT: usize = 128;

/// One step of a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::policy) enum PathStep {
    /// `.name` or `['name']`.
    Name(Box<str>),
    /// `[n]`, n ≥ 0.
    Index(usize),
    /// `.*` or `[*]`: every member value or element.
    Wild,
}

/// Why the one-pass walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fail {
    /// Not JSON; the message names the offset, never the content.
    NotJson(String),
    /// Nested deeper than `serde_json` allows.
    TooDeep,
    /// Duplicate member name in the object at this offset.
    Duplicate(usize),
    /// A member name in the object at this offset folds to a sealed one.
    Folded(usize),
}

/// The plain path of a selector's text, or `None` when it is anything else.
/// [`Selector::compile`](super::super::selector::Selector::compile) calls
/// this once; the rewrite reads the stored plan.
pub(in crate::policy) fn plan(text: &str) -> Option<Vec<PathStep>> {
    let b = text.as_bytes();
    if b.first() != Some(&b'$') {
        return None;
    }
    let mut steps = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                if b.get(i) == Some(&b'*') {
                    steps.push(PathStep::Wild);
                    i += 1;
                    continue;
                }
                let start = i;
                let rest = text.get(start..)?;
                let len: usize = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || !c.is_ascii())
                    .map(char::len_utf8)
                    .sum();
                let name = text.get(start..start + len)?;
                if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                    return None;
                }
                steps.push(PathStep::Name(name.into()));
                i += len;
            }
            b'[' => {
                i += 1;
                match *b.get(i)? {
                    b'*' => {
                        steps.push(PathStep::Wild);
                        i += 1;
                    }
                    q @ (b'\'' | b'"') => {
                        let start = i + 1;
                        let len = b.get(start..)?.iter().position(|&c| c == q)?;
                        let name = text.get(start..start + len)?;
                        if name.contains('\\') {
                            return None;
                        }
                        steps.push(PathStep::Name(name.into()));
                        i = start + len + 1;
                    }
                    b'0'..=b'9' => {
                        let start = i;
                        let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
                        steps.push(PathStep::Index(text.get(start..start + len)?.parse().ok()?));
                        i += len;
                    }
                    _ => return None,
                }
                if b.get(i) != Some(&b']') {
                    return None;
                }
                i += 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// Plans for every (record root, selector) pair of the set (made when the
/// set is), or `None` if one is not a plain path.
pub(super) fn plans(selectors: &SelectorSet) -> Option<&[Plan]> {
    selectors.plain_plans()
}

/// Validates `body` and returns `(start, end, label)` of every node the
/// plans select, in document order, each once. A node's label is its member
/// path from its record; a node several plans reach is labelled from the
/// innermost record.
pub(super) fn find(body: &[u8], plans: &[Plan]) -> Result<Vec<(usize, usize, String)>, Fail> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Fail::NotJson(format!("invalid UTF-8 at offset {}", e.valid_up_to())))?;
    let mut w = Walker {
        text,
        b: body,
        pos: 0,
        plans,
        path: Vec::new(),
        sites: Vec::new(),
        keys: Vec::new(),
    };
    let all: Vec<Active> = (0..plans.len())
        .map(|plan| Active {
            plan,
            matched: 0,
            base: 0,
        })
        .collect();
    w.ws();
    w.value(0, &all)?;
    w.ws();
    if w.pos != body.len() {
        return Err(w.fail());
    }
    Ok(w.sites)
}

/// A key's raw span inside its quotes, and whether it has escapes.
type KeySpan = (usize, usize, bool);

/// A plan still matching at the node being walked.
#[derive(Debug, Clone, Copy)]
struct Active {
    /// Index into the plans.
    plan: usize,
    /// Steps matched so far.
    matched: usize,
    /// Member names on the walker's path before the record: the label
    /// starts after them (set when `matched` reaches the record root).
    base: usize,
}

impl Active {
    /// The plan one step further; `names` is the walker's path length at
    /// the child (with the child's own member name, if any).
    fn step(self, plans: &[Plan], names: usize) -> Active {
        let matched = self.matched + 1;
        let base = if plans[self.plan].record_len == matched {
            names
        } else {
            self.base
        };
        Active {
            plan: self.plan,
            matched,
            base,
        }
    }
}

struct Walker<'b, 'p> {
    text: &'b str,
    b: &'b [u8],
    pos: usize,
    plans: &'p [Plan],
    /// Member names from the root to the node being walked (while a plan is active).
    path: Vec<Cow<'b, str>>,
    sites: Vec<(usize, usize, String)>,
    /// Per-depth scratch for the keys of the object being walked.
    keys: Vec<Vec<KeySpan>>,
}

impl<'b> Walker<'b, '_> {
    fn fail(&self) -> Fail {
        if self.pos >= self.b.len() {
            Fail::NotJson(format!("unexpected end of input at offset {}", self.pos))
        } else {
            Fail::NotJson(format!("unexpected byte at offset {}", self.pos))
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Fail> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail())
        }
    }

    /// Walks one value with the plans still matching at it.
    fn value(&mut self, depth: usize, active: &[Active]) -> Result<(), Fail> {
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.object(depth + 1, active)?,
            Some(b'[') => self.array(depth + 1, active)?,
            Some(b'"') => {
                self.string()?;
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.fail()),
        }
        let done = active
            .iter()
            .filter(|a| self.plans[a.plan].steps.len() == a.matched)
            .map(|a| a.base)
            .max();
        if let Some(base) = done {
            let label = label_of_names(self.path.get(base..).unwrap_or_default());
            self.sites.push((start, self.pos, label));
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Fail> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.fail())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// RFC 8259 number grammar; a value that overflows an `f64` is refused,
    /// as `serde_json` refuses it.
    fn number(&mut self) -> Result<(), Fail> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.fail()),
        };
        let mut exp = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.fail());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            exp = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail());
            }
        }
        if exp || int_digits > 300 {
            let finite = self
                .text
                .get(start..self.pos)
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(Fail::NotJson(format!(
                    "number out of range at offset {start}"
                )));
            }
        }
        Ok(())
    }

    /// Four hex digits at the cursor, as a UTF-16 code unit.
    fn hex4(&mut self) -> Result<u32, Fail> {
        let digits = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.fail())?;
        let mut v = 0;
        for &d in digits {
            v = v << 4 | (d as char).to_digit(16).ok_or_else(|| self.fail())?;
        }
        self.pos += 4;
        Ok(v)
    }

    /// Walks a string; returns the span inside the quotes and whether it has escapes.
    fn string(&mut self) -> Result<KeySpan, Fail> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // runs of ordinary bytes, eight at a time
            self.pos += plain_run(self.b.get(self.pos..).unwrap_or_default());
            let Some(c) = self.peek() else {
                return Err(self.fail());
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            match self.hex4()? {
                                0xD800..=0xDBFF => {
                                    if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                        return Err(self.fail());
                                    }
                                    self.pos += 2;
                                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                        return Err(self.fail());
                                    }
                                }
                                0xDC00..=0xDFFF => return Err(self.fail()),
                                _ => {}
                            }
                        }
                        _ => return Err(self.fail()),
                    }
                }
                0x00..=0x1f => return Err(self.fail()),
                _ => self.pos += 1,
            }
        }
    }

    /// The unescaped text of a key span.
    fn key_text(&self, (start, end, escaped): KeySpan) -> Result<Cow<'b, str>, Fail> {
        let text: &'b str = self.text;
        if !escaped {
            return text
                .get(start..end)
                .map(Cow::Borrowed)
                .ok_or_else(|| Fail::NotJson(format!("bad member name at offset {start}")));
        }
        text.get(start - 1..end + 1)
            .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
            .map(Cow::Owned)
            .ok_or_else(|| Fail::NotJson(format!("bad member name at offset {start}")))
    }

    fn object(&mut self, depth: usize, active: &[Active]) -> Result<(), Fail> {
        if depth >= DEPTH_LIMIT {
            return Err(Fail::TooDeep);
        }
        let offset = self.pos;
        self.pos += 1;
        if self.keys.len() <= depth {
            self.keys.resize_with(depth + 1, Vec::new);
        }
        let mut keys = std::mem::take(&mut self.keys[depth]);
        keys.clear();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.keys[depth] = keys;
            return Ok(());
        }
        let mut child = Vec::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.fail());
            }
            let key = self.string()?;
            keys.push(key);
            self.ws();
            self.expect(b':')?;
            self.ws();
            child.clear();
            let mut name = None;
            for &a in active {
                let hit = match self.plans[a.plan].steps.get(a.matched) {
                    Some(PathStep::Wild) => true,
                    Some(PathStep::Name(n)) => {
                        if name.is_none() {
                            name = Some(self.key_text(key)?);
                        }
                        name.as_deref() == Some(&**n)
                    }
                    _ => false,
                };
                if hit {
                    // the child's member name is pushed before it is walked
                    child.push(a.step(self.plans, self.path.len() + 1));
                }
            }
            if child.is_empty() {
                self.value(depth, &[])?;
            } else {
                let name = match name {
                    Some(n) => n,
                    None => self.key_text(key)?,
                };
                self.path.push(name);
                self.value(depth, &child)?;
                self.path.pop();
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.fail()),
            }
        }
        let dup = self.has_duplicate(&mut keys)?;
        let folded = self.folds_to_sealed(&keys, active)?;
        self.keys[depth] = keys;
        if dup {
            return Err(Fail::Duplicate(offset));
        }
        if folded {
            return Err(Fail::Folded(offset));
        }
        Ok(())
    }

    /// True when a key of this object differs only by case from a name an
    /// active plan selects next here (`SSN` or `ſſn` beside or instead of
    /// `ssn`): an upstream that binds names case-insensitively would read
    /// it as the sealed field. Costs nothing when no plan names a member here.
    fn folds_to_sealed(&self, keys: &[KeySpan], active: &[Active]) -> Result<bool, Fail> {
        let names = || {
            active
                .iter()
                .filter_map(|a| match self.plans[a.plan].steps.get(a.matched) {
                    Some(PathStep::Name(n)) => Some(&**n),
                    _ => None,
                })
        };
        if names().next().is_none() {
            return Ok(false);
        }
        for &key in keys {
            let text = self.key_text(key)?;
            if names().any(|n| super::folds_to(&text, n)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn has_duplicate(&self, keys: &mut [KeySpan]) -> Result<bool, Fail> {
        if keys.len() < 2 {
            return Ok(false);
        }
        if keys.iter().any(|k| k.2) {
            let mut names = keys
                .iter()
                .map(|&k| self.key_text(k))
                .collect::<Result<Vec<_>, _>>()?;
            names.sort_unstable();
            return Ok(names.windows(2).any(|w| w[0] == w[1]));
        }
        let b = self.b;
        let raw = |k: &KeySpan| &b[k.0..k.1];
        if keys.len() <= 8 {
            for i in 1..keys.len() {
                if keys[..i].iter().any(|k| raw(k) == raw(&keys[i])) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        keys.sort_unstable_by(|x, y| raw(x).cmp(raw(y)));
        Ok(keys.windows(2).any(|w| raw(&w[0]) == raw(&w[1])))
    }

    fn array(&mut self, depth: usize, active: &[Active]) -> Result<(), Fail> {
        if depth >= DEPTH_LIMIT {
            return Err(Fail::TooDeep);
        }
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut child = Vec::new();
        let mut index = 0usize;
        loop {
            self.ws();
            child.clear();
            for &a in active {
                let hit = match self.plans[a.plan].steps.get(a.matched) {
                    Some(PathStep::Wild) => true,
                    Some(PathStep::Index(i)) => *i == index,
                    _ => false,
                };
                if hit {
                    child.push(a.step(self.plans, self.path.len()));
                }
            }
            self.value(depth, &child)?;
            index += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail()),
            }
        }
    }
}

/// The label of a path of member names, as [`label_of`](super::super::selector::label_of) spells it.
fn label_of_names(names: &[Cow<'_, str>]) -> String {
    let mut label = String::new();
    for name in names {
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
    label
}

/// How many bytes at the start of `b` need no attention inside a JSON
/// string: not `"`, not `\\`, not a control character. Eight bytes per
/// step (SWAR); the tests check it against the byte-by-byte definition.
pub(super) fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // some byte of x is zero / less than n (n <= 128); exact as a yes/no
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let has_less = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut i = 0;
    for chunk in b.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let hit = has_zero(v ^ (ONES * u64::from(b'"')))
            | has_zero(v ^ (ONES * u64::from(b'\\')))
            | has_less(v, 0x20);
        if hit != 0 {
            break;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(b.len() - i)
}
