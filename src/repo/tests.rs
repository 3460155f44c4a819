use super::*;
use crate::crypto::wrap::keygen;
use crate::ids::{ChunkId, PackName};
use crate::index::{ChunkKind, SessionState, SessionStats};
use crate::store::{PackWriter, PendingChunk};

fn new_repo() -> (tempfile::TempDir, Repo, Identities) {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen();
    let root = dir.path().join("repo");
    let repo = Repo::init(&root, &[recipient]).unwrap();
    let ids = Identities::parse(&identity, "test identity").unwrap();
    (dir, repo, ids)
}

#[test]
fn init_then_open_round_trip() {
    let (_dir, repo, ids) = new_repo();
    let root = repo.root().to_path_buf();
    for path in [
        "repository.toml",
        "index.db",
        "lock",
        "keys/secret",
        "keys/secret.age",
    ] {
        assert!(root.join(path).is_file(), "{path} missing");
    }
    for dir in ["keys", "locks", "packs", "cache", "tmp"] {
        assert!(root.join(dir).is_dir(), "{dir} missing");
    }
    let keys_mode = std::fs::metadata(root.join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(keys_mode & 0o777, 0o700);
    let mode = std::fs::metadata(root.join("keys/secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret_file = std::fs::read(root.join("keys/secret")).unwrap();
    assert_eq!(&secret_file[..8], b"RSBKSEC1");
    assert_eq!(secret_file.len(), 40);

    let opened = Repo::open(&root).unwrap();
    assert_eq!(opened.config(), repo.config());
    assert_eq!(opened.config().chunker, ChunkerParams::DEFAULT);
    assert_eq!(opened.config().pack_target_size, 32 << 20);
    assert_eq!(opened.config().zstd_level, crate::repo::DEFAULT_ZSTD_LEVEL);
    assert_eq!(crate::repo::DEFAULT_ZSTD_LEVEL, 1);
    assert_eq!(opened.recipients().unwrap().0.len(), 1);
    let index = opened.index().unwrap();
    assert_eq!(index.repository_id().unwrap(), opened.config().id);

    let server = opened.load_secret().unwrap();
    let unlocked = opened.unlock_secret(&ids).unwrap();
    assert_eq!(server.expose(), unlocked.expose());
    assert_eq!(format!("{server:?}"), "RepoSecret(..)");

    let (other, _) = keygen();
    let other = Identities::parse(&other, "other").unwrap();
    assert_eq!(
        opened.unlock_secret(&other).unwrap_err().kind(),
        ErrorKind::WrongIdentity
    );
}

#[test]
fn init_refuses_a_non_empty_directory_and_bad_recipients() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    let (_, recipient) = keygen();
    let err = Repo::init(dir.path(), std::slice::from_ref(&recipient)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("not empty"), "{}", err.message());
    assert!(err.message().contains(&dir.path().display().to_string()));

    let target = dir.path().join("repo");
    assert!(Repo::init(&target, &["age1nonsense".into()]).is_err());
    assert!(Repo::init(&target, &[]).is_err());
    assert!(!target.exists(), "a refused init must leave nothing behind");
    // An existing empty directory is fine.
    std::fs::create_dir(&target).unwrap();
    Repo::init(&target, &[recipient]).unwrap();
}

#[test]
fn open_refusals_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = Repo::open(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotARepository);
    assert!(
        err.message().contains(&missing.display().to_string()),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("does not exist"),
        "{}",
        err.message()
    );

    let err = Repo::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotARepository);
    assert!(
        err.message().contains("no repository.toml"),
        "{}",
        err.message()
    );

    let (_dir, repo, _) = new_repo();
    let toml_path = repo.root().join("repository.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(
        &toml_path,
        text.replace("version = 1", "version = 7\nshiny = 1"),
    )
    .unwrap();
    let err = Repo::open(repo.root()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);

    std::fs::write(
        &toml_path,
        text.replace("[packs]\n", "[packs]\nspeed = 9\n"),
    )
    .unwrap();
    let err = Repo::open(repo.root()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let line = text.lines().position(|l| l == "[packs]").unwrap() + 2;
    assert!(
        err.message().contains(&format!("line {line}:")),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("repository.toml"),
        "{}",
        err.message()
    );
}

#[test]
fn secrets_that_do_not_match_are_refused() {
    let (_dir, repo, _) = new_repo();
    let path = repo.root().join("keys/secret");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = repo.load_secret().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("secret-check"), "{}", err.message());
    std::fs::write(&path, &bytes[..39]).unwrap();
    assert_eq!(repo.load_secret().unwrap_err().kind(), ErrorKind::Corrupt);

    // An index from another repository is refused.
    let (_dir2, other, _) = new_repo();
    std::fs::copy(other.root().join("index.db"), repo.root().join("index.db")).unwrap();
    let err = repo.index().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains(&other.config().id),
        "{}",
        err.message()
    );
}

