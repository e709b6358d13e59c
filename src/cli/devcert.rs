//! `sealgate dev-cert`: a throwaway CA, a server certificate for the given
//! host names, and a client certificate for trying mTLS — PEM files for a
//! test bench, never for production.
//!
//! Files written into `--out` (each replaced atomically, so a running
//! sealgate picks the new pair up on its next handshake):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the dev CA certificate: trust it in clients, or name it in `client_ca_file` |
//! | `ca-key.pem` | the dev CA's private key (0600) |
//! | `server.pem`, `server-key.pem` | the server pair for `[tls]` / `[kms_tls]` |
//! | `client.pem`, `client-key.pem` | a client pair issued by the CA (mTLS) |
//!
//! Every run makes a new CA with its own name (`CN=sealgate dev CA <time>
//! <random>`) and a subject key identifier; the certificates it issues carry
//! a matching authority key identifier. A client that trusts the CA of an
//! earlier run as well (the documented rotation is: run `dev-cert` again)
//! then finds the right issuer: with one shared name and no identifiers,
//! OpenSSL and SDKs built on it picked the first CA of that name and failed.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Host names the server certificate covers when no `--host` is given.
pub const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Flags of `sealgate dev-cert`.
#[derive(Debug, clap::Args)]
pub struct DevCertArgs {
    /// Directory to write the PEM files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// A DNS name or IP address for the server certificate (repeatable;
    /// default: localhost, 127.0.0.1, ::1).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Days the certificates are valid (at least 1).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
}

/// Why the certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertError {
    /// A host name is not a DNS name or IP address, or signing failed.
    #[error("cannot make the certificate: {0}")]
    Generate(String),
    /// `--days 0`: certificates that expire as they are made.
    #[error("--days must be at least 1 (certificates valid for 0 days expire at once)")]
    NoDays,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A dev CA with a server and a client pair, as PEM text.
pub struct DevCerts {
    /// The CA certificate.
    pub ca_cert_pem: String,
    /// The CA's private key.
    pub ca_key_pem: Zeroizing<String>,
    /// The server certificate (SANs: the hosts).
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: Zeroizing<String>,
    /// The client certificate (CN `sealgate-dev-client`).
    pub client_cert_pem: String,
    /// The client's private key.
    pub client_key_pem: Zeroizing<String>,
}

fn gen_err(e: rcgen::Error) -> DevCertError {
    DevCertError::Generate(e.to_string())
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // an hour of slack for clocks a little behind
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

/// Common name prefix of every dev CA; each run appends its own suffix.
pub const CA_NAME_PREFIX: &str = "sealgate dev CA";

/// A CA name no other run repeats: the creation time to tell runs apart
/// at a glance, and 32 random bits for runs within the same second.
fn unique_ca_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    format!(
        "{CA_NAME_PREFIX} {stamp} {:08x}",
        rand::Rng::gen::<u32>(&mut rand::thread_rng())
    )
}

/// Issued certificates: name their CA by key identifier (AKI = the CA's
/// SKI) and carry their own SKI, so chain building never guesses by name.
fn issued_by_key_id(p: &mut CertificateParams) {
    p.use_authority_key_identifier_extension = true;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, the SKI
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_identifier_method = KeyIdMethod::Sha256;
}

