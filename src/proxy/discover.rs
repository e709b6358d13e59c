//! Open what you find: open every sealgate envelope in a response, wherever
//! it is, with no response paths listed.
//!
//! An envelope does not carry its context. Its AAD is `context "\0" label`
//! (see [`super::fields`]): the context the route named when it sealed, and
//! the label — the member path of the field, array indices dropped. So:
//!
//! - **JSON bodies**: every string value that starts like an envelope is
//!   found by walking the parsed body; its label is derived from where it is
//!   now, and it is tried against each candidate context in turn (the
//!   route's own context, then the route's `open_contexts`, then the
//!   proxy's `open_contexts`). The first that opens wins; the original JSON
//!   type comes back. An envelope that opens under none of them is left as
//!   it is and counted (`does_not_open`). It opens only where it sits at the
//!   same member path (modulo array indices) as when it was sealed, under a
//!   candidate context: that is the place-binding working as meant.
//! - **Other bodies** (`text/plain`, NDJSON, …): a streaming scanner
//!   ([`OpenStream`]) finds `sg1.` tokens, holding at most `window` bytes
//!   (the longest envelope it will open) besides the chunk in hand, so an
//!   envelope split across chunks is still found. There is no JSON position,
//!   so the label candidates are the configured `open_labels` (and the empty
//!   label); an envelope in double quotes is replaced with its JSON value,
//!   quotes included (type restored, e.g. in NDJSON); elsewhere a string
//!   comes back as its bare text.

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::counts::{FieldCounts, FieldOp, KeyBatch};
use super::BoxError;
use crate::envelope::{self, CmkRef, Envelope, Opened};
use crate::keys::DataKeyCache;
use crate::policy::{self, Selector, SelectorSet};

/// Default longest envelope (characters) the streaming scanner opens.
pub const DEFAULT_WINDOW: usize = 64 * 1024;

/// Where to look for the context and label an envelope was sealed with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// Contexts to try, in order.
    pub contexts: Vec<String>,
    /// Labels to try where the position gives none (non-JSON bodies).
    pub labels: Vec<String>,
    /// KeyIds whose envelopes may open (the route's key and `open_keys`);
    /// no other key's open, and an empty list opens nothing.
    pub keys: Vec<[u8; 16]>,
}

/// Opens `text` under the first (context, label) that works, if it was
/// sealed under one of `keys` (empty: none).
pub fn try_open(
    cache: &DataKeyCache,
    contexts: &[String],
    keys: &[[u8; 16]],
    labels: &[&str],
    text: &str,
) -> Result<(CmkRef, Opened), &'static str> {
    let env = Envelope::parse(text).map_err(|_| "malformed")?;
    let cmk = env.cmk();
    if !keys.contains(&cmk.key_id) {
        return Err("foreign_key");
    }
    let cipher = cache.envelope_key(&env).map_err(|_| "key_unavailable")?;
    for ctx in contexts {
        for label in labels {
            let mut aad = Vec::with_capacity(ctx.len() + 1 + label.len());
            aad.extend_from_slice(ctx.as_bytes());
            aad.push(0);
            aad.extend_from_slice(label.as_bytes());
            if let Ok(o) = env.open(&cipher, &aad) {
                return Ok((cmk, o));
            }
        }
    }
    Err("does_not_open")
}

fn note_open(counts: &mut FieldCounts, cmk: CmkRef) {
    counts.opened += 1;
    match counts
        .batches
        .iter_mut()
        .find(|b| b.op == FieldOp::Open && b.cmk == cmk)
    {
        Some(b) => b.count += 1,
        None => counts.batches.push(KeyBatch {
            op: FieldOp::Open,
            cmk,
            count: 1,
        }),
    }
}

fn note_failure(counts: &mut FieldCounts, reason: &'static str) {
    match counts.open_failures.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => counts.open_failures.push((reason, 1)),
    }
}

/// A Normalized Path (RFC 9535 §2.7) member step.
fn push_member(path: &mut String, name: &str) {
    path.push_str("['");
    for c in name.chars() {
        match c {
            '\'' => path.push_str("\\'"),
            '\\' => path.push_str("\\\\"),
            c if (c as u32) < 0x20 => path.push_str(&format!("\\u{:04x}", c as u32)),
            c => path.push(c),
        }
    }
    path.push_str("']");
}

