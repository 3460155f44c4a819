//! POSIX ACLs as rsync's `--fake-super` receiver keeps them, back to the kernel's ACL xattrs.
//!
//! With `-A` the client's rsync sends ACLs; a receiver that is not root stores each as an xattr
//! of its own: `user.rsync.%aacl` (access ACL) and `user.rsync.%dacl` (default ACL of a
//! directory). Both hold, little-endian (rsync 3.x `acls.c`, `set_rsync_acl`):
//!
//! ```text
//! u32 user_obj  u32 group_obj  u32 mask_obj  u32 other_obj   (permission bits 0..7, or 0x80)
//! then per named entry: u32 id, u32 access  (bit 31 set: a user; clear: a group; low 3 bits rwx)
//! ```
//!
//! `0x80` (rsync's `NO_ENTRY`) in an access ACL means "as the file's mode says": rsync strips
//! the entries the mode already carries (user from the owner bits, group and mask from the
//! group bits, other from the other bits). A default ACL keeps its values; a default ACL whose
//! `user_obj` is `NO_ENTRY` is no default ACL at all.
//!
//! The result is the value of `system.posix_acl_access` / `system.posix_acl_default` as the
//! kernel reads and writes it (`posix_acl_xattr`: u32 version 2, then u16 tag, u16 perm, u32 id
//! per entry, in tag order), which is what a direct ingest reads from a live tree and what
//! restore writes back.

/// rsync's "no entry" value.
const NO_ENTRY: u32 = 0x80;
/// In a named entry's access word: the id is a user's.
const NAME_IS_USER: u32 = 0x8000_0000;

const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;
/// Most named entries accepted (the kernel's own limit is lower on most filesystems).
const MAX_NAMED: usize = 8192;

/// The access ACL kept as `user.rsync.%aacl`, with the file's mode bits; `None` when the value
/// is not one rsync writes.
pub(super) fn access_acl(value: &[u8], mode: u32) -> Option<Vec<u8>> {
    let (objs, named) = parse(value)?;
    let from_mode = |v: u32, shift: u32| {
        if v == NO_ENTRY {
            (mode >> shift) & 7
        } else {
            v
        }
    };
    let mask = match objs[2] {
        NO_ENTRY if named.is_empty() => None,
        v => Some(from_mode(v, 3)),
    };
    encode(
        from_mode(objs[0], 6),
        from_mode(objs[1], 3),
        mask,
        from_mode(objs[3], 0),
        named,
    )
}

/// The default ACL kept as `user.rsync.%dacl`; `Ok(None)` for "no default ACL", `Err(())`
/// when the value is not one rsync writes.
pub(super) fn default_acl(value: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let (objs, named) = parse(value).ok_or(())?;
    if objs[0] == NO_ENTRY {
        return Ok(None);
    }
    if objs[1] == NO_ENTRY || objs[3] == NO_ENTRY {
        return Err(());
    }
    let mask = match objs[2] {
        NO_ENTRY if named.is_empty() => None,
        // The union of the group class, as setfacl computes a missing mask.
        NO_ENTRY => Some(named.iter().fold(objs[1], |m, &(_, _, p)| m | p)),
        v => Some(v),
    };
    encode(objs[0], objs[1], mask, objs[3], named)
        .map(Some)
        .ok_or(())
}

/// `[user_obj, group_obj, mask_obj, other_obj]` and the named entries `(is_user, id, perm)`.
type Parsed = ([u32; 4], Vec<(bool, u32, u32)>);

fn parse(value: &[u8]) -> Option<Parsed> {
    if value.len() < 16 || !value.len().is_multiple_of(8) || (value.len() - 16) / 8 > MAX_NAMED {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().unwrap_or([0; 4]));
    let mut objs = [0u32; 4];
    for (i, o) in objs.iter_mut().enumerate() {
        *o = word(i * 4);
        if *o != NO_ENTRY && *o > 7 {
            return None;
        }
    }
    let mut named = Vec::new();
    for at in (16..value.len()).step_by(8) {
        let (id, access) = (word(at), word(at + 4));
        let perm = access & !NAME_IS_USER;
        if perm > 7 || id == UNDEFINED_ID {
            return None;
        }
        named.push((access & NAME_IS_USER != 0, id, perm));
    }
    Some((objs, named))
}

fn encode(
    user: u32,
    group: u32,
    mask: Option<u32>,
    other: u32,
    mut named: Vec<(bool, u32, u32)>,
) -> Option<Vec<u8>> {
    // Users before groups, each by id; a repeated id is not an ACL.
    named.sort_by_key(|&(is_user, id, _)| (!is_user, id));
    if named
        .windows(2)
        .any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1)
    {
        return None;
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u32, id: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(perm as u16).to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    };
    entry(ACL_USER_OBJ, user, UNDEFINED_ID);
    for &(_, id, perm) in named.iter().filter(|n| n.0) {
        entry(ACL_USER, perm, id);
    }
    entry(ACL_GROUP_OBJ, group, UNDEFINED_ID);
    for &(_, id, perm) in named.iter().filter(|n| !n.0) {
        entry(ACL_GROUP, perm, id);
    }
    if let Some(m) = mask {
        entry(ACL_MASK, m, UNDEFINED_ID);
    }
    entry(ACL_OTHER, other, UNDEFINED_ID);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Captured from rsync 3.5.0 (Debian 12's package) receiving with fake super, and the
    /// source's own xattrs read with `getfattr -e hex`.
    #[test]
    fn real_rsync_values_decode_to_the_kernel_xattrs() {
        // setfacl -m u:65534:r on a 0644 file.
        let aacl = hex("80000000800000000400000080000000feff000004000080");
        let kernel = hex("0200000001000600ffffffff02000400feff000004000400ffffffff\
             10000400ffffffff20000400ffffffff");
        assert_eq!(access_acl(&aacl, 0o100644).unwrap(), kernel);
        // A 0755 directory: setfacl -m u:65534:rx and -d -m u:65534:rwx.
        let aacl = hex("80000000800000000500000080000000feff000005000080");
        let kernel = hex("0200000001000700ffffffff02000500feff000004000500ffffffff\
             10000500ffffffff20000500ffffffff");
        assert_eq!(access_acl(&aacl, 0o40755).unwrap(), kernel);
        let dacl = hex("07000000050000000700000005000000feff000007000080");
        let kernel = hex("0200000001000700ffffffff02000700feff000004000500ffffffff\
             10000700ffffffff20000500ffffffff");
        assert_eq!(default_acl(&dacl).unwrap().unwrap(), kernel);
    }

    #[test]
    fn values_rsync_never_writes_are_refused() {
        assert_eq!(access_acl(b"", 0o644), None);
        assert_eq!(access_acl(&[0u8; 17], 0o644), None);
        let mut bad_perm = hex("80000000800000000400000080000000feff000004000080");
        bad_perm[20] = 9;
        assert_eq!(access_acl(&bad_perm, 0o644), None);
        let twice = hex("80000000800000000400000080000000feff000004000080feff000004000080");
        assert_eq!(access_acl(&twice, 0o644), None);
        assert_eq!(
            default_acl(&hex("80000000800000008000000080000000")),
            Ok(None)
        );
        assert_eq!(
            default_acl(&hex("07000000800000008000000005000000")),
            Err(())
        );
    }
}
