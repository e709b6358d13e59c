//! TLS and HTTP/2 end to end, through real sockets on 127.0.0.1: rustls as
//! the client against the proxy (and the KMS listener), mTLS, certificate
//! reload without dropping connections, HTTP/2 over TLS (ALPN h2) and h2c
//! sealing exactly like HTTP/1.1, and an upstream behind TLS (right CA,
//! wrong CA, SNI override, HTTP/2 to the upstream). Also: the CA files
//! (`client_ca_file`, the upstream's `ca_file`) replaced while serving, and
//! the real `sealgate serve` binary configured by its TLS flags alone.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use sealgate::cli::devcert::{self, DevCerts};
use sealgate::config::{Config, ListenerTls, UpstreamTls};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

const POLICY: &str = r#"
[[route]]
name = "users"
methods = ["POST"]
path = "/users"
key = "tls-test-key"
context = "users"
request.encrypt = ["$.ssn", "$.card"]
response.decrypt = ["$.ssn", "$.card"]
"#;

const BODY: &str = r#"{"name":"Ann","ssn":"123-45-6789","card":{"number":4111111111111111}}"#;

/// Every await that talks to a socket is bounded: a hang fails the test.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

/// A dev CA set written into a fresh directory.
fn dev_certs(hosts: &[&str]) -> (tempfile::TempDir, DevCerts) {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let certs = devcert::generate(&hosts, 1).unwrap();
    certs.write(dir.path()).unwrap();
    (dir, certs)
}

fn listener_tls(dir: &Path, mtls: bool) -> ListenerTls {
    ListenerTls {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server-key.pem"),
        client_ca_file: mtls.then(|| dir.join("ca.pem")),
        http2: true,
    }
}