/// Makes a fresh CA, a server certificate for `hosts` (the defaults when
/// empty) and a client certificate, valid for `days`.
pub fn generate(hosts: &[String], days: u32) -> Result<DevCerts, DevCertError> {
    if days == 0 {
        return Err(DevCertError::NoDays);
    }
    let hosts: Vec<String> = if hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        hosts.to_vec()
    };
    for h in &hosts {
        if rustls::pki_types::ServerName::try_from(h.as_str()).is_err() {
            return Err(DevCertError::Generate(format!(
                "{h:?} is not a DNS name or IP address"
            )));
        }
    }

    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, unique_ca_name());
    // the SKI that issued certificates' AKI points at (RFC 7093 method 1)
    ca.key_identifier_method = KeyIdMethod::Sha256;
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, days);
    let ca_cert = ca.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate().map_err(gen_err)?;
    let mut server = CertificateParams::new(hosts.clone()).map_err(gen_err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issued_by_key_id(&mut server);
    validity(&mut server, days);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(gen_err)?;

    let client_key = KeyPair::generate().map_err(gen_err)?;
    let mut client =
        CertificateParams::new(vec!["sealgate-dev-client".to_string()]).map_err(gen_err)?;
    client
        .distinguished_name
        .push(DnType::CommonName, "sealgate-dev-client");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issued_by_key_id(&mut client);
    validity(&mut client, days);
    let client_cert = client.signed_by(&client_key, &issuer).map_err(gen_err)?;

    Ok(DevCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: Zeroizing::new(ca_key.serialize_pem()),
        server_cert_pem: server_cert.pem(),
        server_key_pem: Zeroizing::new(server_key.serialize_pem()),
        client_cert_pem: client_cert.pem(),
        client_key_pem: Zeroizing::new(client_key.serialize_pem()),
    })
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader sees the old file or the new one, never half of one. Keys get
/// mode 0600.
fn write_atomic(path: &Path, text: &str, secret: bool) -> Result<(), DevCertError> {
    let err = |source| DevCertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

impl DevCerts {
    /// Writes the six PEM files into `dir` (see the module docs); returns
    /// their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, DevCertError> {
        std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        // keys first, then certificates: a reloading server never pairs a
        // new certificate with an old key for long (and refuses a mismatch)
        let files: [(&str, &str, bool); 6] = [
            ("ca-key.pem", &self.ca_key_pem, true),
            ("client-key.pem", &self.client_key_pem, true),
            ("server-key.pem", &self.server_key_pem, true),
            ("ca.pem", &self.ca_cert_pem, false),
            ("client.pem", &self.client_cert_pem, false),
            ("server.pem", &self.server_cert_pem, false),
        ];
        let mut out = Vec::new();
        for (name, text, secret) in files {
            let p = dir.join(name);
            write_atomic(&p, text, secret)?;
            out.push(p);
        }
        Ok(out)
    }
}

/// Runs `sealgate dev-cert`, listing the files written on stdout.
pub fn run(args: DevCertArgs) -> Result<(), DevCertError> {
    let certs = generate(&args.hosts, args.days)?;
    let written = certs.write(&args.out)?;
    let mut out = std::io::stdout();
    for p in written {
        let _ = writeln!(out, "wrote {}", p.display());
    }
    let _ = writeln!(
        out,
        "dev certificates only: the CA key sits beside them; do not use in production"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn writes_a_usable_set_with_private_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(&["api.test".into(), "10.1.2.3".into()], 7).unwrap();
        let files = certs.write(dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        // the server pair and the CA load as a rustls would load them
        let pair = crate::tls::ReloadingCert::load(
            &dir.path().join("server.pem"),
            &dir.path().join("server-key.pem"),
        )
        .unwrap();
        let ee = pair.current();
        let roots = crate::tls::load_roots(&dir.path().join("ca.pem")).unwrap();
        assert_eq!(roots.len(), 1);
        // the server certificate verifies under the CA for its names
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        let leaf = ee.end_entity_cert().unwrap();
        for name in ["api.test", "10.1.2.3"] {
            let sn = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(leaf, &[], &sn, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("evil.test").unwrap();
        assert!(verifier
            .verify_server_cert(leaf, &[], &other, &[], now)
            .is_err());
        #[cfg(unix)]
        for name in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} is readable by others");
        }
    }

    #[test]
    fn zero_days_is_refused_not_rounded_up() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            args: DevCertArgs,
        }
        let e = Cmd::try_parse_from(["dev-cert", "--out", "d", "--days", "0"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("--days"), "{e}");
        assert!(Cmd::try_parse_from(["dev-cert", "--out", "d", "--days", "1"]).is_ok());
        let e = generate(&[], 0).err().unwrap();
        assert!(e.to_string().contains("--days must be at least 1"), "{e}");
    }

    #[test]
    fn a_bad_host_name_is_an_error_not_a_panic() {
        let e = generate(&["not a host".into()], 1).err().unwrap();
        assert!(e.to_string().contains("certificate"), "{e}");
    }
}
