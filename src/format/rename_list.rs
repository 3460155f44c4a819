//! The rename list a client sends with `prepare renames` (format-spec/wire.md "Push path: the
//! rename list"): the moves it saw on its side since the last run, so that the server can make
//! the same moves in staging before rsync compares the trees.
//!
//! Bytes: the magic `RSBRN\0\0\x01` (8 bytes, the last one the version), the count as u32 LE,
//! then per rename the old and the new path, each a u16 LE length and that many bytes. Paths are
//! relative to the staging root, `/`-separated, without empty, `.` or `..` components and
//! without NUL. Nothing may follow the last rename.

/// The first 8 bytes: magic and version 1.
pub const RENAME_LIST_MAGIC: [u8; 8] = *b"RSBRN\0\0\x01";

/// At most this many renames in one list.
pub const MAX_RENAMES: usize = 10_000;

/// At most this many bytes per path.
pub const MAX_RENAME_PATH_BYTES: usize = 4096;

/// At most this many bytes in a whole list (header included).
pub const MAX_RENAME_LIST_BYTES: usize = 4 << 20;

/// One move: `from` is now `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// The old path, relative to the staging root.
    pub from: Vec<u8>,
    /// The new path.
    pub to: Vec<u8>,
}

impl Rename {
    /// `from` is now `to`.
    pub fn new(from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) -> Rename {
        Rename {
            from: from.into(),
            to: to.into(),
        }
    }
}

/// Is `path` a well-formed relative path (the check both ends make)?
pub fn path_ok(path: &[u8]) -> bool {
    !path.is_empty()
        && path.len() <= MAX_RENAME_PATH_BYTES
        && !path.contains(&0)
        && path
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Encode `renames` (the caller keeps to the bounds; an encoder fed more panics in debug).
pub fn encode(renames: &[Rename]) -> Vec<u8> {
    debug_assert!(renames.len() <= MAX_RENAMES);
    let mut out = RENAME_LIST_MAGIC.to_vec();
    out.extend_from_slice(&(renames.len() as u32).to_le_bytes());
    for r in renames {
        for p in [&r.from, &r.to] {
            debug_assert!(path_ok(p));
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
        }
    }
    out
}

/// Decode a list; the reason for a refusal is returned. Every path is checked ([`path_ok`]).
pub fn decode(bytes: &[u8]) -> Result<Vec<Rename>, String> {
    if bytes.len() > MAX_RENAME_LIST_BYTES {
        return Err(format!(
            "rename list of {} bytes, more than {MAX_RENAME_LIST_BYTES}",
            bytes.len()
        ));
    }
    let Some(rest) = bytes.strip_prefix(&RENAME_LIST_MAGIC[..7]) else {
        return Err("not a rename list (bad magic)".into());
    };
    match rest.first() {
        Some(1) => {}
        Some(v) => return Err(format!("rename list version {v} is not known (1 is)")),
        None => return Err("rename list truncated".into()),
    }
    let mut rest = &rest[1..];
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("rename list truncated".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default()) as usize;
    if count > MAX_RENAMES {
        return Err(format!("{count} renames, more than {MAX_RENAMES}"));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut path = || -> Result<Vec<u8>, String> {
            let len = u16::from_le_bytes(take(2)?.try_into().unwrap_or_default()) as usize;
            let p = take(len)?;
            if !path_ok(p) {
                return Err(format!(
                    "rename {}: path {:?} is not a relative path inside staging",
                    i + 1,
                    String::from_utf8_lossy(p)
                ));
            }
            Ok(p.to_vec())
        };
        let from = path()?;
        let to = path()?;
        out.push(Rename { from, to });
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last rename", rest.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(from: &str, to: &str) -> Rename {
        Rename::new(from, to)
    }

    #[test]
    fn round_trip_and_pinned_bytes() {
        let odd = Rename {
            from: b"a/b\xffc".to_vec(),
            to: b"d".to_vec(),
        };
        let list = vec![r("www/old", "www/new"), odd];
        let bytes = encode(&list);
        assert_eq!(decode(&bytes).unwrap(), list);
        crate::format::pack::vector_file::check_or_write(
            "rename-list-two.txt",
            &[
                ("expect", "success".to_owned()),
                (
                    "description",
                    "two renames: www/old -> www/new, a/b<ff>c -> d".to_owned(),
                ),
            ],
            &bytes,
        );
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn lists_that_could_reach_outside_staging_or_lie_about_their_size_are_refused() {
        for bad in ["", "/etc", "a/../b", "..", "a//b", "a/", "./a", "a\0b"] {
            let mut bytes = RENAME_LIST_MAGIC.to_vec();
            bytes.extend_from_slice(&1u32.to_le_bytes());
            for p in [bad.as_bytes(), b"ok"] {
                bytes.extend_from_slice(&(p.len() as u16).to_le_bytes());
                bytes.extend_from_slice(p);
            }
            let e = decode(&bytes).unwrap_err();
            assert!(e.contains("not a relative path"), "{bad:?}: {e}");
        }
        let good = encode(&[r("a", "b")]);
        assert!(
            decode(&good[..good.len() - 1])
                .unwrap_err()
                .contains("truncated")
        );
        let mut more = good.clone();
        more.push(0);
        assert!(decode(&more).unwrap_err().contains("after the last"));
        let mut v2 = good.clone();
        v2[7] = 2;
        assert!(decode(&v2).unwrap_err().contains("version 2"));
        assert!(decode(b"RSBACKUP").unwrap_err().contains("magic"));
        let mut many = RENAME_LIST_MAGIC.to_vec();
        many.extend_from_slice(&(MAX_RENAMES as u32 + 1).to_le_bytes());
        assert!(decode(&many).unwrap_err().contains("more than"));
    }
}
