//! Keys and authenticated encryption.
//!
//! * The **master key** is 32 random bytes made at `init`. It never leaves the process in the
//!   clear: each key slot (`keys/<id>`) holds it wrapped (AES-256-GCM) by a key-encryption key
//!   derived from a password with Argon2id (RFC 9106).
//! * Sub-keys are derived from the master key with HKDF-SHA256 (RFC 5869), one per purpose:
//!   the data key of each key epoch (AES-256-GCM), the chunk-id key (keyed BLAKE3), the file
//!   digest key, and the FastCDC gear seed (so chunk boundaries do not fingerprint files).
//! * Every encrypted object is an *envelope*:
//!   `[version u8 = 1][key epoch u32 LE][nonce 12 bytes][ciphertext][GCM tag 16 bytes]`.
//!   The caller passes associated data that binds the envelope to its role and name (a blob's
//!   type and id, `snapshot`, `index`, `config`), so a blob moved to another place fails to open.
//!   Nonces are random (96 bits); with at most ~2^32 envelopes per key epoch the collision
//!   probability stays below NIST SP 800-38D's bound.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Envelope format version written today.
const ENVELOPE_VERSION: u8 = 1;
/// Bytes an envelope adds to its plaintext: version, epoch, nonce and tag.
pub const ENVELOPE_OVERHEAD: usize = 1 + 4 + NONCE_LEN + 16;

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    // SystemRandom only fails if the OS has no entropy source at all; nothing can go on then.
    SystemRandom::new()
        .fill(buf)
        .expect("operating system random source failed");
}

/// 32 random bytes as lowercase hex: ids of keys, locks and index files.
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    hex::encode(b)
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_expand(master: &[u8; 32], info: &[u8], out: &mut [u8]) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"data-backup-manager v1").extract(master);
    let infos = [info];
    let okm = prk
        .expand(&infos, Len(out.len()))
        .expect("HKDF output length is small");
    okm.fill(out).expect("HKDF fill of a valid length");
}

/// An AES-256-GCM key with the envelope format above.
pub struct SealKey {
    key: LessSafeKey,
    epoch: u32,
}

impl SealKey {
    /// Builds a sealing key from 32 raw bytes, tagged with `epoch`.
    pub fn new(raw: &[u8; 32], epoch: u32) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, raw).expect("AES-256 key is 32 bytes");
        SealKey {
            key: LessSafeKey::new(unbound),
            epoch,
        }
    }

    /// Encrypts `plain` into a new envelope bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + ENVELOPE_OVERHEAD);
        self.seal_into(aad, plain, &mut out);
        out
    }

    /// Appends an envelope holding `plain` (bound to `aad`) to `out`.
    pub fn seal_into(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .expect("AES-GCM seal of an in-memory buffer");
        out.extend_from_slice(tag.as_ref());
    }

    /// Decrypts an envelope made by [`SealKey::seal`] with the same `aad`.
    ///
    /// Errors: [`Error::Corrupt`] naming `object` when the envelope is truncated, of an unknown
    /// version or epoch, or fails authentication.
    pub fn open(&self, object: &str, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(Error::corrupt(object, "encrypted object is truncated"));
        }
        if envelope[0] != ENVELOPE_VERSION {
            return Err(Error::corrupt(
                object,
                format!("unknown envelope version {}", envelope[0]),
            ));
        }
        let epoch = u32::from_le_bytes(envelope[1..5].try_into().expect("4 bytes"));
        if epoch != self.epoch {
            return Err(Error::corrupt(object, format!("unknown key epoch {epoch}")));
        }
        let nonce: [u8; NONCE_LEN] = envelope[5..5 + NONCE_LEN].try_into().expect("12 bytes");
        let mut buf = envelope[5 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| {
                Error::corrupt(object, "authentication failed (wrong key or damaged data)")
            })?;
        let n = plain.len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// The repository's master key and the sub-keys derived from it.
pub struct MasterKey {
    raw: [u8; 32],
    /// AES-256-GCM key for data, trees, index, snapshots and config (key epoch 0).
    pub data: SealKey,
    /// Key of the keyed BLAKE3 hash that names blobs (chunk ids).
    pub id_key: [u8; 32],
    /// Key of the keyed BLAKE3 whole-file digest stored in each file node.
    pub digest_key: [u8; 32],
    /// Seed of the FastCDC gear table.
    pub chunker_seed: u64,
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Self {
        let mut raw = [0u8; 32];
        random_bytes(&mut raw);
        Self::from_raw(raw)
    }

    /// Rebuilds the key set from the 32 raw bytes of a master key.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let mut data = [0u8; 32];
        hkdf_expand(&raw, b"data key epoch 0", &mut data);
        let mut id_key = [0u8; 32];
        hkdf_expand(&raw, b"chunk id key", &mut id_key);
        let mut digest_key = [0u8; 32];
        hkdf_expand(&raw, b"file digest key", &mut digest_key);
        let mut seed = [0u8; 8];
        hkdf_expand(&raw, b"chunker seed", &mut seed);
        MasterKey {
            raw,
            data: SealKey::new(&data, 0),
            id_key,
            digest_key,
            chunker_seed: u64::from_le_bytes(seed),
        }
    }

    /// The raw bytes, for wrapping into a key slot only.
    pub(crate) fn raw(&self) -> &[u8; 32] {
        &self.raw
    }
}

/// Argon2id cost parameters of one key slot (RFC 9106 §4: memory in KiB, passes, lanes).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended option, about 0.1–0.3 s here.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Derives a 32-byte key-encryption key from `password` and `salt` with Argon2id.
pub fn derive_kek(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32]> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::InvalidInput(format!("invalid Argon2id parameters: {e}")))?;
    let a2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a2.hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::InvalidInput(format!("Argon2id failed: {e}")))?;
    Ok(out)
}

/// Encodes bytes as standard base64.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64, naming `what` on error.
pub fn unb64(what: &str, s: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| Error::corrupt(what, format!("bad base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_aad_binding() {
        let k = MasterKey::generate();
        let env = k.data.seal(b"blob:1", b"hello");
        assert_eq!(env.len(), 5 + ENVELOPE_OVERHEAD);
        assert_eq!(k.data.open("x", b"blob:1", &env).unwrap(), b"hello");
        assert!(k.data.open("x", b"blob:2", &env).is_err());
        let mut bad = env.clone();
        bad[20] ^= 1;
        assert!(k.data.open("x", b"blob:1", &bad).is_err());
    }

    #[test]
    fn subkeys_are_deterministic_and_distinct() {
        let a = MasterKey::from_raw([7; 32]);
        let b = MasterKey::from_raw([7; 32]);
        assert_eq!(a.id_key, b.id_key);
        assert_ne!(a.id_key, a.digest_key);
        assert_eq!(a.chunker_seed, b.chunker_seed);
    }
}
