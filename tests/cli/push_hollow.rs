//! Hollow staging through the real parts: placeholders are never ingested as content.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common;
use crate::push_server::{ANY, Server};

fn blocks(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().blocks()
}

/// Hollow mode: placeholders are never ingested as content. Metadata-only change, an in-place
/// rewrite with the same size and mtime, an inode reused after a delete, a fully sparse file and
/// forged user.rsync.* xattrs from the client: restore equals the source after every run.
#[test]
fn hollow_placeholders_are_never_ingested_as_content() {
    let body = format!("{ANY}\nstaging-mode = \"hollow\"");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    common::sample_tree(&src);
    common::write_file(&src.join("meta-only"), &common::text(7, 5000));
    common::write_file(&src.join("inplace"), &common::text(8, 6000));
    common::write_file(&src.join("reused"), &common::text(9, 7000));
    common::set_times_bottom_up(&src, 1_700_000_000);
    let staged = s.staging.join("web1");

    // Run 1: everything sent, then hollowed.
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    assert!(
        done["staging"]["hollowed"].as_u64().unwrap() >= 5,
        "{done:#}"
    );
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
    let hollow = staged.join("meta-only");
    assert_eq!(blocks(&hollow), 0);
    assert_eq!(std::fs::metadata(&hollow).unwrap().len(), 5000);

    // Run 2: nothing changed: placeholders kept, nothing read, restore still equal.
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["files_read"], 0, "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);

    // Run 3: a metadata-only change (mode), which rsync applies to the placeholder in place.
    common::set_mode(&src.join("meta-only"), 0o600);
    // An in-place rewrite with the same size and mtime (as rsync --inplace would do; simulated
    // on the server, because the allow-list refuses --inplace).
    let new_content = common::text(10, 6000);
    common::write_file(&src.join("inplace"), &new_content);
    // The same mtimes as before, to the nanosecond.
    common::set_times_bottom_up(&src, 1_700_000_000);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(staged.join("inplace"))
            .unwrap();
        f.write_all(&new_content).unwrap();
        let mtime = std::fs::metadata(src.join("inplace"))
            .unwrap()
            .modified()
            .unwrap();
        f.set_modified(mtime).unwrap();
    }
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    // Only the rewritten file was read; the chmod-ed placeholder reused its row.
    assert_eq!(done["files_read"], 1, "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);

    // Run 4: an inode reused after a delete: the placeholder is replaced, on the server, by a
    // new sparse file with the same size and mtime (maybe the same inode number): only the
    // birth time tells them apart. It must not pass for the placeholder.
    let p = staged.join("reused");
    let meta = std::fs::metadata(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(meta.len()).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    let done = s.ssh("web1", None, "prepare");
    assert!(done.status.success());
    // No rsync this time: the client has nothing new to say; complete sees the impostor.
    let out = s.ssh("web1", None, "complete rsync-exit=0");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["state"], "partial", "{done:#}");
    let errors = done["errors"].to_string();
    assert!(errors.contains("placeholder without record"), "{errors}");
    assert!(
        !p.exists(),
        "the impostor is removed so that it is sent again"
    );
    // The next run sends it again and all is well.
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);

    // Run 5: a client forging what marks a placeholder: a fully sparse file (sent with -S) and
    // user.rsync.* xattrs claiming another kind of file.
    let sparse = src.join("all-holes");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let forged = src.join("forged");
    common::write_file(&forged, b"real content");
    let xattrs = common::set_xattr(&forged, "user.rsync.%stat", b"20644 1,3 0:0")
        && common::set_xattr(&forged, "user.rsync.other", b"kept");
    common::set_times_bottom_up(&src, 1_700_000_000);
    let done = s.push("web1", &src, &["-S"]);
    assert_eq!(done["state"], "complete", "{done:#}");
    let session = done["session"].as_i64().unwrap();
    let target = s.dir.path().join("restore-forged");
    s.repo.restore(session, &target);
    assert_eq!(
        std::fs::read(target.join("all-holes")).unwrap(),
        vec![0u8; 1 << 20]
    );
    assert!(
        std::fs::symlink_metadata(target.join("forged"))
            .unwrap()
            .is_file()
    );
    assert_eq!(
        std::fs::read(target.join("forged")).unwrap(),
        b"real content"
    );
    if xattrs {
        let x = common::xattrs(&target.join("forged"));
        assert!(!x.contains_key(&b"user.rsync.%stat"[..]), "{x:?}");
        // Every user.rsync.* name is the transport's own (issue 11): the server's receiver
        // refuses them from the wire, so a client's is not kept either.
        assert!(!x.contains_key(&b"user.rsync.other"[..]), "{x:?}");
    }
    // And a run with nothing changed after the forgery still reuses, never reads.
    let done = s.push("web1", &src, &["-S"]);
    assert_eq!(done["files_read"], 0, "{done:#}");

    // (The forged bookkeeping xattr and every other user.rsync.* name are dropped by design;
    // take them off the source to compare.)
    let _ = rustix::fs::lremovexattr(&forged, "user.rsync.%stat");
    let _ = rustix::fs::lremovexattr(&forged, "user.rsync.other");
    // The administrator switches to keep: the placeholders still in staging keep their rows
    // and are never read as content.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("\"hollow\"", "\"keep\"")).unwrap();
    let done = s.push("web1", &src, &[]);
    assert_eq!(
        (&done["state"], &done["files_read"]),
        (&"complete".into(), &0.into()),
        "{done:#}"
    );
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
    // ... then to purge: still right, and the table goes with the placeholders.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("\"keep\"", "\"purge\"")).unwrap();
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
    assert!(!s.repo.repo.join("cache/web1.placeholders.db").exists());
}
