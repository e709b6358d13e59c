//! Policy suggestions: classify JSON values that look sensitive, and draft a
//! policy file from observations of traffic. PURE.
//!
//! An [`Observation`] holds a route (method + path), a direction, a field
//! path and a value *class* — never the value. Shadow mode writes them; `sealgate
//! policy suggest` reads them and calls [`draft_policy`]. The draft passes
//! `sealgate policy check`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueClass {
    /// An e-mail address.
    Email,
    /// A payment card number (Luhn-valid, known issuer prefix).
    CardNumber,
    /// A national identifier (US SSN, UK NINO, PRC resident ID with valid checksum).
    NationalId,
    /// A phone number (E.164, or a formatted number of 10–15 digits).
    Phone,
    /// An IBAN (valid mod-97 check digits).
    Iban,
    /// A secret or token (JWT, a known key prefix, a PEM private key, a
    /// high-entropy string, or any value of a field named like a secret).
    Secret,
}

impl ValueClass {
    /// Why a field of this class was picked, for the draft's comments.
    pub fn reason(self) -> &'static str {
        match self {
            ValueClass::Email => "looks like an e-mail address",
            ValueClass::CardNumber => {
                "looks like a payment card number (Luhn-valid, known issuer prefix)"
            }
            ValueClass::NationalId => {
                "looks like a national identifier (SSN / NINO / resident ID, checksum valid)"
            }
            ValueClass::Phone => "looks like a phone number",
            ValueClass::Iban => "looks like an IBAN (mod-97 check digits valid)",
            ValueClass::Secret => "looks like a secret or token",
        }
    }

    /// The `{param}` name a path segment of this class becomes.
    pub fn param_name(self) -> &'static str {
        match self {
            ValueClass::Email => "email",
            ValueClass::CardNumber => "card_number",
            ValueClass::NationalId => "national_id",
            ValueClass::Phone => "phone",
            ValueClass::Iban => "iban",
            ValueClass::Secret => "secret",
        }
    }
}

/// Which way the body travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → upstream.
    Request,
    /// Upstream → client.
    Response,
}

/// One sensitive-looking field seen in traffic (no value, only its class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// HTTP method.
    pub method: String,
    /// Request path as a template ([`template_path`]): ids and
    /// sensitive-looking segments are `{param}`s, never values.
    pub path: String,
    /// Which body.
    pub direction: Direction,
    /// JSONPath of the field with `[*]` for array elements, e.g. `$.cards[*].number`;
    /// or `{name}`, a sensitive-looking parameter of the path (direction `request`).
    pub field: String,
    /// What the value looked like.
    pub class: ValueClass,
}

/// Field names whose values are secrets whatever they look like.
const SECRET_NAMES: [&str; 12] = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "accesstoken",
    "access_token",
    "refreshtoken",
    "refresh_token",
    "privatekey",
    "private_key",
];

/// Classifies one JSON value found under the member `name` (if any).
pub fn classify(name: Option<&str>, value: &Value) -> Option<ValueClass> {
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Number(n) => {
            return classify_str(&n.to_string()).filter(|c| *c == ValueClass::CardNumber)
        }
        _ => return None,
    };
    if let Some(n) = name {
        let n = n.to_ascii_lowercase();
        if !text.is_empty()
            && SECRET_NAMES
                .iter()
                .any(|s| n == *s || n.ends_with(&format!("_{s}")))
        {
            return Some(ValueClass::Secret);
        }
    }
    classify_str(text)
}

/// Bytes in the shortest value [`classify_str`] can classify (`a@b.cc`).
const SHORTEST_CLASSIFIED: usize = 6;

