//! The Alibaba KMS instance API (`dkms-gcs-0.2`) end to end, as a user runs
//! it: the real `sealgate` binary serving its KMS listener over TLS with a
//! `sealgate dev-cert` certificate, keys and a client key made with the
//! binary's own commands (through the running server's admin socket), and
//! the official `alibabacloud-dkms-gcs` Python SDK (pinned, installed by
//! `tests/sdk/setup.sh`) verifying the server certificate against the CA.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{make_client_key, sdk_python};
use serde_json::Value;

const SEALGATE: &str = env!("CARGO_BIN_EXE_sealgate");

/// A running `sealgate serve`, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a sealgate command to success; returns its stdout.
fn sealgate(args: &[&str]) -> String {
    let out = Command::new(SEALGATE)
        .args(args)
        .envs(common::store_env(args))
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .output()
        .expect("run sealgate");
    assert!(
        out.status.success(),
        "sealgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sealgate serve` with the KMS listener on TLS (the certificate of
/// `certs`); returns it with the KMS listener's address.
fn serve(dir: &Path, certs: &Path) -> (Serve, SocketAddr) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let mut child = Command::new(SEALGATE)
        .envs(common::store_url_for(&dir.join("data")).map(|u| ("SEALGATE_STORE_URL", u)))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--kms-listen", "127.0.0.1:0"])
        .args(["--upstream", "http://127.0.0.1:9"])
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--log-format", "json", "--log-level", "info"])
        .arg("--kms-tls-cert")
        .arg(certs.join("server.pem"))
        .arg("--kms-tls-key")
        .arg(certs.join("server-key.pem"))
        .env_remove("RUST_LOG")
        .env_remove("SEALGATE_CONFIG")
        .env_remove("SEALGATE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = Serve(child);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    // drained to the end: a closed pipe would fail the server's logging
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    loop {
        let v = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("sealgate serve did not come up");
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("KMS listening"))
        {
            assert_eq!(v["fields"]["tls"], true, "{v}");
            let addr = v["fields"]["listen"].as_str().unwrap().parse().unwrap();
            return (guard, addr);
        }
    }
}

/// `sealgate keys create --usage USAGE` against the running server.
fn create_key(data: &str, usage: &str) -> String {
    let out = sealgate(&[
        "keys",
        "create",
        "--data-dir",
        data,
        "--usage",
        usage,
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["KeyId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkms_gcs_sdk_drives_every_instance_action_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |p: &str| d.join(p).display().to_string();
    sealgate(&["dev-cert", "--out", &path("certs")]);
    sealgate(&["dev-cert", "--out", &path("other-ca")]);
    let (_server, kms) = serve(d, &d.join("certs"));

    let data = path("data");
    let aes = create_key(&data, "ENCRYPT_DECRYPT");
    let rsa_sign = create_key(&data, "ASYMMETRIC_SIGN_VERIFY_RSA_2048");
    let ec_sign = create_key(&data, "ASYMMETRIC_SIGN_VERIFY_ECC");
    let rsa_decrypt = create_key(&data, "ASYMMETRIC_DECRYPT_RSA_2048");
    let disabled = create_key(&data, "ENCRYPT_DECRYPT");
    sealgate(&["keys", "disable", "--data-dir", &data, &disabled]);
    // a second version: Encrypt must keep sealing under the first
    sealgate(&["keys", "rotate", "--data-dir", &data, &aes]);

    std::fs::create_dir_all(d.join("client")).unwrap();
    let id = "KAAP.sealgate-instance-0001";
    let password = "instance-password";
    let (key_file, pub_pem) = make_client_key(&d.join("client"), id, password);
    let added = sealgate(&[
        "credentials",
        "add-client-key",
        "--data-dir",
        &data,
        "--id",
        id,
        "--public-key",
        &pub_pem.display().to_string(),
    ]);
    assert!(added.contains(id), "{added}");

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/alibaba_instance_flow.py");
    let args: Vec<String> = vec![
        kms.to_string(),
        key_file.display().to_string(),
        password.into(),
        aes,
        "--ca".into(),
        path("certs/ca.pem"),
        "--wrong-ca".into(),
        path("other-ca/ca.pem"),
        "--rsa-sign-key".into(),
        rsa_sign,
        "--ec-sign-key".into(),
        ec_sign,
        "--rsa-encrypt-key".into(),
        rsa_decrypt,
        "--disabled-key".into(),
        disabled,
        "--rotated".into(),
    ];
    let python = sdk_python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(&args)
            .output()
            .expect("run the SDK flow")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "alibaba_instance_flow.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name:?} in:\n{stdout}"))
    };
    for name in [
        "wrong CA refused",
        "AdvanceEncrypt AES_GCM ",
        "AdvanceDecrypt(data key)",
        "Encrypt AES_GCM",
        "Decrypt AES_GCM",
        "Encrypt AES_GCM no Aad",
        "Decrypt AES_GCM no Aad",
        "AdvanceDecrypt(Encrypt ciphertext)",
        "Encrypt uses the initial version",
        "Encrypt AES_CBC PKCS7_PADDING",
        "Decrypt AES_ECB NO_PADDING",
        "GenerateDataKey",
        "Decrypt(data key)",
        "GenerateDataKey(16 bytes)",
        "GenerateRandom",
        "GenerateDataKeyPair RSA_2048 PEM",
        "GenerateDataKeyPairWithoutPlaintext EC_P256 DER",
        "AdvanceGenerateDataKeyPair EC_P256 PEM",
        "AdvanceGenerateDataKeyPairWithoutPlaintext RSA_2048 DER",
        "GetPublicKey(RSA_2048)",
        "Sign RSA_PSS_SHA_256 RAW (checked by cryptography)",
        "Verify RSA_PSS_SHA_256 RAW",
        "Verify tampered RSA_PSS_SHA_256 RAW",
        "Sign RSA_PKCS1_SHA_256 DIGEST (checked by cryptography)",
        "Verify tampered RSA_PKCS1_SHA_256 DIGEST",
        "GetPublicKey(EC_P256)",
        "Sign ECDSA_SHA_256 RAW (checked by cryptography)",
        "Verify ECDSA_SHA_256 DIGEST",
        "Verify tampered ECDSA_SHA_256 DIGEST",
        "Encrypt RSAES_OAEP_SHA_256",
        "Decrypt RSAES_OAEP_SHA_256",
        "Decrypt(encrypted by cryptography)",
        "done",
    ] {
        assert_eq!(step(name)["ok"], true, "{name}");
    }
    // refusals: the documented code and HTTP status of each
    for (name, code, status) in [
        ("Decrypt tampered Aad refused", "InvalidCiphertext", 400),
        ("Decrypt without its Aad refused", "InvalidCiphertext", 400),
        (
            "GenerateDataKey 1025 bytes refused",
            "InvalidParameter",
            400,
        ),
        ("GenerateRandom 1025 refused", "InvalidParameter", 400),
        (
            "GenerateRandom without Length refused",
            "MissingParameter",
            400,
        ),
        (
            "Sign with the wrong Algorithm refused",
            "InvalidParameter",
            400,
        ),
        ("Sign DIGEST of 31 bytes refused", "InvalidParameter", 400),
        (
            "Sign with an ENCRYPT/DECRYPT key refused",
            "UnsupportedOperation",
            400,
        ),
        (
            "Encrypt with a SIGN/VERIFY key refused",
            "UnsupportedOperation",
            400,
        ),
        (
            "GenerateDataKey with an asymmetric key refused",
            "Forbidden.OnlySymmetricKeySupported",
            404,
        ),
        (
            "Sign with a symmetric key refused",
            "UnsupportedOperation",
            400,
        ),
        (
            "GetPublicKey of a symmetric key refused",
            "UnsupportedOperation",
            400,
        ),
        (
            "Encrypt with an unknown key refused",
            "Forbidden.KeyNotFound",
            404,
        ),
        (
            "Encrypt with a disabled key refused",
            "Rejected.Disabled",
            409,
        ),
        (
            "GenerateDataKey with a disabled key refused",
            "Rejected.Disabled",
            409,
        ),
        ("unknown client key refused", "Unauthorized", 404),
    ] {
        let s = step(name);
        assert_eq!(
            (s["code"].as_str(), s["status"].as_u64()),
            (Some(code), Some(status)),
            "{s}"
        );
    }
}
