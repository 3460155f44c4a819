//! Recipients after `init`: `key list | add-recipient | remove-recipient | rewrap`, and a
//! rewrap killed at every step then run again (format-spec/keys.md "Changing recipients").

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{
    TestRepo, arg, assert_trees_equal, exit, recipient_from_keygen, rsbackup, rsbackup_env, text,
    write_file,
};

/// A new identity file `name` in the test directory: (path, recipient).
fn keygen(t: &TestRepo, name: &str) -> (PathBuf, String) {
    let path = t.path(name);
    let run = rsbackup([arg("keygen"), arg("--output"), arg(&path)]);
    run.ok();
    (path, recipient_from_keygen(&run.stdout_str()))
}

/// `rsbackup key WHAT --repo R ARGS`.
fn key(t: &TestRepo, what: &str, args: &[&str]) -> crate::common::Run {
    let mut all = vec![arg("key"), arg(what), arg("--repo"), arg(&t.repo)];
    all.extend(args.iter().map(arg));
    rsbackup(all)
}

/// `key rewrap` with `identity`, and a failpoint if any.
fn rewrap(t: &TestRepo, identity: &Path, failpoint: Option<&str>) -> crate::common::Run {
    let args = [
        arg("key"),
        arg("rewrap"),
        arg("--repo"),
        arg(&t.repo),
        arg("--identity"),
        arg(identity),
    ];
    match failpoint {
        Some(p) => rsbackup_env(args, &[("RSBACKUP_FAILPOINT", p)]),
        None => rsbackup(args),
    }
}

/// `restore --repo R --identity IDENTITY --session ID --target TARGET`.
fn restore_args(
    t: &TestRepo,
    identity: &Path,
    session: i64,
    target: &Path,
) -> Vec<std::ffi::OsString> {
    vec![
        arg("restore"),
        arg("--repo"),
        arg(&t.repo),
        arg("--identity"),
        arg(identity),
        arg("--session"),
        arg(session.to_string()),
        arg("--target"),
        arg(target),
    ]
}

/// The recipients `key list` prints.
fn listed(t: &TestRepo) -> Vec<String> {
    let run = key(t, "list", &[]);
    run.ok();
    run.stdout_str().lines().map(str::to_string).collect()
}

/// `n` sessions (one data key each) of small distinct trees: (session, source).
fn sessions(t: &TestRepo, from: u32, n: u32) -> Vec<(i64, PathBuf)> {
    (from..from + n)
        .map(|s| {
            let dir = t.path(&format!("src{s}"));
            write_file(&dir.join("a/one.txt"), &text(s as u8, 3000));
            write_file(&dir.join("b/two.bin"), format!("session {s}").as_bytes());
            (t.ingest("web", &dir), dir)
        })
        .collect()
}

/// Every session restores with `identity` equal to its source, and a read-data check with it
/// is clean.
#[track_caller]
fn restores_with(t: &mut TestRepo, identity: &Path, all: &[(i64, PathBuf)], tag: &str) {
    restore_all(t, identity, all, tag);
    t.check_run(true, true).ok();
}

/// Every session of `all` restores with `identity` equal to its source.
#[track_caller]
fn restore_all(t: &mut TestRepo, identity: &Path, all: &[(i64, PathBuf)], tag: &str) {
    t.identity = identity.to_path_buf();
    for (id, src) in all {
        let target = t.path(&format!("restore-{tag}-{id}"));
        t.restore(*id, &target);
        assert_trees_equal(src, &target);
        fs::remove_dir_all(&target).unwrap();
    }
}

/// The whole session `id` does not restore with `identity`: wrong identity, said clearly.
#[track_caller]
fn opens_nothing(t: &mut TestRepo, identity: &Path, id: i64) {
    t.identity = identity.to_path_buf();
    let target = t.path("restore-refused");
    t.restore_run(id, &target, &[])
        .fails_with(exit::WRONG_IDENTITY, &["identit", "recipients"]);
    let _ = fs::remove_dir_all(&target);
}

