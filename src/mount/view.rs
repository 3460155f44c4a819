//! What the mounted filesystem shows, independent of FUSE: inode numbers, nodes and their
//! attributes, names in directories, file contents. [`super::fs`] answers the kernel from it.
//!
//! Inode numbers are computed, not allocated: `1` is the root, `2 + 2c` the directory of client
//! `c` and `3 + 2c` its `latest` link; an entry of a session is `slot << 44 | seq << 20 | idx`
//! (slot = the session's place in the list taken at mount time, from 1; `seq`, `idx` its
//! position in the manifest), so the kernel may forget and ask again at any time and nothing
//! has to be remembered per inode. A hard link is given the inode of the file it links to.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{Body, Entry, Extent};
use crate::ids::{ChunkId, SessionId};
use crate::index::SessionInfo;
use crate::reader::SessionReader;

use super::cache::Lru;
use super::tree::{Pieces, Pos, SessionTree, read_pieces};
use super::{MountOptions, Warn};

/// The root inode.
pub(super) const ROOT: u64 = 1;
const SLOT_SHIFT: u32 = 44;
const SEQ_SHIFT: u32 = 20;
/// Most sessions one mount shows.
pub(super) const MAX_SESSIONS: usize = (1 << 20) - 1;
/// Bytes of decoded manifest chunks kept (weighed by their plaintext length).
pub const MANIFEST_CACHE_BYTES: u64 = 16 << 20;

/// What an inode is.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Root,
    Client(usize),
    Latest(usize),
    /// An entry of session `slot` (index into the session list) at `pos`.
    Entry {
        slot: usize,
        pos: Pos,
        entry: Entry,
    },
}

/// A session as the mount shows it.
struct Slot {
    info: SessionInfo,
    /// Directory name: `<id>-<start time, UTC>`.
    name: String,
    /// Opened on first use.
    tree: Option<Arc<SessionTree>>,
}

/// A file opened for reading: its extents with their offsets.
pub(super) struct OpenFile {
    pub size: u64,
    pub extents: Vec<(u64, Extent)>,
    /// Session and path, for messages.
    pub what: String,
}

/// Everything the filesystem knows; one lock around it (requests are served one at a time).
pub(super) struct View {
    reader: SessionReader,
    warn: Warn,
    clients: Vec<String>,
    /// Per client, its sessions' slots, oldest first.
    by_client: Vec<Vec<usize>>,
    slots: Vec<Slot>,
    manifests: Lru<ChunkId, Pieces>,
    data: Lru<ChunkId, Arc<Vec<u8>>>,
    handles: HashMap<u64, Arc<OpenFile>>,
    next_handle: u64,
}

/// Takes one name of a listing: inode, node, name, offset after it; `false` when full.
pub(super) type AddName<'a> = dyn FnMut(u64, &Node, &[u8], u64) -> bool + 'a;

/// Inode number of an entry.
pub(super) fn entry_ino(slot: usize, pos: Pos) -> u64 {
    ((slot as u64 + 1) << SLOT_SHIFT) | (u64::from(pos.seq) << SEQ_SHIFT) | u64::from(pos.idx)
}

/// The session directory name of `info`.
pub(super) fn session_dir_name(info: &SessionInfo) -> String {
    match jiff::Timestamp::from_second(info.started) {
        Ok(ts) => format!("{}-{}", info.id, ts.strftime("%Y-%m-%dT%H:%M:%SZ")),
        Err(_) => format!("{}-@{}", info.id, info.started),
    }
}

fn not_found(what: String) -> Error {
    Error::new(ErrorKind::NotFound, what)
}

