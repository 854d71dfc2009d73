//! The per-boot secret shared by the supervisor and its workers.
//!
//! The supervisor generates one [`BootSecret`] per boot and hands it to each
//! worker in the first control-channel frame (never on a command line, in the
//! environment or in a file). Data-channel clients prove they know it by
//! answering the server's nonce with an HMAC ([`BootSecret::proof`]); the
//! secret itself never crosses a data channel and is never printed.

use hmac::{Hmac, Mac, digest::KeyInit};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{error::IpcError, protocol::Role};

/// Domain-separation prefix of handshake proofs; bump the suffix when the
/// proof construction changes.
const PROOF_DOMAIN: &[u8] = b"revaer-ipc-handshake-v1";

/// SHA-256 block size: HMAC keys shorter than this are zero-padded to it.
const HMAC_KEY_BLOCK: usize = 64;

/// 256 random bits, fresh each boot. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSecret([u8; 32]);

impl std::fmt::Debug for BootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootSecret(***)")
    }
}

impl BootSecret {
    /// Draws a new secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, IpcError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| IpcError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
        Ok(Self(bytes))
    }

    /// A secret with known bytes (tests, fixtures).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, nonce: &[u8; 32], client_role: Role) -> Hmac<Sha256> {
        // HMAC zero-pads keys shorter than the block size, so padding the
        // 32-byte secret to 64 bytes ourselves gives the identical MAC and
        // lets us use the infallible fixed-size constructor.
        let mut key = [0u8; HMAC_KEY_BLOCK];
        key[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&key.into());
        mac.update(PROOF_DOMAIN);
        mac.update(nonce);
        mac.update(client_role.as_str().as_bytes());
        mac
    }

    /// `HMAC-SHA256(secret, "revaer-ipc-handshake-v1" || nonce || role name)`.
    #[must_use]
    pub fn proof(&self, nonce: &[u8; 32], client_role: Role) -> [u8; 32] {
        self.mac(nonce, client_role).finalize().into_bytes().into()
    }

    /// Checks a proof in constant time.
    #[must_use]
    pub fn verify(&self, nonce: &[u8; 32], client_role: Role, proof: &[u8; 32]) -> bool {
        self.mac(nonce, client_role).verify_slice(proof).is_ok()
    }
}

/// A fresh random nonce for one handshake.
pub(crate) fn random_nonce() -> Result<[u8; 32], IpcError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| IpcError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let s = BootSecret::from_bytes([0xab; 32]);
        assert_eq!(format!("{s:?}"), "BootSecret(***)");
        assert_eq!(format!("{s:#?}"), "BootSecret(***)");
    }

    #[test]
    fn generate_gives_distinct_secrets() {
        let a = BootSecret::generate().unwrap();
        let b = BootSecret::generate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn proof_matches_plain_hmac_with_a_32_byte_key() {
        let key = [7u8; 32];
        let nonce = [9u8; 32];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(b"revaer-ipc-handshake-v1");
        mac.update(&nonce);
        mac.update(b"api");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(
            BootSecret::from_bytes(key).proof(&nonce, Role::Api),
            expected
        );
    }

    #[test]
    fn verify_binds_secret_nonce_and_role() {
        let s = BootSecret::from_bytes([1; 32]);
        let nonce = [2; 32];
        let proof = s.proof(&nonce, Role::Api);
        assert!(s.verify(&nonce, Role::Api, &proof));
        assert!(!s.verify(&nonce, Role::Engine, &proof));
        assert!(!s.verify(&[3; 32], Role::Api, &proof));
        assert!(!BootSecret::from_bytes([4; 32]).verify(&nonce, Role::Api, &proof));
        let mut flipped = proof;
        flipped[31] ^= 1;
        assert!(!s.verify(&nonce, Role::Api, &flipped));
    }
}
