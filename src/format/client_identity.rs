//! The client identity prefix of every push-path command (format-spec/wire.md, "The client
//! identity prefix"): `rsbackup-client=NAME rsbackup-machine=ID COMMAND...`.
//!
//! The ssh key says which client the server takes a request for (the forced command's
//! `--client`); the prefix says which client the sender *believes* it is and which machine it
//! runs on, so that a cloned machine or a copied key is noticed instead of silently writing
//! into another client's staging. Strings only: no I/O, no hashing (the client derives the
//! machine id, see `client::identity`).

use std::fmt;

/// The first word's key.
pub const CLIENT_KEY: &str = "rsbackup-client=";
/// The second word's key.
pub const MACHINE_KEY: &str = "rsbackup-machine=";
/// Longest client name in the prefix (as `config::MAX_CLIENT_NAME_LEN`).
pub const MAX_NAME_BYTES: usize = 64;
/// A machine id is this many lowercase hex digits (16 bytes).
pub const MACHINE_ID_HEX_LEN: usize = 32;

/// A machine identity: 16 bytes, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineId([u8; 16]);

impl MachineId {
    /// Wrap 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> MachineId {
        MachineId(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parse exactly 32 lowercase hex digits; the error says what is wrong (without echoing
    /// more than a short, escaped piece of the input).
    pub fn parse(text: &str) -> Result<MachineId, String> {
        if text.len() != MACHINE_ID_HEX_LEN {
            return Err(format!(
                "machine id {:?} is {} characters, not {MACHINE_ID_HEX_LEN} lowercase hex digits",
                text.chars().take(40).collect::<String>(),
                text.len()
            ));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "machine id {text:?} is not {MACHINE_ID_HEX_LEN} lowercase hex digits"
            ));
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("machine id {text:?}: {e}"))?;
        Ok(MachineId(bytes))
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What a client states about itself at the start of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedIdentity {
    /// The client name from its `client.toml` (checked for shape, not yet against the key).
    pub client: String,
    /// Its machine identity.
    pub machine: MachineId,
}

impl StatedIdentity {
    /// The two prefix words, without a trailing space.
    pub fn prefix(&self) -> String {
        format!("{CLIENT_KEY}{} {MACHINE_KEY}{}", self.client, self.machine)
    }

    /// Split `words` (a command already split on single spaces) into the stated identity and
    /// the command words after it. Refuses a missing prefix, the two words in the wrong order,
    /// either word twice, a name that is not a client name, an id that is not 32 lowercase hex
    /// digits, and a prefix with nothing after it.
    pub fn split<'a, 'w>(words: &'a [&'w str]) -> Result<(StatedIdentity, &'a [&'w str]), String> {
        let first = words.first().copied().unwrap_or_default();
        let Some(client) = first.strip_prefix(CLIENT_KEY) else {
            if first.starts_with(MACHINE_KEY) {
                return Err(format!(
                    "the command starts with {MACHINE_KEY}... instead of {CLIENT_KEY}NAME (wrong \
                     order)"
                ));
            }
            return Err(format!(
                "the client did not state its name ({CLIENT_KEY}NAME {MACHINE_KEY}ID before the \
                 command): an rsbackup client older than this server, or not rsbackup at all"
            ));
        };
        check_name(client)?;
        let second = words.get(1).copied().unwrap_or_default();
        let Some(machine) = second.strip_prefix(MACHINE_KEY) else {
            if second.starts_with(CLIENT_KEY) {
                return Err(format!("{CLIENT_KEY} is given twice"));
            }
            return Err(format!(
                "the client stated its name but not its machine ({MACHINE_KEY}ID must follow \
                 {CLIENT_KEY}NAME)"
            ));
        };
        let machine = MachineId::parse(machine)?;
        let rest = &words[2..];
        match rest.first() {
            None => return Err("nothing follows the client identity prefix".into()),
            Some(w) if w.starts_with(CLIENT_KEY) || w.starts_with(MACHINE_KEY) => {
                return Err(format!(
                    "the client identity prefix is given twice ({})",
                    &w[..w.find('=').map_or(w.len(), |i| i + 1)]
                ));
            }
            Some(_) => {}
        }
        Ok((
            StatedIdentity {
                client: client.to_owned(),
                machine,
            },
            rest,
        ))
    }
}

