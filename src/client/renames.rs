//! Renames the client saw since its last run, for `prepare renames` (format-spec/wire.md "Push
//! path: the rename list"): the server makes them in staging, so a renamed directory is found
//! in place instead of being deleted and sent again.
//!
//! After every recorded run the client keeps, in its state directory
//! (`client-NAME.seen`, format-spec/client-state.md), the identity `(device, inode, birth
//! time)` and staging path of every directory and every file of at least
//! [`RENAME_MIN_FILE_BYTES`] it sent. Before the next run it walks its sources again: an
//! identity now at another path was moved. Only the outermost moves are sent (a moved
//! directory carries its contents). The birth time keeps an inode number reused after a delete
//! from passing for a move; and the list is advice the server checks and rsync corrects anyway.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::client::remote::staging_path;
use crate::format::rename_list::{MAX_RENAMES, Rename, path_ok};

/// Files at least this large are followed across renames (directories always are).
pub const RENAME_MIN_FILE_BYTES: u64 = 1 << 20;

/// At most this many entries are kept; a larger tree is not followed (no renames are sent).
pub const MAX_SEEN: usize = 2_000_000;

/// Version 2: paths are full paths (`var/www/...`). Version 1 (last components, `www/...`) is
/// still read: an identity found under its full path now is then the move `www` -> `var/www`,
/// which carries an old-layout staging over to full paths without sending it again.
const SEEN_MAGIC: [u8; 8] = *b"RSBSEEN\x02";
const SEEN_MAGIC_V1: [u8; 8] = *b"RSBSEEN\x01";

/// `(device, inode, birth time in ns)`.
type Identity = (u64, u64, i64);

/// Staging paths by identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    by_identity: HashMap<Identity, Vec<u8>>,
}

/// `STATE/client-NAME.seen`.
pub fn seen_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("client-{name}.seen"))
}

impl Seen {
    /// Walk `sources` (as rsync sends them: each lands in staging at its full path).
    /// `None` when they cannot be followed: the whole tree (`/`), or more than [`MAX_SEEN`].
    pub fn scan(sources: &[PathBuf]) -> Option<Seen> {
        let mut seen = Seen::default();
        for source in sources {
            let path = staging_path(source);
            if path.is_empty() {
                return None;
            }
            if std::fs::symlink_metadata(source).is_err() {
                // A source that is not there now (its guard skips it): nothing of it moved.
                continue;
            }
            walk(source, path, &mut seen)?;
        }
        Some(seen)
    }

    /// What moved from `old` to `self`: the outermost moves, by new path.
    pub fn renames_since(&self, old: &Seen) -> Vec<Rename> {
        let mut moved: Vec<(&Vec<u8>, &Vec<u8>)> = self
            .by_identity
            .iter()
            .filter_map(|(id, new)| {
                let from = old.by_identity.get(id)?;
                (from != new).then_some((from, new))
            })
            .collect();
        moved.sort_by(|a, b| a.1.cmp(b.1));
        let mut out: Vec<Rename> = Vec::new();
        for (from, to) in moved {
            let implied = out.iter().any(|r| {
                to.starts_with(&r.to)
                    && to.get(r.to.len()) == Some(&b'/')
                    && from.starts_with(&r.from)
                    && from.get(r.from.len()) == Some(&b'/')
                    && to[r.to.len()..] == from[r.from.len()..]
            });
            if !implied && path_ok(from) && path_ok(to) && out.len() < MAX_RENAMES {
                out.push(Rename::new(from.clone(), to.clone()));
            }
        }
        out
    }

    /// Read the file written by [`Seen::save`]; anything unreadable is an empty record.
    pub fn load(path: &Path) -> Seen {
        let Ok(bytes) = std::fs::read(path) else {
            return Seen::default();
        };
        let mut seen = Seen::default();
        let Some(mut rest) = bytes
            .strip_prefix(&SEEN_MAGIC[..])
            .or_else(|| bytes.strip_prefix(&SEEN_MAGIC_V1[..]))
        else {
            return seen;
        };
        while !rest.is_empty() {
            if rest.len() < 26 {
                return Seen::default();
            }
            let n = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
            let id = (n(&rest[..8]), n(&rest[8..16]), n(&rest[16..24]) as i64);
            let len = u16::from_le_bytes([rest[24], rest[25]]) as usize;
            let Some(path) = rest.get(26..26 + len) else {
                return Seen::default();
            };
            seen.by_identity.insert(id, path.to_vec());
            rest = &rest[26 + len..];
        }
        seen
    }

