//! Key material newtypes: fixed size, zeroized on drop, redacted in `Debug`,
//! never `Serialize`. A secret and a public value are different types.

use aes_gcm::{Aes256Gcm, KeyInit};
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! secret_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length of this key in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes (the caller zeroizes its own copy).
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Copies from a slice of exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                let arr: [u8; $len] = bytes.try_into().ok()?;
                Some(Self(arr))
            }

            /// Fresh random key from a cryptographic RNG.
            pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
                let mut b = [0u8; $len];
                rng.fill_bytes(&mut b);
                Self(b)
            }

            /// Borrow the raw bytes. Keep the borrow short; never log it.
            pub fn expose(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_bytes!(
    /// The root key: seals CMK material at rest. 32 bytes.
    RootKey,
    32
);
secret_bytes!(
    /// One AES-256 CMK version's material. 32 bytes.
    CmkMaterial,
    32
);
secret_bytes!(
    /// A data encryption key (DEK): seals field values. 32 bytes.
    DataKey,
    32
);

/// Variable-length secret bytes (plaintexts returned by a KMS action,
/// imported key material, credential secrets). Zeroized on drop.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// Borrow the raw bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// An initialised AES-256-GCM cipher for one DEK. The key schedule is done
/// once and kept with the cached DEK (it costs more than sealing a small
/// field). `aes-gcm`'s `zeroize` feature wipes the schedule on drop.
#[derive(Clone)]
pub struct DekCipher(Aes256Gcm);

impl DekCipher {
    /// Runs the key schedule for `key`.
    pub fn new(key: &DataKey) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }
    /// The initialised cipher.
    pub fn cipher(&self) -> &Aes256Gcm {
        &self.0
    }
}

impl std::fmt::Debug for DekCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DekCipher(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = DataKey::from_bytes([0xAB; 32]);
        let s = format!("{k:?}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab,"),
            "{s}"
        );
        assert!(s.contains("redacted"));
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