/// Classifies a string value by its shape alone.
pub fn classify_str(s: &str) -> Option<ValueClass> {
    let t = s.trim();
    // the shortest value of any class below is an e-mail address such as
    // `a@b.cc` (a card, id, IBAN, phone, token or JWT is longer): shorter
    // text, most path segments, is none, and costs no check
    if t.len() < SHORTEST_CLASSIFIED || t.len() > 4096 {
        return None;
    }
    if is_email(t) {
        Some(ValueClass::Email)
    } else if is_card(t) {
        Some(ValueClass::CardNumber)
    } else if is_ssn(t) || is_nino(t) || is_prc_id(t) {
        Some(ValueClass::NationalId)
    } else if is_iban(t) {
        Some(ValueClass::Iban)
    } else if is_secret(t) {
        Some(ValueClass::Secret)
    } else if is_phone(t) {
        Some(ValueClass::Phone)
    } else {
        None
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || s.contains(char::is_whitespace)
    {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// Digits of `s` if it is only digits and single spaces or dashes between them.
fn digits_with_separators(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        match c {
            '0'..='9' => {
                out.push(c as u8 - b'0');
                prev_sep = false;
            }
            ' ' | '-' if !prev_sep => prev_sep = true,
            _ => return None,
        }
    }
    (!prev_sep).then_some(out)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

fn is_card(s: &str) -> bool {
    let Some(d) = digits_with_separators(s) else {
        return false;
    };
    if !(13..=19).contains(&d.len()) || !luhn(&d) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p1, p2, p4) = (prefix(1), prefix(2), prefix(4));
    p1 == 4                                   // Visa
        || (51..=55).contains(&p2)            // Mastercard
        || (2221..=2720).contains(&p4)        // Mastercard 2-series
        || p2 == 34 || p2 == 37               // Amex
        || p4 == 6011 || p2 == 65             // Discover
        || p2 == 35                           // JCB
        || p2 == 36 || p2 == 38 || p2 == 30   // Diners
        || p2 == 62 // UnionPay
}

fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 11 || b[3] != b'-' || b[6] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    let (Some(area), Some(group), Some(serial)) = (num(0..3), num(4..6), num(7..11)) else {
        return false;
    };
    [0..3, 4..6, 7..11]
        .iter()
        .all(|r| s[r.clone()].bytes().all(|c| c.is_ascii_digit()))
        && area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
}

fn is_nino(s: &str) -> bool {
    let c: String = s.chars().filter(|c| *c != ' ').collect();
    let b = c.as_bytes();
    if b.len() != 9 {
        return false;
    }
    let bad_first = b"DFIQUV";
    let bad_second = b"DFIQUVO";
    b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && !bad_first.contains(&b[0])
        && !bad_second.contains(&b[1])
        && b[2..8].iter().all(u8::is_ascii_digit)
        && (b'A'..=b'D').contains(&b[8])
        && !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&&c[0..2])
}

fn is_prc_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    let month: u32 = s[10..12].parse().unwrap_or(0);
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase() && (1..=12).contains(&month)
}

fn is_iban(s: &str) -> bool {
    let c: String = s.chars().filter(|c| *c != ' ').collect();
    let b = c.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[0].is_ascii_uppercase()
        || !b[1].is_ascii_uppercase()
        || !b[2].is_ascii_digit()
        || !b[3].is_ascii_digit()
        || !b[4..]
            .iter()
            .all(|x| x.is_ascii_digit() || x.is_ascii_uppercase())
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &x in b[4..].iter().chain(&b[..4]) {
        let v = if x.is_ascii_digit() {
            u32::from(x - b'0')
        } else {
            u32::from(x - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn is_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let allowed = s
        .chars()
        .all(|c| c.is_ascii_digit() || " -().+".contains(c));
    if !allowed || !(10..=15).contains(&digits) {
        return false;
    }
    if let Some(rest) = s.strip_prefix('+') {
        // E.164 or formatted international
        return !rest.starts_with('0') && !rest.contains('+');
    }
    // a national number has 10–11 digits and formatting that numbers, dates
    // and card numbers (13–19 digits) do not have
    if digits > 11 {
        return false;
    }
    let formatted = s.contains('(') || s.matches([' ', '-', '.']).count() >= 2;
    let date_like = s.len() == 10 && s.as_bytes().get(4) == Some(&b'-');
    formatted && !date_like && !s.contains('+')
}

fn shannon_bits_per_char(s: &str) -> f64 {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn is_secret(s: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "sk_live_",
        "sk_test_",
        "rk_live_",
        "ghp_",
        "gho_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "AIza",
    ];
    if s.contains("PRIVATE KEY-----") {
        return true;
    }
    if PREFIXES
        .iter()
        .any(|p| s.starts_with(p) && s.len() >= p.len() + 16)
    {
        return true;
    }
    if s.len() == 20
        && (s.starts_with("AKIA") || s.starts_with("ASIA"))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return true;
    }
    if is_jwt(s) {
        return true;
    }
    // high entropy: long, no spaces, mixed character classes, not an id or a hash
    let uuid_like = s.len() == 36 && s.bytes().filter(|&b| b == b'-').count() == 4;
    let hex_only = s.bytes().all(|b| b.is_ascii_hexdigit());
    let has = |f: fn(&u8) -> bool| s.as_bytes().iter().any(f);
    s.len() >= 24
        && !s.contains(char::is_whitespace)
        && !uuid_like
        && !hex_only
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_digit)
        && shannon_bits_per_char(s) >= 4.0
}

fn is_jwt(s: &str) -> bool {
    use base64::Engine as _;
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 || parts[..2].iter().any(|p| p.is_empty()) {
        return false;
    }
    let Ok(header) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]) else {
        return false;
    };
    serde_json::from_slice::<Value>(&header).is_ok_and(|h| h.get("alg").is_some())
}

