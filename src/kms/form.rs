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
/// empty pairs (`a=1&&b=2`) are skipped.
pub fn decode(s: &str) -> Result<Vec<(String, String)>, MalformedForm> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

/// One name or value: `+` → space, `%XX` → its byte, the result UTF-8.
fn decode_component(s: &str) -> Result<String, MalformedForm> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(MalformedForm)?;
                let hex = std::str::from_utf8(hex).map_err(|_| MalformedForm)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| MalformedForm)?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| MalformedForm)
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
    }
}
