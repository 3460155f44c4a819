//! Reading rsync's `--stats` summary: how many files the client has, how many rsync sent, and
//! how many bytes actually crossed the wire against the total.
//!
//! The parser is tolerant on purpose: it looks for the lines it knows by their label, anywhere
//! in the output (rsync prints its summary after any per-file lines and error messages), and
//! ignores the rest. Numbers may carry thousands separators (`3,000,008`; `3.000.008` in some
//! locales; rsync is run with `LC_ALL=C`, but a wrapper may not be) or a unit suffix from
//! `--human-readable` (`2.86M`, read as an approximation). Labels changed between versions:
//! rsync 3.0 says `Number of files transferred` where 3.1 and later say `Number of regular files
//! transferred`; both are read. A missing line leaves its figure `None`.

/// The figures of one `rsync --stats` summary. `None`: the line was not in the output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsyncStats {
    /// `Number of files`: every entry rsync looked at on the client (files, directories, links).
    pub files: Option<u64>,
    /// The `reg:` count of `Number of files` (rsync 3.1+): regular files on the client.
    pub regular_files: Option<u64>,
    /// `Number of created files` (rsync 3.1+).
    pub created_files: Option<u64>,
    /// `Number of deleted files` (rsync 3.1+): removed from the server's copy (`--delete`).
    pub deleted_files: Option<u64>,
    /// `Number of regular files transferred` (`Number of files transferred` before 3.1).
    pub files_transferred: Option<u64>,
    /// `Total file size`: bytes of all files on the client.
    pub total_file_size: Option<u64>,
    /// `Total transferred file size`: size of the files that were (partly) sent.
    pub transferred_file_size: Option<u64>,
    /// `Literal data`: file bytes sent as they are (new or changed data).
    pub literal_data: Option<u64>,
    /// `Matched data`: file bytes the server already had (delta transfer).
    pub matched_data: Option<u64>,
    /// `Total bytes sent`: what went over the wire from the client, protocol included.
    pub bytes_sent: Option<u64>,
    /// `Total bytes received`: what came back.
    pub bytes_received: Option<u64>,
}

impl RsyncStats {
    /// Read the summary out of rsync's output. Output without any known line gives all `None`
    /// (see [`RsyncStats::is_empty`]).
    pub fn parse(output: &str) -> RsyncStats {
        let mut stats = RsyncStats::default();
        for line in output.lines() {
            let Some((label, value)) = line.split_once(':') else {
                continue;
            };
            let label = label.trim();
            let value = value.trim();
            let slot = match label {
                "Number of files" => {
                    stats.regular_files = breakdown(value, "reg").or(stats.regular_files);
                    &mut stats.files
                }
                "Number of created files" => &mut stats.created_files,
                "Number of deleted files" => &mut stats.deleted_files,
                "Number of regular files transferred" | "Number of files transferred" => {
                    &mut stats.files_transferred
                }
                "Total file size" => &mut stats.total_file_size,
                "Total transferred file size" => &mut stats.transferred_file_size,
                "Literal data" => &mut stats.literal_data,
                "Matched data" => &mut stats.matched_data,
                "Total bytes sent" => &mut stats.bytes_sent,
                "Total bytes received" => &mut stats.bytes_received,
                _ => continue,
            };
            if let Some(n) = leading_number(value) {
                *slot = Some(n);
            }
        }
        stats
    }

    /// Was no summary line found at all (rsync failed before printing one)?
    pub fn is_empty(&self) -> bool {
        *self == RsyncStats::default()
    }

    /// Bytes sent as a share of the total file size, in percent (`None` if either is missing
    /// or the total is zero).
    pub fn sent_percent(&self) -> Option<f64> {
        match (self.bytes_sent, self.total_file_size) {
            (Some(sent), Some(total)) if total > 0 => Some(sent as f64 * 100.0 / total as f64),
            _ => None,
        }
    }
}

/// The number at the start of `value`: `3,000,008 bytes`, `7 (reg: 4, dir: 2)`, `2.86M bytes`.
fn leading_number(value: &str) -> Option<u64> {
    let token = value.split_whitespace().next()?;
    parse_number(token)
}

/// One figure of a breakdown such as `7 (reg: 4, dir: 2, link: 1)` or, with separators,
/// `3,128 (reg: 3,016, dir: 108, link: 4)` (so the list cannot be split on commas).
fn breakdown(value: &str, key: &str) -> Option<u64> {
    let inner = value.split_once('(')?.1.split(')').next()?;
    let at = inner.find(&format!("{key}:"))?;
    if at > 0
        && inner[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphabetic())
    {
        return None;
    }
    let rest = inner[at + key.len() + 1..].trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || ",.'".contains(*c))
        .collect();
    parse_number(number.trim_end_matches([',', '.', '\'']))
}

