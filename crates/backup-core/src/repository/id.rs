//! 32-byte object ids (blob, pack, snapshot ids), shown as 64 lowercase hex digits.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// A 32-byte id: keyed BLAKE3 of a blob's plaintext, or BLAKE3 of a stored object's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Parses 64 hex digits.
    pub fn parse(s: &str) -> Result<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidInput(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Id(out))
    }
    /// The full hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 8 hex digits, as shown in tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
    /// BLAKE3 (unkeyed) of `data`: the name of a stored object.
    pub fn of_bytes(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }
    /// Keyed BLAKE3 of `data`: the name of a blob.
    pub fn keyed(key: &[u8; 32], data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(key, data).as_bytes())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hasher for maps keyed by [`Id`]: ids are already uniform random, so the first 8 bytes are
/// a perfect hash. (Not DoS-resistant by design: an id is a keyed hash the attacker cannot steer.)
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Id` hashes its array as one write of 32 bytes (after a length prefix for slices; arrays
        // have none). Fold whatever comes in so the hasher stays correct for any input.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// `HashMap` of ids with [`IdHasher`].
pub type IdMap<V> = std::collections::HashMap<Id, V, BuildHasherDefault<IdHasher>>;
/// `HashSet` of ids with [`IdHasher`].
pub type IdSet = std::collections::HashSet<Id, BuildHasherDefault<IdHasher>>;