#[test]
fn recipients_change_after_init_and_a_removed_identity_opens_nothing() {
    let mut t = TestRepo::new();
    let old = t.identity.clone();
    let mut all = sessions(&t, 0, 3);
    assert_eq!(listed(&t), vec![t.recipient.clone()]);

    // A bad recipient, or a private key in its place, is refused with what is wrong.
    key(&t, "add-recipient", &["age1nonsense"]).fails_with(exit::FAILURE, &["age1nonsense"]);
    let private = fs::read_to_string(&old).unwrap();
    let private = private
        .lines()
        .find(|l| l.starts_with("AGE-SECRET"))
        .unwrap();
    let refused = key(&t, "add-recipient", &[private]);
    assert!(!refused.stderr.contains(private), "{}", refused.stderr);
    assert_ne!(refused.code, exit::OK);

    // Added: listed, but it opens nothing until the rewrap.
    let (new, new_recipient) = keygen(&t, "new.txt");
    key(&t, "add-recipient", &[&new_recipient]).ok();
    assert_eq!(listed(&t), vec![t.recipient.clone(), new_recipient.clone()]);
    key(&t, "add-recipient", &[&new_recipient]).fails_with(exit::FAILURE, &["already"]);
    opens_nothing(&mut t, &new, all[0].0);
    rewrap(&t, &old, None).ok();
    restores_with(&mut t, &new, &all, "new");
    restores_with(&mut t, &old, &all, "old");

    // A session ingested now is wrapped to both.
    all.extend(sessions(&t, 3, 1));
    restores_with(&mut t, &new, &all[3..], "later");

    // Removed and rewrapped: the old identity opens nothing, not even the secret.
    let old_recipient = t.recipient.clone();
    key(&t, "remove-recipient", &[&old_recipient]).ok();
    assert_eq!(listed(&t), vec![new_recipient.clone()]);
    key(&t, "remove-recipient", &[&new_recipient])
        .fails_with(exit::FAILURE, &["last recipient", &new_recipient]);
    key(&t, "remove-recipient", &[&old_recipient])
        .fails_with(exit::NOT_FOUND, &["not a recipient"]);
    rewrap(&t, &old, None).ok();
    for (id, _) in &all {
        opens_nothing(&mut t, &old, *id);
    }
    t.identity = old.clone();
    t.check_run(true, true).code(exit::WRONG_IDENTITY);
    restores_with(&mut t, &new, &all, "after-remove");
    // A rewrap with an identity that opens nothing changes nothing and says why.
    rewrap(&t, &old, None).fails_with(exit::WRONG_IDENTITY, &["repository secret", "recipients"]);
    assert!(!t.repo.join("keys/rewrap").exists());
    assert!(key(&t, "list", &[]).stderr.is_empty());
}

/// Kill the rewrap at every step (each staged key, the commit, the index swap, each key
/// file, the secret, the unstaging), then run it again: the check is clean and every
/// session restores with the new identity only.
#[test]
fn a_rewrap_killed_at_any_step_finishes_when_run_again() {
    let mut t = TestRepo::new();
    let all = sessions(&t, 0, 5);
    let points = [
        "rewrap-after-stage#1",
        "rewrap-after-stage#3",
        "rewrap-after-stage#5",
        "rewrap-after-secret-stage",
        "rewrap-after-commit",
        "rewrap-after-index",
        "rewrap-after-key-file#1",
        "rewrap-after-key-file#4",
        "rewrap-after-key-file#5",
        "rewrap-after-secret",
        "rewrap-after-unstage",
    ];
    let mut current = t.identity.clone();
    let mut current_recipient = t.recipient.clone();
    for (i, point) in points.iter().enumerate() {
        let (next, next_recipient) = keygen(&t, &format!("id{i}.txt"));
        key(&t, "add-recipient", &[&next_recipient]).ok();
        key(&t, "remove-recipient", &[&current_recipient]).ok();
        let killed = rewrap(&t, &current, Some(point));
        assert_eq!(
            killed.code, -1,
            "{point}: the rewrap was not killed: {killed:?}"
        );
        // The interruption is visible until the rerun.
        assert!(
            key(&t, "list", &[]).stderr.contains("interrupted"),
            "{point}"
        );
        let check = t.check_run(false, false);
        check.code(exit::PARTIAL);
        assert!(
            check.stdout_str().contains("key rewrap"),
            "{point}: {}",
            check.stdout_str()
        );

        let rerun = rewrap(&t, &current, None);
        rerun.ok();
        assert!(!t.repo.join("keys/rewrap").exists(), "{point}");
        restores_with(&mut t, &next, &all, &format!("p{i}"));
        opens_nothing(&mut t, &current, all[i % all.len()].0);
        current = next;
        current_recipient = next_recipient;
    }
}

