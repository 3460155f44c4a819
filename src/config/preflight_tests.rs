use std::os::unix::fs::PermissionsExt;

use super::*;

fn server_text(dir: &Path) -> String {
    format!(
        r#"repository = "{d}/repo"
staging-root = "{d}/staging"
alert-state = "{d}/state/alert-state.json"
audit-log = "{d}/log/audit.log"

[mail]
from = "rsbackup@backup.example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "{d}/mail"

[mirror-of.main]
repository = "{d}/offsite/mirror-of-main"
addresses = ["192.0.2.10"]
"#,
        d = dir.display()
    )
}

fn server_findings(dir: &Path) -> Vec<Finding> {
    let text = server_text(dir);
    let path = dir.join("server.toml");
    let config = ServerConfig::parse(&text, &path).unwrap();
    check_server(&config, &text)
}

#[test]
fn server_names_each_missing_path_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let findings = server_findings(dir.path());
    let lines: Vec<_> = findings.iter().map(|f| (f.line, f.what.clone())).collect();
    let has = |line: usize, needle: &str| {
        lines
            .iter()
            .any(|(l, w)| *l == Some(line) && w.contains(needle))
    };
    assert!(
        has(1, "repository = ") && has(1, "does not exist"),
        "{lines:#?}"
    );
    assert!(has(2, "staging-root"), "{lines:#?}");
    assert!(has(3, "its directory"), "{lines:#?}");
    assert!(has(4, "audit-log"), "{lines:#?}");
    assert!(has(10, "directory ="), "{lines:#?}");
    assert!(has(13, "offsite"), "the mirror's parent: {lines:#?}");
}

#[test]
fn server_with_every_path_in_place_has_no_findings_but_wants_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    for sub in ["repo", "staging", "state", "log", "mail", "offsite"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        if root {
            // As root, a root-owned directory is the mistake the check exists for: give them
            // to another account, as the package's directories are.
            std::os::unix::fs::chown(dir.path().join(sub), Some(65534), Some(65534)).unwrap();
        }
    }
    if root {
        let findings = server_findings(dir.path());
        assert!(
            findings.iter().all(|f| !f.what.contains("owned by root")),
            "{findings:#?}"
        );
        std::os::unix::fs::chown(dir.path().join("staging"), Some(0), Some(0)).unwrap();
        let findings = server_findings(dir.path());
        assert!(
            findings
                .iter()
                .any(|f| f.line == Some(2) && f.what.contains("owned by root")),
            "{findings:#?}"
        );
        std::os::unix::fs::chown(dir.path().join("staging"), Some(65534), Some(65534)).unwrap();
    }
    let findings = server_findings(dir.path());
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0].what.contains("not a repository yet"),
        "{findings:#?}"
    );
}

#[test]
fn client_refuses_a_key_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        r#"name = "web1"
sources = ["{d}/missing"]
state-dir = "{d}"

[server]
host = "backup.example.org"
ssh-key = "{k}"

[mail]
from = "rsbackup@web1.example.org"
errors-to = ["root@example.org"]
reports-to = ["root@example.org"]
transport = "directory"
directory = "{d}"
"#,
        d = dir.path().display(),
        k = key.display()
    );
    let config = ClientConfig::parse(&text, &dir.path().join("client.toml")).unwrap();
    let findings = check_client(&config, &text);
    assert!(
        findings
            .iter()
            .any(|f| f.line == Some(7) && f.what.contains("mode 644")),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.line == Some(2) && f.what.contains("missing\" does not exist")),
        "{findings:#?}"
    );
}