async fn start_sealgate(upstream: &str, tweak: impl FnOnce(&mut Config)) -> sealgate::app::App {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), POLICY).unwrap();
    let mut cfg = common::test_config(&dir, upstream);
    tweak(&mut cfg);
    sealgate::app::start(cfg).await.unwrap()
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A rustls client config trusting `cas`, with an optional client pair.
fn client_config(
    cas: &[&str],
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for c in pem_certs(ca) {
            roots.add(c).unwrap();
        }
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                pem_certs(cert),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect_tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn peer_leaf(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h1<S>(io: S) -> H1
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn h2<S>(io: S) -> Result<H2, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(send)
}

fn post_users(uri: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap()
}

async fn read(resp: Response<Incoming>) -> (u16, http::Version, String) {
    let status = resp.status().as_u16();
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

async fn send_h1(s: &mut H1, uri: &str) -> Result<(u16, http::Version, String), hyper::Error> {
    s.ready().await?;
    let resp = s.send_request(post_users(uri)).await?;
    Ok(read(resp).await)
}

async fn send_h2(s: &mut H2, uri: &str) -> Result<(u16, http::Version, String), hyper::Error> {
    s.ready().await?;
    let mut req = post_users(uri);
    req.headers_mut().remove("host");
    let resp = s.send_request(req).await?;
    Ok(read(resp).await)
}

/// One request as an upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    version: http::Version,
    forwarded_proto: Option<String>,
    body: Bytes,
    sni: Option<String>,
}

/// An echoing upstream that records what it receives; TLS when `tls` is set.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn upstream(tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen2.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (io, sni) = match acceptor {
                    Some(a) => {
                        let Ok(s) = a.accept(tcp).await else { return };
                        let sni = s.get_ref().1.server_name().map(str::to_string);
                        (sealgate::tls::ServerStream::Tls(Box::new(s)), sni)
                    }
                    None => (sealgate::tls::ServerStream::Plain(tcp), None),
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let sni = sni.clone();
                    async move {
                        let version = req.version();
                        let forwarded_proto = req
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = req.into_body().collect().await?.to_bytes();
                        seen.lock().unwrap().push(Seen {
                            version,
                            forwarded_proto,
                            body: body.clone(),
                            sni,
                        });
                        let mut r = Response::new(Full::new(body));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    Upstream { addr, seen }
}

/// The upstream's server config from a dev-cert directory.
fn upstream_tls(dir: &Path, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The client saw exactly what it sent; the upstream stored envelopes.
fn assert_sealed_round_trip(client_body: &str, stored: &Seen) {
    assert_eq!(client_body, BODY, "the client reads back its plaintext");
    let stored: Value = serde_json::from_slice(&stored.body).unwrap();
    for field in ["ssn", "card"] {
        let v = stored[field].as_str().unwrap_or_default();
        assert!(
            v.starts_with("sg1."),
            "{field} not sealed upstream: {stored}"
        );
    }
    let text = stored.to_string();
    assert!(!text.contains("123-45-6789") && !text.contains("4111111111111111"));
    assert_eq!(stored["name"], "Ann", "unselected fields pass as they are");
}

#[tokio::test]
async fn rustls_client_gets_a_sealed_round_trip_over_tls() {
    let (certs_dir, certs) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        c.tls = Some(listener_tls(certs_dir.path(), false))
    })
    .await;

    let tls = bounded(connect_tls(
        app.proxy_addr,
        client_config(&[&certs.ca_cert_pem], None, &[b"http/1.1"]),
    ))
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        peer_leaf(&tls),
        pem_certs(&certs.server_cert_pem)[0].to_vec()
    );
    let mut s = h1(tls).await;
    let (status, version, body) = bounded(send_h1(&mut s, "/users")).await.unwrap();
    assert_eq!((status, version), (200, http::Version::HTTP_11), "{body}");
    assert_sealed_round_trip(&body, &up.requests()[0]);
    assert_eq!(up.requests()[0].forwarded_proto.as_deref(), Some("https"));

    // a client that trusts another CA refuses the proxy's certificate
    let (_other_dir, other) = dev_certs(&[]);
    let e = bounded(connect_tls(
        app.proxy_addr,
        client_config(&[&other.ca_cert_pem], None, &[]),
    ))
    .await;
    assert!(
        e.is_err(),
        "a certificate from an untrusted CA was accepted"
    );
    // and plaintext HTTP on the TLS port gets no answer
    let mut plain = h1(bounded(TcpStream::connect(app.proxy_addr)).await.unwrap()).await;
    assert!(bounded(send_h1(&mut plain, "/users")).await.is_err());
    assert_eq!(up.requests().len(), 1, "refused connections reach nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_ca() {
    let (certs_dir, certs) = dev_certs(&[]);
    let (_other_dir, other) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        c.tls = Some(listener_tls(certs_dir.path(), true))
    })
    .await;
    let ca = certs.ca_cert_pem.as_str();

    // no client certificate: the server aborts the handshake (with TLS 1.3
    // the client learns it on its first read, so try a request)
    let refused = async {
        let tls = connect_tls(app.proxy_addr, client_config(&[ca], None, &[])).await?;
        let mut s = h1(tls).await;
        send_h1(&mut s, "/users")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(bounded(refused).await.is_err(), "no client cert was let in");

    // a client certificate from another CA: refused too
    let wrong = async {
        let cfg = client_config(
            &[ca],
            Some((&other.client_cert_pem, &other.client_key_pem)),
            &[],
        );
        let tls = connect_tls(app.proxy_addr, cfg).await?;
        let mut s = h1(tls).await;
        send_h1(&mut s, "/users")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(
        bounded(wrong).await.is_err(),
        "a foreign client cert was let in"
    );
    assert!(up.requests().is_empty());

    // the dev client certificate: in, and sealing works
    let cfg = client_config(
        &[ca],
        Some((&certs.client_cert_pem, &certs.client_key_pem)),
        &[],
    );
    let tls = bounded(connect_tls(app.proxy_addr, cfg)).await.unwrap();
    let mut s = h1(tls).await;
    let (status, _, body) = bounded(send_h1(&mut s, "/users")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_sealed_round_trip(&body, &up.requests()[0]);
    app.shutdown().await;
}

#[tokio::test]
async fn replaced_certificate_serves_new_handshakes_and_old_connections_live_on() {
    let (certs_dir, first) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        c.tls = Some(listener_tls(certs_dir.path(), false))
    })
    .await;
    let second = devcert::generate(&[], 1).unwrap();
    let trust_both = client_config(&[&first.ca_cert_pem, &second.ca_cert_pem], None, &[]);

    let old = bounded(connect_tls(app.proxy_addr, trust_both))
        .await
        .unwrap();
    assert_eq!(
        peer_leaf(&old),
        pem_certs(&first.server_cert_pem)[0].to_vec()
    );
    let mut old = h1(old).await;
    let (status, _, _) = bounded(send_h1(&mut old, "/users")).await.unwrap();
    assert_eq!(status, 200);

    // the operator drops new files in place (written beside and renamed)
    second.write(certs_dir.path()).unwrap();

    // a fresh client: a resumed TLS session would skip the certificate
    let fresh = client_config(&[&first.ca_cert_pem, &second.ca_cert_pem], None, &[]);
    let new = bounded(connect_tls(app.proxy_addr, fresh)).await.unwrap();
    assert_eq!(
        peer_leaf(&new),
        pem_certs(&second.server_cert_pem)[0].to_vec(),
        "a new handshake must get the replaced certificate"
    );
    let mut new = h1(new).await;
    let (status, _, body) = bounded(send_h1(&mut new, "/users")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_sealed_round_trip(&body, &up.requests()[1]);

    // the keep-alive connection made before the swap still works
    let (status, _, body) = bounded(send_h1(&mut old, "/users")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_sealed_round_trip(&body, &up.requests()[2]);

    // a client that trusts only the old CA is now refused
    let old_only = client_config(&[&first.ca_cert_pem], None, &[]);
    assert!(bounded(connect_tls(app.proxy_addr, old_only))
        .await
        .is_err());
    app.shutdown().await;
}

#[tokio::test]
async fn http2_over_tls_and_h2c_seal_exactly_like_http1() {
    let (certs_dir, certs) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        c.tls = Some(listener_tls(certs_dir.path(), false))
    })
    .await;
    let ca = certs.ca_cert_pem.as_str();

    // HTTP/1.1 first, as the reference
    let tls = bounded(connect_tls(
        app.proxy_addr,
        client_config(&[ca], None, &[b"http/1.1"]),
    ))
    .await
    .unwrap();
    let (_, _, body1) = bounded(send_h1(&mut h1(tls).await, "/users"))
        .await
        .unwrap();

    // HTTP/2 over TLS, chosen by ALPN
    let tls = bounded(connect_tls(
        app.proxy_addr,
        client_config(&[ca], None, &[b"h2"]),
    ))
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut s = bounded(h2(tls)).await.unwrap();
    let uri = format!("https://localhost:{}/users", app.proxy_addr.port());
    let (status, version, body2) = bounded(send_h2(&mut s, &uri)).await.unwrap();
    assert_eq!((status, version), (200, http::Version::HTTP_2), "{body2}");
    assert_eq!(
        body1, body2,
        "HTTP/2 client sees what the HTTP/1.1 client sees"
    );
    let seen = up.requests();
    assert_sealed_round_trip(&body1, &seen[0]);
    assert_sealed_round_trip(&body2, &seen[1]);
    app.shutdown().await;

    // h2c (prior knowledge) on a plaintext listener
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |_| {}).await;
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let mut s = bounded(h2(tcp)).await.unwrap();
    let uri = format!("http://localhost:{}/users", app.proxy_addr.port());
    let (status, version, body) = bounded(send_h2(&mut s, &uri)).await.unwrap();
    assert_eq!((status, version), (200, http::Version::HTTP_2), "{body}");
    assert_sealed_round_trip(&body, &up.requests()[0]);
    app.shutdown().await;

    // h2c switched off: HTTP/2 prior knowledge is not served, HTTP/1.1 is
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| c.h2c = false).await;
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let h2_attempt = async {
        let mut s = h2(tcp).await?;
        send_h2(&mut s, &uri).await
    };
    assert!(bounded(h2_attempt).await.is_err(), "h2c served while off");
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let (status, _, body) = bounded(send_h1(&mut h1(tcp).await, "/users"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn http2_switched_off_on_tls_offers_only_http1() {
    let (certs_dir, certs) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        let mut t = listener_tls(certs_dir.path(), false);
        t.http2 = false;
        c.tls = Some(t);
    })
    .await;
    let ca = certs.ca_cert_pem.as_str();
    let tls = bounded(connect_tls(
        app.proxy_addr,
        client_config(&[ca], None, &[b"h2", b"http/1.1"]),
    ))
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // a client that speaks only h2 finds no common protocol
    let only_h2 = client_config(&[ca], None, &[b"h2"]);
    assert!(bounded(connect_tls(app.proxy_addr, only_h2)).await.is_err());
    app.shutdown().await;
}