/// Every sensitive-looking field of a JSON body: (field path, class).
/// Array elements are written `[*]`, so one field of many records is one path.
pub fn observe_body(body: &Value) -> Vec<(String, ValueClass)> {
    let mut out = BTreeSet::new();
    walk(body, "$".to_string(), None, &mut out, 0);
    out.into_iter().collect()
}

fn member_path(base: &str, name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        format!("{base}.{name}")
    } else {
        format!(
            "{base}['{}']",
            name.replace('\\', "\\\\").replace('\'', "\\'")
        )
    }
}

fn walk(
    v: &Value,
    path: String,
    name: Option<&str>,
    out: &mut BTreeSet<(String, ValueClass)>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                walk(x, member_path(&path, k), Some(k), out, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                walk(x, format!("{path}[*]"), name, out, depth + 1);
            }
        }
        other => {
            if let Some(c) = classify(name, other) {
                out.insert((path, c));
            }
        }
    }
}

/// Percent-decodes a path segment for classifying (lossy: it is only looked at).
fn decode_segment(seg: &str) -> std::borrow::Cow<'_, str> {
    if !seg.contains('%') {
        return seg.into();
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

/// Classifies a URL path segment the way field values are classified
/// ([`classify_str`], after percent-decoding): `Some` means it looks like
/// personal data or a secret and must not be written anywhere.
pub fn classify_segment(seg: &str) -> Option<ValueClass> {
    // decoding never lengthens a segment: one too short to classify as
    // written is too short decoded, and costs no decoding
    if seg.len() < SHORTEST_CLASSIFIED || seg.starts_with('{') {
        return None;
    }
    classify_str(&decode_segment(seg))
}

fn is_id_segment(seg: &str) -> bool {
    (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        || (seg.len() == 36 && seg.bytes().filter(|&b| b == b'-').count() == 4)
        || (seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `{name}`, or `{name2}`, `{name3}`, … when `name` was taken in this path.
fn unique_param(name: &'static str, taken: &mut BTreeMap<&'static str, usize>) -> String {
    let n = taken.entry(name).or_default();
    *n += 1;
    if *n == 1 {
        format!("{{{name}}}")
    } else {
        format!("{{{name}{n}}}")
    }
}

/// Turns a concrete path into a template that holds no value: segments that
/// look like personal data or secrets ([`classify_segment`]) become a
/// parameter named by their class (`{email}`, `{national_id}`, …); numeric,
/// UUID and long hex id segments become `{id}` (`{id2}`, … when there are
/// several).
pub fn template_path(path: &str) -> String {
    template_segments(path, true)
}

/// The path with only its sensitive-looking segments replaced by `{class}`
/// parameters, ids kept: what may be logged of a path no route matched.
pub fn redact_path(path: &str) -> String {
    template_segments(path, false)
}

fn template_segments(path: &str, ids: bool) -> String {
    let mut taken = BTreeMap::new();
    let mut t = String::with_capacity(path.len() + 8);
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            t.push('/');
        }
        match classify_segment(seg) {
            Some(class) => t.push_str(&unique_param(class.param_name(), &mut taken)),
            None if ids && is_id_segment(seg) => t.push_str(&unique_param("id", &mut taken)),
            None => t.push_str(seg),
        }
    }
    if t.is_empty() {
        "/".into()
    } else {
        t
    }
}

/// The sensitive-looking parameters of a path: (field `{name}`, class), the
/// names as [`template_path`] gives them.
pub fn observe_path(path: &str) -> Vec<(String, ValueClass)> {
    let mut taken = BTreeMap::new();
    path.split('/')
        .filter_map(|seg| {
            let c = classify_segment(seg)?;
            Some((unique_param(c.param_name(), &mut taken), c))
        })
        .collect()
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "root".into()
    } else {
        out
    }
}

#[derive(Default)]
struct Draft {
    methods: BTreeSet<String>,
    fields: BTreeMap<(Direction, String), BTreeMap<ValueClass, usize>>,
}

/// Drafts a policy file (TOML text) from observations: one route per path
/// template, sealing in requests what was seen in requests and opening in
/// responses what was seen in either direction, under `key`. Each field gets
/// a comment saying why it was picked.
pub fn draft_policy(observations: &[Observation], key: &str) -> String {
    let mut routes: BTreeMap<String, Draft> = BTreeMap::new();
    for o in observations {
        let d = routes.entry(template_path(&o.path)).or_default();
        d.methods.insert(o.method.to_ascii_uppercase());
        *d.fields
            .entry((o.direction, o.field.clone()))
            .or_default()
            .entry(o.class)
            .or_default() += 1;
    }
    let mut out = String::from(
        "# Drafted by `sealgate policy suggest` from observed traffic (field paths and\n\
         # value classes only; no values were recorded). Review every field before use.\n",
    );
    let context_of = |template: &str| {
        slug(
            template
                .split('/')
                .find(|s| !s.is_empty() && !s.starts_with('{'))
                .unwrap_or("root"),
        )
    };
    // per context, the field paths seen in requests: what gets sealed, and
    // so the labels the context's records have
    let mut sealed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (template, d) in &routes {
        for (dir, f) in d.fields.keys() {
            if *dir == Direction::Request && f.starts_with('$') {
                sealed
                    .entry(context_of(template))
                    .or_default()
                    .insert(f.clone());
            }
        }
    }
    let mut names = BTreeSet::new();
    for (template, d) in &routes {
        let context = context_of(template);
        let seals = sealed.get(&context).cloned().unwrap_or_default();
        let mut name = slug(template);
        let mut i = 2;
        while !names.insert(name.clone()) {
            name = format!("{}-{i}", slug(template));
            i += 1;
        }
        let methods: Vec<String> = d.methods.iter().map(|m| format!("{m:?}")).collect();
        let _ = write!(
            out,
            "\n[[route]]\nname = {name:?}\nmethods = [{}]\npath = {template:?}\nkey = {key:?}\ncontext = {context:?}\n",
            methods.join(", ")
        );
        // a sensitive path segment: sealed deterministically in the URL
        let params: Vec<(&str, &BTreeMap<ValueClass, usize>)> = d
            .fields
            .iter()
            .filter_map(|((_, f), c)| {
                let name = f.strip_prefix('{')?.strip_suffix('}')?;
                template.split('/').any(|seg| seg == f).then_some((name, c))
            })
            .collect();
        if !params.is_empty() {
            let _ = writeln!(out, "path_params = [");
            for (p, classes) in &params {
                let why: Vec<String> = classes
                    .iter()
                    .map(|(c, n)| format!("{} ({n}×)", c.reason()))
                    .collect();
                let _ = writeln!(
                    out,
                    "  # {{{p}}}: {}; sealed in the URL: write \"{p}=<label>\" for the body field it is stored as",
                    why.join("; ")
                );
                let _ = writeln!(out, "  {p:?},");
            }
            let _ = writeln!(out, "]");
        }
        let section = |dir: Direction| -> Vec<(&String, &BTreeMap<ValueClass, usize>)> {
            d.fields
                .iter()
                .filter(|((x, f), _)| *x == dir && f.starts_with('$'))
                .map(|((_, f), c)| (f, c))
                .collect()
        };
        let req = section(Direction::Request);
        // open in responses whatever was seen in either direction, counts summed
        let mut resp: BTreeMap<&String, BTreeMap<ValueClass, usize>> = BTreeMap::new();
        for (f, classes) in section(Direction::Response)
            .into_iter()
            .chain(req.iter().copied())
        {
            let e = resp.entry(f).or_default();
            for (c, n) in classes {
                *e.entry(*c).or_default() += n;
            }
        }
        let mut list =
            |side: &str, label: &str, fields: Vec<(&String, BTreeMap<ValueClass, usize>)>| {
                if fields.is_empty() {
                    return;
                }
                // a field inside a list whose bare form the context seals is the
                // same field of a record: write the list as a record root, so
                // both get one label
                let mut roots: BTreeSet<String> = BTreeSet::new();
                let mut bare = false;
                let mut written: BTreeMap<String, (String, BTreeMap<ValueClass, usize>)> =
                    BTreeMap::new();
                for (f, classes) in fields {
                    let (root, sel) = match record_split(f, &seals) {
                        Some((root, tail)) => (Some(root), tail),
                        None => (None, f.clone()),
                    };
                    match root {
                        Some(r) => {
                            roots.insert(r);
                        }
                        None => bare = true,
                    }
                    let e = written
                        .entry(sel)
                        .or_insert_with(|| (f.clone(), BTreeMap::new()));
                    for (c, n) in classes {
                        *e.1.entry(c).or_default() += n;
                    }
                }
                if !roots.is_empty() {
                    let mut list: Vec<String> = Vec::new();
                    if bare {
                        list.push("\"$\"".into());
                    }
                    list.extend(roots.iter().map(|r| format!("{r:?}")));
                    let _ = writeln!(out, "{side}.records = [{}]", list.join(", "));
                }
                let fields: Vec<(String, BTreeMap<ValueClass, usize>)> =
                    written.into_iter().map(|(sel, (_, c))| (sel, c)).collect();
                let _ = writeln!(out, "{label} = [");
                for (f, classes) in fields {
                    let why: Vec<String> = classes
                        .iter()
                        .map(|(c, n)| format!("{} ({n}×)", c.reason()))
                        .collect();
                    let _ = writeln!(out, "  # {f}: {}", why.join("; "));
                    let _ = writeln!(out, "  {f:?},");
                }
                let _ = writeln!(out, "]");
            };
        list(
            "request",
            "request.encrypt",
            req.iter().map(|(f, c)| (*f, (*c).clone())).collect(),
        );
        list("response", "response.decrypt", resp.into_iter().collect());
    }
    out
}

/// `$.items[*].ssn` → (`$.items[*]`, `$.ssn`) when the context seals `$.ssn`
/// and not `$.items[*].ssn` itself: the list's elements are records. The
/// first `[*]` after a member name is the root (`$[*]` needs none: array
/// positions never enter a label).
fn record_split(field: &str, sealed: &BTreeSet<String>) -> Option<(String, String)> {
    if sealed.contains(field) {
        return None;
    }
    let mut from = 0;
    while let Some(at) = field.get(from..)?.find("[*]") {
        let end = from + at + 3;
        let (root, rest) = field.split_at(end);
        from = end;
        if root == "$[*]" || rest.is_empty() {
            continue;
        }
        let tail = format!("${rest}");
        if sealed.contains(&tail) {
            return Some((root.to_owned(), tail));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shortest_classified_value_is_the_bound() {
        assert_eq!(classify_str("a@b.cc"), Some(ValueClass::Email));
        assert_eq!(classify_str(" a@b.cc "), Some(ValueClass::Email));
        assert_eq!(classify_str("a@b.c"), None);
        assert_eq!(
            redact_path("/api/v1/users/a@b.cc/x"),
            "/api/v1/users/{email}/x"
        );
        assert_eq!(redact_path("/a%40b.cc/x"), "/{email}/x");
        assert_eq!(redact_path(""), "/");
        assert_eq!(redact_path("/"), "/");
    }

    #[test]
    fn realistic_values_are_classified() {
        let cases: &[(&str, ValueClass)] = &[
            ("ann@example.com", ValueClass::Email),
            ("first.last+tag@mail.co.uk", ValueClass::Email),
            ("4111 1111 1111 1111", ValueClass::CardNumber),
            ("5500-0055-5555-5559", ValueClass::CardNumber),
            ("378282246310005", ValueClass::CardNumber),
            ("6011111111111117", ValueClass::CardNumber),
            ("123-45-6789", ValueClass::NationalId),
            ("AB 12 34 56 C", ValueClass::NationalId),
            ("11010519491231002X", ValueClass::NationalId),
            ("+14155552671", ValueClass::Phone),
            ("+44 20 7946 0958", ValueClass::Phone),
            ("(415) 555-2671", ValueClass::Phone),
            ("GB82 WEST 1234 5698 7654 32", ValueClass::Iban),
            ("DE89370400440532013000", ValueClass::Iban),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", ValueClass::Secret),
            ("AKIAIOSFODNN7EXAMPLE", ValueClass::Secret),
            (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.sig",
                ValueClass::Secret,
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
                ValueClass::Secret,
            ),
            ("Zx8Qp2Lm9Rt4Vw7Yb1Nc5Kd3Hf6Gj0Ts", ValueClass::Secret),
        ];
        for (v, want) in cases {
            assert_eq!(classify_str(v), Some(*want), "{v}");
        }
    }

    #[test]
    fn near_misses_are_not_classified() {
        for v in [
            "user@localhost",                       // no dot in the domain
            "@example.com",                         // no local part
            "a@b.c",                                // one-letter TLD
            "not an email@x.com",                   // spaces
            "4111111111111112",                     // Luhn fails
            "0000000000000000",                     // Luhn passes, not a card
            "123456789012",                         // too short for a card, no formatting
            "000-12-3456",                          // SSN area 000
            "666-12-3456",                          // SSN area 666
            "123-00-4567",                          // SSN group 00
            "110105194912310021",                   // resident ID checksum wrong
            "GB82 WEST 1234 5698 7654 33",          // IBAN check digits wrong
            "2024-01-15",                           // a date
            "12345678901",                          // a plain number
            "550e8400-e29b-41d4-a716-446655440000", // a UUID
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", // a hash
            "The quick brown fox jumps over the lazy dog", // prose
            "hello",
        ] {
            assert_eq!(classify_str(v), None, "{v}");
        }
    }

    #[test]
    fn field_names_mark_secrets_and_numbers_can_be_cards() {
        assert_eq!(
            classify(Some("password"), &json!("hunter2")),
            Some(ValueClass::Secret)
        );
        assert_eq!(
            classify(Some("db_password"), &json!("x")),
            Some(ValueClass::Secret)
        );
        assert_eq!(classify(Some("password_hint"), &json!("pet")), None);
        assert_eq!(
            classify(Some("n"), &json!(4111111111111111u64)),
            Some(ValueClass::CardNumber)
        );
        assert_eq!(classify(Some("n"), &json!(42)), None);
        assert_eq!(classify(Some("ok"), &json!(true)), None);
    }

    #[test]
    fn bodies_are_walked_with_array_wildcards() {
        let body = json!({"name":"Ann","email":"ann@example.com","cards":[{"number":"4111111111111111"},{"number":"5500005555555559"}],"a b":{"ssn":"123-45-6789"}});
        let got = observe_body(&body);
        assert_eq!(
            got,
            vec![
                ("$.cards[*].number".to_string(), ValueClass::CardNumber),
                ("$.email".to_string(), ValueClass::Email),
                ("$['a b'].ssn".to_string(), ValueClass::NationalId),
            ]
        );
    }

    #[test]
    fn paths_are_templated() {
        assert_eq!(template_path("/users/42"), "/users/{id}");
        assert_eq!(
            template_path("/orgs/7/users/550e8400-e29b-41d4-a716-446655440000"),
            "/orgs/{id}/users/{id2}"
        );
        assert_eq!(template_path("/users"), "/users");
        assert_eq!(template_path("/"), "/");
    }

    #[test]
    fn sensitive_path_segments_become_parameters() {
        assert_eq!(
            template_path("/people/by-ssn/123-45-6789"),
            "/people/by-ssn/{national_id}"
        );
        assert_eq!(
            template_path("/users/ann%40example.com/cards/4111111111111111/7"),
            "/users/{email}/cards/{card_number}/{id}"
        );
        assert_eq!(
            template_path("/a/ann@example.com/b/bob@example.com"),
            "/a/{email}/b/{email2}"
        );
        // templating a template changes nothing
        let t = template_path("/people/by-ssn/123-45-6789/x/42");
        assert_eq!(template_path(&t), t);
        // logs keep ids, never the sensitive segment
        assert_eq!(
            redact_path("/people/42/by-ssn/123-45-6789"),
            "/people/42/by-ssn/{national_id}"
        );
        assert_eq!(redact_path("/users/42"), "/users/42");
        assert_eq!(
            observe_path("/people/by-ssn/123-45-6789"),
            vec![("{national_id}".to_string(), ValueClass::NationalId)]
        );
    }

    #[test]
    fn a_sensitive_path_segment_drafts_one_route_with_a_path_param() {
        let obs = |path: &str| Observation {
            method: "GET".into(),
            path: template_path(path),
            direction: Direction::Request,
            field: "{national_id}".into(),
            class: ValueClass::NationalId,
        };
        let observations = vec![
            obs("/people/by-ssn/123-45-6789"),
            obs("/people/by-ssn/234-56-7890"),
        ];
        let text = draft_policy(&observations, "default");
        assert!(
            !text.contains("123-45") && !text.contains("234-56"),
            "{text}"
        );
        let set = crate::policy::PolicySet::from_sources(&[("draft.toml".into(), text.clone())])
            .unwrap_or_else(|e| panic!("draft does not load: {e}\n{text}"));
        assert_eq!(set.routes().len(), 1, "{text}");
        let m = set
            .match_route("GET", None, "/people/by-ssn/111-22-3333")
            .unwrap();
        assert_eq!(m.route.searchable.path.len(), 1, "{text}");
        assert_eq!(m.route.searchable.path[0].name, "national_id");
        assert!(text.contains("(2×)"), "{text}");
    }

    #[test]
    fn the_draft_passes_policy_check_and_explains_each_field() {
        let obs = |method: &str, path: &str, direction, field: &str, class| Observation {
            method: method.into(),
            path: path.into(),
            direction,
            field: field.into(),
            class,
        };
        let observations = vec![
            obs(
                "POST",
                "/users",
                Direction::Request,
                "$.email",
                ValueClass::Email,
            ),
            obs(
                "POST",
                "/users",
                Direction::Request,
                "$.cards[*].number",
                ValueClass::CardNumber,
            ),
            obs(
                "GET",
                "/users",
                Direction::Response,
                "$[*].email",
                ValueClass::Email,
            ),
            obs(
                "GET",
                "/users/1",
                Direction::Response,
                "$.email",
                ValueClass::Email,
            ),
            obs(
                "PATCH",
                "/users/2",
                Direction::Request,
                "$.email",
                ValueClass::Email,
            ),
            obs(
                "GET",
                "/users/3",
                Direction::Response,
                "$.email",
                ValueClass::Email,
            ),
        ];
        let text = draft_policy(&observations, "default");
        let set = crate::policy::PolicySet::from_sources(&[("draft.toml".into(), text.clone())])
            .unwrap_or_else(|e| panic!("draft does not load: {e}\n{text}"));
        assert_eq!(set.routes().len(), 2, "{text}");
        assert!(
            text.contains("# $.cards[*].number: looks like a payment card number"),
            "{text}"
        );
        assert!(text.contains("(3×)"), "counts are summed and shown: {text}");
        let m = set.match_route("PATCH", None, "/users/9").unwrap();
        assert!(!m.route.request.encrypt.is_empty());
        assert_eq!(m.context(), "users");
        let list = set.match_route("GET", None, "/users").unwrap();
        assert!(!list.route.response.decrypt.is_empty());
    }

    #[test]
    fn a_wrapped_list_in_a_draft_becomes_a_record_root_and_passes_the_label_check() {
        let obs = |method: &str, path: &str, direction: Direction, field: &str| Observation {
            method: method.into(),
            path: path.into(),
            direction,
            field: field.into(),
            class: ValueClass::NationalId,
        };
        let observations = [
            obs("POST", "/users", Direction::Request, "$.ssn"),
            obs("POST", "/users", Direction::Response, "$.ssn"),
            obs("GET", "/users", Direction::Response, "$.items[*].ssn"),
            obs("GET", "/users/1", Direction::Response, "$.ssn"),
            obs("GET", "/users/1", Direction::Response, "$.cards[*].number"),
        ];
        let draft = draft_policy(&observations, "k");
        assert!(
            draft.contains("response.records = [\"$\", \"$.items[*]\"]"),
            "{draft}"
        );
        let set = crate::policy::PolicySet::from_sources(&[("draft.toml".into(), draft.clone())])
            .unwrap();
        let gaps: Vec<String> = crate::policy::check_labels(&set)
            .iter()
            .filter(|f| f.gap == crate::policy::LabelGap::OpensUnsealed && f.label.contains("ssn"))
            .map(ToString::to_string)
            .collect();
        assert!(gaps.is_empty(), "{gaps:?}\n{draft}");
        // a list field the context does not seal bare stays as it is
        assert!(draft.contains("\"$.cards[*].number\""), "{draft}");
    }
}
