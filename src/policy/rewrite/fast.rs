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
use super::Site;

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
pub(super) fn find<'p>(body: &[u8], plans: &'p [Plan]) -> Result<Vec<Site<'p>>, Fail> {
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
        stack: Vec::new(),
    };
    let all: Vec<Active> = (0..plans.len())
        .map(|plan| Active {
            plan,
            matched: 0,
            base: 0,
        })
        .collect();
    let walked = (|| {
        w.ws();
        w.value(0, &all)?;
        w.ws();
        if w.pos != body.len() {
            return Err(w.fail());
        }
        Ok(())
    })();
    match walked {
        Ok(()) => Ok(w.sites),
        Err(stop) => Err(stop.into_fail(body.len())),
    }
}

/// Why the walk stopped, without allocating: the offsets become
/// [`Fail`]'s messages only when the walk has failed.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// An unexpected byte, or the end of input, at this offset.
    Syntax(usize),
    /// The number at this offset overflows an `f64`.
    Range(usize),
    /// The member name at this offset does not unescape.
    BadName(usize),
    /// Nested deeper than `serde_json` allows.
    TooDeep,
    /// Duplicate member name in the object at this offset.
    Duplicate(usize),
    /// A member name in the object at this offset folds to a sealed one.
    Folded(usize),
}

impl Stop {
    fn into_fail(self, len: usize) -> Fail {
        match self {
            Stop::Syntax(at) if at >= len => {
                Fail::NotJson(format!("unexpected end of input at offset {at}"))
            }
            Stop::Syntax(at) => Fail::NotJson(format!("unexpected byte at offset {at}")),
            Stop::Range(at) => Fail::NotJson(format!("number out of range at offset {at}")),
            Stop::BadName(at) => Fail::NotJson(format!("bad member name at offset {at}")),
            Stop::TooDeep => Fail::TooDeep,
            Stop::Duplicate(at) => Fail::Duplicate(at),
            Stop::Folded(at) => Fail::Folded(at),
        }
    }
}

/// A string's raw span inside its quotes, and whether it has escapes.
type KeySpan = (usize, usize, bool);

/// A container [`Walker::skip`] is in.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// The value `skip` was called for: when it ends, `skip` returns.
    Top,
    Array,
    Object(Names),
}

/// The member names of an object being walked: its offset, where its names
/// start in [`Walker::keys`], and a 64-bit filter of them (see
/// [`Names::add`]) so that an object whose names all differ in length or
/// first or last byte is known free of duplicates without comparing them.
#[derive(Debug, Clone, Copy)]
struct Names {
    offset: usize,
    keys_from: usize,
    seen: u64,
    /// Two names share a filter bit (or one has escapes): compare them.
    compare: bool,
}

impl Names {
    fn new(offset: usize, keys_from: usize) -> Names {
        Names {
            offset,
            keys_from,
            seen: 0,
            compare: false,
        }
    }

    /// Notes one name. Equal raw names always get the same bit; a name with
    /// escapes (whose raw bytes may differ from an equal name's) sets them all.
    #[inline(always)]
    fn add(&mut self, b: &[u8], (start, end, escaped): KeySpan) {
        let bit = if escaped {
            u64::MAX
        } else {
            // inside the quotes: the bytes exist whatever the length
            let first = b.get(start).copied().unwrap_or(0);
            let last = b.get(end.wrapping_sub(1)).copied().unwrap_or(0);
            let h = (end - start) as u64 | u64::from(first) << 32 | u64::from(last) << 40;
            1u64 << (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
        };
        self.compare |= self.seen & bit != 0;
        self.seen |= bit;
    }
}

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
    /// Each node found, labelled (a plan's own label when it has one).
    sites: Vec<Site<'p>>,
    /// The names of every object being walked, innermost last: each object
    /// pushes its own and drops them when it closes.
    keys: Vec<KeySpan>,
    /// [`Walker::skip`]'s open containers.
    stack: Vec<Frame>,
}

impl<'b, 'p> Walker<'b, 'p> {
    fn fail(&self) -> Stop {
        Stop::Syntax(self.pos)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        self.pos = skip_ws(self.b, self.pos);
    }