/// `3,000,008`, `3.000.008`, `3'000'008`, `12`, or with `--human-readable` `2.86M` / `1.05G`.
fn parse_number(token: &str) -> Option<u64> {
    let (digits, unit) = match token.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => token.split_at(i),
        None => (token, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b",.'".contains(&b))
    {
        return None;
    }
    if shift == 0 {
        // Separators only group thousands here: drop them all.
        let plain: String = digits.chars().filter(char::is_ascii_digit).collect();
        return plain.parse().ok();
    }
    // A scaled figure: the last '.' or ',' is the decimal point.
    let normalized = digits.replace(['\''], "");
    let (int, frac) = match normalized.rfind(['.', ',']) {
        Some(i) => (&normalized[..i], &normalized[i + 1..]),
        None => (normalized.as_str(), ""),
    };
    let int: String = int.chars().filter(char::is_ascii_digit).collect();
    let value: f64 = format!("{}.{}", if int.is_empty() { "0" } else { &int }, frac)
        .parse()
        .ok()?;
    Some((value * (1u64 << shift) as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from the installed rsync 3.2.7 (`-a -H --numeric-ids --delete --partial --stats`,
    // LC_ALL=C): a first run, a second run after appending to the big file and deleting one,
    // and a run with nothing to do.
    const FIRST: &str = include_str!("testdata/rsync-3.2.7-first.txt");
    const SECOND: &str = include_str!("testdata/rsync-3.2.7-second.txt");
    const UNCHANGED: &str = include_str!("testdata/rsync-3.2.7-unchanged.txt");
    // The first run of tools/demo.sh (3,128 entries: numbers with separators in the breakdown).
    const LARGE: &str = include_str!("testdata/rsync-3.2.7-large.txt");

    #[test]
    fn first_run_of_rsync_3_2_7() {
        let s = RsyncStats::parse(FIRST);
        assert_eq!(s.files, Some(7));
        assert_eq!(s.regular_files, Some(4));
        assert_eq!(s.created_files, Some(6));
        assert_eq!(s.deleted_files, Some(0));
        assert_eq!(s.files_transferred, Some(3));
        assert_eq!(s.total_file_size, Some(3_000_009));
        assert_eq!(s.transferred_file_size, Some(3_000_005));
        assert_eq!(s.literal_data, Some(3_000_005));
        assert_eq!(s.matched_data, Some(0));
        assert_eq!(s.bytes_sent, Some(3_001_022));
        assert_eq!(s.bytes_received, Some(104));
        assert!(s.sent_percent().unwrap() > 100.0);
    }

    #[test]
    fn separators_inside_the_breakdown() {
        let s = RsyncStats::parse(LARGE);
        assert_eq!(s.files, Some(3_128));
        assert_eq!(s.regular_files, Some(3_016));
        assert_eq!(s.created_files, Some(3_128));
        assert_eq!(s.files_transferred, Some(3_014));
        assert_eq!(s.total_file_size, Some(163_494_673));
        assert_eq!(s.bytes_sent, Some(163_697_926));
        assert_eq!(breakdown("5 (dir: 2, reg: 3)", "reg"), Some(3));
        assert_eq!(breakdown("5 (xreg: 2)", "reg"), None);
    }

    #[test]
    fn second_run_sends_only_the_delta() {
        let s = RsyncStats::parse(SECOND);
        assert_eq!(s.files, Some(6));
        assert_eq!(s.deleted_files, Some(1));
        assert_eq!(s.files_transferred, Some(1));
        assert_eq!(s.literal_data, Some(197));
        assert_eq!(s.matched_data, Some(2_999_808));
        assert_eq!(s.bytes_sent, Some(7_314));
        assert_eq!(s.bytes_received, Some(10_472));
        assert!(s.sent_percent().unwrap() < 1.0);
        let s = RsyncStats::parse(UNCHANGED);
        assert_eq!(s.files_transferred, Some(0));
        assert_eq!(s.bytes_sent, Some(146));
        assert_eq!(s.total_file_size, Some(3_000_012));
    }

    #[test]
    fn rsync_3_0_labels_and_no_breakdown() {
        // rsync 3.0.x printed no separators, no breakdown and an older label.
        let old = "Number of files: 6\nNumber of files transferred: 3\nTotal file size: 3000008 \
                   bytes\nTotal transferred file size: 3000005 bytes\nLiteral data: 3000005 \
                   bytes\nMatched data: 0 bytes\nFile list size: 120\nTotal bytes sent: \
                   3000999\nTotal bytes received: 94\n";
        let s = RsyncStats::parse(old);
        assert_eq!(s.files, Some(6));
        assert_eq!(s.regular_files, None);
        assert_eq!(s.created_files, None);
        assert_eq!(s.files_transferred, Some(3));
        assert_eq!(s.total_file_size, Some(3_000_008));
        assert_eq!(s.bytes_sent, Some(3_000_999));
    }

    #[test]
    fn stats_after_noise_and_other_locales() {
        let text = format!(
            "rsync: [sender] link_stat \"/nope\" failed: No such file or directory (2)\n\
             some/file\n{}\nrsync error: some files/attrs were not transferred (code 23)\n",
            FIRST.replace("3,000,009", "3.000.009")
        );
        let s = RsyncStats::parse(&text);
        assert_eq!(s.total_file_size, Some(3_000_009));
        assert_eq!(s.bytes_sent, Some(3_001_022));
        let human = RsyncStats::parse("Total file size: 2.86M bytes\nTotal bytes sent: 1.50K\n");
        assert_eq!(human.total_file_size, Some(2_998_927));
        assert_eq!(human.bytes_sent, Some(1536));
    }

    #[test]
    fn garbage_gives_nothing() {
        for bad in [
            "",
            "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n",
            "Total file size: lots\nTotal bytes sent: -5\nNumber of files: 1.2.3X\n",
            "Total bytes sent:\n:\n::::\n",
        ] {
            let s = RsyncStats::parse(bad);
            assert!(s.is_empty(), "{bad:?} gave {s:?}");
            assert_eq!(s.sent_percent(), None);
        }
        assert_eq!(parse_number("99999999999999999999999"), None);
        assert_eq!(breakdown("7 (dir: 2)", "reg"), None);
    }
}
