//! Client scopes against a real repository on disk: what a client's identity opens (its own
//! keys and chunks, nothing of another client's, even with the whole repository in hand), the
//! fetch protocol end to end over a socket pair, and a rewrap that keeps a client's recipient.

use std::os::unix::net::UnixStream;
use std::path::Path;

use super::remote::RemoteSource;
use super::serve::serve_fetch;
use crate::crypto::wrap::{Identities, keygen, unwrap_data_key_scoped};
use crate::error::ErrorKind;
use crate::format::manifest::{Body, Extent};
use crate::gc::Failpoint;
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::ingest::{IngestOptions, ingest};
use crate::reader::ChunkSource;
use crate::restore::testutil::TestRepo;
use crate::restore::{RestoreOptions, restore};

/// An identity and its recipient.
fn identity() -> (Identities, String) {
    let (text, recipient) = keygen();
    (
        Identities::parse(&text, "client identity").unwrap(),
        recipient,
    )
}

/// A small tree: one file shared by every client's tree, one of its own.
fn tree(root: &Path, own: &[u8]) {
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(
        root.join("d/shared.bin"),
        crate::restore::testutil::noise(7, 200_000),
    )
    .unwrap();
    std::fs::write(root.join("own.txt"), own).unwrap();
}

/// Ingest `root` as `client`, in its own scope when `recipient` is given.
fn push(t: &TestRepo, client: &str, root: &Path, recipient: Option<&str>) -> SessionId {
    let report = ingest(
        &t.repo,
        &IngestOptions {
            client: client.into(),
            source: root.to_path_buf(),
            threads: Some(2),
            files_cache: false,
            sources: None,
            restore_recipient: recipient.map(str::to_owned),
        },
    )
    .unwrap();
    SessionId(report.session)
}

type Served = std::thread::JoinHandle<crate::error::Result<super::serve::FetchStats>>;

/// Client "a" connected with `ids` to a fetch server of `t` on a thread.
fn serve_a(t: &TestRepo, ids: Identities) -> (RemoteSource<UnixStream, UnixStream>, Served) {
    let (server_end, client_end) = UnixStream::pair().unwrap();
    let root = t.repo.root().to_path_buf();
    let server = std::thread::spawn(move || {
        let repo = crate::repo::Repo::open(&root).unwrap();
        serve_fetch(
            &repo,
            "a",
            server_end.try_clone().unwrap(),
            server_end,
            &mut |_| {},
        )
    });
    let source = RemoteSource::connect(
        client_end.try_clone().unwrap(),
        client_end,
        "a",
        ids,
        super::wire::MIN_PROTOCOL_VERSION,
    )
    .unwrap();
    (source, server)
}

