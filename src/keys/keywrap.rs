//! DEK wrapping under a CMK version's material: AES key wrap (RFC 3394,
//! NIST SP 800-38F KW) with the default IV, 32-byte DEK → 40 bytes.

use aes::cipher::generic_array::GenericArray;
use aes_kw::KekAes256;

use super::provider::KeyError;
use crate::envelope::WrappedDek;
use crate::secret::{CmkMaterial, DataKey};

/// Wraps a DEK under a CMK version's material. (A 32-byte input into a
/// 40-byte buffer is always a valid KW call; the error is never seen.)
pub fn wrap_dek(kek: &CmkMaterial, dek: &DataKey) -> Result<WrappedDek, KeyError> {
    let kek = KekAes256::new(GenericArray::from_slice(kek.expose()));
    let mut out = [0u8; 40];
    kek.wrap(dek.expose(), &mut out)
        .map_err(|_| KeyError::Store("key wrap failed".into()))?;
    Ok(WrappedDek(out))
}

/// Unwraps a DEK; `None` when the integrity check fails (wrong key or
/// tampered bytes).
pub fn unwrap_dek(kek: &CmkMaterial, wrapped: &WrappedDek) -> Option<DataKey> {
    let kek = KekAes256::new(GenericArray::from_slice(kek.expose()));
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    kek.unwrap(&wrapped.0, out.as_mut()).ok()?;
    Some(DataKey::from_bytes(*out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK.
    #[test]
    fn rfc3394_4_6_vector() {
        let kek = CmkMaterial::from_slice(&hex(
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        ))
        .unwrap();
        let data = DataKey::from_slice(&hex(
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        ))
        .unwrap();
        let expected = hex(
            "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
        );
        let wrapped = wrap_dek(&kek, &data).unwrap();
        assert_eq!(wrapped.0.to_vec(), expected);
        let back = unwrap_dek(&kek, &wrapped).unwrap();
        assert_eq!(back.expose(), data.expose());
    }

    #[test]
    fn wrong_kek_or_tampering_does_not_unwrap() {
        let kek = CmkMaterial::from_bytes([1; 32]);
        let dek = DataKey::from_bytes([2; 32]);
        let wrapped = wrap_dek(&kek, &dek).unwrap();
        assert!(unwrap_dek(&CmkMaterial::from_bytes([3; 32]), &wrapped).is_none());
        let mut bad = wrapped;
        bad.0[20] ^= 1;
        assert!(unwrap_dek(&kek, &bad).is_none());
    }
}
