//! Asymmetric CMK material: RSA (2048, 3072, 4096) and ECDSA (P-256,
//! P-384) private keys, held as PKCS#8 DER sealed under the root key like
//! symmetric material. Key generation, public keys, signing, verification
//! and RSA decryption, all through aws-lc-rs (constant-time RSA; already
//! rustls's crypto provider — not the `rsa` crate, RUSTSEC-2023-0071).
//!
//! SM2 has no home in aws-lc-rs (nor in another well-kept Rust crate), so
//! the SM2 usages stay unsupported.
//!
//! PURE apart from the OS RNG aws-lc-rs draws on: no store, no I/O.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey, PrivateDecryptingKey,
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::provider::KeyError;
use crate::secret::SecretBytes;

/// What kind of private key an asymmetric CMK holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsymmetricSpec {
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-256 (secp256r1).
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcP384,
}

/// A signature scheme (hash + padding or curve).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PSS, SHA-256, MGF1 SHA-256, salt 32.
    RsaPssSha256,
    /// RSASSA-PSS, SHA-384.
    RsaPssSha384,
    /// RSASSA-PSS, SHA-512.
    RsaPssSha512,
    /// RSASSA-PKCS1-v1_5, SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5, SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5, SHA-512.
    RsaPkcs1Sha512,
    /// ECDSA P-256 with SHA-256, DER (ASN.1) signature.
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, DER (ASN.1) signature.
    EcdsaP384Sha384,
}

/// RSA decryption padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaPadding {
    /// RSAES-PKCS1-v1_5.
    Pkcs1V15,
    /// RSAES-OAEP, SHA-1 and MGF1 SHA-1.
    OaepSha1,
    /// RSAES-OAEP, SHA-256 and MGF1 SHA-256.
    OaepSha256,
}

/// What is signed: the message itself, or its digest under the
/// algorithm's hash (the caller hashed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInput<'a> {
    /// The message; hashed here.
    Raw(&'a [u8]),
    /// The message's digest; its length must be the hash's output length.
    Digest(&'a [u8]),
}

impl AsymmetricSpec {
    /// True for the RSA specs.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            AsymmetricSpec::Rsa2048 | AsymmetricSpec::Rsa3072 | AsymmetricSpec::Rsa4096
        )
    }

    /// The signing algorithms a key of this spec can use.
    pub fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        use SigningAlgorithm::*;
        match self {
            AsymmetricSpec::Rsa2048 | AsymmetricSpec::Rsa3072 | AsymmetricSpec::Rsa4096 => &[
                RsaPssSha256,
                RsaPssSha384,
                RsaPssSha512,
                RsaPkcs1Sha256,
                RsaPkcs1Sha384,
                RsaPkcs1Sha512,
            ],
            AsymmetricSpec::EcP256 => &[EcdsaP256Sha256],
            AsymmetricSpec::EcP384 => &[EcdsaP384Sha384],
        }
    }

    /// A fresh private key of this spec, as PKCS#8 DER.
    pub fn generate_pkcs8(self) -> Result<SecretBytes, KeyError> {
        let failed = |_| KeyError::Store("asymmetric key generation failed".into());
        match self.rsa_size() {
            Some(size) => {
                let pair = RsaKeyPair::generate(size).map_err(failed)?;
                let der = pair.as_der().map_err(failed)?;
                Ok(SecretBytes::new(der.as_ref().to_vec()))
            }
            None => {
                let doc = EcdsaKeyPair::generate_pkcs8(self.ecdsa_signing(), &SystemRandom::new())
                    .map_err(failed)?;
                Ok(SecretBytes::new(doc.as_ref().to_vec()))
            }
        }
    }

    fn rsa_size(self) -> Option<KeySize> {
        match self {
            AsymmetricSpec::Rsa2048 => Some(KeySize::Rsa2048),
            AsymmetricSpec::Rsa3072 => Some(KeySize::Rsa3072),
            AsymmetricSpec::Rsa4096 => Some(KeySize::Rsa4096),
            AsymmetricSpec::EcP256 | AsymmetricSpec::EcP384 => None,
        }
    }

    fn ecdsa_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            AsymmetricSpec::EcP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        }
    }

    fn modulus_bits(self) -> usize {
        match self {
            AsymmetricSpec::Rsa2048 => 2048,
            AsymmetricSpec::Rsa3072 => 3072,
            AsymmetricSpec::Rsa4096 => 4096,
            AsymmetricSpec::EcP256 => 256,
            AsymmetricSpec::EcP384 => 384,
        }
    }
}