    /// Walks one value with the plans still matching at it.
    fn value(&mut self, depth: usize, active: &[Active]) -> Result<(), Stop> {
        if active.is_empty() {
            return self.skip(depth);
        }
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.object(depth + 1, active)?,
            Some(b'[') => self.array(depth + 1, active)?,
            _ => self.pos = scalar_at(self.b, self.pos)?,
        }
        // the plan that ends here from the innermost record labels the node
        let done = active
            .iter()
            .filter(|a| self.plans[a.plan].steps.len() == a.matched)
            .max_by_key(|a| a.base);
        if let Some(a) = done {
            let label = match &self.plans[a.plan].label {
                Some(fixed) => Cow::Borrowed(&**fixed),
                None => Cow::Owned(label_of_names(self.path.get(a.base..).unwrap_or_default())),
            };
            self.sites.push((start, self.pos, label));
        }
        Ok(())
    }

    /// Validates the value at the cursor, which no plan reaches: nothing is
    /// recorded for it, but it is checked as strictly as the rest, duplicate
    /// member names included.
    #[inline]
    fn skip(&mut self, depth: usize) -> Result<(), Stop> {
        match self.peek() {
            Some(b'{' | b'[') => self.skip_container(depth),
            _ => {
                self.pos = scalar_at(self.b, self.pos)?;
                Ok(())
            }
        }
    }

    /// [`Walker::skip`] of an object or array: one loop, the container it
    /// is in kept at hand and the ones around it on an explicit stack,
    /// rather than a call per value.
    fn skip_container(&mut self, mut depth: usize) -> Result<(), Stop> {
        let b = self.b;
        let mut i = self.pos;
        let mut cur = Frame::Top;
        'value: loop {
            // at a value, the whitespace before it skipped
            match b.get(i) {
                Some(b'{') => {
                    depth += 1;
                    if depth >= DEPTH_LIMIT {
                        return Err(Stop::TooDeep);
                    }
                    let offset = i;
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                        depth -= 1;
                    } else {
                        self.stack.push(cur);
                        let mut names = Names::new(offset, self.keys.len());
                        i = self.member_name_at(i, &mut names)?.0;
                        cur = Frame::Object(names);
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    depth += 1;
                    if depth >= DEPTH_LIMIT {
                        return Err(Stop::TooDeep);
                    }
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                        depth -= 1;
                    } else {
                        self.stack.push(cur);
                        cur = Frame::Array;
                        continue 'value;
                    }
                }
                _ => i = scalar_at(b, i)?,
            }
            // a value ended: close containers until one goes on
            loop {
                match &mut cur {
                    Frame::Top => {
                        self.pos = i;
                        return Ok(());
                    }
                    Frame::Array => {
                        i = skip_ws(b, i);
                        match b.get(i) {
                            Some(b',') => {
                                i = skip_ws(b, i + 1);
                                continue 'value;
                            }
                            Some(b']') => i += 1,
                            _ => return Err(Stop::Syntax(i)),
                        }
                    }
                    Frame::Object(names) => {
                        i = skip_ws(b, i);
                        match b.get(i) {
                            Some(b',') => {
                                i = self.member_name_at(skip_ws(b, i + 1), names)?.0;
                                continue 'value;
                            }
                            Some(b'}') => {
                                i += 1;
                                let names = *names;
                                self.close_object(names, &[])?;
                            }
                            _ => return Err(Stop::Syntax(i)),
                        }
                    }
                }
                cur = self.stack.pop().unwrap_or(Frame::Top);
                depth -= 1;
            }
        }
    }

    /// At `i`, a member name: reads it, the colon and the whitespace after
    /// it, and keeps the name for its object's duplicate check. Returns
    /// where its value starts, and the name's span.
    #[inline(always)]
    fn member_name_at(&mut self, i: usize, names: &mut Names) -> Result<(usize, KeySpan), Stop> {
        let b = self.b;
        if b.get(i) != Some(&b'"') {
            return Err(Stop::Syntax(i));
        }
        let (end, escaped) = string_at(b, i)?;
        let span = (i + 1, end, escaped);
        self.keys.push(span);
        names.add(b, span);
        let i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return Err(Stop::Syntax(i));
        }
        Ok((skip_ws(b, i + 1), span))
    }

    /// The end of an object: refuses a duplicate name, then a name folding
    /// to one an active plan selects.
    #[inline]
    fn close_object(&mut self, names: Names, active: &[Active]) -> Result<(), Stop> {
        let dup = names.compare && self.has_duplicate(names.keys_from)?;
        let folded = !active.is_empty() && self.folds_to_sealed(names.keys_from, active)?;
        self.keys.truncate(names.keys_from);
        if dup {
            return Err(Stop::Duplicate(names.offset));
        }
        if folded {
            return Err(Stop::Folded(names.offset));
        }
        Ok(())
    }

    /// The unescaped text of a key span.
    fn key_text(&self, (start, end, escaped): KeySpan) -> Result<Cow<'b, str>, Stop> {
        let text: &'b str = self.text;
        if !escaped {
            return text
                .get(start..end)
                .map(Cow::Borrowed)
                .ok_or(Stop::BadName(start));
        }
        text.get(start - 1..end + 1)
            .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
            .map(Cow::Owned)
            .ok_or(Stop::BadName(start))
    }

    fn object(&mut self, depth: usize, active: &[Active]) -> Result<(), Stop> {
        if depth >= DEPTH_LIMIT {
            return Err(Stop::TooDeep);
        }
        let offset = self.pos;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut names = Names::new(offset, self.keys.len());
        let mut child = Vec::new();
        loop {
            self.ws();
            let (at, key) = self.member_name_at(self.pos, &mut names)?;
            self.pos = at;
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
                self.skip(depth)?;
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
        self.close_object(names, active)
    }

    /// True when a name of the object whose names start at `keys_from`
    /// differs only by case from a name an active plan selects next here
    /// (`SSN` or `ſſn` beside or instead of `ssn`): an upstream that binds
    /// names case-insensitively would read it as the sealed field. Costs
    /// nothing when no plan names a member here.
    fn folds_to_sealed(&self, keys_from: usize, active: &[Active]) -> Result<bool, Stop> {
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
        // ASCII folds by lower-casing: when every selected name is lower-case
        // ASCII, a lower-case ASCII name folds to one only by being it
        let lower = |b: &[u8]| b.is_ascii() && !b.iter().any(u8::is_ascii_uppercase);
        let names_lower = names().all(|n| lower(n.as_bytes()));
        for &key in &self.keys[keys_from..] {
            let (start, end, escaped) = key;
            let raw = self.b.get(start..end).unwrap_or_default();
            if !escaped && names_lower && lower(raw) {
                continue;
            }
            let text = self.key_text(key)?;
            if names().any(|n| super::folds_to(&text, n)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// True when two names of the object whose names start at `keys_from`
    /// are the same (unescaped).
    #[inline(never)]
    fn has_duplicate(&mut self, keys_from: usize) -> Result<bool, Stop> {
        let b = self.b;
        let keys = &self.keys[keys_from..];
        if keys.len() < 2 {
            return Ok(false);
        }
        if keys.len() > 8 || keys.iter().any(|k| k.2) {
            return self.has_duplicate_sorted(keys_from);
        }
        // raw names differ in length far more often than not: no memcmp then
        let same = |x: &KeySpan, y: &KeySpan| x.1 - x.0 == y.1 - y.0 && b[x.0..x.1] == b[y.0..y.1];
        for i in 1..keys.len() {
            if keys[..i].iter().any(|k| same(k, &keys[i])) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// [`Walker::has_duplicate`] for many names or names with escapes.
    #[inline(never)]
    fn has_duplicate_sorted(&mut self, keys_from: usize) -> Result<bool, Stop> {
        let keys = &self.keys[keys_from..];
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
        let keys = &mut self.keys[keys_from..];
        keys.sort_unstable_by(|x, y| raw(x).cmp(raw(y)));
        Ok(keys.windows(2).any(|w| raw(&w[0]) == raw(&w[1])))
    }

    fn array(&mut self, depth: usize, active: &[Active]) -> Result<(), Stop> {
        if depth >= DEPTH_LIMIT {
            return Err(Stop::TooDeep);
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
            if child.is_empty() {
                self.skip(depth)?;
            } else {
                self.value(depth, &child)?;
            }
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

/// The first offset at or after `i` that is not JSON whitespace.
#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// The string whose opening quote is at `i`: the offset of its closing
/// quote, and whether it has escapes.
#[inline(always)]
fn string_at(b: &[u8], i: usize) -> Result<(usize, bool), Stop> {
    let start = i + 1;
    let end = start + plain_run(b.get(start..).unwrap_or_default());
    if b.get(end) == Some(&b'"') {
        Ok((end, false))
    } else {
        string_rest(b, end)
    }
}

/// The rest of a string from `i`, where [`plain_run`] stopped at something
/// other than the closing quote: an escape (checked exactly as
/// `serde_json` checks it, lone surrogates refused), a control character
/// or the end of input.
#[inline(never)]
fn string_rest(b: &[u8], mut i: usize) -> Result<(usize, bool), Stop> {
    loop {
        match b.get(i) {
            Some(b'"') => return Ok((i, true)),
            Some(b'\\') => {
                i += 1;
                match b.get(i) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                    Some(b'u') => {
                        i += 1;
                        match hex4(b, i)? {
                            0xD800..=0xDBFF => {
                                i += 4;
                                if b.get(i..i + 2) != Some(b"\\u") {
                                    return Err(Stop::Syntax(i));
                                }
                                i += 2;
                                if !(0xDC00..=0xDFFF).contains(&hex4(b, i)?) {
                                    return Err(Stop::Syntax(i + 4));
                                }
                                i += 4;
                            }
                            0xDC00..=0xDFFF => return Err(Stop::Syntax(i + 4)),
                            _ => i += 4,
                        }
                    }
                    _ => return Err(Stop::Syntax(i)),
                }
            }
            // a control character, or the end
            _ => return Err(Stop::Syntax(i)),
        }
        i += plain_run(b.get(i..).unwrap_or_default());
    }
}

/// Four hex digits at `i`, as a UTF-16 code unit.
fn hex4(b: &[u8], i: usize) -> Result<u32, Stop> {
    let digits = b.get(i..i + 4).ok_or(Stop::Syntax(i))?;
    let mut v = 0;
    for &d in digits {
        v = v << 4 | (d as char).to_digit(16).ok_or(Stop::Syntax(i))?;
    }
    Ok(v)
}

/// The end of the string, number or literal at `i`.
#[inline(always)]
fn scalar_at(b: &[u8], i: usize) -> Result<usize, Stop> {
    match b.get(i) {
        Some(b'"') => Ok(string_at(b, i)?.0 + 1),
        Some(b't') => literal_at(b, i, b"true"),
        Some(b'f') => literal_at(b, i, b"false"),
        Some(b'n') => literal_at(b, i, b"null"),
        Some(b'-' | b'0'..=b'9') => number_at(b, i),
        _ => Err(Stop::Syntax(i)),
    }
}

#[inline(always)]
fn literal_at(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Stop> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(Stop::Syntax(i))
    }
}

#[inline(always)]
fn digits_from(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b'0'..=b'9')) {
        i += 1;
    }
    i
}

/// The end of the number at `i`: RFC 8259's grammar; a value that
/// overflows an `f64` is refused, as `serde_json` refuses it.
#[inline(always)]
fn number_at(b: &[u8], start: usize) -> Result<usize, Stop> {
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits_from(b, i + 1),
        _ => return Err(Stop::Syntax(i)),
    }
    let int_digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let end = digits_from(b, i + 1);
        if end == i + 1 {
            return Err(Stop::Syntax(end));
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits_from(b, i);
        if end == i {
            return Err(Stop::Syntax(end));
        }
        return finite(b, start, end);
    }
    if int_digits > 300 {
        return finite(b, start, i);
    }
    Ok(i)
}

/// `end` when the number `b[start..end]` fits an `f64`.
#[inline(never)]
fn finite(b: &[u8], start: usize, end: usize) -> Result<usize, Stop> {
    let fits = std::str::from_utf8(&b[start..end])
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(f64::is_finite);
    if fits {
        Ok(end)
    } else {
        Err(Stop::Range(start))
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
#[inline(always)]
pub(crate) fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // the high bit of each byte of x that is zero / less than n (n <= 128);
    // a borrow can also mark bytes above a marked one, never below it, so
    // the lowest mark is exact
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
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(b.len() - i)
}
