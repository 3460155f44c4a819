//! The files a rebuild of the index needs, and the key files (format-spec/records.md,
//! keys.md): every sealed pack has a reference list that lists its manifest chunks with the
//! index's references; every visible session has a record that agrees with its row; every data
//! key row has its file with the same bytes; `keys/secret.age` exists and is an age file, and
//! `keys/secret`, where it exists, is a secret bound to `repository.toml`.

use std::collections::{BTreeSet, HashMap};

use super::{Damage, Finding};
use crate::error::Result;
use crate::index::{ChunkKind, Index, PackInfo};
use crate::repo::Repo;
use crate::store::records::{
    data_key_path, read_refs, read_session_record, session_record, session_record_path,
};

fn finding(what: String, pack: Option<String>, sessions: Vec<i64>) -> Finding {
    Finding {
        what,
        chunk: None,
        pack,
        sessions,
    }
}

/// Reference lists, session records and data key files against the index.
pub(super) fn records(
    repo: &Repo,
    index: &Index,
    sealed: &[&PackInfo],
    findings: &mut Vec<Finding>,
    damage: &mut Damage,
) -> Result<()> {
    let root = repo.root();
    for pack in sealed {
        let listed = match read_refs(root, &pack.name) {
            Ok(r) => r
                .manifests
                .into_iter()
                .map(|m| (m.id, m.refs.into_iter().collect::<BTreeSet<_>>()))
                .collect::<HashMap<_, _>>(),
            Err(e) => {
                damage.refs.insert(pack.name);
                findings.push(finding(
                    format!(
                        "{e}: a rebuilt index could not tell the manifest chunks of pack {} \
                         (`rsbackup repair index` would recover only what other packs name)",
                        pack.name
                    ),
                    Some(pack.name.to_hex()),
                    Vec::new(),
                ));
                continue;
            }
        };
        for loc in index.chunks_in_pack(pack.row)? {
            if loc.kind != ChunkKind::Manifest {
                continue;
            }
            let refs: BTreeSet<_> = index.chunk_refs(&loc.id)?.into_iter().collect();
            // The list may name more (chunks collected since, which a rebuild skips); it
            // must not name fewer, or a rebuilt index would let a collect delete live data.
            if !listed.get(&loc.id).is_some_and(|l| refs.is_subset(l)) {
                damage.refs.insert(pack.name);
                findings.push(Finding {
                    what: format!(
                        "the reference list of pack {} does not hold manifest chunk {} with the \
                         index's references",
                        pack.name, loc.id
                    ),
                    chunk: None,
                    pack: Some(pack.name.to_hex()),
                    sessions: index
                        .sessions_using_chunk(&loc.id)?
                        .into_iter()
                        .map(|s| s.0)
                        .collect(),
                });
            }
        }
    }
    for info in index.sessions(None)? {
        let id = crate::ids::SessionId(info.id);
        let path = session_record_path(root, id);
        let want = session_record(&info, index.session_root(id)?)?;
        let got = read_session_record(&path);
        if !got.as_ref().is_ok_and(|got| *got == want) {
            damage.session_records.insert(id);
        }
        match got {
            Ok(got) if got == want => {}
            Ok(_) => findings.push(finding(
                format!(
                    "session record {} does not agree with the index about session {id} of \
                     client {}",
                    path.display(),
                    info.client
                ),
                None,
                vec![info.id],
            )),
            Err(e) => findings.push(finding(
                format!(
                    "{e}: session {id} of client {} would be lost by a rebuilt index",
                    info.client
                ),
                None,
                vec![info.id],
            )),
        }
    }
    for id in index.data_key_ids()? {
        let path = data_key_path(root, id);
        let want = index.data_key(id)?;
        let got = std::fs::read(&path);
        if !got.as_ref().is_ok_and(|got| *got == want) {
            damage.key_files.insert(id);
        }
        match got {
            Ok(got) if got == want => {}
            Ok(_) => findings.push(finding(
                format!(
                    "{} differs from data key {} in the index: a rebuilt index would hold the \
                     wrong key for every chunk sealed with it",
                    path.display(),
                    id.0
                ),
                None,
                Vec::new(),
            )),
            Err(e) => findings.push(finding(
                format!(
                    "{} cannot be read ({e}): a rebuilt index would lose every chunk sealed \
                     with data key {}",
                    path.display(),
                    id.0
                ),
                None,
                Vec::new(),
            )),
        }
    }
    Ok(())
}

/// `keys/secret.age` must exist and be an age file (restore and a mirror need it);
/// `keys/secret`, where it exists, must be a secret file matching `secret-check` (ingest needs
/// it; a mirror holds none).
pub(super) fn key_files(repo: &Repo, findings: &mut Vec<Finding>) {
    let age = repo.root().join("keys/secret.age");
    match std::fs::read(&age) {
        Ok(bytes) if bytes.starts_with(b"age-encryption.org/v1\n") => {}
        Ok(_) => findings.push(finding(
            format!(
                "{} is not an age file: no restore can unwrap the repository secret, so every \
                 restore fails (copy it from a mirror or a backup of the repository)",
                age.display()
            ),
            None,
            Vec::new(),
        )),
        Err(e) => findings.push(finding(
            format!(
                "{} cannot be read ({e}): no restore can unwrap the repository secret, so every \
                 restore fails (copy it from a mirror or a backup of the repository)",
                age.display()
            ),
            None,
            Vec::new(),
        )),
    }
    if crate::keys::rewrap_pending(repo) {
        findings.push(finding(
            format!(
                "{} exists: a `rsbackup key rewrap` was interrupted, so some data keys may \
                 still be wrapped to the old recipients (run it again to finish)",
                repo.root().join(crate::keys::REWRAP_DIR).display()
            ),
            None,
            Vec::new(),
        ));
    }
    let secret = repo.root().join("keys/secret");
    if !secret.exists() && !repo.is_mirror() {
        findings.push(finding(
            format!(
                "{} is missing, and this repository is not a mirror (no keys/{}): every ingest \
                 fails until it is restored (it can be recreated with the identity from \
                 keys/secret.age)",
                secret.display(),
                crate::repo::MIRROR_MARKER
            ),
            None,
            Vec::new(),
        ));
    }
    if secret.exists()
        && let Err(e) = repo.load_secret()
    {
        {
            findings.push(finding(
                format!(
                    "{e}: every ingest fails until keys/secret is restored (it can be \
                     recreated with the identity from keys/secret.age)"
                ),
                None,
                Vec::new(),
            ));
        }
    }
}