#[tokio::test]
async fn kms_listener_speaks_tls() {
    let (certs_dir, certs) = dev_certs(&[]);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        c.kms_listen = Some("127.0.0.1:0".parse().unwrap());
        c.kms_tls = Some(listener_tls(certs_dir.path(), true));
    })
    .await;
    let kms = app.kms_addr.unwrap();
    let ca = certs.ca_cert_pem.as_str();
    let cfg = client_config(
        &[ca],
        Some((&certs.client_cert_pem, &certs.client_key_pem)),
        &[],
    );
    let tls = bounded(connect_tls(kms, cfg)).await.unwrap();
    assert_eq!(
        peer_leaf(&tls),
        pem_certs(&certs.server_cert_pem)[0].to_vec()
    );
    let mut s = h1(tls).await;
    s.ready().await.unwrap();
    let req = Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = read(bounded(s.send_request(req)).await.unwrap()).await;
    assert_eq!(status, 404, "not a KMS request: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "unknown_dialect"
    );
    // mTLS on the KMS listener: no client certificate, no answer
    let refused = async {
        let tls = connect_tls(kms, client_config(&[ca], None, &[])).await?;
        let mut s = h1(tls).await;
        send_h1(&mut s, "/")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(bounded(refused).await.is_err());
    // the proxy listener stays plaintext
    let tcp = bounded(TcpStream::connect(app.proxy_addr)).await.unwrap();
    let (status, _, _) = bounded(send_h1(&mut h1(tcp).await, "/users"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    app.shutdown().await;
}

async fn plain_post(proxy: SocketAddr) -> (u16, String) {
    let tcp = bounded(TcpStream::connect(proxy)).await.unwrap();
    let (status, _, body) = bounded(send_h1(&mut h1(tcp).await, "/users"))
        .await
        .unwrap();
    (status, body)
}

fn upstream_ca(dir: &Path) -> UpstreamTls {
    UpstreamTls {
        ca_file: Some(dir.join("ca.pem")),
        server_name: None,
    }
}

#[tokio::test]
async fn upstream_over_tls_with_the_right_ca_works_and_the_wrong_ca_is_502() {
    let (up_dir, _) = dev_certs(&["127.0.0.1"]);
    let up = upstream(Some(upstream_tls(up_dir.path(), &[b"http/1.1"]))).await;
    let url = format!("https://{}", up.addr);

    let app = start_sealgate(&url, |c| c.upstream_tls = upstream_ca(up_dir.path())).await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_sealed_round_trip(&body, &seen[0]);
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    app.shutdown().await;

    let (other_dir, _) = dev_certs(&[]);
    let app = start_sealgate(&url, |c| c.upstream_tls = upstream_ca(other_dir.path())).await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 502, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "upstream_unavailable");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("TLS"),
        "{body}"
    );
    assert_eq!(
        up.requests().len(),
        1,
        "nothing reached an untrusted upstream"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn upstream_server_name_override_is_sent_as_sni_and_checked() {
    let (up_dir, _) = dev_certs(&["api.internal.test"]);
    let up = upstream(Some(upstream_tls(up_dir.path(), &[]))).await;
    let url = format!("https://{}", up.addr);

    // the certificate names api.internal.test, not 127.0.0.1
    let app = start_sealgate(&url, |c| c.upstream_tls = upstream_ca(up_dir.path())).await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 502, "{body}");
    app.shutdown().await;

    let app = start_sealgate(&url, |c| {
        c.upstream_tls = UpstreamTls {
            server_name: Some("api.internal.test".into()),
            ..upstream_ca(up_dir.path())
        }
    })
    .await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sni.as_deref(), Some("api.internal.test"));
    assert_sealed_round_trip(&body, &seen[0]);
    app.shutdown().await;
}