impl SigningAlgorithm {
    /// The hash the scheme signs with.
    pub fn digest_algorithm(self) -> &'static digest::Algorithm {
        use SigningAlgorithm::*;
        match self {
            RsaPssSha256 | RsaPkcs1Sha256 | EcdsaP256Sha256 => &digest::SHA256,
            RsaPssSha384 | RsaPkcs1Sha384 | EcdsaP384Sha384 => &digest::SHA384,
            RsaPssSha512 | RsaPkcs1Sha512 => &digest::SHA512,
        }
    }

    /// Length in bytes of a digest this scheme signs.
    pub fn digest_len(self) -> usize {
        self.digest_algorithm().output_len
    }

    fn rsa_encoding(self) -> Option<&'static signature::RsaSignatureEncoding> {
        use SigningAlgorithm::*;
        Some(match self {
            RsaPssSha256 => &signature::RSA_PSS_SHA256,
            RsaPssSha384 => &signature::RSA_PSS_SHA384,
            RsaPssSha512 => &signature::RSA_PSS_SHA512,
            RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
            RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
            RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
            EcdsaP256Sha256 | EcdsaP384Sha384 => return None,
        })
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        use SigningAlgorithm::*;
        match self {
            RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
            RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
            RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            RsaPkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
        }
    }
}

fn digest_of(alg: SigningAlgorithm, input: SignInput<'_>) -> Result<Digest, KeyError> {
    match input {
        SignInput::Raw(m) => Ok(digest::digest(alg.digest_algorithm(), m)),
        SignInput::Digest(d) => Digest::import_less_safe(d, alg.digest_algorithm()).map_err(|_| {
            KeyError::InvalidParameter(format!(
                "the digest must be {} bytes for this algorithm",
                alg.digest_len()
            ))
        }),
    }
}

/// One asymmetric CMK version's private key (PKCS#8 DER, zeroized on drop).
pub struct PrivateKey {
    spec: AsymmetricSpec,
    pkcs8: SecretBytes,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.spec)
    }
}

fn bad_material(_: impl std::fmt::Debug) -> KeyError {
    KeyError::Store("asymmetric key material does not parse".into())
}

impl PrivateKey {
    /// Wraps PKCS#8 DER of a key of `spec`, checking that it parses as one.
    pub fn from_pkcs8(spec: AsymmetricSpec, pkcs8: SecretBytes) -> Result<Self, KeyError> {
        let key = PrivateKey { spec, pkcs8 };
        if spec.is_rsa() {
            let pair = key.rsa()?;
            if pair.public_modulus_len() * 8 != spec.modulus_bits() {
                return Err(bad_material("modulus size"));
            }
        } else {
            key.ecdsa()?;
        }
        Ok(key)
    }

    /// The key's spec.
    pub fn spec(&self) -> AsymmetricSpec {
        self.spec
    }

    fn rsa(&self) -> Result<RsaKeyPair, KeyError> {
        RsaKeyPair::from_pkcs8(self.pkcs8.expose()).map_err(bad_material)
    }

    fn ecdsa(&self) -> Result<EcdsaKeyPair, KeyError> {
        EcdsaKeyPair::from_pkcs8(self.spec.ecdsa_signing(), self.pkcs8.expose())
            .map_err(bad_material)
    }

    /// The public key as DER SubjectPublicKeyInfo (X.509).
    pub fn public_key_der(&self) -> Result<Vec<u8>, KeyError> {
        let der = if self.spec.is_rsa() {
            self.rsa()?
                .public_key()
                .as_der()
                .map_err(bad_material)?
                .as_ref()
                .to_vec()
        } else {
            self.ecdsa()?
                .public_key()
                .as_der()
                .map_err(bad_material)?
                .as_ref()
                .to_vec()
        };
        Ok(der)
    }

