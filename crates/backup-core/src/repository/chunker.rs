//! Content-defined chunking with FastCDC (Xia et al., 2020; the `fastcdc` crate's v2020 cut
//! function, pinned to an exact version because cut points change between majors).
//!
//! The gear table is XOR-ed with a seed derived from the repository's master key, so chunk
//! boundaries — and therefore chunk sizes seen by the store — do not fingerprint known files.
//! Default sizes follow restic: 512 KiB minimum, 1 MiB average, 8 MiB maximum.
//!
//! Memory: one buffer of at most `2 × max` bytes per stream (only the pages actually filled
//! become resident, so small files cost little); nothing grows with the length of the stream.

use std::borrow::Cow;
use std::io::Read;

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};

/// Chunk-size parameters, stored in the repository config (bytes).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk except the last of a stream.
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

/// Precomputed gear tables and masks for one repository.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

impl Chunker {
    /// Builds the chunker for `params` and the repository's `seed`.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        let (gear, gear_ls) = get_gear_with_seed(seed);
        let masks = select_masks(params.avg_size as usize, Normalization::Level1);
        Chunker {
            params,
            masks,
            gear,
            gear_ls,
        }
    }

    /// The parameters in use.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the first chunk of `data` (all of it if shorter than the minimum).
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        if data.len() <= p.min_size as usize {
            return data.len();
        }
        let (ms, ml) = self.masks;
        let (_, n) = cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            ms,
            ml,
            ms << 1,
            ml << 1,
            &self.gear,
            &self.gear_ls,
        );
        n
    }

    /// Splits a reader into chunks; `size_hint` (bytes, e.g. from `lstat`) sizes the buffer.
    pub fn stream<R: Read>(&self, reader: R, size_hint: u64) -> ChunkStream<'_, R> {
        let cap = (self.fill_target() as u64 + 64 * 1024)
            .min(size_hint.saturating_add(1))
            .max(4096);
        ChunkStream {
            chunker: self,
            reader,
            buf: vec![0; cap as usize],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Bytes buffered ahead before cutting: a cut found inside them is final (the gear hash
    /// only looks back), so the full `max` is needed only when no cut point shows up early.
    fn fill_target(&self) -> usize {
        (2 * self.params.avg_size as usize).min(self.params.max_size as usize)
    }
}

/// Iterator of chunks (`Vec<u8>` each) over a reader. See [`Chunker::stream`].
///
/// Memory: a buffer of about `2 × avg` bytes, growing to `max + 64 KiB` only while a chunk
/// without an early cut point is read.
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    /// Fully initialised buffer; `buf[start..end]` holds unconsumed bytes.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        while !self.eof && self.end - self.start < want {
            if self.end == self.buf.len() {
                if self.start > 0 {
                    // Move the unconsumed tail to the front (about one chunk's worth).
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let limit = self.chunker.params.max_size as usize + 64 * 1024;
                    let grown = (self.buf.len() * 2).min(limit).max(self.buf.len() + 4096);
                    self.buf.resize(grown, 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for ChunkStream<'_, R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk = Vec::new();
        match self.next_into(&mut chunk) {
            Ok(true) => Some(Ok(chunk)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl<R: Read> ChunkStream<'_, R> {
    /// Puts the next chunk into `out` (cleared first; its allocation is reused). Returns
    /// `false` at the end of the stream.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        let max = self.chunker.params.max_size as usize;
        self.fill(self.chunker.fill_target())?;
        let mut n = self.chunker.cut(&self.buf[self.start..self.end]);
        if n == self.end - self.start && !self.eof && n < max {
            // No cut point in what is buffered: read up to `max` ahead and cut again.
            self.fill(max)?;
            n = self.chunker.cut(&self.buf[self.start..self.end]);
        }
        if n == 0 {
            return Ok(false);
        }
        out.clear();
        out.extend_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn stream_matches_slice_cuts_and_reassembles() {
        let c = Chunker::new(
            ChunkerParams {
                min_size: 4096,
                avg_size: 16384,
                max_size: 65536,
            },
            42,
        );
        let data = pseudo_random(1_000_000, 9);
        // A reader that returns short reads, to exercise buffer refills.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = b.len().min(777).min(self.0.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let chunks: Vec<Vec<u8>> = c.stream(Slow(&data), 0).map(|r| r.unwrap()).collect();
        assert!(chunks.len() > 10);
        assert_eq!(chunks.concat(), data);
        // Same cut points as cutting the whole slice.
        let mut off = 0;
        for ch in &chunks {
            let n = c.cut(&data[off..]);
            assert_eq!(n, ch.len());
            off += n;
        }
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|ch| ch.len() >= 4096 && ch.len() <= 65536));
    }

    #[test]
    fn insertion_only_changes_nearby_chunks() {
        let c = Chunker::new(
            ChunkerParams {
                min_size: 4096,
                avg_size: 16384,
                max_size: 65536,
            },
            1,
        );
        let a = pseudo_random(500_000, 3);
        let mut b = a.clone();
        b.splice(100_000..100_000, [1u8, 2, 3]);
        let ca: std::collections::HashSet<Vec<u8>> =
            c.stream(&a[..], 0).map(|r| r.unwrap()).collect();
        let cb: Vec<Vec<u8>> = c.stream(&b[..], 0).map(|r| r.unwrap()).collect();
        let shared = cb.iter().filter(|x| ca.contains(*x)).count();
        assert!(shared + 3 >= cb.len(), "shared {shared} of {}", cb.len());
    }

    #[test]
    fn seed_changes_cut_points() {
        let p = ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        };
        let data = pseudo_random(300_000, 5);
        let a: Vec<usize> = Chunker::new(p, 1)
            .stream(&data[..], 0)
            .map(|r| r.unwrap().len())
            .collect();
        let b: Vec<usize> = Chunker::new(p, 2)
            .stream(&data[..], 0)
            .map(|r| r.unwrap().len())
            .collect();
        assert_ne!(a, b);
    }
}