#[tokio::test]
async fn upstream_http2_over_tls_and_h2c() {
    let (up_dir, _) = dev_certs(&["127.0.0.1"]);
    let up = upstream(Some(upstream_tls(up_dir.path(), &[b"h2", b"http/1.1"]))).await;
    let app = start_sealgate(&format!("https://{}", up.addr), |c| {
        c.upstream_tls = upstream_ca(up_dir.path());
        c.upstream_http2 = true;
    })
    .await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_2,
        "ALPN h2 to the upstream"
    );
    assert_sealed_round_trip(&body, &seen[0]);
    app.shutdown().await;

    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| c.upstream_http2 = true).await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_2,
        "h2c to the upstream"
    );
    assert_sealed_round_trip(&body, &seen[0]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_certificate_file_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), POLICY).unwrap();
    let mut cfg = common::test_config(&dir, "http://127.0.0.1:9");
    cfg.tls = Some(ListenerTls {
        cert_file: PathBuf::from("/nonexistent/sealgate-cert.pem"),
        key_file: PathBuf::from("/nonexistent/sealgate-key.pem"),
        client_ca_file: None,
        http2: true,
    });
    let e = sealgate::app::start(cfg).await.err().unwrap().to_string();
    assert!(
        e.contains("sealgate-cert.pem") && e.contains("[tls]"),
        "{e}"
    );
}