    /// Signs `input` with `alg`, which must be one of the spec's algorithms.
    /// ECDSA signatures are DER (ASN.1) encoded.
    pub fn sign(&self, alg: SigningAlgorithm, input: SignInput<'_>) -> Result<Vec<u8>, KeyError> {
        if !self.spec.signing_algorithms().contains(&alg) {
            return Err(KeyError::UsageMismatch);
        }
        let digest = digest_of(alg, input)?;
        let failed = |_| KeyError::Store("signing failed".into());
        match alg.rsa_encoding() {
            Some(encoding) => {
                let pair = self.rsa()?;
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign_digest(encoding, &digest, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            None => Ok(self
                .ecdsa()?
                .sign_digest(&digest)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
        }
    }

    /// Verifies a signature made by this key (against its public key).
    pub fn verify(
        &self,
        alg: SigningAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
    ) -> Result<bool, KeyError> {
        if !self.spec.signing_algorithms().contains(&alg) {
            return Err(KeyError::UsageMismatch);
        }
        verify(&self.public_key_der()?, alg, input, signature)
    }

    /// Decrypts an RSA ciphertext made with the public key. `DoesNotOpen`
    /// when it does not decrypt (wrong key, padding or length).
    pub fn decrypt(&self, padding: RsaPadding, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
        if !self.spec.is_rsa() {
            return Err(KeyError::UsageMismatch);
        }
        let key = PrivateDecryptingKey::from_pkcs8(self.pkcs8.expose()).map_err(bad_material)?;
        let mut out = vec![0u8; key.key_size_bytes()];
        let n = match padding {
            RsaPadding::Pkcs1V15 => Pkcs1PrivateDecryptingKey::new(key)
                .map_err(bad_material)?
                .decrypt(ciphertext, &mut out)
                .map_err(|_| KeyError::DoesNotOpen)?
                .len(),
            RsaPadding::OaepSha1 | RsaPadding::OaepSha256 => {
                let alg = if padding == RsaPadding::OaepSha1 {
                    &OAEP_SHA1_MGF1SHA1
                } else {
                    &OAEP_SHA256_MGF1SHA256
                };
                OaepPrivateDecryptingKey::new(key)
                    .map_err(bad_material)?
                    .decrypt(alg, ciphertext, &mut out, None)
                    .map_err(|_| KeyError::DoesNotOpen)?
                    .len()
            }
        };
        out.truncate(n);
        Ok(SecretBytes::new(out))
    }
}

/// Verifies `signature` over `input` with a DER SubjectPublicKeyInfo public
/// key. `Ok(false)` for a signature that does not verify; `Err` only for a
/// digest of the wrong length.
pub fn verify(
    public_key_der: &[u8],
    alg: SigningAlgorithm,
    input: SignInput<'_>,
    signature: &[u8],
) -> Result<bool, KeyError> {
    let digest = digest_of(alg, input)?;
    let key = signature::UnparsedPublicKey::new(alg.verification(), public_key_der);
    Ok(key.verify_digest(&digest, signature).is_ok())
}

/// PEM text (`-----BEGIN PUBLIC KEY-----`, 64-character lines) of a DER
/// SubjectPublicKeyInfo.
pub fn public_key_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey, PublicEncryptingKey};

    fn key(spec: AsymmetricSpec) -> PrivateKey {
        PrivateKey::from_pkcs8(spec, spec.generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn every_spec_signs_and_verifies_with_each_of_its_algorithms() {
        for spec in [
            AsymmetricSpec::Rsa2048,
            AsymmetricSpec::EcP256,
            AsymmetricSpec::EcP384,
        ] {
            let k = key(spec);
            let der = k.public_key_der().unwrap();
            for &alg in spec.signing_algorithms() {
                let sig = k.sign(alg, SignInput::Raw(b"hello")).unwrap();
                assert!(verify(&der, alg, SignInput::Raw(b"hello"), &sig).unwrap());
                assert!(!verify(&der, alg, SignInput::Raw(b"hellO"), &sig).unwrap());
                // the digest form signs the same thing
                let d = digest::digest(alg.digest_algorithm(), b"hello");
                assert!(verify(&der, alg, SignInput::Digest(d.as_ref()), &sig).unwrap());
                let sig2 = k.sign(alg, SignInput::Digest(d.as_ref())).unwrap();
                assert!(k.verify(alg, SignInput::Raw(b"hello"), &sig2).unwrap());
                let mut bad = sig.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(!verify(&der, alg, SignInput::Raw(b"hello"), &bad).unwrap());
            }
        }
    }

    #[test]
    fn algorithms_of_another_spec_and_wrong_digest_lengths_are_refused() {
        let ec = key(AsymmetricSpec::EcP256);
        assert!(matches!(
            ec.sign(SigningAlgorithm::RsaPssSha256, SignInput::Raw(b"x")),
            Err(KeyError::UsageMismatch)
        ));
        assert!(matches!(
            ec.sign(
                SigningAlgorithm::EcdsaP256Sha256,
                SignInput::Digest(&[0; 31])
            ),
            Err(KeyError::InvalidParameter(_))
        ));
        assert!(matches!(
            ec.decrypt(RsaPadding::OaepSha256, &[0; 256]),
            Err(KeyError::UsageMismatch)
        ));
    }

    #[test]
    fn rsa_decrypts_each_padding() {
        let k = key(AsymmetricSpec::Rsa2048);
        let public = PublicEncryptingKey::from_der(&k.public_key_der().unwrap()).unwrap();
        let mut ct = vec![0u8; 256];
        let n = Pkcs1PublicEncryptingKey::new(public.clone())
            .unwrap()
            .encrypt(b"secret", &mut ct)
            .unwrap()
            .len();
        let pt = k.decrypt(RsaPadding::Pkcs1V15, &ct[..n]).unwrap();
        assert_eq!(pt.expose(), b"secret");
        for (padding, alg) in [
            (RsaPadding::OaepSha1, &OAEP_SHA1_MGF1SHA1),
            (RsaPadding::OaepSha256, &OAEP_SHA256_MGF1SHA256),
        ] {
            let mut ct = vec![0u8; 256];
            let n = OaepPublicEncryptingKey::new(public.clone())
                .unwrap()
                .encrypt(alg, b"secret", &mut ct, None)
                .unwrap()
                .len();
            assert_eq!(k.decrypt(padding, &ct[..n]).unwrap().expose(), b"secret");
            // the other OAEP hash does not open it
            let other = if padding == RsaPadding::OaepSha1 {
                RsaPadding::OaepSha256
            } else {
                RsaPadding::OaepSha1
            };
            assert!(matches!(
                k.decrypt(other, &ct[..n]),
                Err(KeyError::DoesNotOpen)
            ));
        }
        assert!(matches!(
            k.decrypt(RsaPadding::OaepSha256, b"short"),
            Err(KeyError::DoesNotOpen)
        ));
    }

    #[test]
    fn material_of_the_wrong_spec_is_refused() {
        let rsa = AsymmetricSpec::Rsa2048.generate_pkcs8().unwrap();
        assert!(PrivateKey::from_pkcs8(AsymmetricSpec::Rsa4096, rsa.clone()).is_err());
        assert!(PrivateKey::from_pkcs8(AsymmetricSpec::EcP256, rsa).is_err());
        let ec = AsymmetricSpec::EcP256.generate_pkcs8().unwrap();
        assert!(PrivateKey::from_pkcs8(AsymmetricSpec::EcP384, ec).is_err());
        assert!(
            PrivateKey::from_pkcs8(AsymmetricSpec::EcP256, SecretBytes::new(b"junk".to_vec()))
                .is_err()
        );
    }

    #[test]
    fn pem_wraps_at_64_characters() {
        let pem = public_key_pem(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END PUBLIC KEY-----");
        let body: String = lines[1..lines.len() - 1].concat();
        assert_eq!(B64.decode(body).unwrap(), vec![7u8; 100]);
    }
}
