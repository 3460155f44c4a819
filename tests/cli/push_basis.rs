//! What the nightly push sends with the default staging mode (`hollow`): whole files without a
//! delta search, nothing for an unchanged tree, and deltas for the files `keep-basis` names.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::push_client::{
    Client, Server, code, eml_messages, figure, first_number, mail_dir_config, sent_and_total,
};

/// Run the client once; the job report it mailed (the mail directory is emptied first).
fn run_report(client: &Client, config: &Path, mail: &Path) -> String {
    for e in fs::read_dir(mail).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let run = client.run(config, &[]);
    run.code(code::OK);
    let messages = eml_messages(mail);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    messages[0].clone()
}

fn blocks(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks()
}

/// The upload commands the server accepted, as audited (identity prefix and all).
fn uploads(server: &Server) -> Vec<String> {
    crate::common::audit_rows(&server.repo.repo)
        .into_iter()
        .map(|r| r[2].clone())
        .filter(|c| c.contains("rsync --server"))
        .collect()
}

/// A server.toml without `staging-mode` hollows staging; rsync is told to send whole files
/// (the upload's option bundle carries W), an unchanged tree sends under 1% of its bytes over
/// one ssh connection for the whole run, and the session restores equal.
#[test]
fn the_default_staging_mode_hollows_and_sends_whole_files() {
    let client = Client::new();
    crate::common::sample_tree(&client.src);
    let big = client.src.join("big.bin");
    fs::write(&big, crate::common::pattern(3, 4 << 20)).unwrap();
    let server = Server::start(&client, "windows = [\"daily 00:00-24:00\"]");
    let (mail, config) = mail_dir_config(&client, &server);

    let report = run_report(&client, &config, &mail);
    let staged = server
        .staging
        .join("web1")
        .join(client.staged())
        .join("big.bin");
    assert_eq!(
        blocks(&staged),
        0,
        "the default mode left plaintext:\n{report}"
    );
    assert_eq!(fs::metadata(&staged).unwrap().len(), 4 << 20);
    let bundles = uploads(&server);
    assert_eq!(bundles.len(), 1, "{bundles:#?}");
    let bundle = bundles[0]
        .split(' ')
        .find(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('e'))
        .unwrap()
        .split('e')
        .next()
        .unwrap()
        .to_owned();
    assert!(bundle.contains('W'), "no --whole-file: {bundles:#?}");

    let logins = || server.sshd.log().matches("Accepted publickey").count();
    let before = logins();
    let report = run_report(&client, &config, &mail);
    let (sent, total) = sent_and_total(&report);
    assert!(
        sent * 100 < total,
        "unchanged: sent {sent} of {total}:\n{report}"
    );
    assert_eq!(
        logins() - before,
        1,
        "prepare, rsync and complete share one ssh connection:\n{}",
        server.sshd.log()
    );
    assert!(
        !client.path("state/ssh-web1.ctl").exists(),
        "the run ends its shared connection"
    );

    let mut data = fs::read(&big).unwrap();
    data[1 << 20..(1 << 20) + 100].fill(0xAB);
    fs::write(&big, &data).unwrap();
    let report = run_report(&client, &config, &mail);
    let (sent, _) = sent_and_total(&report);
    assert!(
        sent >= 4 << 20,
        "a hollowed file travels whole: {sent}\n{report}"
    );
    let restored = server.restore_latest("restored");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));
}

/// `keep-basis = ["*.sql"]`: a 100 MB dump stays whole in staging (everything else is
/// hollowed), an unchanged run keeps it whole, and three small edits send about their size
/// (a delta against the kept basis), in a second rsync pass; the session restores equal.
#[test]
fn keep_basis_files_travel_as_deltas() {
    let client = Client::new();
    crate::common::sample_tree(&client.src);
    fs::create_dir_all(client.src.join("db")).unwrap();
    let dump = client.src.join("db/dump.sql");
    let mut data = crate::common::pattern(5, 100 << 20);
    fs::write(&dump, &data).unwrap();
    fs::write(
        client.src.join("db/other.bin"),
        crate::common::pattern(6, 1 << 20),
    )
    .unwrap();
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nkeep-basis = [\"*.sql\"]",
    );
    let (mail, config) = mail_dir_config(&client, &server);

    let report = run_report(&client, &config, &mail);
    assert!(report.contains("rsync (keep-basis)"), "{report}");
    let staged = server.staging.join("web1").join(client.staged()).join("db");
    assert!(blocks(&staged.join("dump.sql")) > 0, "{report}");
    assert_eq!(blocks(&staged.join("other.bin")), 0, "{report}");

    let report = run_report(&client, &config, &mail);
    let (sent, total) = sent_and_total(&report);
    assert!(
        sent * 100 < total,
        "unchanged: sent {sent} of {total}:\n{report}"
    );
    assert!(
        blocks(&staged.join("dump.sql")) > 0,
        "an unchanged kept file stays whole"
    );

    for at in [7usize << 20, 50 << 20, 93 << 20] {
        data[at..at + 1000].fill(0x5A);
    }
    fs::write(&dump, &data).unwrap();
    let report = run_report(&client, &config, &mail);
    let (sent, total) = sent_and_total(&report);
    eprintln!("keep-basis: 3 edits of 1000 bytes in a 100 MiB file: rsync sent {sent} of {total}");
    assert!(sent < 1 << 20, "sent {sent} of {total}:\n{report}");
    let matched = figure(&report, "literal / matched data");
    assert!(
        first_number(matched.split(" / ").nth(1).unwrap()) > 90 << 20,
        "{report}"
    );
    let restored = server.restore_latest("restored");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));
}

/// The client follows its directories across runs: a renamed directory of 8 MiB in hollow
/// staging is sent to `prepare` as a rename, and the push sends under 1% of its bytes; the
/// session restores equal.
#[test]
fn a_renamed_directory_costs_its_file_list() {
    let client = Client::new();
    crate::common::sample_tree(&client.src);
    fs::create_dir_all(client.src.join("photos/2025")).unwrap();
    for i in 0..8u8 {
        fs::write(
            client.src.join(format!("photos/2025/p{i}.jpg")),
            crate::common::pattern(20 + i, 1 << 20),
        )
        .unwrap();
    }
    let server = Server::start(&client, "windows = [\"daily 00:00-24:00\"]");
    let (mail, config) = mail_dir_config(&client, &server);
    run_report(&client, &config, &mail);

    fs::rename(client.src.join("photos"), client.src.join("pictures")).unwrap();
    let report = run_report(&client, &config, &mail);
    assert!(report.contains("\"applied\": 1"), "{report}");
    let (sent, total) = sent_and_total(&report);
    eprintln!("renamed 8 MiB directory: rsync sent {sent} of {total} bytes");
    assert!(sent < (8 << 20) / 100, "sent {sent} of {total}:\n{report}");
    let restored = server.restore_latest("restored");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));
}
