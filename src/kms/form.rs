//! Query strings and `application/x-www-form-urlencoded` bodies, decoded the
//! one way every face reads them (Tencent's v1 and legacy forms, Alibaba's
//! RPC parameters, the dispatcher's dialect sniffing). PURE.

/// A query string or form body that does not decode: a malformed `%XX`
/// escape, or bytes that are not UTF-8 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed form encoding")]
pub struct MalformedForm;

/// Decodes a query string or form body into its pairs, in order: `+` is a
/// space (decoded first), then `%XX`. A pair without `=` has an empty value;
/// empty pairs (`a=1&&b=2`) are skipped. A malformed escape or a result
/// that is not UTF-8 refuses the whole input (what a signature covers must
/// mean one thing).
pub fn decode(s: &str) -> Result<Vec<(String, String)>, MalformedForm> {
    pairs(s)
        .map(|(k, v)| Ok((component(k, false)?, component(v, false)?)))
        .collect()
}

/// [`decode`] as Node's `querystring` reads a query (Infisical's server):
/// a malformed escape stays as it was sent and bytes that are not UTF-8
/// become U+FFFD, so nothing is refused.
pub fn decode_lenient(s: &str) -> Vec<(String, String)> {
    pairs(s)
        .map(|(k, v)| {
            let text = |c| component(c, true).unwrap_or_default();
            (text(k), text(v))
        })
        .collect()
}

fn pairs(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// One name or value: `+` → space, `%XX` → its byte. Strict: a bad escape
/// or non-UTF-8 result is an error; lenient: kept, or replaced.
fn component(s: &str, lenient: bool) -> Result<String, MalformedForm> {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    // two hex digits: at most 0xff
                    out.push(u8::try_from(h * 16 + l).map_err(|_| MalformedForm)?);
                    i += 2;
                }
                _ if lenient => out.push(b'%'),
                _ => return Err(MalformedForm),
            },
            c => out.push(c),
        }
        i += 1;
    }
    if lenient {
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        String::from_utf8(out).map_err(|_| MalformedForm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_in_order_with_plus_and_escapes() {
        let got = decode("b=x+y&a=%2B%26%3D&&flag&c=caf%C3%A9").unwrap();
        let want = [("b", "x y"), ("a", "+&="), ("flag", ""), ("c", "café")];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
        assert_eq!(decode("").unwrap(), Vec::new());
    }

    #[test]
    fn malformed_escapes_and_non_utf8_are_refused() {
        for bad in ["a=%zz", "a=%4", "a=%", "%ff=1", "a=%C3"] {
            assert_eq!(decode(bad), Err(MalformedForm), "{bad}");
        }
        // `+` is decoded before `%XX`: an escaped plus stays a plus
        assert_eq!(decode("a=%2B+").unwrap()[0].1, "+ ");
        assert_eq!(decode("a=%+1"), Err(MalformedForm), "a sign is not a digit");
    }

    #[test]
    fn lenient_decoding_keeps_what_it_cannot_read() {
        let got = decode_lenient("p=a%201&s=+ab+&bad=%zz%4&x=%C3&&k");
        let want = [
            ("p", "a 1"),
            ("s", " ab "),
            ("bad", "%zz%4"),
            ("x", "\u{fffd}"),
            ("k", ""),
        ];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
    }
}