/// A client name's shape (as `config::ClientName`): 1-64 of `a-z 0-9 . _ -`, starting with a
/// letter or digit.
fn check_name(name: &str) -> Result<(), String> {
    let shown = || name.chars().take(80).collect::<String>();
    if name.is_empty() {
        return Err(format!("{CLIENT_KEY} gives an empty client name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{CLIENT_KEY}{:?}: the name is {} bytes, over {MAX_NAME_BYTES}",
            shown(),
            name.len()
        ));
    }
    let first = name.as_bytes()[0];
    let ok = (first.is_ascii_lowercase() || first.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(format!(
            "{CLIENT_KEY}{:?} is not a client name (a-z 0-9 . _ -, starting with a letter or \
             digit)",
            shown()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn split(command: &str) -> Result<(StatedIdentity, Vec<String>), String> {
        let words: Vec<&str> = command.split(' ').collect();
        StatedIdentity::split(&words)
            .map(|(id, rest)| (id, rest.iter().map(|w| (*w).to_owned()).collect()))
    }

    #[test]
    fn good_prefix_round_trips() {
        let (id, rest) = split(&format!(
            "rsbackup-client=web1 rsbackup-machine={ID} prepare"
        ))
        .unwrap();
        assert_eq!(id.client, "web1");
        assert_eq!(id.machine.to_string(), ID);
        assert_eq!(rest, ["prepare"]);
        assert_eq!(
            id.prefix(),
            format!("rsbackup-client=web1 rsbackup-machine={ID}")
        );
        let (_, rest) = split(&format!(
            "rsbackup-client=a.b_c-9 rsbackup-machine={ID} rsync --server . ."
        ))
        .unwrap();
        assert_eq!(rest, ["rsync", "--server", ".", "."]);
        assert_eq!(MachineId::parse(ID).unwrap().as_bytes()[0], 0x01);
    }

    #[test]
    fn bad_prefixes_say_what_is_wrong() {
        let upper = ID.to_uppercase();
        let long_name = "a".repeat(65);
        for (command, needle) in [
            ("prepare".to_owned(), "did not state its name"),
            (String::new(), "did not state its name"),
            (
                format!("rsbackup-machine={ID} rsbackup-client=web1 prepare"),
                "wrong order",
            ),
            (
                format!("rsbackup-client=web1 rsbackup-client=web1 rsbackup-machine={ID} prepare"),
                "given twice",
            ),
            (
                format!("rsbackup-client=web1 rsbackup-machine={ID} rsbackup-machine={ID} prepare"),
                "given twice",
            ),
            (
                format!("rsbackup-client=web1 rsbackup-machine={ID} rsbackup-client=db1 prepare"),
                "given twice",
            ),
            ("rsbackup-client=web1 prepare".to_owned(), "not its machine"),
            (
                format!("rsbackup-client=web1 rsbackup-machine={ID}"),
                "nothing follows",
            ),
            (
                format!("rsbackup-client=web1 rsbackup-machine={upper} prepare"),
                "lowercase hex",
            ),
            (
                "rsbackup-client=web1 rsbackup-machine=0123456789abcdefg123456789abcdef prepare"
                    .to_owned(),
                "lowercase hex",
            ),
            (
                "rsbackup-client=web1 rsbackup-machine=0123 prepare".to_owned(),
                "is 4 characters",
            ),
            (
                format!("rsbackup-client=web1 rsbackup-machine={ID}00 prepare"),
                "is 34 characters",
            ),
            (
                format!("rsbackup-client= rsbackup-machine={ID} prepare"),
                "empty client name",
            ),
            (
                format!("rsbackup-client={long_name} rsbackup-machine={ID} prepare"),
                "over 64",
            ),
            (
                format!("rsbackup-client=Web1 rsbackup-machine={ID} prepare"),
                "not a client name",
            ),
            (
                format!("rsbackup-client=-web1 rsbackup-machine={ID} prepare"),
                "not a client name",
            ),
            (
                format!("rsbackup-client=web/1 rsbackup-machine={ID} prepare"),
                "not a client name",
            ),
        ] {
            let err = split(&command).expect_err(&command);
            assert!(
                err.contains(needle),
                "{command:?}: {err:?} lacks {needle:?}"
            );
        }
    }
}