    /// Write the record (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = SEEN_MAGIC.to_vec();
        for ((dev, ino, btime), p) in &self.by_identity {
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            out.extend_from_slice(&btime.to_le_bytes());
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
        }
        let tmp = path.with_extension("seen.new");
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, path)
    }
}

fn walk(dir: &Path, rel: Vec<u8>, seen: &mut Seen) -> Option<()> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    record(&meta, rel.clone(), seen)?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Some(());
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let mut path = rel.clone();
        path.push(b'/');
        path.extend_from_slice(entry.file_name().as_bytes());
        if kind.is_dir() {
            walk(&entry.path(), path, seen)?;
        } else if kind.is_file()
            && let Ok(meta) = entry.metadata()
            && meta.len() >= RENAME_MIN_FILE_BYTES
        {
            record(&meta, path, seen)?;
        }
    }
    Some(())
}

fn record(meta: &std::fs::Metadata, path: Vec<u8>, seen: &mut Seen) -> Option<()> {
    if seen.by_identity.len() >= MAX_SEEN {
        return None;
    }
    if path.len() > crate::format::rename_list::MAX_RENAME_PATH_BYTES {
        return Some(());
    }
    let btime = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    seen.by_identity
        .insert((meta.dev(), meta.ino(), btime), path);
    Some(())
}

/// `STATE/client-NAME.full-paths` beside `STATE/client-NAME.seen`: present once a server
/// recorded a session this client sent with full paths (format-spec/client-state.md).
pub fn full_paths_marker(seen: &Path) -> PathBuf {
    seen.with_extension("full-paths")
}

/// The sources' tree now (`None`: not followed) and the renames since the record at `path`.
/// Until a session with full paths was recorded, each source of a client that ran before
/// (`first_run` false) is also moved from its last component to its full path (`www` ->
/// `var/www`): a staging area laid out the old way is then found in place, in every staging
/// mode, instead of being sent again.
pub fn renames_to_send(
    config: &crate::config::ClientConfig,
    path: Option<&Path>,
    first_run: bool,
) -> (Option<Seen>, Vec<Rename>) {
    let Some(path) = path else {
        return (None, Vec::new());
    };
    let sources = crate::client::remote::transfer_sources(&config.sources).unwrap_or_default();
    let mut renames = Vec::new();
    if !first_run && !full_paths_marker(path).exists() {
        for source in &sources {
            let (Some(name), full) = (source.file_name(), staging_path(source)) else {
                continue;
            };
            if name.as_bytes() != full.as_slice() && path_ok(&full) {
                renames.push(Rename::new(name.as_bytes(), full));
            }
        }
    }
    let Some(now) = Seen::scan(&sources) else {
        return (None, renames);
    };
    if path.exists() {
        for r in now.renames_since(&Seen::load(path)) {
            if !renames.contains(&r) {
                renames.push(r);
            }
        }
    }
    renames.truncate(MAX_RENAMES);
    (Some(now), renames)
}