#[test]
fn exclusive_lock_conflicts_with_writers() {
    let (_dir, repo, _) = new_repo();
    let writer = repo.start_writer(crate::repo::Operation::Ingest).unwrap();
    let err = repo.lock_exclusive(false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(
        err.message().contains("locked by another process"),
        "{}",
        err.message()
    );
    let lock_file = repo.root().join(format!("locks/{}.lock", writer.id));
    assert!(lock_file.exists());
    drop(writer);
    assert!(
        !lock_file.exists(),
        "a finished writer removes its lock file"
    );
    let exclusive = repo.lock_exclusive(false).unwrap();
    // Two shared holders at once are fine; shared waits are not tested while exclusive.
    drop(exclusive);
    let _a = repo.lock_shared().unwrap();
    let _b = repo.lock_shared().unwrap();
}

/// Leave what a writer killed mid-ingest leaves: a pack row in state `writing` with its file,
/// a running session, and (optionally) its lock file, not locked by anyone.
fn simulate_writer(repo: &Repo, writer: &WriterId, with_lock_file: bool) -> (PackName, i64) {
    let index = repo.index().unwrap();
    let key = index.insert_data_key(b"k", 1).unwrap();
    // One sealed pack: it must survive the cleanup.
    let mut w = PackWriter::new(repo.root(), &index, writer, 1 << 20);
    let id = ChunkId(crate::crypto::random_array());
    w.append(PendingChunk {
        id,
        kind: ChunkKind::Manifest,
        key_id: key,
        envelope: vec![1; 10],
        refs: vec![],
    })
    .unwrap();
    w.finish().unwrap();
    let name = PackName::random();
    index.begin_pack(&name, writer, 1).unwrap();
    let path = pack_path(repo.root(), &name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"RSBKPACK partial").unwrap();
    let session = index.create_session("web1", writer, 1).unwrap();
    if with_lock_file {
        std::fs::write(repo.root().join(format!("locks/{writer}.lock")), b"").unwrap();
    }
    (name, session.0)
}

#[test]
fn cleanup_removes_dead_writers_and_spares_live_ones() {
    let (_dir, repo, _) = new_repo();
    let live = repo.start_writer(crate::repo::Operation::Ingest).unwrap();
    let (live_pack, live_session) = simulate_writer(&repo, &live.id, false);
    let dead = WriterId::random();
    let lost = WriterId::random(); // its lock file was lost in a crash
    let (dead_pack, dead_session) = simulate_writer(&repo, &dead, true);
    let (lost_pack, _) = simulate_writer(&repo, &lost, false);
    let stale = repo
        .root()
        .join(format!("locks/{}.lock", WriterId::random()));
    std::fs::write(&stale, b"").unwrap();

    // A second writer starting cleans up after the dead ones.
    let second = repo.start_writer(crate::repo::Operation::Ingest).unwrap();
    assert!(!pack_path(repo.root(), &dead_pack).exists());
    assert!(!pack_path(repo.root(), &lost_pack).exists());
    assert!(!repo.root().join(format!("locks/{dead}.lock")).exists());
    assert!(!stale.exists(), "stale lock files are swept");
    assert!(
        pack_path(repo.root(), &live_pack).exists(),
        "a live writer's pack stays"
    );
    assert!(repo.root().join(format!("locks/{}.lock", live.id)).exists());
    assert!(
        repo.root()
            .join(format!("locks/{}.lock", second.id))
            .exists()
    );

    let index = repo.index().unwrap();
    let packs = index.packs().unwrap();
    assert_eq!(
        packs.iter().filter(|p| p.sealed).count(),
        3,
        "sealed packs stay"
    );
    assert_eq!(packs.iter().filter(|p| !p.sealed).count(), 1);
    assert_eq!(
        index.writers_with_leftovers().unwrap(),
        std::slice::from_ref(&live.id.0)
    );
    let running: i64 = index
        .conn()
        .query_row(
            "SELECT count(*) FROM sessions WHERE state = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running, 1);
    assert!(dead_session > live_session);

    // The live writer finishes its session; once it is gone, nothing is left to clean.
    index
        .finish_session(
            crate::ids::SessionId(live_session),
            SessionState::Complete,
            2,
            &SessionStats::default(),
            &[],
        )
        .unwrap();
    drop(live);
    assert_eq!(
        repo.cleanup_dead_writers(&index).unwrap(),
        1,
        "its writing pack row"
    );
    assert!(!pack_path(repo.root(), &live_pack).exists());
    assert_eq!(repo.cleanup_dead_writers(&index).unwrap(), 0);
    drop(second);
}

#[test]
fn cleanup_refuses_a_malformed_writer_id() {
    let (_dir, repo, _) = new_repo();
    let index = repo.index().unwrap();
    index
        .begin_pack(&PackName::random(), &WriterId("../../etc".into()), 1)
        .unwrap();
    let err = repo.cleanup_dead_writers(&index).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}
