//! Path templates (`/users/{id}/cards/*`), request-path normalisation for
//! matching, media ranges, and context templates (`users:{id}`).

use std::borrow::Cow;

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches this text, ASCII case-insensitively.
    Literal(String),
    /// Matches any one non-empty segment and captures it.
    Param(String),
}

/// A compiled path template: literal and `{param}` segments, optionally `/*` at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
    rest: bool,
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err("a path template starts with '/'".into());
        };
        if text.contains(['?', '#']) {
            return Err("a path template has no query or fragment".into());
        }
        let mut segments = Vec::new();
        let mut rest = false;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            if part == "*" {
                if i + 1 != count {
                    return Err("'*' may only be the last segment".into());
                }
                rest = true;
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_param_name(name) {
                    return Err(format!(
                        "'{{{name}}}' is not a parameter name (letters, digits, '_'; not starting with a digit)"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) if n == name))
                {
                    return Err(format!("parameter '{{{name}}}' appears twice"));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if part.is_empty() {
                return Err("empty segment ('//' or a trailing '/')".into());
            } else if part.contains(['{', '}', '*', '%']) || part == "." || part == ".." {
                return Err(format!(
                    "segment '{part}' is neither a literal (no '{{', '}}', '*', '%', not '.' or '..') nor a whole '{{param}}'"
                ));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            segments,
            rest,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Names of the `{param}` segments, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// For each template segment, its `{param}` name (`None` for a literal).
    pub fn param_positions(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Param(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Matches normalised request segments; on success returns the captured params.
    pub(crate) fn matches(&self, path: &[Cow<'_, str>]) -> Option<Vec<(String, String)>> {
        if !self.fits(path) {
            return None;
        }
        Some(
            self.segments
                .iter()
                .zip(path)
                .filter_map(|(seg, got)| match seg {
                    Segment::Param(name) => Some((name.clone(), got.to_string())),
                    Segment::Literal(_) => None,
                })
                .collect(),
        )
    }

    /// Whether the normalised request segments match, without capturing.
    pub(crate) fn fits(&self, path: &[Cow<'_, str>]) -> bool {
        if path.len() < self.segments.len() || (!self.rest && path.len() != self.segments.len()) {
            return false;
        }
        self.segments.iter().zip(path).all(|(seg, got)| match seg {
            // ASP.NET Core routes case-insensitively beyond ASCII
            // (`/uſers` is `/users` to it): non-ASCII spellings fold (two
            // ASCII names that differ beyond ASCII case never fold together)
            Segment::Literal(lit) => {
                lit.eq_ignore_ascii_case(got)
                    || (!(got.is_ascii() && lit.is_ascii()) && super::rewrite::folds_to(got, lit))
            }
            Segment::Param(_) => true,
        })
    }

    /// Specificity key: literal (2) > param (1) per segment, left to right; then an
    /// exact end (3) beats a trailing wildcard (0). Greater is more specific.
    pub(crate) fn specificity(&self) -> Vec<u8> {
        let mut key: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param(_) => 1,
            })
            .collect();
        key.push(if self.rest { 0 } else { 3 });
        key
    }

    /// True when both templates have the same shape and can match one same path.
    pub(crate) fn same_shape_overlaps(&self, other: &PathTemplate) -> bool {
        self.rest == other.rest
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a.eq_ignore_ascii_case(b),
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a request path into the segments routes are matched against.
///
/// Matching errs on the side of matching MORE requests (a route that must
/// seal must not be dodged by spelling): the query is dropped, `%XX` escapes
/// are decoded, `;` matrix parameters are cut from each segment (after
/// decoding, so `%3b` counts too: servlet containers drop them), empty and
/// `.` segments are dropped and `..` removes the previous segment — what a
/// normalising upstream would see.
pub(crate) fn request_segments(path: &str) -> Vec<Cow<'_, str>> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    for raw in path.split('/') {
        let mut seg = percent_decode(raw);
        if let Some(at) = seg.find(';') {
            match &mut seg {
                Cow::Borrowed(s) => *s = &s[..at],
                Cow::Owned(s) => s.truncate(at),
            }
        }
        match &*seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    out
}

/// Why a request path may be read differently by sealgate and the upstream, if it may.
///
/// The proxy should refuse such requests (400) whenever routes are loaded:
/// sealgate matches them in normalised form, but an upstream that does not
/// normalise (or decodes `%2F` into a separator) might route them elsewhere.
pub fn ambiguous_path(path: &str) -> Option<&'static str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Some("path does not start with '/'");
    }
    // every reading below needs a '%', a '\\', a '.' or two '/' in a row:
    // most paths have none of them and are settled in one pass
    let b = path.as_bytes();
    let suspect =
        b.iter().any(|&c| matches!(c, b'%' | b'\\' | b'.')) || b.windows(2).any(|w| w == b"//");
    if !suspect {
        return None;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Some("encoded or backslash path separator");
    }
    if lower.contains("%2e") {
        return Some("percent-encoded dot");
    }
    if path.contains("//") {
        return Some("empty path segment");
    }
    // `..;x` is a dot segment to a servlet container and a name to others
    if path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .any(|s| s == "." || s == "..")
    {
        return Some("dot segment");
    }
    if lower.contains("%00") {
        return Some("encoded NUL");
    }
    // `%253b` is `;` to an upstream that decodes twice, a literal to us
    if lower.contains("%25") {
        return Some("percent-encoded '%' (double encoding)");
    }
    None
}

/// The segments with a format suffix cut from the last one (`users.json`
/// → `users`, `users.` → `users`), or `None` when it has none.
///
/// Rails, Django REST's `format_suffix_patterns` and Spring's old suffix
/// matching route `/users.json` (and any `.ext`) as `/users`, so the proxy
/// must consider that reading too. A suffix is a final `.` followed by 0–10
/// ASCII letters or digits, the part before it non-empty.
pub(crate) fn strip_format_suffix<'a>(segments: &[Cow<'a, str>]) -> Option<Vec<Cow<'a, str>>> {
    let last = segments.last()?;
    let (stem, ext) = last.rsplit_once('.')?;
    if stem.is_empty() || ext.len() > 10 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let stem = stem.to_owned();
    let mut out = segments.to_vec();
    let end = out.len() - 1;
    out[end] = Cow::Owned(stem);
    Some(out)
}