fn find_envelopes(v: &Value, path: &mut String, out: &mut Vec<String>, depth: usize) {
    if depth > 128 {
        return;
    }
    match v {
        Value::String(s) if envelope::looks_like_envelope(s) => out.push(path.clone()),
        Value::Object(m) => {
            for (k, x) in m {
                let len = path.len();
                push_member(path, k);
                find_envelopes(x, path, out, depth + 1);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                find_envelopes(x, path, out, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Opens every envelope found anywhere in a JSON `body`. `Ok(None)`: not
/// JSON, or nothing opened (forward the original bytes).
pub fn open_found(
    cache: &DataKeyCache,
    contexts: &[String],
    keys: &[[u8; 16]],
    body: &[u8],
    counts: &mut FieldCounts,
) -> Option<Vec<u8>> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let mut paths = Vec::new();
    find_envelopes(&doc, &mut "$".to_string(), &mut paths, 0);
    if paths.is_empty() {
        return None;
    }
    let selectors: Vec<Selector> = paths
        .iter()
        .filter_map(|p| Selector::compile(p).ok())
        .collect();
    let set = SelectorSet::new(selectors);
    let result = policy::rewrite::<()>(body, &set, |site| {
        let raw = site.raw;
        let Some(text) = raw
            .get(1..raw.len().saturating_sub(1))
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            return Ok(None);
        };
        // where it sits now, then each shorter tail: the record it belongs
        // to may be wrapped in a list or page the label does not include
        let tails = policy::label_tails(site.label);
        match try_open(cache, contexts, keys, &tails, text) {
            Ok((cmk, opened)) => {
                note_open(counts, cmk);
                Ok(Some(opened.json().to_vec()))
            }
            Err(reason) => {
                note_failure(counts, reason);
                Ok(None)
            }
        }
    });
    result.ok().flatten()
}

/// Opens one envelope token found in a non-JSON stream; `None` leaves it.
pub type TokenOpener = Arc<dyn Fn(&str) -> Option<Opened> + Send + Sync>;

/// A token opener over the cache and candidates; counts go to `tally`.
pub fn token_opener(
    cache: Arc<DataKeyCache>,
    candidates: Candidates,
    tally: Arc<std::sync::Mutex<FieldCounts>>,
) -> TokenOpener {
    Arc::new(move |text: &str| {
        let mut labels: Vec<&str> = candidates.labels.iter().map(String::as_str).collect();
        labels.push("");
        let r = try_open(
            &cache,
            &candidates.contexts,
            &candidates.keys,
            &labels,
            text,
        );
        let mut t = tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match r {
            Ok((cmk, o)) => {
                note_open(&mut t, cmk);
                Some(o)
            }
            Err(reason) => {
                note_failure(&mut t, reason);
                None
            }
        }
    })
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A body wrapper that opens envelopes in a stream of any text, holding at
/// most `window` bytes of a possible envelope between chunks.
pub struct OpenStream<B> {
    inner: B,
    opener: TokenOpener,
    window: usize,
    /// Bytes not yet emitted: at most a partial envelope (≤ window) or a partial `sg1.`.
    pending: BytesMut,
    /// The last emitted byte (a token must not continue a word).
    prev: Option<u8>,
    /// Skipping the rest of a token longer than the window.
    skipping: bool,
    ended: bool,
    trailers: VecDeque<Frame<Bytes>>,
}

impl<B> OpenStream<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, opener: TokenOpener, window: usize) -> Self {
        OpenStream {
            inner,
            opener,
            window,
            pending: BytesMut::new(),
            prev: None,
            skipping: false,
            ended: false,
            trailers: VecDeque::new(),
        }
    }

    /// Emits what can be emitted from `pending`; at the end, everything.
    fn drain(&mut self, at_end: bool) -> Bytes {
        let buf = std::mem::take(&mut self.pending);
        let mut out = BytesMut::with_capacity(buf.len());
        let mut i = 0;
        let mut prev = self.prev;
        while i < buf.len() {
            let b = buf[i];
            if self.skipping {
                if is_b64(b) || b == b'.' {
                    out.extend_from_slice(&[b]);
                    prev = Some(b);
                    i += 1;
                    continue;
                }
                self.skipping = false;
            }
            let starts = b == b's' && !prev.is_some_and(|p| is_b64(p) || p == b'.');
            if !starts {
                out.extend_from_slice(&[b]);
                prev = Some(b);
                i += 1;
                continue;
            }
            let rest = &buf[i..];
            let prefix = envelope::PREFIX.as_bytes();
            let n = rest.len().min(prefix.len());
            if rest[..n] != prefix[..n] {
                out.extend_from_slice(&[b]);
                prev = Some(b);
                i += 1;
                continue;
            }
            if n < prefix.len() && !at_end {
                // maybe the start of `sg1.`: wait for more
                self.pending.extend_from_slice(rest);
                break;
            }
            if n < prefix.len() {
                out.extend_from_slice(rest);
                prev = rest.last().copied();
                break;
            }
            let len = prefix.len()
                + rest[prefix.len()..]
                    .iter()
                    .take_while(|c| is_b64(**c))
                    .count();
            let complete = len < rest.len() || at_end;
            if !complete {
                if rest.len() > self.window {
                    // longer than any envelope we open: pass it, and the rest of it
                    out.extend_from_slice(rest);
                    prev = rest.last().copied();
                    self.skipping = true;
                } else {
                    self.pending.extend_from_slice(rest);
                }
                break;
            }
            let token = &rest[..len];
            let opened = std::str::from_utf8(token)
                .ok()
                .filter(|_| len <= self.window)
                .and_then(|t| (self.opener)(t));
            match opened {
                Some(o) => {
                    let quoted = prev == Some(b'"') && rest.get(len) == Some(&b'"');
                    if quoted {
                        // replace the quotes too: the JSON value, type restored
                        // (the opening quote is always still in `out`, see below)
                        out.truncate(out.len().saturating_sub(1));
                        out.extend_from_slice(o.json());
                        i += len + 1;
                        prev = Some(b'"');
                        continue;
                    }
                    match serde_json::from_slice::<String>(o.json()) {
                        Ok(s) => out.extend_from_slice(s.as_bytes()),
                        Err(_) => out.extend_from_slice(o.json()),
                    }
                }
                None => out.extend_from_slice(token),
            }
            prev = token.last().copied();
            i += len;
        }
        if !at_end && out.last() == Some(&b'"') {
            // hold a trailing quote back: an envelope may follow in the next chunk
            out.truncate(out.len() - 1);
            let mut held = BytesMut::from(&b"\""[..]);
            held.extend_from_slice(&self.pending);
            self.pending = held;
            prev = out.last().copied().or(self.prev);
        }
        self.prev = prev;
        out.freeze()
    }
}

impl<B> Body for OpenStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(self.trailers.pop_front().map(Ok));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => {
                        self.pending.extend_from_slice(&d);
                        let out = self.drain(false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(f) => self.trailers.push_back(f),
                },
                Poll::Ready(None) => {
                    self.ended = true;
                    let out = self.drain(true);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{SealingKey, WrappedDek};
    use crate::secret::{DataKey, DekCipher};
    use http_body_util::BodyExt;

    fn key() -> SealingKey {
        SealingKey {
            cmk: CmkRef {
                key_id: [1; 16],
                version: 1,
            },
            wrapped: WrappedDek([0; 40]),
            cipher: DekCipher::new(&DataKey::from_bytes([7; 32])),
            remote: None,
        }
    }

    fn seal(json: &str, ctx: &str, label: &str) -> String {
        let aad = format!("{ctx}\0{label}");
        envelope::seal(
            &key(),
            json.as_bytes(),
            aad.as_bytes(),
            &mut rand::thread_rng(),
        )
        .unwrap()
    }

    /// Opens with the test key under context `users` and the given labels.
    fn opener(labels: &'static [&'static str]) -> TokenOpener {
        Arc::new(move |text: &str| {
            let env = Envelope::parse(text).ok()?;
            let k = key();
            labels
                .iter()
                .find_map(|l| env.open(&k.cipher, format!("users\0{l}").as_bytes()).ok())
        })
    }

    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// Feeds `text` in chunks of `size` bytes; returns the output and the
    /// largest frame emitted.
    async fn stream(
        text: &str,
        size: usize,
        labels: &'static [&'static str],
        window: usize,
    ) -> (String, usize) {
        let chunks = text
            .as_bytes()
            .chunks(size)
            .map(Bytes::copy_from_slice)
            .collect();
        let mut body = OpenStream::new(Chunks(chunks), opener(labels), window);
        let mut out = Vec::new();
        let mut largest = 0;
        while let Some(f) = body.frame().await {
            let d = f.unwrap().into_data().unwrap();
            largest = largest.max(d.len());
            out.extend_from_slice(&d);
        }
        (String::from_utf8(out).unwrap(), largest)
    }

    #[tokio::test]
    async fn envelopes_split_across_small_chunks_are_opened() {
        let ssn = seal("\"123-45-6789\"", "users", "ssn");
        let n = seal("42", "users", "ssn");
        let text = format!("ssn={ssn}; n={n}. again:{ssn}\nend sg1 sg1. xsg1.abc");
        for size in [1, 2, 3, 5, 7, 64, 4096] {
            let (out, _) = stream(&text, size, &["ssn"], 4096).await;
            assert_eq!(
                out, "ssn=123-45-6789; n=42. again:123-45-6789\nend sg1 sg1. xsg1.abc",
                "chunk size {size}"
            );
        }
    }

    #[tokio::test]
    async fn ndjson_gets_its_types_back_and_wrong_places_stay_sealed() {
        let ssn = seal("\"123-45-6789\"", "users", "ssn");
        let age = seal("37", "users", "ssn");
        let other = seal("\"x\"", "orders", "ssn");
        let text = format!("{{\"ssn\":\"{ssn}\",\"age\":\"{age}\"}}\n{{\"o\":\"{other}\"}}\n");
        for size in [1, 4, 9, 1000] {
            let (out, _) = stream(&text, size, &["ssn"], 4096).await;
            let want = format!("{{\"ssn\":\"123-45-6789\",\"age\":37}}\n{{\"o\":\"{other}\"}}\n");
            assert_eq!(out, want, "chunk size {size}");
        }
    }

    #[tokio::test]
    async fn the_held_window_is_bounded() {
        let ssn = seal("\"123-45-6789\"", "users", "ssn");
        // a token longer than the window passes unopened, and nothing more than
        // the window plus one chunk is ever held
        let long = format!("sg1.{}", "A".repeat(5000));
        let text = format!("{long} then {ssn} end");
        let (out, largest) = stream(&text, 100, &["ssn"], 1024).await;
        assert_eq!(out, format!("{long} then 123-45-6789 end"));
        assert!(largest <= 1024 + 100 + 1, "held {largest} bytes");
    }
}