/// Writes `text` beside `path` and renames it over, as deploy tooling does.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One request over a new TLS connection presenting `client`'s pair:
/// the status, or the error that refused it.
async fn mtls_post(addr: SocketAddr, ca: &str, client: &DevCerts) -> std::io::Result<u16> {
    let attempt = async {
        let cfg = client_config(
            &[ca],
            Some((&client.client_cert_pem, &client.client_key_pem)),
            &[],
        );
        let tls = connect_tls(addr, cfg).await?;
        let mut s = h1(tls).await;
        let (status, _, _) = send_h1(&mut s, "/users")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(status)
    };
    bounded(attempt).await
}

#[tokio::test]
async fn replaced_client_ca_decides_new_connections_and_a_broken_one_is_ignored() {
    let (certs_dir, certs) = dev_certs(&[]);
    let other = devcert::generate(&[], 1).unwrap();
    let client_ca = certs_dir.path().join("clients-ca.pem");
    replace_file(&client_ca, &certs.ca_cert_pem);
    let up = upstream(None).await;
    let app = start_sealgate(&format!("http://{}", up.addr), |c| {
        let mut t = listener_tls(certs_dir.path(), false);
        t.client_ca_file = Some(client_ca.clone());
        c.tls = Some(t);
    })
    .await;
    let ca = certs.ca_cert_pem.as_str();
    assert_eq!(mtls_post(app.proxy_addr, ca, &certs).await.unwrap(), 200);
    assert!(mtls_post(app.proxy_addr, ca, &other).await.is_err());

    // a keep-alive connection made under the old CA
    let cfg = client_config(
        &[ca],
        Some((&certs.client_cert_pem, &certs.client_key_pem)),
        &[],
    );
    let mut kept = h1(bounded(connect_tls(app.proxy_addr, cfg)).await.unwrap()).await;
    assert_eq!(bounded(send_h1(&mut kept, "/users")).await.unwrap().0, 200);

    // the operator trusts the other CA from now on
    replace_file(&client_ca, &other.ca_cert_pem);
    assert_eq!(
        mtls_post(app.proxy_addr, ca, &other).await.unwrap(),
        200,
        "a client certificate from the new CA is accepted"
    );
    assert!(
        mtls_post(app.proxy_addr, ca, &certs).await.is_err(),
        "a client certificate from the old CA is refused on a new connection"
    );
    // the connection made before the swap lives on
    assert_eq!(bounded(send_h1(&mut kept, "/users")).await.unwrap().0, 200);

    // a half-written CA file: the last good CAs stay in service
    std::fs::write(&client_ca, "-----BEGIN CERTIFICATE-----\nAAAA").unwrap();
    assert_eq!(mtls_post(app.proxy_addr, ca, &other).await.unwrap(), 200);
    assert!(mtls_post(app.proxy_addr, ca, &certs).await.is_err());

    // and a good file again is picked up
    replace_file(&client_ca, &certs.ca_cert_pem);
    assert_eq!(mtls_post(app.proxy_addr, ca, &certs).await.unwrap(), 200);
    assert!(mtls_post(app.proxy_addr, ca, &other).await.is_err());
    assert_eq!(up.requests().len(), 6, "refused clients reach nothing");
    app.shutdown().await;
}

/// A TLS upstream whose certificate the test swaps, closing every
/// connection after one response (so each proxy request dials anew).
struct SwappableUpstream {
    addr: SocketAddr,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    served: Arc<Mutex<usize>>,
}

async fn swappable_upstream(first: Arc<rustls::ServerConfig>) -> SwappableUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(Mutex::new(first));
    let served = Arc::new(Mutex::new(0));
    let (config2, served2) = (config.clone(), served.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config2.lock().unwrap().clone());
            let served = served2.clone();
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let served = served.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        *served.lock().unwrap() += 1;
                        let r = Response::builder()
                            .header("content-type", "application/json")
                            .header("connection", "close")
                            .body(Full::new(body))
                            .unwrap();
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    SwappableUpstream {
        addr,
        config,
        served,
    }
}

#[tokio::test]
async fn replaced_upstream_ca_decides_new_upstream_connections() {
    let (first_dir, first) = dev_certs(&["127.0.0.1"]);
    let (second_dir, second) = dev_certs(&["127.0.0.1"]);
    let up = swappable_upstream(upstream_tls(first_dir.path(), &[b"http/1.1"])).await;
    let trust_dir = tempfile::tempdir().unwrap();
    let ca_file = trust_dir.path().join("upstream-ca.pem");
    replace_file(&ca_file, &first.ca_cert_pem);
    let app = start_sealgate(&format!("https://{}", up.addr), |c| {
        c.upstream_tls.ca_file = Some(ca_file.clone());
    })
    .await;
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");

    // the upstream's CA is replaced in the file; the upstream still shows
    // its old certificate: refused (no session resumes past the check)
    replace_file(&ca_file, &second.ca_cert_pem);
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(*up.served.lock().unwrap(), 2, "nothing reached it");

    // the upstream moves to a certificate from the new CA: accepted
    *up.config.lock().unwrap() = upstream_tls(second_dir.path(), &[b"http/1.1"]);
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");

    // a broken CA file keeps the last good CAs
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let (status, body) = plain_post(app.proxy_addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*up.served.lock().unwrap(), 4);
    app.shutdown().await;
}

