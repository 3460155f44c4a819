//! The server half of the push path through the real parts: sshd on loopback with forced
//! commands to the built binary, real rsync, real SMTP.

use std::time::Duration;

use crate::smtp::Smtp;
use crate::sshd::{SshKey, Sshd};

/// The harnesses themselves: sshd runs a forced command and shows it the original command and
/// the connection; aiosmtpd receives a message.
#[test]
fn harnesses_run_forced_command_and_receive_mail() {
    let dir = crate::common::tempdir();
    let key = SshKey::generate(dir.path(), "k");
    let line = format!(
        "command=\"/bin/sh -c 'echo \\\"$SSH_ORIGINAL_COMMAND|$SSH_CONNECTION\\\"'\",restrict {}\n",
        key.public
    );
    let sshd = Sshd::start(&line);
    let out = sshd.run(&key, Some("127.0.0.2"), "prepare now");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{}", sshd.log());
    assert!(stdout.starts_with("prepare now|127.0.0.2 "), "{stdout}");

    let smtp = Smtp::start();
    assert!(smtp.messages().is_empty());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", smtp.port)).unwrap();
    use std::io::{BufRead, BufReader, Write};
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for cmd in [
        "",
        "HELO t\r\n",
        "MAIL FROM:<a@example.org>\r\n",
        "RCPT TO:<b@example.org>\r\n",
        "DATA\r\n",
        "Subject: hello\r\n\r\nbody\r\n.\r\n",
        "QUIT\r\n",
    ] {
        s.write_all(cmd.as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(!line.starts_with('5'), "{cmd:?} -> {line}");
    }
    let got = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: hello"), "{}", got[0]);
}
