//! Pack files: many encrypted blobs in one object, sized for object stores.
//!
//! Layout of `data/<2 hex>/<pack id>` (the id is BLAKE3 of the whole object, so any flipped
//! byte is detected by `check --read-data` before any blob is opened):
//!
//! ```text
//! blob envelope 0 | blob envelope 1 | … | header envelope | header length (u32 LE)
//! ```
//!
//! Each blob envelope is sealed with associated data `[type][id]` (see [`blob_aad`]). The header
//! is an envelope (associated data `pack header`) over `n ×` [`HEADER_ENTRY_LEN`]-byte entries:
//! `[type u8][flags u8][id 32][stored length u32 LE][raw length u32 LE]`; offsets are implicit
//! (blobs are contiguous from 0). The header makes a pack self-describing: the index can be
//! rebuilt from packs alone.

use crate::error::{Error, Result};
use crate::repository::crypto::SealKey;
use crate::repository::id::Id;

/// Bytes per header entry.
pub const HEADER_ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Flag bit: the blob's plaintext is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobType {
    /// File content (a chunk).
    Data = 0,
    /// A serialized directory tree.
    Tree = 1,
}

impl BlobType {
    /// Decodes the on-disk byte.
    pub fn from_u8(b: u8) -> Option<BlobType> {
        match b {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

/// Associated data binding a blob envelope to its type and id.
pub fn blob_aad(kind: BlobType, id: &Id) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = kind as u8;
    a[1..].copy_from_slice(&id.0);
    a
}

/// One blob as described by a pack header or an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedBlob {
    /// Blob type.
    pub kind: BlobType,
    /// Blob id (keyed BLAKE3 of the uncompressed plaintext).
    pub id: Id,
    /// Byte offset of the envelope within the pack.
    pub offset: u32,
    /// Envelope length in bytes.
    pub len: u32,
    /// Plaintext length before compression, bytes.
    pub raw_len: u32,
    /// Whether the plaintext is zstd-compressed.
    pub compressed: bool,
}

/// Builds one pack in memory.
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl PackWriter {
    /// An empty pack with room for `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        PackWriter {
            buf: Vec::with_capacity(capacity),
            blobs: Vec::new(),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends a blob: seals `payload` (already compressed if `compressed`) into the pack.
    pub fn add(
        &mut self,
        key: &SealKey,
        kind: BlobType,
        id: Id,
        payload: &[u8],
        raw_len: usize,
        compressed: bool,
    ) {
        let offset = self.buf.len();
        key.seal_into(&blob_aad(kind, &id), payload, &mut self.buf);
        self.blobs.push(PackedBlob {
            kind,
            id,
            offset: offset as u32,
            len: (self.buf.len() - offset) as u32,
            raw_len: raw_len as u32,
            compressed,
        });
    }

    /// Seals the header and returns `(pack id, bytes, blobs)`.
    pub fn finish(mut self, key: &SealKey) -> (Id, Vec<u8>, Vec<PackedBlob>) {
        let mut header = Vec::with_capacity(self.blobs.len() * HEADER_ENTRY_LEN);
        for b in &self.blobs {
            header.push(b.kind as u8);
            header.push(if b.compressed { FLAG_ZSTD } else { 0 });
            header.extend_from_slice(&b.id.0);
            header.extend_from_slice(&b.len.to_le_bytes());
            header.extend_from_slice(&b.raw_len.to_le_bytes());
        }
        let start = self.buf.len();
        key.seal_into(b"pack header", &header, &mut self.buf);
        let hlen = (self.buf.len() - start) as u32;
        self.buf.extend_from_slice(&hlen.to_le_bytes());
        let id = Id::of_bytes(&self.buf);
        (id, self.buf, self.blobs)
    }
}

/// Reads the header of a whole pack (`bytes`) named `name`.
///
/// Errors: [`Error::Corrupt`] when the trailer, header envelope or entries are invalid.
pub fn read_header(key: &SealKey, name: &str, bytes: &[u8]) -> Result<Vec<PackedBlob>> {
    read_header_tail(key, name, bytes, bytes.len() as u64)
}

/// Reads the header from `tail`, the last bytes of a pack of `pack_len` bytes; `tail` must
/// hold at least the header envelope and the 4-byte trailer.
pub fn read_header_tail(
    key: &SealKey,
    name: &str,
    tail: &[u8],
    pack_len: u64,
) -> Result<Vec<PackedBlob>> {
    if tail.len() < 4 || pack_len < tail.len() as u64 {
        return Err(Error::corrupt(name, "pack is shorter than its trailer"));
    }
    let hlen = u32::from_le_bytes(tail[tail.len() - 4..].try_into().expect("4 bytes")) as usize;
    let env_start = tail
        .len()
        .checked_sub(4 + hlen)
        .ok_or_else(|| Error::corrupt(name, "pack header length exceeds the bytes read"))?;
    let hstart = pack_len - 4 - hlen as u64;
    let header = key.open(name, b"pack header", &tail[env_start..tail.len() - 4])?;
    if header.len() % HEADER_ENTRY_LEN != 0 {
        return Err(Error::corrupt(name, "pack header has a partial entry"));
    }
    let mut offset = 0u64;
    let mut out = Vec::with_capacity(header.len() / HEADER_ENTRY_LEN);
    for e in header.chunks_exact(HEADER_ENTRY_LEN) {
        let kind =
            BlobType::from_u8(e[0]).ok_or_else(|| Error::corrupt(name, "unknown blob type"))?;
        let id = Id(e[2..34].try_into().expect("32 bytes"));
        let len = u32::from_le_bytes(e[34..38].try_into().expect("4 bytes"));
        let raw_len = u32::from_le_bytes(e[38..42].try_into().expect("4 bytes"));
        out.push(PackedBlob {
            kind,
            id,
            offset: offset as u32,
            len,
            raw_len,
            compressed: e[1] & FLAG_ZSTD != 0,
        });
        offset += len as u64;
    }
    if offset != hstart {
        return Err(Error::corrupt(
            name,
            "pack header does not describe the pack's contents",
        ));
    }
    Ok(out)
}

/// Decrypts, decompresses and authenticates one blob envelope against its id.
///
/// Errors: [`Error::Corrupt`] naming `object` when decryption, decompression, the length or the
/// keyed hash does not match.
pub fn open_blob(
    key: &SealKey,
    id_key: &[u8; 32],
    object: &str,
    b: &PackedBlob,
    envelope: &[u8],
) -> Result<Vec<u8>> {
    let plain = key.open(object, &blob_aad(b.kind, &b.id), envelope)?;
    let raw = if b.compressed {
        decompress(&plain, b.raw_len as usize)
            .map_err(|e| Error::corrupt(object, format!("blob {}: zstd: {e}", b.id.short())))?
    } else {
        plain
    };
    if raw.len() != b.raw_len as usize || Id::keyed(id_key, &raw) != b.id {
        return Err(Error::corrupt(
            object,
            format!("blob {} does not match its id", b.id.short()),
        ));
    }
    Ok(raw)
}

thread_local! {
    // zstd contexts are expensive to create (≈100 µs, hundreds of KiB): one per thread.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses `raw` with zstd at `level`; returns `None` when that does not make it smaller.
pub fn compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(raw, level, &mut out).then_some(out)
}

/// Compresses `raw` into `out` (cleared first; its allocation is reused). Returns `false`,
/// leaving `out` unspecified, when compression does not make the data smaller.
pub fn compress_into(raw: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    if raw.len() < 64 {
        return false;
    }
    out.clear();
    out.reserve(raw.len());
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(comp) => *c = Some((level, comp)),
                Err(_) => return false,
            }
        }
        let Some((_, comp)) = c.as_mut() else {
            return false;
        };
        // Writes into the spare capacity (≥ raw.len()); too little room means no gain.
        matches!(comp.compress_to_buffer(raw, out), Ok(n) if n < raw.len())
    })
}

