//! Test helpers shared by the reader, restore and check tests: a real repository in a temporary
//! directory, and sessions built by hand with the lower layers (so that a test can store exactly
//! the manifest it needs, including ones ingest would never write).

use std::path::PathBuf;

use crate::crypto::envelope::seal;
use crate::crypto::wrap::{Identities, keygen, wrap_data_key};
use crate::crypto::{ChunkIdKey, DataKey, context};
use crate::format::manifest::{Body, Entry, Extent, ManifestBuilder, Meta};
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::index::{ChunkKind, SessionState, SessionStats};
use crate::repo::Repo;
use crate::store::{PackWriter, PendingChunk};

/// A repository with its identity.
pub(crate) struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repo,
    identity_text: String,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let (identity_text, recipient) = keygen();
        let repo = Repo::init(&dir.path().join("repo"), &[recipient]).unwrap();
        TestRepo {
            dir,
            repo,
            identity_text,
        }
    }

    pub fn identities(&self) -> Identities {
        Identities::parse(&self.identity_text, "test identity").unwrap()
    }

    /// Restore the whole of `session` into `target` (which must not exist or be empty).
    pub fn restore_all(
        &self,
        session: SessionId,
        target: &std::path::Path,
    ) -> crate::restore::RestoreReport {
        crate::restore::restore(
            &self.reader(),
            session,
            &crate::restore::RestoreOptions {
                target: target.to_path_buf(),
                paths: Vec::new(),
                allow_non_empty: false,
                restore_owner: false,
            },
        )
        .unwrap()
    }

    /// A fresh path in the temporary directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn reader(&self) -> crate::reader::SessionReader {
        crate::reader::SessionReader::new(&self.repo, self.identities()).unwrap()
    }
}

/// A piece of a file's content.
pub(crate) enum Piece {
    /// Stored as one chunk.
    Data(Vec<u8>),
    /// A hole of that many zero bytes.
    Hole(u64),
    /// Kept inline in the manifest entry (manifest version 2).
    Inline(Vec<u8>),
}

/// Collects chunks and entries of one session, then stores them.
pub(crate) struct SessionBuilder<'t> {
    t: &'t TestRepo,
    id_key: ChunkIdKey,
    key: DataKey,
    key_id: KeyId,
    chunks: Vec<PendingChunk>,
    entries: Vec<Entry>,
}

pub(crate) fn meta(mode: u32, mtime: i64) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime_sec: mtime,
        mtime_nsec: 123_456_789,
        xattrs: Vec::new(),
    }
}

impl<'t> SessionBuilder<'t> {
    pub fn new(t: &'t TestRepo) -> Self {
        let secret = t.repo.load_secret().unwrap();
        let key = DataKey::generate();
        let wrapped = wrap_data_key(&key, &t.repo.recipients().unwrap()).unwrap();
        let key_id = t
            .repo
            .index()
            .unwrap()
            .insert_data_key(&wrapped, 1)
            .unwrap();
        crate::store::records::write_data_key(t.repo.root(), key_id, &wrapped).unwrap();
        SessionBuilder {
            t,
            id_key: secret.chunk_id_key(),
            key,
            key_id,
            chunks: Vec::new(),
            entries: vec![Entry {
                path: Vec::new(),
                meta: meta(0o755, 1_700_000_000),
                body: Body::Dir,
            }],
        }
    }

    /// Store `data` as a chunk (once) and return its id.
    pub fn chunk(&mut self, data: &[u8]) -> ChunkId {
        let id = self.id_key.chunk_id(data);
        if !self.chunks.iter().any(|c| c.id == id) {
            let envelope = seal(&self.key, self.key_id, &id, data, 3).unwrap();
            self.chunks.push(PendingChunk {
                id,
                kind: ChunkKind::Data,
                key_id: self.key_id,
                envelope,
                refs: Vec::new(),
            });
        }
        id
    }

    pub fn entry(&mut self, path: &[u8], meta: Meta, body: Body) -> &mut Self {
        self.entries.push(Entry {
            path: path.to_vec(),
            meta,
            body,
        });
        self
    }