impl View {
    /// The view of `sessions` (visible sessions, oldest first).
    pub(super) fn new(
        reader: SessionReader,
        sessions: Vec<SessionInfo>,
        options: &MountOptions,
    ) -> Result<View> {
        if sessions.len() > MAX_SESSIONS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} sessions; mount shows at most {MAX_SESSIONS} (choose one with --client)",
                    sessions.len()
                ),
            ));
        }
        let mut clients: Vec<String> = Vec::new();
        let mut by_client: Vec<Vec<usize>> = Vec::new();
        let mut slots = Vec::with_capacity(sessions.len());
        for info in sessions {
            let client = match clients.iter().position(|c| *c == info.client) {
                Some(c) => c,
                None => {
                    clients.push(info.client.clone());
                    by_client.push(Vec::new());
                    clients.len() - 1
                }
            };
            by_client[client].push(slots.len());
            slots.push(Slot {
                name: session_dir_name(&info),
                info,
                tree: None,
            });
        }
        Ok(View {
            reader,
            warn: options.warn.clone(),
            clients,
            by_client,
            slots,
            manifests: Lru::new(MANIFEST_CACHE_BYTES),
            data: Lru::new(options.cache_bytes),
            handles: HashMap::new(),
            next_handle: 1,
        })
    }

    /// The session of slot `slot`, opened (its manifest read once) on first use.
    fn tree(&mut self, slot: usize) -> Result<Arc<SessionTree>> {
        if let Some(tree) = &self.slots[slot].tree {
            return Ok(tree.clone());
        }
        let id = SessionId(self.slots[slot].info.id);
        let warn = self.warn.clone();
        let tree = SessionTree::open(&self.reader, id, &mut |lost| {
            warn(&format!(
                "session {id}: manifest chunk {} of {} ({}) cannot be read, its entries are \
                 missing from the mount: {}",
                lost.seq + 1,
                lost.count,
                lost.id,
                lost.error
            ))
        })?;
        let tree = Arc::new(tree);
        self.slots[slot].tree = Some(tree.clone());
        Ok(tree)
    }

    /// Decoded pieces through the manifest cache.
    fn loader(
        reader: &SessionReader,
        cache: &mut Lru<ChunkId, Pieces>,
    ) -> impl FnMut(&SessionTree, u32) -> Result<Pieces> {
        move |tree, seq| {
            let id = tree.chunk_id(seq);
            if let Some(p) = cache.get(&id) {
                return Ok(p);
            }
            let pieces = read_pieces(reader, tree, seq)?;
            let weight = pieces.iter().map(piece_weight).sum::<u64>() + 128;
            cache.insert(id, pieces.clone(), weight);
            Ok(pieces)
        }
    }

    /// What inode `ino` is.
    pub(super) fn node(&mut self, ino: u64) -> Result<Node> {
        let missing = || not_found(format!("no inode {ino}"));
        if ino == ROOT {
            return Ok(Node::Root);
        }
        let slot = (ino >> SLOT_SHIFT) as usize;
        if slot == 0 {
            if ino < 2 {
                return Err(missing());
            }
            let c = (ino - 2) as usize / 2;
            if c >= self.clients.len() {
                return Err(missing());
            }
            return Ok(if ino.is_multiple_of(2) {
                Node::Client(c)
            } else {
                Node::Latest(c)
            });
        }
        let slot = slot - 1;
        if slot >= self.slots.len() {
            return Err(missing());
        }
        let pos = Pos {
            seq: ((ino >> SEQ_SHIFT) & ((1 << (SLOT_SHIFT - SEQ_SHIFT)) - 1)) as u32,
            idx: (ino & ((1 << SEQ_SHIFT) - 1)) as u32,
        };
        let tree = self.tree(slot)?;
        let mut load = Self::loader(&self.reader, &mut self.manifests);
        match tree.entry_at(pos, &mut load)? {
            Some(entry) => Ok(Node::Entry { slot, pos, entry }),
            None if pos == SessionTree::root_pos() => Ok(Node::Entry {
                slot,
                pos,
                entry: lost_root(&self.slots[slot].info),
            }),
            None => Err(missing()),
        }
    }

    /// Number of names of a node.
    pub(super) fn nlink(&mut self, node: &Node) -> u32 {
        match node {
            Node::Entry { slot, entry, .. } if matches!(entry.body, Body::File { .. }) => self
                .slots[*slot]
                .tree
                .as_ref()
                .map_or(1, |t| t.nlink(&entry.path)),
            _ => 1,
        }
    }

    /// The newest session start of client `c` (the time shown on its directory).
    pub(super) fn client_time(&self, c: usize) -> i64 {
        self.by_client[c]
            .last()
            .map_or(0, |&s| self.slots[s].info.started)
    }

    /// Where `latest` of client `c` points.
    pub(super) fn latest_target(&self, c: usize) -> Option<&str> {
        self.by_client[c]
            .last()
            .map(|&s| self.slots[s].name.as_str())
    }

    /// The inode of an entry as the mount shows it: a hard link resolves to its target's.
    fn shown(&mut self, slot: usize, pos: Pos, entry: Entry) -> Result<(u64, Node)> {
        if let Body::Hardlink { target } = &entry.body {
            let tree = self.tree(slot)?;
            let mut load = Self::loader(&self.reader, &mut self.manifests);
            if let Some((tpos, tentry)) = tree.find(target, &mut load)?
                && matches!(tentry.body, Body::File { .. })
            {
                return Ok((
                    entry_ino(slot, tpos),
                    Node::Entry {
                        slot,
                        pos: tpos,
                        entry: tentry,
                    },
                ));
            }
        }
        Ok((entry_ino(slot, pos), Node::Entry { slot, pos, entry }))
    }

    /// The child `name` of directory `parent`.
    pub(super) fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<(u64, Node)> {
        let absent = || not_found(format!("{:?}", String::from_utf8_lossy(name)));
        match self.node(parent)? {
            Node::Root => {
                let c = self
                    .clients
                    .iter()
                    .position(|c| c.as_bytes() == name)
                    .ok_or_else(absent)?;
                Ok((2 + 2 * c as u64, Node::Client(c)))
            }
            Node::Client(c) => {
                if name == b"latest" && !self.by_client[c].is_empty() {
                    return Ok((3 + 2 * c as u64, Node::Latest(c)));
                }
                let slot = *self.by_client[c]
                    .iter()
                    .find(|&&s| self.slots[s].name.as_bytes() == name)
                    .ok_or_else(absent)?;
                self.tree(slot)?;
                let pos = SessionTree::root_pos();
                let ino = entry_ino(slot, pos);
                Ok((ino, self.node(ino)?))
            }
            Node::Latest(_) => Err(Error::new(ErrorKind::InvalidInput, "not a directory")),
            Node::Entry { slot, entry, .. } => {
                if !matches!(entry.body, Body::Dir) {
                    return Err(Error::new(ErrorKind::InvalidInput, "not a directory"));
                }
                let path = if entry.path.is_empty() {
                    name.to_vec()
                } else {
                    [&entry.path[..], b"/", name].concat()
                };
                let tree = self.tree(slot)?;
                let found = {
                    let mut load = Self::loader(&self.reader, &mut self.manifests);
                    tree.find(&path, &mut load)?
                };
                let (pos, child) = found.ok_or_else(absent)?;
                self.shown(slot, pos, child)
            }
        }
    }

    /// Names in directory `dir` from `offset` (0 at the start; otherwise a value this function
    /// gave with an earlier name), each with its inode, node and the offset after it. `add`
    /// returns `false` when the kernel's buffer is full.
    pub(super) fn list(&mut self, dir: u64, offset: u64, add: &mut AddName<'_>) -> Result<()> {
        match self.node(dir)? {
            Node::Root => {
                for (c, name) in self.clients.iter().enumerate().skip(offset as usize) {
                    if !add(
                        2 + 2 * c as u64,
                        &Node::Client(c),
                        name.as_bytes(),
                        c as u64 + 1,
                    ) {
                        break;
                    }
                }
                Ok(())
            }
            Node::Client(c) => {
                let sessions = &self.by_client[c];
                if offset == 0
                    && !sessions.is_empty()
                    && !add(3 + 2 * c as u64, &Node::Latest(c), b"latest", 1)
                {
                    return Ok(());
                }
                for (i, &slot) in sessions.iter().enumerate().skip(offset.max(1) as usize - 1) {
                    let ino = entry_ino(slot, SessionTree::root_pos());
                    let node = Node::Entry {
                        slot,
                        pos: SessionTree::root_pos(),
                        entry: lost_root(&self.slots[slot].info),
                    };
                    if !add(ino, &node, self.slots[slot].name.as_bytes(), i as u64 + 2) {
                        break;
                    }
                }
                Ok(())
            }
            Node::Latest(_) => Err(Error::new(ErrorKind::InvalidInput, "not a directory")),
            Node::Entry {
                slot, pos, entry, ..
            } => {
                if !matches!(entry.body, Body::Dir) {
                    return Err(Error::new(ErrorKind::InvalidInput, "not a directory"));
                }
                let tree = self.tree(slot)?;
                let from = if offset == 0 {
                    tree.next(pos)
                } else {
                    unpack_pos(offset - 1)
                };
                let mut found = Vec::new();
                {
                    let mut load = Self::loader(&self.reader, &mut self.manifests);
                    // Collect a batch, then resolve hard links (which needs the loader again).
                    let mut room = 256usize;
                    tree.children(&entry.path, from, &mut load, &mut |p, e, after| {
                        if room == 0 {
                            return Ok(false);
                        }
                        room -= 1;
                        found.push((p, e.clone(), after));
                        Ok(true)
                    })?;
                }
                for (p, child, after) in found {
                    let name = child.path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
                    let name = name.to_vec();
                    let (ino, node) = self.shown(slot, p, child)?;
                    if !add(ino, &node, &name, pack_pos(after) + 1) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Open the file `ino` for reading.
    pub(super) fn open(&mut self, ino: u64) -> Result<u64> {
        let Node::Entry { slot, pos, entry } = self.node(ino)? else {
            return Err(Error::new(ErrorKind::InvalidInput, "not a file"));
        };
        let what = format!(
            "session {}, {:?}",
            self.slots[slot].info.id,
            String::from_utf8_lossy(&entry.path)
        );
        let file = match &entry.body {
            Body::File { size, .. } => {
                let tree = self.tree(slot)?;
                let mut load = Self::loader(&self.reader, &mut self.manifests);
                let extents = tree
                    .file_extents(pos, &mut load)
                    .map_err(|e| e.context(&what))?;
                OpenFile {
                    size: *size,
                    extents,
                    what,
                }
            }
            Body::Unreadable { message } => {
                return Err(Error::corrupt(format!(
                    "{what} could not be backed up: {message}"
                )));
            }
            Body::Hardlink { target } => {
                return Err(Error::corrupt(format!(
                    "{what} is a hard link to {:?}, which the session does not have as a file",
                    String::from_utf8_lossy(target)
                )));
            }
            _ => return Err(Error::new(ErrorKind::InvalidInput, "not a file")),
        };
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, Arc::new(file));
        Ok(fh)
    }

    /// Forget an open file.
    pub(super) fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// Up to `size` bytes of open file `fh` from `offset`; an unreadable chunk fails the read
    /// (`Corrupt`, naming the file and the chunk).
    pub(super) fn read(&mut self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let file = self
            .handles
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "unknown file handle"))?;
        let end = file.size.min(offset.saturating_add(u64::from(size)));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = file.extents.partition_point(|(start, _)| *start <= offset);
        at = at.saturating_sub(1);
        let mut pos = offset;
        while pos < end && at < file.extents.len() {
            let (start, extent) = &file.extents[at];
            match extent {
                Extent::Hole { len } => {
                    let stop = end.min(start + len);
                    out.resize(out.len() + (stop - pos) as usize, 0);
                    pos = stop;
                }
                Extent::Inline { data } => {
                    let stop = end.min(start + data.len() as u64);
                    out.extend_from_slice(&data[(pos - start) as usize..(stop - start) as usize]);
                    pos = stop;
                }
                Extent::Chunk { len, id } => {
                    let bytes = self
                        .data_chunk(id, *len)
                        .map_err(|e| e.context(&file.what))?;
                    let stop = end.min(start + u64::from(*len));
                    out.extend_from_slice(&bytes[(pos - start) as usize..(stop - start) as usize]);
                    pos = stop;
                }
            }
            at += 1;
        }
        Ok(out)
    }

    /// A data chunk's plaintext, through the cache; it must be `len` bytes.
    fn data_chunk(&mut self, id: &ChunkId, len: u32) -> Result<Arc<Vec<u8>>> {
        if let Some(bytes) = self.data.get(id) {
            return Ok(bytes);
        }
        let bytes = self.reader.read_chunk(id)?;
        if bytes.len() != len as usize {
            return Err(Error::corrupt(format!(
                "chunk {id} holds {} bytes where the manifest says {len}",
                bytes.len()
            )));
        }
        let bytes = Arc::new(bytes);
        self.data.insert(*id, bytes.clone(), data_weight(len));
        Ok(bytes)
    }

    /// Report a problem (on the mount's warning channel).
    pub(super) fn warn(&self, message: &str) {
        (self.warn)(message)
    }
}