/// A mirror keeps the wrapping it received: a mirror run does not carry rewrapped keys (and
/// does not fail over them); the same commands on the mirror bring it to the new recipients.
#[test]
fn a_mirror_is_rewrapped_by_the_same_commands_there() {
    let t = TestRepo::new();
    let old = t.identity.clone();
    let old_recipient = t.recipient.clone();
    let mut all = sessions(&t, 0, 2);
    let mirror_dir = t.path("offsite/repo");
    fs::create_dir(t.path("offsite")).unwrap();
    let mirror = || {
        rsbackup([
            arg("mirror"),
            arg("--repo"),
            arg(&t.repo),
            arg("--to"),
            arg(&mirror_dir),
        ])
        .ok();
    };
    mirror();

    let (new, new_recipient) = keygen(&t, "new.txt");
    key(&t, "add-recipient", &[&new_recipient]).ok();
    key(&t, "remove-recipient", &[&old_recipient]).ok();
    rewrap(&t, &old, None).ok();
    all.extend(sessions(&t, 2, 1));
    mirror();

    let mut m = TestRepo {
        dir: crate::common::tempdir(),
        repo: mirror_dir.clone(),
        identity: old.clone(),
        recipient: old_recipient.clone(),
    };
    // Before: the old identity still opens what the mirror held; the new session is the new
    // list's only.
    restore_all(&mut m, &old, &all[..2], "mirror-old");
    opens_nothing(&mut m, &old, all[2].0);
    opens_nothing(&mut m, &new, all[0].0);

    key(&m, "add-recipient", &[&new_recipient]).ok();
    key(&m, "remove-recipient", &[&old_recipient]).ok();
    assert_eq!(listed(&m), vec![new_recipient.clone()]);
    // The mirror holds keys wrapped to the old list and to the new: one identity is not
    // enough, and the refusal says which key and what to do; both together are.
    rewrap(&m, &old, None).fails_with(exit::WRONG_IDENTITY, &["data key 3", "every identity"]);
    rsbackup([
        arg("key"),
        arg("rewrap"),
        arg("--repo"),
        arg(&m.repo),
        arg("--identity"),
        arg(&old),
        arg("--identity"),
        arg(&new),
    ])
    .ok();
    restores_with(&mut m, &new, &all, "mirror-new");
    for (id, _) in &all {
        opens_nothing(&mut m, &old, *id);
    }
    // Later mirror runs go on as before.
    all.extend(sessions(&t, 3, 1));
    mirror();
    restores_with(&mut m, &new, &all, "mirror-later");
}