    pub fn dir(&mut self, path: &[u8]) -> &mut Self {
        self.entry(path, meta(0o755, 1_600_000_000), Body::Dir)
    }

    /// A regular file of the given pieces.
    pub fn file_pieces(&mut self, path: &[u8], meta: Meta, pieces: Vec<Piece>) -> &mut Self {
        let mut size = 0;
        let mut extents = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Data(data) => {
                    size += data.len() as u64;
                    let id = self.chunk(&data);
                    extents.push(Extent::Chunk {
                        len: data.len() as u32,
                        id,
                    });
                }
                Piece::Hole(len) => {
                    size += len;
                    extents.push(Extent::Hole { len });
                }
                Piece::Inline(data) => {
                    size += data.len() as u64;
                    extents.push(Extent::Inline { data });
                }
            }
        }
        self.entry(path, meta, Body::File { size, extents })
    }

    /// A regular file cut into chunks of at most 64 KiB.
    pub fn file(&mut self, path: &[u8], content: &[u8]) -> &mut Self {
        let pieces = content
            .chunks(64 << 10)
            .map(|c| Piece::Data(c.to_vec()))
            .collect();
        self.file_pieces(path, meta(0o644, 1_650_000_000), pieces)
    }

    /// Store everything as a complete session.
    pub fn commit(&mut self) -> SessionId {
        let repo = &self.t.repo;
        let secret = repo.load_secret().unwrap();
        let cut_key = *secret.derive(context::MANIFEST_CUT);
        let mut builder = ManifestBuilder::new(repo.config().manifest, cut_key);
        let mut manifest_chunks = Vec::new();
        for entry in &self.entries {
            manifest_chunks.extend(builder.push(entry).unwrap());
        }
        manifest_chunks.extend(builder.finish());
        let writer = repo.start_writer(crate::repo::Operation::Ingest).unwrap();
        let index = repo.index().unwrap();
        let session = index.create_session("test", &writer.id, 1).unwrap();
        let mut root = Vec::new();
        {
            let mut packs = PackWriter::new(repo.root(), &index, &writer.id, 1 << 20);
            for chunk in self.chunks.drain(..) {
                packs.append(chunk).unwrap();
            }
            for m in manifest_chunks {
                let id = self.id_key.chunk_id(&m.bytes);
                let envelope = seal(&self.key, self.key_id, &id, &m.bytes, 3).unwrap();
                root.push(id);
                packs
                    .append(PendingChunk {
                        id,
                        kind: ChunkKind::Manifest,
                        key_id: self.key_id,
                        envelope,
                        refs: m.refs,
                    })
                    .unwrap();
            }
            packs.finish().unwrap();
        }
        let stats = SessionStats {
            files: self.entries.len() as u64,
            ..SessionStats::default()
        };
        let record = crate::format::records::SessionRecord {
            id: session.0,
            client: "test".into(),
            state: crate::format::records::RecordState::Complete,
            reason: None,
            pinned: false,
            started: 1,
            finished: 2,
            files: stats.files,
            bytes: 0,
            errors: 0,
            new_chunks: 0,
            new_bytes: 0,
            root: root.clone(),
        };
        crate::store::records::write_session_record(repo.root(), &record).unwrap();
        index
            .finish_session(session, SessionState::Complete, 2, &stats, &root)
            .unwrap();
        session
    }
}

/// Deterministic pseudo-random bytes (xorshift): incompressible, distinct per seed.
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `n` small source-like files of 2 to 5 KiB (over the inline limit, so each is a chunk).
pub fn small_files(root: &std::path::Path, n: usize) {
    for i in 0..n {
        let mut text = format!("//! File {i}.\nuse std::collections::BTreeMap;\n\n");
        for j in 0..(20 + i % 40) {
            text.push_str(&format!(
                "pub fn item_{i}_{j}(map: &BTreeMap<String, u64>) -> Option<u64> {{\n    \
                 map.get(\"key-{j}\").copied().map(|v| v.wrapping_mul({}))\n}}\n",
                (i * 31 + j) % 97
            ));
        }
        let dir = root.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.rs")), text).unwrap();
    }
}
