//! Per-caller reveal: who sees a route's opened response fields in clear,
//! and the mask everyone else gets. PURE: parsing and matching only.
//!
//! Written in a route as
//!
//! ```toml
//! [route.reveal]
//! to = [ { header = "x-role", value = "support" },
//!        { cert_subject = "CN=billing" },
//!        { source = "10.0.0.0/8" } ]        # any one matches
//! mask = { keep_last = 4 }                  # or { fixed = "****" } | "null" | "envelope"
//! fields = ["$.ssn"]                        # optional: default = all of response.decrypt
//! ```
//!
//! CIDR blocks are parsed here by hand: `std::net` parses the address, and
//! a prefix compare is a shift and a mask — less code than a dependency.

use std::net::IpAddr;

use serde::Deserialize;

use super::selector::{Selector, SelectorSet};

/// Certificate subject attributes a `cert_subject` rule may name, with their OIDs
/// (DER content bytes of the attribute type).
pub const SUBJECT_ATTRIBUTES: &[(&str, &[u8])] = &[
    ("CN", &[0x55, 0x04, 0x03]),
    ("serialNumber", &[0x55, 0x04, 0x05]),
    ("C", &[0x55, 0x04, 0x06]),
    ("L", &[0x55, 0x04, 0x07]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
];

/// One way a caller can be let see the fields in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevealTo {
    /// A request header (name lower case) whose value equals `value` exactly.
    Header {
        /// Header name, lower case.
        name: String,
        /// The value it must carry.
        value: String,
    },
    /// The verified mTLS client certificate's subject holds every listed
    /// attribute (`type`, `value`); other attributes may be present too.
    CertSubject {
        /// The rule as written, for the audit line.
        text: String,
        /// Pairs of attribute type (as named in [`SUBJECT_ATTRIBUTES`]) and value.
        attributes: Vec<(&'static str, String)>,
    },
    /// The TCP peer's address lies in this block.
    Source(Cidr),
}

impl RevealTo {
    /// The rule as the audit line names it (`header x-role`, `cert_subject CN=billing`,
    /// `source 10.0.0.0/8`); a header rule never shows the value it wants.
    pub fn describe(&self) -> String {
        match self {
            RevealTo::Header { name, .. } => format!("header {name}"),
            RevealTo::CertSubject { text, .. } => format!("cert_subject {text}"),
            RevealTo::Source(c) => format!("source {c}"),
        }
    }
}

/// What a caller who is not let see the fields gets instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// The opened string with all but its last N characters as `*`
    /// (a string of at most N characters is all `*`; a non-string is `"****"`).
    KeepLast(usize),
    /// This string instead of the value.
    Fixed(String),
    /// JSON `null`.
    Null,
    /// The envelope, not opened (a value that is not an envelope becomes `null`).
    Envelope,
}

/// A route's reveal rule, validated.
#[derive(Debug, Clone)]
pub struct Reveal {
    /// Any one of these lets the caller see the fields in clear.
    pub to: Vec<RevealTo>,
    /// What everyone else gets.
    pub mask: Mask,
    /// The fields masked (a subset of `response.decrypt`).
    pub fields: SelectorSet,
    /// `response.decrypt` without `fields`: what a masked caller still gets opened
    /// when the mask is `envelope`.
    pub open_unmasked: SelectorSet,
}

