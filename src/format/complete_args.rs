//! The arguments of the push path's `complete` command: how the client's transfer ended, as
//! `key=value` words after `complete` (docs/architecture.md, "How complete learns how the
//! transfer ended"). Printable ASCII only, so that the server's command parser (no shell, no
//! quoting) takes them as they are:
//!
//! * `rsync-exit=N`: rsync's exit code on the client (0-255).
//! * `paths=full`: the client sent every source at its full path (`/var/www` as `var/www/`
//!   in staging); without it, each source landed under its last component (`www/`), as
//!   clients before full paths sent them.
//! * `sources=A,B`: where the sources the client sent land in staging (with `paths=full` their
//!   full paths without the leading `/`, e.g. `var/www`; otherwise their last components);
//!   absent when the client sent its whole tree (`/`).
//! * `skipped=C`: the sources the client did not send because their guard failed.
//!
//! A name is percent-encoded: every byte outside `A-Z a-z 0-9 . _ - /` becomes `%XX`
//! (upper-case hex), so that commas, spaces and non-ASCII bytes travel safely. A word may appear
//! once.

/// What `complete` was told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteArgs {
    /// rsync's exit code; `None`: the client did not say (the session is then `partial`).
    pub rsync_exit: Option<u8>,
    /// `paths=full`: sources are in staging at their full paths.
    pub full_paths: bool,
    /// The top-level names the client sent; `None`: the whole tree.
    pub sources: Option<Vec<Vec<u8>>>,
    /// The top-level names of sources that were not sent (their guard failed).
    pub skipped: Vec<Vec<u8>>,
}

impl CompleteArgs {
    /// Parse the words after `complete`.
    pub fn parse(words: &[&str]) -> Result<CompleteArgs, String> {
        let mut out = CompleteArgs::default();
        let mut seen: Vec<&str> = Vec::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!("complete: argument {word:?} is not key=value"));
            };
            if seen.contains(&key) {
                return Err(format!("complete: {key}= given twice"));
            }
            seen.push(key);
            match key {
                "rsync-exit" => {
                    let code = value
                        .parse::<u8>()
                        .ok()
                        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| {
                            format!("complete: rsync-exit={value:?} is not a number 0-255")
                        })?;
                    out.rsync_exit = Some(code);
                }
                "paths" if value == "full" => out.full_paths = true,
                "paths" => return Err(format!("complete: paths={value:?} is not \"full\"")),
                "sources" => out.sources = Some(decode_names(key, value)?),
                "skipped" => out.skipped = decode_names(key, value)?,
                other => return Err(format!("complete: unknown argument {other:?}")),
            }
        }
        // A name is a file name, or with paths=full a relative path inside staging.
        for (key, name) in out
            .sources
            .iter()
            .flatten()
            .map(|n| ("sources", n))
            .chain(out.skipped.iter().map(|n| ("skipped", n)))
        {
            let ok = if out.full_paths {
                crate::format::rename_list::path_ok(name)
            } else {
                !name.contains(&b'/')
            };
            if !ok {
                return Err(format!(
                    "complete: {key}= names {:?}, which is not a {}",
                    String::from_utf8_lossy(name),
                    if out.full_paths {
                        "relative path"
                    } else {
                        "file name"
                    }
                ));
            }
        }
        Ok(out)
    }

    /// The words after `complete`, in a fixed order (`rsync-exit`, `paths`, `sources`,
    /// `skipped`).
    pub fn to_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(code) = self.rsync_exit {
            out.push(format!("rsync-exit={code}"));
        }
        if self.full_paths {
            out.push("paths=full".to_owned());
        }
        if let Some(sources) = &self.sources {
            out.push(format!("sources={}", encode_names(sources)));
        }
        if !self.skipped.is_empty() {
            out.push(format!("skipped={}", encode_names(&self.skipped)));
        }
        out
    }

    /// What went wrong with the transfer, in words for the session's reason; `None` for a clean
    /// transfer of every source.
    pub fn transfer_problem(&self) -> Option<String> {
        let mut problems = Vec::new();
        match self.rsync_exit {
            None => problems.push(
                "the client did not say how its transfer ended (complete without rsync-exit=)"
                    .to_owned(),
            ),
            Some(0) => {}
            Some(code @ (23 | 24)) => problems.push(format!(
                "rsync exit {code} on the client ({}): some files were not sent and rsync \
                 skipped --delete, so files deleted on the client may still be in this session",
                if code == 23 {
                    "partial transfer due to error"
                } else {
                    "some source files vanished"
                }
            )),
            Some(code) => problems.push(format!("rsync exit {code} on the client")),
        }
        if !self.skipped.is_empty() {
            let names: Vec<String> = self
                .skipped
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            problems.push(format!(
                "source{} not sent (guard failed on the client): {}; left out of this session",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

fn encode_names(names: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for &b in name {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn decode_names(key: &str, value: &str) -> Result<Vec<Vec<u8>>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|encoded| {
            let bytes = encoded.as_bytes();
            let mut name = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = encoded
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("complete: {key}= has a bad %-escape"))?;
                    name.push(hex);
                    i += 3;
                } else {
                    name.push(bytes[i]);
                    i += 1;
                }
            }
            if name.is_empty() || name == b"." || name == b".." || name.contains(&0) {
                return Err(format!(
                    "complete: {key}= names {encoded:?}, which is not a file name"
                ));
            }
            Ok(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_bad_words_are_refused() {
        let args = CompleteArgs {
            rsync_exit: Some(23),
            full_paths: false,
            sources: Some(vec![b"www".to_vec(), "a b,ü%".as_bytes().to_vec()]),
            skipped: vec![b"data".to_vec()],
        };
        let words = args.to_words();
        assert_eq!(
            words,
            [
                "rsync-exit=23",
                "sources=www,a%20b%2C%C3%BC%25",
                "skipped=data"
            ]
        );
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(CompleteArgs::parse(&refs).unwrap(), args);
        assert_eq!(CompleteArgs::parse(&[]).unwrap(), CompleteArgs::default());
        assert!(
            CompleteArgs::default()
                .transfer_problem()
                .unwrap()
                .contains("did not say")
        );
        let clean = CompleteArgs::parse(&["rsync-exit=0", "sources="]).unwrap();
        assert_eq!(clean.transfer_problem(), None);
        assert_eq!(clean.sources, Some(vec![]));
        let problem = args.transfer_problem().unwrap();
        assert!(
            problem.contains("rsync exit 23") && problem.contains("data"),
            "{problem}"
        );
        for bad in [
            &["rsync-exit=256"][..],
            &["rsync-exit=+1"],
            &["rsync-exit=0", "rsync-exit=0"],
            &["bogus=1"],
            &["rsync-exit"],
            &["sources=a%2Fb"],
            &["sources=.."],
            &["sources=a,,b"],
            &["skipped=%4"],
            &["paths=full", "sources=a//b"],
            &["paths=full", "skipped=a/../b"],
            &["paths=full", "sources=/var"],
            &["paths=short"],
        ] {
            assert!(CompleteArgs::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn full_paths_travel_with_their_slashes() {
        let args = CompleteArgs {
            rsync_exit: Some(0),
            full_paths: true,
            sources: Some(vec![b"var/www".to_vec(), b"srv/www".to_vec()]),
            skipped: vec!["srv/d\u{fc}".as_bytes().to_vec()],
        };
        let words = args.to_words();
        assert_eq!(
            words,
            [
                "rsync-exit=0",
                "paths=full",
                "sources=var/www,srv/www",
                "skipped=srv/d%C3%BC"
            ]
        );
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(CompleteArgs::parse(&refs).unwrap(), args);
    }
}