/// Decompresses a zstd frame whose content is exactly `raw_len` bytes.
pub fn decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(data, raw_len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::crypto::MasterKey;

    #[test]
    fn pack_roundtrip_and_damage() {
        let k = MasterKey::generate();
        let mut w = PackWriter::new(1024);
        let a = b"hello hello hello hello hello hello hello hello hello hello hello hello".to_vec();
        let ida = Id::keyed(&k.id_key, &a);
        let ca = compress(&a, 3).unwrap();
        w.add(&k.data, BlobType::Data, ida, &ca, a.len(), true);
        let t = b"{\"nodes\":[]}".to_vec();
        let idt = Id::keyed(&k.id_key, &t);
        w.add(&k.data, BlobType::Tree, idt, &t, t.len(), false);
        let (id, bytes, blobs) = w.finish(&k.data);
        assert_eq!(id, Id::of_bytes(&bytes));
        let hdr = read_header(&k.data, "p", &bytes).unwrap();
        assert_eq!(hdr, blobs);
        for b in &hdr {
            let env = &bytes[b.offset as usize..(b.offset + b.len) as usize];
            let raw = open_blob(&k.data, &k.id_key, "p", b, env).unwrap();
            assert_eq!(Id::keyed(&k.id_key, &raw), b.id);
        }
        let mut bad = bytes.clone();
        bad[3] ^= 0x40;
        let b = &hdr[0];
        assert!(open_blob(
            &k.data,
            &k.id_key,
            "p",
            b,
            &bad[b.offset as usize..(b.offset + b.len) as usize]
        )
        .is_err());
    }
}