/// Every chunk `session` holds (its root and the chunks its files name), read by the
/// administrator.
fn chunks_of(t: &TestRepo, session: SessionId) -> Vec<ChunkId> {
    let reader = t.reader();
    let mut ids = reader.session_root(session).unwrap();
    reader
        .for_each_entry(session, &mut |e| {
            if let Body::File { extents, .. } = e.body {
                for x in extents {
                    if let Extent::Chunk { id, .. } = x {
                        ids.push(id);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    ids
}

fn key_of(t: &TestRepo, id: &ChunkId) -> KeyId {
    t.repo
        .index()
        .unwrap()
        .lookup_chunk(id)
        .unwrap()
        .unwrap()
        .key_id
}

/// Client A's identity opens A's data key and no other (B's scope, the repository-wide
/// scope), and every chunk a session of B holds is sealed under a key A cannot open, although
/// the trees share a file: the scopes share no chunk.
#[test]
fn a_clients_identity_cannot_open_another_clients_keys_or_chunks() {
    let t = TestRepo::new();
    let (a_ids, a_rec) = identity();
    let (_, b_rec) = identity();
    let (ra, rb, rc) = (t.path("a"), t.path("b"), t.path("c"));
    tree(&ra, b"a's own");
    tree(&rb, b"b's own");
    tree(&rc, b"c's own");
    let a = push(&t, "a", &ra, Some(&a_rec));
    let b = push(&t, "b", &rb, Some(&b_rec));
    let c = push(&t, "c", &rc, None);
    let (ca, cb, cc) = (chunks_of(&t, a), chunks_of(&t, b), chunks_of(&t, c));
    for other in [&cb, &cc] {
        assert!(ca.iter().all(|id| !other.contains(id)), "a shares a chunk");
    }
    let index = t.repo.index().unwrap();
    let mut opened = Vec::new();
    for key in index.data_key_ids().unwrap() {
        match unwrap_data_key_scoped(&index.data_key(key).unwrap(), &a_ids) {
            Ok(k) => opened.push((key, k.scope.map(|s| s.client))),
            Err(e) => assert_eq!(e.kind(), ErrorKind::WrongIdentity, "{e}"),
        }
    }
    assert_eq!(opened, [(key_of(&t, &ca[0]), Some("a".to_owned()))]);
    for id in cb.iter().chain(&cc) {
        let wrapped = index.data_key(key_of(&t, id)).unwrap();
        let err = unwrap_data_key_scoped(&wrapped, &a_ids).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongIdentity);
        assert!(index.client_chunk("a", &[], id).unwrap().is_none());
    }
    // The administrator still reads every scope.
    let reader = t.reader();
    for id in ca.iter().chain(&cb).chain(&cc) {
        reader.read_chunk(id).unwrap();
    }
}

/// The protocol end to end over a socket pair: A restores its session with its own identity,
/// equal to the tree; asking for a chunk only B's session holds is refused, and `refuse` hears
/// why.
#[test]
fn a_client_restores_over_the_fetch_protocol_and_is_refused_anothers_chunk() {
    let t = TestRepo::new();
    let (a_ids, a_rec) = identity();
    let (_, b_rec) = identity();
    let (ra, rb) = (t.path("a"), t.path("b"));
    tree(&ra, b"a's own");
    tree(&rb, b"b's own");
    let a = push(&t, "a", &ra, Some(&a_rec));
    let b = push(&t, "b", &rb, Some(&b_rec));
    let theirs = chunks_of(&t, b);
    let (server_end, client_end) = UnixStream::pair().unwrap();
    let root = t.repo.root().to_path_buf();
    let server = std::thread::spawn(move || {
        let repo = crate::repo::Repo::open(&root).unwrap();
        let mut refused = Vec::new();
        let result = serve_fetch(
            &repo,
            "a",
            server_end.try_clone().unwrap(),
            server_end,
            &mut |why| refused.push(why),
        );
        (result, refused)
    });
    let source = RemoteSource::connect(
        client_end.try_clone().unwrap(),
        client_end,
        "a",
        a_ids,
        super::wire::MIN_PROTOCOL_VERSION,
    )
    .unwrap();
    assert_eq!(
        source
            .sessions()
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        [a.0]
    );
    let target = t.path("restored");
    let report = restore(
        &source,
        a,
        &RestoreOptions {
            target: target.clone(),
            ..RestoreOptions::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for name in ["d/shared.bin", "own.txt"] {
        assert_eq!(
            std::fs::read(target.join(name)).unwrap(),
            std::fs::read(ra.join(name)).unwrap()
        );
    }
    // Chunks read after a prefetch cost no request each: one for the lot.
    let big = t.path("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(
        big.join("big.bin"),
        crate::restore::testutil::noise(8, 6 << 20),
    )
    .unwrap();
    let session = push(&t, "a", &big, Some(&a_rec));
    let ours = chunks_of(&t, session);
    let data = &ours[t.reader().session_root(session).unwrap().len()..];
    assert!(data.len() >= 2, "{} data chunks", data.len());
    let before = source.requests();
    source.prefetch(data);
    for id in data {
        source
            .read_chunk_of(id, crate::index::ChunkKind::Data)
            .unwrap();
    }
    assert_eq!(source.requests(), before + 1);

    let err = source.fetch(&theirs[..1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    drop(source);
    let (result, refused) = server.join().unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Refused);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains("which no session of client a holds"),
        "{refused:?}"
    );
}

/// A rewrap keeps a client's own keys wrapped to its restore recipient; a changed recipient
/// (recorded as server.toml says) and a rewrap move them to the new one, and a removed one
/// leaves them to the repository's recipients alone.
#[test]
fn rewrap_keeps_and_moves_a_clients_recipient() {
    let t = TestRepo::new();
    let (old_ids, old_rec) = identity();
    let (new_ids, new_rec) = identity();
    let root = t.path("a");
    tree(&root, b"a's own");
    let a = push(&t, "a", &root, Some(&old_rec));
    let key = key_of(&t, &chunks_of(&t, a)[0]);
    let opens = |ids: &Identities| {
        let wrapped = t.repo.index().unwrap().data_key(key).unwrap();
        unwrap_data_key_scoped(&wrapped, ids).map(|k| k.scope.unwrap().client)
    };
    let admin = t.identities();
    let report = crate::keys::rewrap(&t.repo, &admin, &Failpoint::default()).unwrap();
    assert_eq!(report.client_recipients.get("a"), Some(&old_rec));
    assert_eq!(opens(&old_ids).unwrap(), "a");

    crate::keys::set_restore_recipients(&t.repo, &[("a".into(), Some(new_rec.clone()))]).unwrap();
    crate::keys::rewrap(&t.repo, &admin, &Failpoint::default()).unwrap();
    assert_eq!(opens(&new_ids).unwrap(), "a");
    assert_eq!(
        opens(&old_ids).unwrap_err().kind(),
        ErrorKind::WrongIdentity
    );
    // The key file beside the packs follows the index.
    let file = std::fs::read(crate::store::records::data_key_path(t.repo.root(), key)).unwrap();
    assert!(unwrap_data_key_scoped(&file, &new_ids).is_ok());

    crate::keys::set_restore_recipients(&t.repo, &[("a".into(), None)]).unwrap();
    crate::keys::rewrap(&t.repo, &admin, &Failpoint::default()).unwrap();
    assert_eq!(
        opens(&new_ids).unwrap_err().kind(),
        ErrorKind::WrongIdentity
    );
    assert_eq!(opens(&admin).unwrap(), "a");
    // The administrator still restores it, ids checked under the client's scope.
    t.reader().read_chunk(&chunks_of(&t, a)[0]).unwrap();
}

/// A walk of a session cut into many manifest chunks asks the server for them a window at a
/// time, not one request each, and still visits every entry.
#[test]
fn a_manifest_walk_fetches_its_chunks_in_windows() {
    let t = TestRepo::new();
    let (ids, rec) = identity();
    let src = t.path("many");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..1500u32 {
        // Over the inline limit, so that every file is an entry with a chunk reference.
        let mut data = crate::restore::testutil::noise(u64::from(i), 1100);
        data.extend_from_slice(&i.to_le_bytes());
        std::fs::write(src.join(format!("file-{i:05}-with-a-longer-name")), data).unwrap();
    }
    let session = push(&t, "a", &src, Some(&rec));
    let manifest_chunks = t.reader().session_root(session).unwrap().len();
    assert!(manifest_chunks > 128, "{manifest_chunks} manifest chunks");
    let (source, server) = serve_a(&t, ids);
    let before = source.requests();
    let mut entries = 0;
    crate::reader::walk_source(
        &source,
        session,
        &mut |_| {
            entries += 1;
            Ok(std::ops::ControlFlow::Continue(()))
        },
        None,
    )
    .unwrap();
    assert_eq!(entries, 1501, "the root and every file");
    let requests = source.requests() - before;
    assert!(
        requests <= 2 + manifest_chunks.div_ceil(64) as u64,
        "{requests} requests for {manifest_chunks} manifest chunks"
    );
    drop(source);
    server.join().unwrap().unwrap();
}

/// A client that needs version 2 (a session's sources) and meets a server of version 1 only is
/// told the server is older and what to do, not a bare protocol error.
#[test]
fn a_version_2_greeting_to_an_older_server_says_so() {
    use super::wire::{Conn, Message, SOURCES_VERSION, code};
    let (server_end, client_end) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let mut conn = Conn::new(server_end.try_clone().unwrap(), server_end);
        assert_eq!(conn.recv().unwrap(), Message::Hello(SOURCES_VERSION));
        // What a server that speaks version 1 alone answers.
        conn.send(&Message::Error {
            code: code::PROTOCOL,
            message: "protocol version 2 is not 1, the one this server speaks".into(),
        })
        .unwrap();
    });
    let (ids, _) = identity();
    let err = RemoteSource::connect(
        client_end.try_clone().unwrap(),
        client_end,
        "a",
        ids,
        SOURCES_VERSION,
    )
    .err()
    .expect("an older server cannot serve version 2");
    server.join().unwrap();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    assert!(err.message().contains("older"), "{}", err.message());
    assert!(
        err.message().contains("--to-original-paths"),
        "{}",
        err.message()
    );
}

/// A client restoring over the fetch protocol opens chunks compressed with the dictionary its
/// scope's key carries: the key travels with them; a rewrap keeps it.
#[test]
fn a_client_restores_chunks_compressed_with_a_dictionary() {
    let t = TestRepo::new();
    let (ids, rec) = identity();
    let src = t.path("src");
    crate::restore::testutil::small_files(&src, 900);
    let session = push(&t, "a", &src, Some(&rec));
    let index = t.repo.index().unwrap();
    let keys = index.data_key_ids().unwrap();
    assert_eq!(keys.len(), 2, "a second key, with the dictionary");
    let second = unwrap_data_key_scoped(&index.data_key(keys[1]).unwrap(), &ids).unwrap();
    assert!(second.key.dictionary().is_some() && second.scope.is_some());
    let (source, server) = serve_a(&t, ids);
    let target = t.path("restored");
    let report = restore(
        &source,
        session,
        &RestoreOptions {
            target: target.clone(),
            ..RestoreOptions::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for i in [0usize, 450, 899] {
        let rel = format!("d{}/f{i}.rs", i % 20);
        assert_eq!(
            std::fs::read(target.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    drop(source);
    server.join().unwrap().unwrap();
    // A rewrap wraps the key again with its dictionary.
    crate::keys::rewrap(&t.repo, &t.identities(), &Failpoint::default()).unwrap();
    let wrapped = t.repo.index().unwrap().data_key(keys[1]).unwrap();
    let again = unwrap_data_key_scoped(&wrapped, &t.identities()).unwrap();
    assert_eq!(
        again.key.dictionary().unwrap().bytes(),
        second.key.dictionary().unwrap().bytes()
    );
}