/// A passphrase-protected identity (keygen --passphrase): it restores through
/// --identity-passphrase-file (or its environment variable); a wrong passphrase is a wrong
/// identity, said as such; the file holds no private key in the clear.
#[test]
fn a_passphrase_identity_opens_the_repository_through_a_passphrase_file() {
    let mut t = TestRepo::new();
    let old = t.identity.clone();
    let all = sessions(&t, 0, 2);
    let pw = t.path("pw.txt");
    fs::write(&pw, "correct horse battery staple\n").unwrap();
    let empty = t.path("empty.txt");
    fs::write(&empty, "\nsecond line\n").unwrap();
    let protected = t.path("protected.txt");
    rsbackup([
        arg("keygen"),
        arg("--output"),
        arg(&protected),
        arg("--passphrase"),
        arg("--passphrase-file"),
        arg(&empty),
    ])
    .fails_with(exit::FAILURE, &["first line is empty"]);
    assert!(!protected.exists());
    let run = rsbackup([
        arg("keygen"),
        arg("--output"),
        arg(&protected),
        arg("--passphrase"),
        arg("--passphrase-file"),
        arg(&pw),
    ]);
    run.ok();
    let recipient = recipient_from_keygen(&run.stdout_str());
    let text = fs::read_to_string(&protected).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");

    key(&t, "add-recipient", &[&recipient]).ok();
    key(&t, "remove-recipient", &[&t.recipient.clone()]).ok();
    rewrap(&t, &old, None).ok();

    t.identity = protected.clone();
    let target = t.path("restored");
    let with_pw = |extra: &[std::ffi::OsString], target: &Path, session: i64| {
        let mut args = vec![
            arg("--session"),
            arg(session.to_string()),
            arg("--target"),
            arg(target),
        ];
        args.extend(extra.iter().cloned());
        t.run_with_identity("restore", &args)
    };
    with_pw(
        &[arg("--identity-passphrase-file"), arg(&pw)],
        &target,
        all[0].0,
    )
    .ok();
    assert_trees_equal(&all[0].1, &target);
    // The environment variable names the file as well.
    let target2 = t.path("restored2");
    rsbackup_env(
        restore_args(&t, &protected, all[1].0, &target2),
        &[("RSBACKUP_IDENTITY_PASSPHRASE_FILE", pw.to_str().unwrap())],
    )
    .ok();
    assert_trees_equal(&all[1].1, &target2);
    t.run(
        "check",
        &[
            arg("--read-data"),
            arg("--identity"),
            arg(&protected),
            arg("--identity-passphrase-file"),
            arg(&pw),
        ],
    )
    .ok();

    // A wrong passphrase: the wrong-identity exit code, naming the file, nothing restored.
    let wrong = t.path("wrong.txt");
    fs::write(&wrong, "incorrect horse\n").unwrap();
    let target3 = t.path("restored3");
    with_pw(
        &[arg("--identity-passphrase-file"), arg(&wrong)],
        &target3,
        all[0].0,
    )
    .fails_with(
        exit::WRONG_IDENTITY,
        &["wrong passphrase", protected.to_str().unwrap()],
    );
    assert!(!target3.exists() || fs::read_dir(&target3).unwrap().next().is_none());
    // A rewrap takes it too.
    rsbackup([
        arg("key"),
        arg("rewrap"),
        arg("--repo"),
        arg(&t.repo),
        arg("--identity"),
        arg(&protected),
        arg("--identity-passphrase-file"),
        arg(&pw),
    ])
    .ok();
}

