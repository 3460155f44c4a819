//! Issue 11 part 3, last sentence: the client's quota also caps the repository bytes one
//! session adds, through the real client, sshd and rsync.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::{self, arg};
use crate::push_client::{Client, Server, code, eml_messages, message_with};

/// Bytes of every file under `dir` (allocated when `allocated`, else apparent).
fn bytes_under(dir: &Path, allocated: bool) -> u64 {
    common::walk(dir)
        .iter()
        .map(|rel| {
            let m = std::fs::symlink_metadata(dir.join(std::str::from_utf8(rel).unwrap())).unwrap();
            if allocated {
                m.blocks() * 512
            } else if m.is_file() {
                m.len()
            } else {
                0
            }
        })
        .sum()
}

/// A tree whose staged copy takes little room while its manifest is large: 20,000 empty files,
/// each with its own 64-byte random `user.*` xattr (kept in the inode on ext4, so no block in
/// staging; incompressible in the manifest). With `quota = "1M"` the upload passes (staging
/// holds well under 1 MB), but the ingest would add more than 1 MB to the repository: it is
/// stopped, no session is recorded, nothing it wrote stays in the packs after a prune, the
/// refusal is audited and mailed to the administrator, the client's run reports FAILED naming
/// the quota, and the next run works once the quota is raised.
#[test]
fn quota_caps_the_bytes_a_session_adds_to_the_repository() {
    let client = Client::new();
    for i in 0u32..20_000 {
        let p = client.src.join(format!("d{:02}/f{i:05}", i / 1000));
        common::write_file(&p, b"");
        let mut value = [0u8; 64];
        blake3::Hasher::new()
            .update(&i.to_le_bytes())
            .finalize_xof()
            .fill(&mut value);
        assert!(
            common::set_xattr(&p, "user.k", &value),
            "user xattrs needed"
        );
    }
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"\nquota = \"1M\"",
    );
    let (config, mail) = client.config_for(&server);
    let packs = server.repo.repo.join("packs");
    let packs_before = bytes_under(&packs, false);

    let run = client.run(&config, &[]);
    assert_ne!(run.code, code::OK, "{}", run.stderr);
    let staged = bytes_under(&server.staging.join("web1"), true);
    assert!(
        staged < 1 << 20,
        "staging must pass the quota for this test to mean anything: it holds {staged} bytes"
    );
    assert_eq!(server.sessions(), 0, "no session from the stopped ingest");
    let job = message_with(&eml_messages(&mail), "backup FAILED").to_owned();
    let job = crate::push_client::decode_mail(&job);
    assert!(job.contains("quota"), "{job}");
    let admin = eml_messages(&server.repo.path("server-mail"));
    assert!(
        admin
            .iter()
            .any(|m| crate::push_client::decode_mail(m).contains("ingest stopped over its quota")),
        "{admin:#?}"
    );
    let audit = common::audit_rows(&server.repo.repo);
    assert!(
        audit
            .iter()
            .any(|r| r[3] == "refuse" && r[4].contains("ingest stopped over its quota")),
        "{audit:?}"
    );
    server
        .repo
        .run("prune", &[arg("--keep-last"), arg("5")])
        .ok();
    assert_eq!(
        bytes_under(&packs, false),
        packs_before,
        "the stopped ingest's packs are reclaimed"
    );

    // Raised: the next run records the whole tree.
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        text.replace("quota = \"1M\"", "quota = \"100M\""),
    )
    .unwrap();
    client.run(&config, &[]).code(code::OK);
    assert_eq!(server.sessions(), 1);
    let restored = server.restore_latest("restored").join(client.staged());
    for i in [0u32, 12_345, 19_999] {
        let rel = format!("d{:02}/f{i:05}", i / 1000);
        assert_eq!(
            common::xattrs(&restored.join(&rel)),
            common::xattrs(&client.src.join(&rel)),
            "{rel}"
        );
    }
}
