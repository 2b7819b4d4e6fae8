//! Trees: one blob per directory, listing its entries (nodes) sorted by name bytes.
//!
//! Serialized as JSON (`{"nodes": [...]}`), compressed and encrypted like any blob. Names,
//! symlink targets and xattr names are raw bytes: a JSON string when they are valid UTF-8,
//! otherwise `{"b64": "<base64>"}`, so non-UTF-8 names and names with newlines survive exactly.
//! Serialization is deterministic, so an unchanged directory yields the same tree id and is
//! stored once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::crypto::{b64, unb64};
use crate::repository::id::Id;

/// Raw bytes of a name or link target (see the module docs for the JSON form).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawName(pub Vec<u8>);

impl std::fmt::Debug for RawName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl RawName {
    /// Lossy display form.
    pub fn lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawRepr {
    Str(String),
    B64 { b64: String },
}

impl Serialize for RawName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => s.serialize_str(t),
            Err(_) => RawRepr::B64 { b64: b64(&self.0) }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match RawRepr::deserialize(d)? {
            RawRepr::Str(s) => Ok(RawName(s.into_bytes())),
            RawRepr::B64 { b64 } => unb64("name", &b64)
                .map(RawName)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Kind of filesystem object a node describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Directory; its entries are in the tree `subtree`.
    Dir,
    /// Regular file; its bytes are the blobs in `content`.
    File,
    /// Symbolic link, stored as a link (never followed).
    Symlink,
    /// Named pipe (metadata only).
    Fifo,
    /// Unix socket (metadata only).
    Socket,
    /// Character device (metadata and `rdev`).
    Chardev,
    /// Block device (metadata and `rdev`).
    Blockdev,
}

/// One extended attribute (`user.*` namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, e.g. `user.comment`.
    pub name: RawName,
    /// Value, base64.
    pub value: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (one path component, raw bytes).
    pub name: RawName,
    /// Object kind.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Status-change time, seconds (used to detect unchanged files).
    #[serde(default)]
    pub ctime: i64,
    /// Nanoseconds part of the status-change time.
    #[serde(default)]
    pub ctime_nsec: u32,
    /// Inode number at backup time (change detection and hard-link groups).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    /// Device id of the filesystem holding the node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    /// Hard-link count at backup time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// Size in bytes (files: content length; symlinks: target length).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Device number of a character or block device (`st_rdev`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Whether the file had holes (fewer allocated blocks than its size); restored sparse.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sparse: bool,
    /// File content: data blob ids, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Keyed BLAKE3 of the whole file content, for bit-exact verification after restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Id>,
    /// Directory: id of its tree blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Symlink target (raw bytes, never resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<RawName>,
    /// Extended attributes, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Why this file's content is missing or incomplete (it changed or failed while read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Target-specific metadata (an S3 object's content type, user metadata and tags, ...),
    /// sorted by key. Files leave it empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Change token of a streamed entry (e.g. an S3 object's ETag, size and last-modified): an
    /// incremental backup reuses the parent's content when the tokens are equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Node {
    /// A directory node with default metadata, for the synthetic parents of a backup path.
    pub fn new(name: RawName, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            inode: 0,
            device: 0,
            links: 0,
            size: 0,
            rdev: 0,
            sparse: false,
            content: Vec::new(),
            digest: None,
            subtree: None,
            link_target: None,
            xattrs: Vec::new(),
            error: None,
            meta: BTreeMap::new(),
            version: None,
        }
    }

    /// Whether a file's change-detection metadata equals `other`'s (restic's rule: size, mtime,
    /// ctime and inode; the device id is not compared because it is unstable across reboots on
    /// some filesystems).
    pub fn unchanged_since(&self, other: &Node) -> bool {
        self.kind == NodeKind::File
            && other.kind == NodeKind::File
            && other.error.is_none()
            && other.digest.is_some()
            && self.size == other.size
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && self.ctime == other.ctime
            && self.ctime_nsec == other.ctime_nsec
            && self.inode == other.inode
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Serializes deterministically.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("tree serializes")
    }

    /// Decodes and validates a tree blob: every name must be a single, safe path component
    /// and names must be unique and sorted — a repository is hostile input.
    pub fn decode(id: &Id, data: &[u8]) -> Result<Tree> {
        let t: Tree = serde_json::from_slice(data).map_err(|e| {
            Error::corrupt(format!("tree {}", id.short()), format!("invalid tree: {e}"))
        })?;
        for w in t.nodes.windows(2) {
            if w[0].name >= w[1].name {
                return Err(Error::corrupt(
                    format!("tree {}", id.short()),
                    format!("names not unique and sorted at {:?}", w[1].name),
                ));
            }
        }
        for n in &t.nodes {
            validate_name(&n.name)
                .map_err(|why| Error::corrupt(format!("tree {}", id.short()), why))?;
        }
        Ok(t)
    }
}

/// Renders raw path bytes unambiguously for people: valid UTF-8 stays as it is, `\\` is doubled,
/// control characters become `\n`, `\t` or `\xNN`, and invalid bytes become `\xNN` (like
/// `ls -b`). Used for every path shown in output and reports.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// [`escape_bytes`] of a path.
pub fn display_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(p.as_os_str().as_bytes())
}

/// Checks that `name` is a single normal path component: not empty, `.` or `..`, and without
/// `/` or NUL. Returns the reason when it is not.
pub fn validate_name(name: &RawName) -> std::result::Result<(), String> {
    let b = &name.0;
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(format!("unsafe entry name {:?}", name.lossy()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_names_roundtrip_through_json() {
        let mut t = Tree::default();
        for n in [b"a\nb".to_vec(), vec![0xff, 0xfe], "é".as_bytes().to_vec()] {
            t.nodes.push(Node::new(RawName(n), NodeKind::File));
        }
        t.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let id = Id([0; 32]);
        let back = Tree::decode(&id, &t.encode()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(escape_bytes(b"plain/\xc3\xa9"), "plain/\u{e9}");
        assert_eq!(escape_bytes(b"a\nb"), "a\\nb");
        assert_eq!(escape_bytes(b"bad-\xff\xfe"), "bad-\\xff\\xfe");
        assert_eq!(escape_bytes(b"back\\slash"), "back\\\\slash");
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [&b".."[..], b"/abs", b"a/b", b"", b"."] {
            let t = Tree {
                nodes: vec![Node::new(RawName(bad.to_vec()), NodeKind::File)],
            };
            assert!(Tree::decode(&Id([0; 32]), &t.encode()).is_err(), "{bad:?}");
        }
        let dup = Tree {
            nodes: vec![
                Node::new(RawName(b"x".to_vec()), NodeKind::Symlink),
                Node::new(RawName(b"x".to_vec()), NodeKind::Dir),
            ],
        };
        assert!(Tree::decode(&Id([0; 32]), &dup.encode()).is_err());
    }
}
