//! How object keys map to tree node names, exactly and without collisions.
//!
//! A key is cut after every `/` into pieces: `a/b/c` → `a/`, `b/`, `c`; `/x` → `/`, `x`;
//! `dir/` → `dir/`, `` (empty). Every piece but the last ends with `/` and becomes a
//! directory; the last piece (possibly empty) becomes a file. A piece becomes a node name by
//! escaping `%` → `%25`, `/` → `%2F` and NUL → `%00`; then a name that would be `.` or `..` is
//! written `%2E` / `%2E%2E`, and the empty last piece is written `%` (no other name is a lone
//! `%`: every other `%` starts a `%XX` escape). So:
//!
//! * directory names end with `%2F` and file names never do: key `a` (file `a`) and keys under
//!   `a/` (directory `a%2F`) never collide;
//! * `//`, a leading `/`, spaces, `+`, `%`, `?`, NFC and NFD forms of the same text all give
//!   distinct names, and decoding a name gives its piece back byte for byte;
//! * every name is a valid tree entry (not empty, `.` or `..`, no `/` or NUL).

/// Splits a key (or a key prefix) into its pieces; see the module docs.
pub fn pieces(key: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in key.iter().enumerate() {
        if *b == b'/' {
            out.push(&key[start..=i]);
            start = i + 1;
        }
    }
    out.push(&key[start..]);
    out
}

/// The node name of one piece.
pub fn escape_piece(piece: &[u8]) -> Vec<u8> {
    match piece {
        b"" => return b"%".to_vec(),
        b"." => return b"%2E".to_vec(),
        b".." => return b"%2E%2E".to_vec(),
        _ => {}
    }
    let mut out = Vec::with_capacity(piece.len() + 2);
    for &b in piece {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'/' => out.extend_from_slice(b"%2F"),
            0 => out.extend_from_slice(b"%00"),
            b => out.push(b),
        }
    }
    out
}

/// The piece a node name stands for, or `None` if `name` is not a name [`escape_piece`] makes.
pub fn unescape_name(name: &[u8]) -> Option<Vec<u8>> {
    if name == b"%" {
        return Some(Vec::new());
    }
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    // Only canonical names decode: re-escaping must give the same bytes.
    (escape_piece(&out) == name).then_some(out)
}

/// Whether a node name is a directory piece (ends with an escaped `/`).
pub fn is_dir_name(name: &[u8]) -> bool {
    name.ends_with(b"%2F")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::tree::{validate_name, RawName};

    #[test]
    fn pieces_cut_after_each_slash() {
        assert_eq!(pieces(b"a/b/c"), vec![&b"a/"[..], b"b/", b"c"]);
        assert_eq!(pieces(b"/x"), vec![&b"/"[..], b"x"]);
        assert_eq!(pieces(b"dir/"), vec![&b"dir/"[..], b""]);
        assert_eq!(pieces(b"a//b"), vec![&b"a/"[..], b"/", b"b"]);
        assert_eq!(pieces(b""), vec![&b""[..]]);
    }

    /// The mapping is part of the snapshot format: these names must never change.
    #[test]
    fn golden_names() {
        let path = |k: &[u8]| -> String {
            pieces(k)
                .iter()
                .map(|p| String::from_utf8(escape_piece(p)).unwrap())
                .collect::<Vec<_>>()
                .join("/")
        };
        assert_eq!(path(b"photos/2024/a.jpg"), "photos%2F/2024%2F/a.jpg");
        assert_eq!(path(b"/leading"), "%2F/leading");
        assert_eq!(path(b"a//b"), "a%2F/%2F/b");
        assert_eq!(path(b"dir/"), "dir%2F/%");
        assert_eq!(path(b"100%"), "100%25");
        assert_eq!(path(b"./.."), ".%2F/%2E%2E");
        assert_eq!(path(b"a+b c?d"), "a+b c?d");
    }

    #[test]
    fn hostile_keys_map_to_distinct_valid_names_and_back() {
        let keys: Vec<&[u8]> = vec![
            b"a",
            b"a/",
            b"a/b",
            b"/a",
            b"//a",
            b"a//",
            b"a b",
            b"a+b",
            b"a%2Fb",
            b"a%b",
            b"a?b",
            b".",
            b"..",
            b"./x",
            b"../x",
            b"%",
            b"%2E",
            b"%25",
            b"%2F",
            "caf\u{e9}".as_bytes(),
            "cafe\u{301}".as_bytes(),
            b"x\0y",
            b"a/.",
            b"a/..",
        ];
        let mut seen = std::collections::HashMap::new();
        for k in &keys {
            let ps = pieces(k);
            let names: Vec<Vec<u8>> = ps.iter().map(|p| escape_piece(p)).collect();
            for (i, n) in names.iter().enumerate() {
                validate_name(&RawName(n.clone())).unwrap();
                assert_eq!(is_dir_name(n), i + 1 < names.len(), "{k:?}");
                assert_eq!(unescape_name(n).unwrap(), ps[i]);
            }
            let back: Vec<u8> = names
                .iter()
                .flat_map(|n| unescape_name(n).unwrap())
                .collect();
            assert_eq!(&back, k);
            assert!(seen.insert(names, *k).is_none(), "collision for {k:?}");
        }
        assert_eq!(
            unescape_name(b"%2e"),
            None,
            "non-canonical escapes are refused"
        );
        assert_eq!(unescape_name(b"a%2"), None);
    }
}