/// After a session was recorded: keep the record of followed directories (`seen`, when the
/// server knows renames; without it the next run sends no renames: slower, never wrong), and
/// note that staging now holds full paths.
pub fn session_recorded(path: &Path, seen: Option<&Seen>) {
    if let Some(seen) = seen {
        let _ = seen.save(path);
    }
    let marker = full_paths_marker(path);
    if !marker.exists() {
        // Without it the next run sends the moves from last components again: each is
        // skipped by the server (nothing there), never wrong.
        let _ = std::fs::write(marker, b"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_directory_is_one_rename_and_the_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("www");
        std::fs::create_dir_all(src.join("a/b/c")).unwrap();
        std::fs::create_dir_all(src.join("keep")).unwrap();
        std::fs::write(src.join("a/big"), vec![1u8; RENAME_MIN_FILE_BYTES as usize]).unwrap();
        std::fs::write(src.join("small"), b"x").unwrap();
        std::fs::write(src.join("big2"), vec![2u8; RENAME_MIN_FILE_BYTES as usize]).unwrap();
        let before = Seen::scan(std::slice::from_ref(&src)).unwrap();
        let file = dir.path().join("seen");
        before.save(&file).unwrap();
        assert_eq!(Seen::load(&file), before);
        assert_eq!(Seen::load(&dir.path().join("missing")), Seen::default());

        std::fs::rename(src.join("a"), src.join("keep/moved")).unwrap();
        std::fs::rename(src.join("big2"), src.join("big3")).unwrap();
        let after = Seen::scan(std::slice::from_ref(&src)).unwrap();
        let renames = after.renames_since(&Seen::load(&file));
        let www = staging_path(&src);
        let at = |p: &str| {
            let mut full = www.clone();
            full.extend_from_slice(p.as_bytes());
            full
        };
        assert_eq!(
            renames,
            vec![
                Rename::new(at("/big2"), at("/big3")),
                Rename::new(at("/a"), at("/keep/moved")),
            ]
        );
        assert!(after.renames_since(&after).is_empty());
        assert!(Seen::scan(&[PathBuf::from("/")]).is_none());
    }

    /// Until a session with full paths is recorded, every source of a client that ran before is
    /// moved from its last component to its full path (also without a record of followed
    /// directories, as in `keep` staging); once one is, no more. A first run moves nothing.
    #[test]
    fn each_source_moves_to_its_full_path_until_a_session_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("var/www");
        std::fs::create_dir_all(&www).unwrap();
        let config = crate::config::ClientConfig::parse(
            &format!(
                "name = \"web1\"\nsources = [{:?}]\n[server]\nhost = \"b\"\n\
                 ssh-key = \"/k\"\n[mail]\nfrom = \"a@b.c\"\nerrors-to = [\"a@b.c\"]\n\
                 reports-to = [\"a@b.c\"]\ntransport = \"directory\"\ndirectory = \"/tmp\"\n",
                www.display().to_string()
            ),
            Path::new("/etc/rsbackup/client.toml"),
        )
        .unwrap();
        let seen = dir.path().join("client-web1.seen");
        assert!(renames_to_send(&config, Some(&seen), true).1.is_empty());
        let (now, renames) = renames_to_send(&config, Some(&seen), false);
        assert_eq!(renames, vec![Rename::new("www", staging_path(&www))]);
        session_recorded(&seen, now.as_ref());
        assert!(full_paths_marker(&seen).exists() && seen.exists());
        let (_, renames) = renames_to_send(&config, Some(&seen), false);
        assert!(renames.is_empty(), "{renames:?}");
    }

    /// A version 1 record (each source under its last component) read by a client that now
    /// sends full paths: the source itself moved, one rename, and the record written now is
    /// version 2.
    #[test]
    fn an_old_layout_record_becomes_one_move_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("www");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        let now = Seen::scan(std::slice::from_ref(&src)).unwrap();
        let full = staging_path(&src);
        let mut v1 = SEEN_MAGIC_V1.to_vec();
        for (id, path) in &now.by_identity {
            let old = [&b"www"[..], &path[full.len()..]].concat();
            v1.extend_from_slice(&id.0.to_le_bytes());
            v1.extend_from_slice(&id.1.to_le_bytes());
            v1.extend_from_slice(&id.2.to_le_bytes());
            v1.extend_from_slice(&(old.len() as u16).to_le_bytes());
            v1.extend_from_slice(&old);
        }
        let file = dir.path().join("seen");
        std::fs::write(&file, v1).unwrap();
        assert_eq!(
            now.renames_since(&Seen::load(&file)),
            vec![Rename::new("www", full.clone())]
        );
        now.save(&file).unwrap();
        assert_eq!(&std::fs::read(&file).unwrap()[..8], &SEEN_MAGIC);
    }
}