/// Run `rsbackup ARGS` on a pseudo-terminal (util-linux `script`), typing `lines` after a
/// pause each: (exit code, everything the terminal showed).
fn on_terminal(args: &[std::ffi::OsString], lines: &[&str]) -> (i32, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let command = std::iter::once(crate::common::bin().into_os_string())
        .chain(args.iter().cloned())
        .map(|a| {
            let a = a.into_string().unwrap();
            format!("'{}'", a.replace('\'', "'\\''"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` is needed to test the terminal prompt (apt install bsdutils)");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        std::thread::sleep(std::time::Duration::from_millis(700));
        // The child may be gone already (an error before the prompt): not our failure.
        let _ = writeln!(stdin, "{line}");
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let shown =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), shown)
}

/// The passphrase asked on the terminal: twice by keygen (two that differ write nothing),
/// once by a restore; never echoed. Without a terminal or a passphrase file, the error says
/// what to give.
#[test]
fn a_passphrase_is_asked_on_the_terminal_and_never_echoed() {
    let t = TestRepo::new();
    let old = t.identity.clone();
    let all = sessions(&t, 0, 1);
    let protected = t.path("tty-identity.txt");
    let keygen_args = [
        arg("keygen"),
        arg("--output"),
        arg(&protected),
        arg("--passphrase"),
    ];
    let (code, shown) = on_terminal(&keygen_args, &["one phrase", "another phrase"]);
    assert_eq!(code, exit::FAILURE, "{shown}");
    assert!(shown.contains("differ"), "{shown}");
    assert!(!protected.exists());
    let (code, shown) = on_terminal(&keygen_args, &["typed phrase", "typed phrase"]);
    assert_eq!(code, exit::OK, "{shown}");
    assert!(
        !shown.contains("typed phrase"),
        "the passphrase was echoed: {shown}"
    );
    let recipient = recipient_from_keygen(&shown);
    key(&t, "add-recipient", &[&recipient]).ok();
    rewrap(&t, &old, None).ok();

    let target = t.path("restored");
    let restore = restore_args(&t, &protected, all[0].0, &target);
    let (code, shown) = on_terminal(&restore, &["typed phrase"]);
    assert_eq!(code, exit::OK, "{shown}");
    assert!(shown.contains("Passphrase for identity file"), "{shown}");
    assert!(
        !shown.contains("typed phrase"),
        "the passphrase was echoed: {shown}"
    );
    assert_trees_equal(&all[0].1, &target);

    // No terminal at all (a new session, no controlling terminal) and no passphrase file.
    let out = std::process::Command::new("setsid")
        .arg(crate::common::bin())
        .args(&restore[..8])
        .arg(t.path("restored-2"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `setsid` is needed for this test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::FAILURE), "{err}");
    assert!(
        err.contains("needs a passphrase") && err.contains("--identity-passphrase-file FILE"),
        "{err}"
    );
}

/// The recipients change again between a killed rewrap and its rerun: before the commit the
/// staging for the old list is thrown away; after it, the rerun finishes the committed swap and
/// then rewraps to the current list. Either way the current list's identity opens everything.
#[test]
fn recipients_changed_between_a_killed_rewrap_and_its_rerun() {
    let mut t = TestRepo::new();
    let all = sessions(&t, 0, 3);
    let first = t.identity.clone();
    let first_recipient = t.recipient.clone();
    let (second, second_recipient) = keygen(&t, "second.txt");
    let (third, third_recipient) = keygen(&t, "third.txt");

    // Killed while staging for [first, second]; then second is swapped for third.
    key(&t, "add-recipient", &[&second_recipient]).ok();
    assert_eq!(rewrap(&t, &first, Some("rewrap-after-stage#2")).code, -1);
    key(&t, "remove-recipient", &[&second_recipient]).ok();
    key(&t, "add-recipient", &[&third_recipient]).ok();
    rewrap(&t, &first, None).ok();
    restores_with(&mut t, &third, &all, "third");
    opens_nothing(&mut t, &second, all[0].0);

    // Killed after the commit for [third]; then second comes back. The rerun needs an identity
    // of the committed list (third) to stage for the new one.
    key(&t, "remove-recipient", &[&first_recipient]).ok();
    assert_eq!(rewrap(&t, &first, Some("rewrap-after-commit")).code, -1);
    key(&t, "add-recipient", &[&second_recipient]).ok();
    rewrap(&t, &third, None).ok();
    restores_with(&mut t, &second, &all, "second");
    restores_with(&mut t, &third, &all, "third-again");
    opens_nothing(&mut t, &first, all[1].0);
}

/// The key rotation of docs/usage.md (`<!-- key-rotation -->`, `<!-- key-rotation-proof -->`)
/// runs as written under `bash -eu -o pipefail`: key list, a passphrase-protected new identity
/// (its passphrase from a file), add-recipient, remove-recipient, rewrap, a read-data check
/// and a restore with it through `--identity-passphrase-file`, and the old identity's restore
/// failing with the wrong-identity code. Afterwards, checked here too: the list holds only the
/// new recipient, the new identity restores every session (and is encrypted: without its
/// passphrase it opens nothing), and the old one opens no session.
#[test]
fn the_documented_key_rotation_runs_as_written() {
    let mut t = TestRepo::new();
    let all = sessions(&t, 0, 2);
    let old = t.identity.clone();
    let new = t.path("identity-new.txt");
    let passphrase = t.path("identity-new.pass");
    fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let check = t.path("key-check");
    let table = [
        ("repo", t.repo.display().to_string()),
        ("old_identity", old.display().to_string()),
        ("old_recipient", t.recipient.clone()),
        ("new_identity", new.display().to_string()),
        ("passphrase_file", passphrase.display().to_string()),
        ("session", all[1].0.to_string()),
        ("check_target", check.display().to_string()),
    ];
    crate::bad_day::run_procedure(
        &["key-rotation", "key-rotation-proof"],
        &table,
        "",
        t.dir.path(),
    );
    assert_eq!(listed(&t).len(), 1);
    assert_ne!(listed(&t), vec![t.recipient.clone()]);
    assert_trees_equal(&all[1].1, &check.join("new"));
    assert!(
        !check.join("old").exists() || fs::read_dir(check.join("old")).unwrap().next().is_none(),
        "the old identity wrote something"
    );
    assert!(
        fs::read_to_string(&new)
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "the new identity is not passphrase-protected"
    );
    // Every session restores with the new identity (its passphrase from the file), and none
    // with the old one.
    for (id, src) in &all {
        let target = t.path(&format!("restore-documented-{id}"));
        let mut args = restore_args(&t, &new, *id, &target);
        args.extend([arg("--identity-passphrase-file"), arg(&passphrase)]);
        rsbackup(args).ok();
        assert_trees_equal(src, &target);
        opens_nothing(&mut t, &old, *id);
    }
}
