use std::path::Path;

use super::*;

fn config() -> ServerConfig {
    let text = r#"repository = "/srv/repo"
staging-root = "/srv/staging"
[mail]
from = "rsbackup@example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/tmp/mail"

[mirror-of.main]
repository = "/srv/mirror-of-main"
addresses = ["192.0.2.10", "2001:db8::/64"]
windows = ["daily 01:00-05:00"]
timezone = "Europe/Berlin"
"#;
    ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml")).unwrap()
}

/// 2026-11-28 03:00 in Berlin (02:00 UTC): inside the window.
fn night() -> Timestamp {
    "2026-11-28T02:00:00Z".parse().unwrap()
}

fn decide(name: &str, conn: Option<&str>, cmd: Option<&str>, now: Timestamp) -> Decision {
    authorize_mirror(&config(), name, conn, cmd, now)
}

const FROM_PRIMARY: Option<&str> = Some("192.0.2.10 50022 192.0.2.1 22");

#[test]
fn the_primary_is_allowed_from_its_address_in_its_window() {
    let d = decide("main", FROM_PRIMARY, Some(MIRROR_COMMAND), night());
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.client_ip, Some("192.0.2.10".parse().unwrap()));
    assert_eq!(
        d.reason,
        "mirror-of main: mirror connection allowed from 192.0.2.10"
    );
    let v6 = decide(
        "main",
        Some("2001:db8::7 1 2001:db8::1 22"),
        Some(MIRROR_COMMAND),
        night(),
    );
    assert!(v6.allowed, "{}", v6.reason);
}

#[test]
fn each_check_refuses_with_its_reason() {
    let afternoon: Timestamp = "2026-11-28T14:00:00Z".parse().unwrap();
    let cases = [
        (
            decide("other", FROM_PRIMARY, Some(MIRROR_COMMAND), night()),
            "mirror-of \"other\" is not configured in /etc/rsbackup/server.toml",
            None,
        ),
        (
            decide("main", None, Some(MIRROR_COMMAND), night()),
            "mirror-of main: SSH_CONNECTION is not set",
            None,
        ),
        (
            decide(
                "main",
                Some("198.51.100.9 1 192.0.2.1 22"),
                Some(MIRROR_COMMAND),
                night(),
            ),
            "address 198.51.100.9 is not in its addresses (192.0.2.10/32, 2001:db8::/64)",
            Some("198.51.100.9"),
        ),
        (
            decide("main", FROM_PRIMARY, Some(MIRROR_COMMAND), afternoon),
            "2026-11-28 15:00 (Saturday, Europe/Berlin) is not within its windows \
             (daily 01:00-05:00)",
            Some("192.0.2.10"),
        ),
        (
            decide("main", FROM_PRIMARY, None, night()),
            "mirror-of main: no command given (an interactive login is never allowed)",
            Some("192.0.2.10"),
        ),
        (
            decide(
                "main",
                FROM_PRIMARY,
                Some("rsbackup-mirror; rm -rf /"),
                night(),
            ),
            "mirror-of main: unknown command (a primary sends only \"rsbackup-mirror\")",
            Some("192.0.2.10"),
        ),
        (
            decide("main", FROM_PRIMARY, Some("prepare"), night()),
            "unknown command",
            Some("192.0.2.10"),
        ),
    ];
    for (d, why, ip) in cases {
        assert!(!d.allowed, "allowed: {}", d.reason);
        assert!(d.reason.contains(why), "{:?} lacks {why:?}", d.reason);
        assert_eq!(
            d.client_ip,
            ip.map(|ip| ip.parse().unwrap()),
            "{}",
            d.reason
        );
        assert_eq!(d.request, None);
    }
}

#[test]
fn audit_rows_name_the_section_unmistakably() {
    assert_eq!(audit_client("main"), "mirror-of:main");
    let d = decide("we\nird", FROM_PRIMARY, Some(MIRROR_COMMAND), night());
    let record = AuditRecord::new(
        night(),
        &audit_client("we\nird"),
        FROM_PRIMARY,
        Some(MIRROR_COMMAND),
        &d,
    );
    assert_eq!(record.client, "mirror-of:we\\nird");
    assert_eq!(record.ip, "192.0.2.10");
    assert!(!record.reason.contains('\n'), "{}", record.reason);
}