/// A readdir offset for a position (the kernel hands it back to resume).
fn pack_pos(pos: Pos) -> u64 {
    (u64::from(pos.seq) << SEQ_SHIFT) | u64::from(pos.idx)
}

fn unpack_pos(v: u64) -> Pos {
    Pos {
        seq: (v >> SEQ_SHIFT) as u32,
        idx: (v & ((1 << SEQ_SHIFT) - 1)) as u32,
    }
}

/// Memory of a decoded piece, for the manifest cache's bound: the value itself and what it
/// owns on the heap (allocator overhead included roughly).
fn piece_weight(piece: &crate::format::manifest::Piece) -> u64 {
    use crate::format::manifest::Piece;
    const VEC: usize = 16; // allocator overhead of one heap block, roughly
    let extents = |e: &[Extent]| VEC + std::mem::size_of_val(e);
    let owned = match piece {
        Piece::Entry(e) => {
            VEC + e.path.len()
                + e.meta
                    .xattrs
                    .iter()
                    .map(|(n, v)| 2 * VEC + 48 + n.len() + v.len())
                    .sum::<usize>()
                + match &e.body {
                    Body::File { extents: x, .. } => extents(x),
                    Body::Symlink { target } | Body::Hardlink { target } => VEC + target.len(),
                    Body::Unreadable { message } => VEC + message.len(),
                    _ => 0,
                }
        }
        Piece::Continued { path, extents: x } => VEC + path.len() + extents(x),
    };
    (std::mem::size_of::<Piece>() + owned) as u64
}

/// Memory of a cached data chunk: its bytes plus the cache's own bookkeeping.
fn data_weight(len: u32) -> u64 {
    u64::from(len) + 128
}

/// What a session directory shows when its root entry cannot be read: an unreadable,
/// empty-looking directory dated at the session's start.
fn lost_root(info: &SessionInfo) -> Entry {
    Entry {
        path: Vec::new(),
        meta: crate::format::manifest::Meta {
            mode: 0o555,
            mtime_sec: info.started,
            ..Default::default()
        },
        body: Body::Dir,
    }
}
