//! The request path's view of the keys: an immutable map from secret hash to key, swapped whole
//! (`ArcSwap`) when the keys change. A lookup is one SHA-256, one probe and a constant-time
//! comparison; it takes no lock and allocates nothing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::{KeyError, VirtualKey};

/// The SHA-256 of a secret. Equality is constant-time; hashing uses the first 8 bytes (the
/// digest is uniform already, and only our own hashes are ever inserted).
#[derive(Clone, Copy)]
pub(crate) struct KeyHash(pub(crate) [u8; 32]);

impl KeyHash {
    pub fn of(secret: &str) -> KeyHash {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyHash(out))
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &KeyHash) -> bool {
        let mut diff = 0u8;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            diff |= a ^ b;
        }
        // Keep the optimiser from turning the fold into an early-exit comparison.
        std::hint::black_box(diff) == 0
    }
}

impl Eq for KeyHash {}

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(prefix));
    }
}

/// Passes `KeyHash`'s 8-byte prefix through.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    /// Not used by `KeyHash`; FNV-1a so that any other input still hashes.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub(crate) struct Entry {
    pub key: Arc<VirtualKey>,
    /// A rotated-out secret: works until then.
    pub valid_until_ms: Option<i64>,
}

/// One immutable generation of the keys.
#[derive(Default)]
pub(crate) struct RingMap {
    pub by_hash: HashMap<KeyHash, Entry, BuildHasherDefault<PrefixHasher>>,
    /// Distinct keys (a key in its rotation grace has two hashes).
    pub keys: usize,
}

/// The keys as the request path sees them. One `KeyRing` lives as long as its `KeyStore`; its
/// contents are swapped underneath, so holding an `Arc<KeyRing>` never goes stale.
pub struct KeyRing {
    map: ArcSwap<RingMap>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("keys", &self.len()).finish()
    }
}

impl KeyRing {
    pub(crate) fn new() -> KeyRing {
        KeyRing {
            map: ArcSwap::from_pointee(RingMap::default()),
        }
    }

    pub(crate) fn swap(&self, map: RingMap) {
        self.map.store(Arc::new(map));
    }

    /// Finds the key a presented secret belongs to, as of `now_ms` (Unix milliseconds).
    pub fn lookup(&self, presented: &str, now_ms: i64) -> Result<Arc<VirtualKey>, KeyError> {
        let hash = KeyHash::of(presented);
        let map = self.map.load();
        let entry = map.by_hash.get(&hash).ok_or(KeyError::Unknown)?;
        let key = &entry.key;
        if key.revoked {
            return Err(KeyError::Revoked);
        }
        if entry.valid_until_ms.is_some_and(|until| now_ms >= until) {
            // The secret was rotated out and its grace is over.
            return Err(KeyError::Revoked);
        }
        if key.expires_ms.is_some_and(|exp| now_ms >= exp) {
            return Err(KeyError::Expired);
        }
        Ok(key.clone())
    }

    /// How many keys (config and store, revoked ones included).
    pub fn len(&self) -> usize {
        self.map.load().keys
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
