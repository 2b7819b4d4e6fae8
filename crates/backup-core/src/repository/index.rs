//! The index: which pack holds each blob, where, and how long.
//!
//! Index files (`index/<id>`, id = BLAKE3 of the stored bytes) are envelopes (associated data
//! `index`) over a binary body:
//!
//! ```text
//! [version u8 = 1][pack count u32 LE]
//!   per pack: [pack id 32][blob count u32 LE]
//!     per blob: [type u8][flags u8][id 32][offset u32 LE][length u32 LE][raw length u32 LE]
//! ```
//!
//! An index file is written only after every pack it names is stored (commit protocol), so a
//! blob found in the index can always be read. Memory: about 80 bytes per blob in [`Index`].

use crate::error::{Error, Result};
use crate::repository::id::{Id, IdMap};
use crate::repository::pack::{BlobType, PackedBlob, FLAG_ZSTD};

/// Where one blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Index into [`Index::packs`].
    pub pack: u32,
    /// The blob's entry in that pack.
    pub blob: PackedBlob,
}

/// The in-memory index of a repository: the union of all index files.
#[derive(Debug, Default)]
pub struct Index {
    /// Pack ids, referenced by [`BlobLocation::pack`].
    pub packs: Vec<Id>,
    pack_pos: IdMap<u32>,
    blobs: IdMap<BlobLocation>,
    /// Names of the index files this index was read from.
    pub files: Vec<String>,
}

impl Index {
    /// Adds every blob of one stored pack. A blob already known keeps its first location.
    pub fn add_pack(&mut self, pack: Id, blobs: &[PackedBlob]) {
        let p = *self.pack_pos.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for b in blobs {
            self.blobs
                .entry(b.id)
                .or_insert(BlobLocation { pack: p, blob: *b });
        }
    }

    /// The location of blob `id`, if indexed.
    pub fn get(&self, id: &Id) -> Option<(Id, PackedBlob)> {
        self.blobs
            .get(id)
            .map(|l| (self.packs[l.pack as usize], l.blob))
    }

    /// Whether blob `id` is indexed.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// True when no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Every blob and the id of its pack.
    pub fn iter(&self) -> impl Iterator<Item = (Id, &PackedBlob)> {
        self.blobs
            .values()
            .map(|l| (self.packs[l.pack as usize], &l.blob))
    }

    /// Whether pack `id` holds any indexed blob.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Merges the packs of one decoded index file.
    pub fn merge(&mut self, file: &IndexFile) {
        for (pack, blobs) in &file.packs {
            self.add_pack(*pack, blobs);
        }
    }
}

/// The decoded body of one index file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Packs with their blobs.
    pub packs: Vec<(Id, Vec<PackedBlob>)>,
}

impl IndexFile {
    /// Number of blobs described.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|(_, b)| b.len()).sum()
    }

    /// Encodes the body (before encryption).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.blob_count() * 46 + self.packs.len() * 36);
        out.push(1u8);
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for (pack, blobs) in &self.packs {
            out.extend_from_slice(&pack.0);
            out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
            for b in blobs {
                out.push(b.kind as u8);
                out.push(if b.compressed { FLAG_ZSTD } else { 0 });
                out.extend_from_slice(&b.id.0);
                out.extend_from_slice(&b.offset.to_le_bytes());
                out.extend_from_slice(&b.len.to_le_bytes());
                out.extend_from_slice(&b.raw_len.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a body; `name` is used in errors.
    pub fn decode(name: &str, data: &[u8]) -> Result<IndexFile> {
        let bad = |why: &str| Error::corrupt(name, why.to_string());
        let mut r = Reader { data, pos: 0 };
        if r.take(1).ok_or_else(|| bad("empty index"))?[0] != 1 {
            return Err(bad("unknown index version"));
        }
        let npacks = r.u32().ok_or_else(|| bad("truncated index"))?;
        let mut packs = Vec::with_capacity(npacks.min(1 << 20) as usize);
        for _ in 0..npacks {
            let pack = Id(r
                .take(32)
                .ok_or_else(|| bad("truncated index"))?
                .try_into()
                .expect("32"));
            let n = r.u32().ok_or_else(|| bad("truncated index"))?;
            let mut blobs = Vec::with_capacity(n.min(1 << 20) as usize);
            for _ in 0..n {
                let e = r.take(46).ok_or_else(|| bad("truncated index"))?;
                blobs.push(PackedBlob {
                    kind: BlobType::from_u8(e[0]).ok_or_else(|| bad("unknown blob type"))?,
                    compressed: e[1] & FLAG_ZSTD != 0,
                    id: Id(e[2..34].try_into().expect("32")),
                    offset: u32::from_le_bytes(e[34..38].try_into().expect("4")),
                    len: u32::from_le_bytes(e[38..42].try_into().expect("4")),
                    raw_len: u32::from_le_bytes(e[42..46].try_into().expect("4")),
                });
            }
            packs.push((pack, blobs));
        }
        if r.pos != data.len() {
            return Err(bad("trailing bytes after index"));
        }
        Ok(IndexFile { packs })
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let b = PackedBlob {
            kind: BlobType::Tree,
            id: Id([3; 32]),
            offset: 7,
            len: 99,
            raw_len: 120,
            compressed: true,
        };
        let f = IndexFile {
            packs: vec![(Id([1; 32]), vec![b]), (Id([2; 32]), vec![])],
        };
        let enc = f.encode();
        assert_eq!(IndexFile::decode("i", &enc).unwrap(), f);
        assert!(IndexFile::decode("i", &enc[..enc.len() - 1]).is_err());
        let mut idx = Index::default();
        idx.merge(&f);
        assert_eq!(idx.get(&Id([3; 32])).unwrap().0, Id([1; 32]));
    }
}