fn percent_decode(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    // Not UTF-8 after decoding: keep the segment as the client wrote it.
    String::from_utf8(out).map_or(Cow::Borrowed(seg), Cow::Owned)
}

/// A media range: `type/subtype`, where type may be `*` and subtype may be `*` or `*+suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    kind: String,
    subtype: String,
}

impl MediaRange {
    /// Parses a media range such as `application/json` or `*/*+json`.
    pub fn parse(text: &str) -> Result<MediaRange, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (kind, subtype) = lower
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not a media type (type/subtype)"))?;
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        let kind_ok = kind == "*" || token(kind);
        let sub_ok =
            subtype == "*" || subtype.strip_prefix("*+").is_some_and(token) || token(subtype);
        if !kind_ok || !sub_ok {
            return Err(format!(
                "'{text}' is not a media range (type/subtype, '*', or '*+suffix'; no parameters)"
            ));
        }
        Ok(MediaRange {
            kind: kind.to_owned(),
            subtype: subtype.to_owned(),
        })
    }

    /// True when the (already lowercased, parameter-free) `type/subtype` falls in this range.
    pub(crate) fn contains(&self, kind: &str, subtype: &str) -> bool {
        (self.kind == "*" || self.kind == kind)
            && (self.subtype == "*"
                || self.subtype == subtype
                || self
                    .subtype
                    .strip_prefix("*+")
                    .is_some_and(|suffix| subtype.ends_with(&format!("+{suffix}"))))
    }
}

impl std::fmt::Display for MediaRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype)
    }
}

/// A piece of a context template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// The canonical form of a context template: as written, with every
/// `{param}` written `{}`. Parameter names belong to a route's own path,
/// so two routes whose contexts render alike (`user:{id}`, `user:{uid}`)
/// have one canonical form; what binds a remote provider's data key to a
/// route (its EncryptionContext, carried in `sg2.` envelopes).
pub fn canonical_context(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str("{}");
                rest = &rest[open + close + 1..];
            }
            None => {
                // not a valid template: kept as written
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// An encryption-context template: text with `{param}` references to path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl ContextTemplate {
    /// Parses a template; every `{name}` must be one of `params`.
    pub fn parse(text: &str, params: &[&str]) -> Result<ContextTemplate, String> {
        if text.is_empty() {
            return Err("the context is empty".into());
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err("unmatched '}'".into());
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or("unmatched '{'")?;
            let name = &after[..close];
            if !params.contains(&name) {
                return Err(format!(
                    "'{{{name}}}' is not a parameter of the route's path"
                ));
            }
            pieces.push(Piece::Param(name.to_owned()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(ContextTemplate {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The template with each `{param}` replaced by its value.
    pub(crate) fn render(&self, params: &[(String, String)]) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(name) => {
                    if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::canonical_context;

    #[test]
    fn parameter_names_drop_out_of_the_canonical_context() {
        assert_eq!(canonical_context("users"), "users");
        assert_eq!(canonical_context("t:{tenant}"), "t:{}");
        assert_eq!(canonical_context("db:{c}/{id}:x"), "db:{}/{}:x");
        assert_eq!(
            canonical_context("user:{id}"),
            canonical_context("user:{uid}")
        );
        assert_ne!(canonical_context("user:{id}"), canonical_context("user"));
    }
}
