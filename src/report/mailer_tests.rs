use std::time::Duration;

use super::*;

fn config(transport: MailTransport) -> MailConfig {
    MailConfig {
        from: "rsbackup@backup.example.org".parse().unwrap(),
        transport,
    }
}

fn to() -> Vec<Mailbox> {
    vec![
        "root@example.org".parse().unwrap(),
        "Ops <ops@example.org>".parse().unwrap(),
    ]
}

fn only_file(dir: &Path) -> (PathBuf, String) {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    (files[0].clone(), text)
}

#[test]
fn directory_transport_writes_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = Mailer::from_config(&config(MailTransport::Directory {
        path: dir.path().to_owned(),
    }))
    .unwrap();
    assert!(mailer.describe().starts_with("mail directory "));
    mailer
        .send(&to(), "[rsbackup] web1: backup ok", "line one\nline two\n")
        .unwrap();
    let (path, eml) = only_file(dir.path());
    assert_eq!(path.extension().unwrap(), "eml");
    assert!(
        eml.contains("From: rsbackup@backup.example.org\r\n"),
        "{eml}"
    );
    assert!(
        eml.contains("To: root@example.org, \"Ops\" <ops@example.org>\r\n")
            || eml.contains("To: root@example.org, Ops <ops@example.org>\r\n"),
        "{eml}"
    );
    assert!(
        eml.contains("Subject: [rsbackup] web1: backup ok\r\n"),
        "{eml}"
    );
    assert!(
        eml.contains("Content-Type: text/plain; charset=utf-8"),
        "{eml}"
    );
    assert!(eml.contains("line one\r\nline two\r\n"), "{eml}");
    let id = eml
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap_or_else(|| panic!("no Message-ID in {eml}"));
    assert!(
        id.starts_with('<') && id.ends_with("@backup.example.org>"),
        "{id}"
    );
    assert!(eml.lines().any(|l| l.starts_with("Date: ")), "{eml}");
    // Two messages never share an id.
    mailer.send(&to(), "second", "x\n").unwrap();
    let ids: std::collections::BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned))
        })
        .collect();
    assert_eq!(ids.len(), 2);
}

#[test]
fn send_errors_are_values() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let mailer = Mailer::from_config(&config(MailTransport::Directory {
        path: missing.clone(),
    }))
    .unwrap();
    let err = mailer.send(&to(), "s", "b").unwrap_err();
    assert!(err.message().contains("is not a directory"), "{err}");
    assert!(
        mailer
            .send(&[], "s", "b")
            .unwrap_err()
            .message()
            .contains("no recipients")
    );

    let sendmail = Mailer::from_config(&config(MailTransport::Sendmail {
        command: dir.path().join("no-sendmail"),
    }))
    .unwrap();
    let err = sendmail.send(&to(), "s", "b").unwrap_err();
    assert!(err.message().contains("via sendmail"), "{err}");

    // A loopback port nobody listens on: refused at once, as an error.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let smtp = Mailer::from_config(&config(MailTransport::Smtp {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        login: None,
        timeout: Duration::from_secs(2),
    }))
    .unwrap();
    let err = smtp.send(&to(), "s", "b").unwrap_err();
    assert!(
        err.message()
            .contains(&format!("smtp 127.0.0.1:{port} (plain)")),
        "{err}"
    );
}

#[test]
fn sendmail_gets_the_message_on_stdin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sendmail");
    let out = dir.path().join("out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {0}.args\ncat > {0}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mailer = Mailer::from_config(&config(MailTransport::Sendmail { command: script })).unwrap();
    mailer.send(&to(), "hello", "body text").unwrap();
    let message = std::fs::read_to_string(&out).unwrap();
    assert!(message.contains("Subject: hello"), "{message}");
    assert!(message.contains("body text"));
    let args = std::fs::read_to_string(out.with_extension("args")).unwrap();
    assert!(
        args.contains("root@example.org") && args.contains("ops@example.org"),
        "{args}"
    );
}

#[test]
fn password_file_rules() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let smtp = |file: &Path| {
        Mailer::from_config(&config(MailTransport::Smtp {
            host: "mail.example.org".into(),
            port: 587,
            security: SmtpSecurity::StartTls,
            login: Some(("web1".into(), file.to_owned())),
            timeout: Duration::from_secs(5),
        }))
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        smtp(&file)
            .unwrap_err()
            .message()
            .contains("readable by everyone")
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mailer = smtp(&file).unwrap();
    assert_eq!(mailer.describe(), "smtp mail.example.org:587 (starttls)");
    assert!(!format!("{mailer:?}").contains("s3cret"));
    assert!(smtp(&dir.path().join("none")).is_err());
    std::fs::write(&file, "\n").unwrap();
    assert!(smtp(&file).unwrap_err().message().contains("is empty"));
}

/// A real SMTP server on loopback (Debian's python3-aiosmtpd; tools/test.sh installs it).
#[test]
fn smtp_to_a_real_server_on_loopback() {
    let python = Path::new("/usr/bin/python3");
    let has_aiosmtpd = std::process::Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_aiosmtpd,
        "/usr/bin/python3 cannot import aiosmtpd: apt-get install python3-aiosmtpd (tools/test.sh \
         does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new(python)
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mailer = Mailer::from_config(&config(MailTransport::Smtp {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        login: None,
        timeout: Duration::from_secs(10),
    }))
    .unwrap();
    let sent = mailer.send(&to(), "[rsbackup] smtp test", "over smtp\n");
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "aiosmtpd did not start");
    sent.unwrap();
    let (_, message) = only_file(&maildir.join("new"));
    assert!(
        message.contains("Subject: [rsbackup] smtp test"),
        "{message}"
    );
    assert!(message.contains("over smtp"));
}