/// A running `sealgate serve`; killed on drop.
struct Binary(std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_flags_alone_put_tls_on_both_listeners_and_the_upstream() {
    use std::io::BufRead;
    let (certs_dir, certs) = dev_certs(&[]);
    let (kms_dir, kms_certs) = dev_certs(&[]);
    let (up_dir, _) = dev_certs(&["api.internal.test"]);
    let up = upstream(Some(upstream_tls(up_dir.path(), &[]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/test.toml"), POLICY).unwrap();

    let (c, d, k) = (certs_dir.path(), dir.path(), kms_dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--kms-listen", "127.0.0.1:0"])
        .arg(format!("--upstream=https://{}", up.addr))
        .arg("--policies")
        .arg(d.join("policies"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .args(["--log-format", "json", "--log-level", "info"])
        .arg("--tls-cert")
        .arg(c.join("server.pem"))
        .arg("--tls-key")
        .arg(c.join("server-key.pem"))
        .arg("--tls-client-ca")
        .arg(c.join("ca.pem"))
        .arg("--kms-tls-cert")
        .arg(k.join("server.pem"))
        .arg("--kms-tls-key")
        .arg(k.join("server-key.pem"))
        .arg("--upstream-ca")
        .arg(up_dir.path().join("ca.pem"))
        .args(["--upstream-server-name", "api.internal.test"])
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _bin = Binary(child);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let (mut proxy, mut kms): (Option<SocketAddr>, Option<SocketAddr>) = (None, None);
    while proxy.is_none() || kms.is_none() {
        let v = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("sealgate serve did not come up");
        let addr = || v["fields"]["listen"].as_str().unwrap().parse().ok();
        match v["fields"]["message"].as_str() {
            Some("sealgate proxy listening") => {
                assert_eq!(v["fields"]["tls"], true, "{v}");
                proxy = addr();
            }
            Some(m) if m.starts_with("KMS listening") => {
                assert_eq!(v["fields"]["tls"], true, "{v}");
                kms = addr();
            }
            _ => {}
        }
    }
    let (proxy, kms) = (proxy.unwrap(), kms.unwrap());

    // the proxy: HTTPS with the flag's certificate, mTLS from the flag's CA,
    // and an https upstream trusted by --upstream-ca under the flag's name
    let ca = certs.ca_cert_pem.as_str();
    let cfg = client_config(
        &[ca],
        Some((&certs.client_cert_pem, &certs.client_key_pem)),
        &[],
    );
    let tls = bounded(connect_tls(proxy, cfg)).await.unwrap();
    assert_eq!(
        peer_leaf(&tls),
        pem_certs(&certs.server_cert_pem)[0].to_vec()
    );
    let mut s = h1(tls).await;
    let (status, _, body) = bounded(send_h1(&mut s, "/users")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_eq!(seen[0].sni.as_deref(), Some("api.internal.test"));
    assert_sealed_round_trip(&body, &seen[0]);
    // --tls-client-ca: no client certificate, no answer
    let refused = async {
        let tls = connect_tls(proxy, client_config(&[ca], None, &[])).await?;
        let mut s = h1(tls).await;
        send_h1(&mut s, "/users")
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    assert!(bounded(refused).await.is_err());

    // the KMS listener: its own certificate, no client certificate needed
    let tls = bounded(connect_tls(
        kms,
        client_config(&[&kms_certs.ca_cert_pem], None, &[]),
    ))
    .await
    .unwrap();
    assert_eq!(
        peer_leaf(&tls),
        pem_certs(&kms_certs.server_cert_pem)[0].to_vec()
    );
}

#[test]
fn serve_refuses_a_certificate_flag_without_its_key_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["serve", "--upstream", "http://127.0.0.1:9"])
        .args(["--tls-cert", "/nonexistent/server.pem"])
        .env_remove("SEALGATE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
}

// ---- what `sealgate serve` logs about TLS (the real binary) ----

/// `sealgate serve` with `args` (JSON logs at info, data in `dir`): the
/// process, its log lines as they come, and the "listening" line.
fn serve_binary(
    dir: &Path,
    args: &[&std::ffi::OsStr],
) -> (Binary, std::sync::mpsc::Receiver<Value>, Value) {
    use std::io::BufRead;
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.toml"), POLICY).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--log-format", "json", "--log-level", "info"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let bin = Binary(child);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let mut seen = Vec::new();
    let listening = next_log(&rx, &mut seen, |m| m == "sealgate proxy listening");
    (bin, rx, listening)
}

/// The next log line whose message satisfies `want`; every line read on
/// the way is kept in `seen`.
fn next_log(
    rx: &std::sync::mpsc::Receiver<Value>,
    seen: &mut Vec<Value>,
    want: impl Fn(&str) -> bool,
) -> Value {
    loop {
        let v = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no such log line ({e}); seen: {seen:#?}"));
        seen.push(v.clone());
        if want(v["fields"]["message"].as_str().unwrap_or_default()) {
            return v;
        }
    }
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_logs_why_upstream_tls_failed_and_plain_http_on_a_tls_port_once() {
    let (certs_dir, certs) = dev_certs(&[]);
    let (up_dir, _) = dev_certs(&["api.internal.test"]);
    let (other_dir, _) = dev_certs(&[]);
    let up = upstream(Some(upstream_tls(up_dir.path(), &[]))).await;
    let url = format!("--upstream=https://{}", up.addr);

    // 1. an upstream certificate from a CA sealgate does not trust, a TLS listener
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = (certs_dir.path(), other_dir.path());
    let (tls_cert, tls_key, other_ca) = (
        c.join("server.pem"),
        c.join("server-key.pem"),
        o.join("ca.pem"),
    );
    let (_bin, logs, listening) = serve_binary(
        dir.path(),
        &[
            url.as_ref(),
            "--tls-cert".as_ref(),
            tls_cert.as_os_str(),
            "--tls-key".as_ref(),
            tls_key.as_os_str(),
            "--upstream-ca".as_ref(),
            other_ca.as_os_str(),
            "--upstream-server-name".as_ref(),
            "api.internal.test".as_ref(),
        ],
    );
    // the start line says what was loaded and which modes are on
    let f = &listening["fields"];
    assert_eq!(f["routes"], 1, "{listening}");
    assert_eq!(f["policy_files"], 1, "{listening}");
    for mode in [
        "shadow",
        "audit",
        "capture",
        "kms_listener",
        "admin_listener",
    ] {
        assert_eq!(f[mode], "off", "{mode}: {listening}");
    }
    let proxy: SocketAddr = f["listen"].as_str().unwrap().parse().unwrap();

    // plain HTTP to the TLS port, twice: no answer, one log line
    for _ in 0..2 {
        let tcp = bounded(TcpStream::connect(proxy)).await.unwrap();
        let mut plain = h1(tcp).await;
        assert!(bounded(send_h1(&mut plain, "/users")).await.is_err());
    }
    let tls = bounded(connect_tls(
        proxy,
        client_config(&[&certs.ca_cert_pem], None, &[]),
    ))
    .await
    .unwrap();
    let (status, _, body) = bounded(send_h1(&mut h1(tls).await, "/users"))
        .await
        .unwrap();
    assert_eq!(status, 502, "{body}");
    let mut seen = Vec::new();
    let failed = next_log(&logs, &mut seen, |m| {
        m.starts_with("upstream TLS handshake failed")
    });
    assert!(message(&failed).contains("unknown CA"), "{failed}");
    assert!(message(&failed).contains("--upstream-ca"), "{failed}");
    assert!(
        failed["fields"]["tls_error"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{failed}"
    );
    let plain: Vec<&Value> = seen
        .iter()
        .filter(|v| message(v).contains("plain HTTP"))
        .collect();
    assert_eq!(plain.len(), 1, "{seen:#?}");
    assert!(
        message(plain[0]).contains("https://"),
        "says what to do: {:?}",
        plain[0]
    );
    assert_eq!(plain[0]["level"], "WARN");

    // 2. the right CA, but the certificate does not name the URL's host
    let dir = tempfile::tempdir().unwrap();
    let up_ca = up_dir.path().join("ca.pem");
    let (_bin, logs, listening) = serve_binary(
        dir.path(),
        &[url.as_ref(), "--upstream-ca".as_ref(), up_ca.as_os_str()],
    );
    let proxy: SocketAddr = listening["fields"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = plain_post(proxy).await;
    assert_eq!(status, 502, "{body}");
    let failed = next_log(&logs, &mut Vec::new(), |m| {
        m.starts_with("upstream TLS handshake failed")
    });
    let m = message(&failed);
    assert!(
        m.contains("wrong name") && m.contains("server_name"),
        "{failed}"
    );
    assert!(
        m.contains("api.internal.test"),
        "names what it got: {failed}"
    );
    assert_eq!(
        up.requests().len(),
        0,
        "nothing reached an untrusted upstream"
    );
}

// ---- dev-cert: every CA its own name, issued certificates name theirs by key ----

/// One DER element at the start of `b`: tag, content, the rest.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        let len = b
            .get(..n)?
            .iter()
            .fold(0, |a, &x| (a << 8) | usize::from(x));
        (len, &b[n..])
    };
    Some((tag, b.get(..len)?, &b[len..]))
}

/// The elements right after each occurrence of the encoded OID `oid`.
fn after_oid<'a>(der: &'a [u8], oid: &[u8]) -> Vec<&'a [u8]> {
    let mut needle = vec![0x06, oid.len() as u8];
    needle.extend_from_slice(oid);
    der.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(i, _)| &der[i + needle.len()..])
        .collect()
}

/// The common names in a certificate, issuer's first, then subject's.
fn common_names(der: &[u8]) -> Vec<String> {
    after_oid(der, &[0x55, 0x04, 0x03])
        .into_iter()
        .filter_map(|b| der_tlv(b).map(|(_, v, _)| String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// An extension's value (the OCTET STRING's content), skipping `critical`.
fn extension<'a>(der: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let mut rest = *after_oid(der, oid).first()?;
    loop {
        let (tag, value, next) = der_tlv(rest)?;
        match tag {
            0x01 => rest = next,
            0x04 => return Some(value),
            _ => return None,
        }
    }
}

/// The subject key identifier.
fn ski(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, id, _) = der_tlv(extension(der, &[0x55, 0x1d, 0x0e])?)?;
    (tag == 0x04).then(|| id.to_vec())
}

/// The authority key identifier's keyIdentifier.
fn aki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, seq, _) = der_tlv(extension(der, &[0x55, 0x1d, 0x23])?)?;
    let (tag, id, _) = der_tlv(seq)?;
    (tag == 0x80).then(|| id.to_vec())
}

#[test]
fn dev_cert_runs_make_distinct_cas_and_clients_trusting_both_verify_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    for out in [&old, &new] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .arg("dev-cert")
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
    }
    let cert = |dir: &Path, file: &str| {
        pem_certs(&std::fs::read_to_string(dir.join(file)).unwrap()).remove(0)
    };
    let (ca_old, ca_new) = (cert(&old, "ca.pem"), cert(&new, "ca.pem"));
    let (name_old, name_new) = (&common_names(&ca_old)[1], &common_names(&ca_new)[1]);
    assert!(name_old.starts_with("sealgate dev CA "), "{name_old}");
    assert_ne!(name_old, name_new, "two runs, one CA name");
    for (dir, ca) in [(&old, &ca_old), (&new, &ca_new)] {
        let ca_ski = ski(ca).expect("the CA has a subject key identifier");
        for file in ["server.pem", "client.pem"] {
            let leaf = cert(dir, file);
            assert_eq!(
                aki(&leaf),
                Some(ca_ski.clone()),
                "{file}: AKI is its CA's SKI"
            );
            assert_eq!(
                common_names(&leaf)[0],
                common_names(ca)[1],
                "{file}: issuer"
            );
            assert!(ski(&leaf).is_some(), "{file} has its own SKI");
        }
    }
    assert_ne!(ski(&ca_old), ski(&ca_new));

    // a rustls client that trusts both CAs verifies the leaves of both
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_old.clone()).unwrap();
    roots.add(ca_new.clone()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let now = rustls::pki_types::UnixTime::now();
    for dir in [&old, &new] {
        verifier
            .verify_server_cert(&cert(dir, "server.pem"), &[], &name, &[], now)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }

    // and so does OpenSSL (where it is installed), which looks the issuer
    // up by name: with one shared name it took the first CA and failed
    let both = tmp.path().join("both.pem");
    let ca_text = |dir: &Path| std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    std::fs::write(&both, ca_text(&old) + &ca_text(&new)).unwrap();
    for dir in [&old, &new] {
        match std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&both)
            .arg(dir.join("server.pem"))
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "openssl verify {}: {}{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("openssl not run ({e}); rustls checked above"),
        }
    }
}