/// An IPv4 or IPv6 block: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a block of one).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}': '{addr_text}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{text}': the prefix length is 0 to {max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if !cidr.contains(addr) || cidr.network() != addr {
            return Err(format!(
                "'{text}': bits are set past the /{prefix} prefix; write '{}/{prefix}'",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(&self, width: u8) -> u128 {
        if self.prefix == 0 {
            return 0;
        }
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        (all >> (width - self.prefix)) << (width - self.prefix)
    }

    fn network(&self) -> IpAddr {
        let (bits, width) = Self::bits(self.addr);
        let net = bits & self.mask(width);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
        }
    }

    /// True when `ip` lies in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (a, width) = Self::bits(ip);
        let (b, _) = Self::bits(self.addr);
        let m = self.mask(width);
        a & m == b & m
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `[route.reveal]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileReveal {
    to: Vec<FileRevealTo>,
    mask: toml::Value,
    fields: Option<Vec<String>>,
}

/// One entry of `to` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRevealTo {
    header: Option<String>,
    value: Option<String>,
    cert_subject: Option<String>,
    source: Option<String>,
}

/// Parses a `cert_subject` rule: `CN=billing` or `CN=billing, O=Acme`.
fn parse_subject(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let Some((ty, value)) = part.split_once('=') else {
            return Err(format!(
                "'{text}': write TYPE=value pairs separated by ',' (e.g. 'CN=billing, O=Acme')"
            ));
        };
        let ty = ty.trim();
        let Some((name, _)) = SUBJECT_ATTRIBUTES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(ty))
        else {
            let known: Vec<&str> = SUBJECT_ATTRIBUTES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "'{text}': '{ty}' is not a subject attribute sealgate reads ({})",
                known.join(", ")
            ));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("'{text}': the value of {name} is empty"));
        }
        out.push((*name, value.to_owned()));
    }
    Ok(out)
}

fn parse_mask(v: &toml::Value) -> Result<Mask, String> {
    const HELP: &str =
        "write mask = { keep_last = 4 }, { fixed = \"****\" }, \"null\" or \"envelope\"";
    match v {
        toml::Value::String(s) if s == "null" => Ok(Mask::Null),
        toml::Value::String(s) if s == "envelope" => Ok(Mask::Envelope),
        toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::Integer(n))) if k == "keep_last" => match usize::try_from(*n) {
                Ok(n) if n > 0 => Ok(Mask::KeepLast(n)),
                _ => Err("keep_last is a number of characters greater than 0".into()),
            },
            Some((k, toml::Value::String(s))) if k == "fixed" => Ok(Mask::Fixed(s.clone())),
            _ => Err(HELP.into()),
        },
        _ => Err(HELP.into()),
    }
}

/// Validates a route's `reveal` table against its `response.decrypt` list and
/// `open_all`; pushes `(field, message)` for each problem.
pub(super) fn parse(
    raw: FileReveal,
    decrypt: &[String],
    open_all: bool,
    bad: &mut dyn FnMut(&str, String),
) -> Option<Reveal> {
    let mut ok = true;
    let mut fail = |field: &str, message: String| {
        ok = false;
        bad(field, message);
    };
    if open_all {
        fail(
            "reveal",
            "open_all opens every envelope found, masked fields too: a route with reveal \
             lists its fields in response.decrypt"
                .into(),
        );
    }
    if decrypt.is_empty() {
        fail(
            "reveal",
            "reveal decides who sees opened response fields: give the route response.decrypt"
                .into(),
        );
    }
    if raw.to.is_empty() {
        fail(
            "reveal.to",
            "an empty list reveals to no one; list at least one header, cert_subject or source"
                .into(),
        );
    }
    let mut to = Vec::new();
    for (i, entry) in raw.to.into_iter().enumerate() {
        let at = format!("reveal.to[{i}]");
        let kinds = [
            entry.header.is_some(),
            entry.cert_subject.is_some(),
            entry.source.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            fail(
                &at,
                "write exactly one of { header = \"…\", value = \"…\" }, { cert_subject = \"CN=…\" }, \
                 { source = \"10.0.0.0/8\" }"
                    .into(),
            );
            continue;
        }
        if entry.value.is_some() && entry.header.is_none() {
            fail(&at, "'value' goes with 'header' only".into());
            continue;
        }
        if let Some(name) = entry.header {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                fail(&at, format!("'{name}' is not an HTTP header name"));
                continue;
            }
            match entry.value {
                Some(value) if !value.trim().is_empty() => to.push(RevealTo::Header {
                    name: name.to_ascii_lowercase(),
                    value,
                }),
                _ => fail(
                    &at,
                    format!("header '{name}' needs a non-empty 'value' to compare with"),
                ),
            }
        } else if let Some(text) = entry.cert_subject {
            match parse_subject(&text) {
                Ok(attributes) => to.push(RevealTo::CertSubject { text, attributes }),
                Err(e) => fail(&at, e),
            }
        } else if let Some(text) = entry.source {
            match Cidr::parse(&text) {
                Ok(c) => to.push(RevealTo::Source(c)),
                Err(e) => fail(&at, e),
            }
        }
    }
    let mask = match parse_mask(&raw.mask) {
        Ok(m) => Some(m),
        Err(e) => {
            fail("reveal.mask", e);
            None
        }
    };
    let texts: Vec<String> = match raw.fields {
        None => decrypt.to_vec(),
        Some(list) if list.is_empty() => {
            fail(
                "reveal.fields",
                "an empty list masks nothing; omit it to mask every response.decrypt field".into(),
            );
            Vec::new()
        }
        Some(list) => {
            for (i, t) in list.iter().enumerate() {
                if !decrypt.contains(t) {
                    fail(
                        &format!("reveal.fields[{i}]"),
                        format!(
                            "'{t}' is not in response.decrypt: reveal masks fields the route opens"
                        ),
                    );
                } else if list[..i].contains(t) {
                    fail(
                        &format!("reveal.fields[{i}]"),
                        format!("'{t}' is listed twice"),
                    );
                }
            }
            list
        }
    };
    let compile = |list: Vec<&String>| -> SelectorSet {
        SelectorSet::new(
            list.into_iter()
                .filter_map(|t| Selector::compile(t).ok())
                .collect(),
        )
    };
    let fields = compile(texts.iter().collect());
    let open_unmasked = compile(decrypt.iter().filter(|t| !texts.contains(t)).collect());
    if !ok {
        return None;
    }
    Some(Reveal {
        to,
        mask: mask?,
        fields,
        open_unmasked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_contain_what_they_should() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_cidr_blocks_say_why() {
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("ten/8").unwrap_err().contains("not an IP"));
    }

    #[test]
    fn subject_rules_name_known_attributes() {
        assert_eq!(
            parse_subject("cn=billing, O=Acme").unwrap(),
            vec![("CN", "billing".to_owned()), ("O", "Acme".to_owned())]
        );
        assert!(parse_subject("XX=1").unwrap_err().contains("'XX'"));
        assert!(parse_subject("billing").unwrap_err().contains("TYPE=value"));
    }
}
