//! age wrapping of the repository secret and of data keys (format-spec/keys.md).

use std::path::Path;

use crate::crypto::{DataKey, RepoSecret};
use crate::error::Result;

/// The repository's age recipients (public keys).
#[derive(Clone)]
pub struct Recipients(pub Vec<age::x25519::Recipient>);

/// Age identities (private keys) loaded from an identity file.
pub struct Identities(pub Vec<age::x25519::Identity>);

impl Recipients {
    /// Parse `age1...` strings; an invalid one is an error naming it.
    pub fn parse(list: &[String]) -> Result<Recipients> {
        let _ = list;
        todo!()
    }
}

impl Identities {
    /// Load an identity file (`AGE-SECRET-KEY-1...` lines, `#` comments); errors name the file.
    pub fn load(path: &Path) -> Result<Identities> {
        let _ = path;
        todo!()
    }

    /// Parse identity file text.
    pub fn parse(text: &str, origin: &str) -> Result<Identities> {
        let _ = (text, origin);
        todo!()
    }
}

/// A new identity: (identity file text including a `# public key:` comment, recipient string).
pub fn keygen() -> (String, String) {
    todo!()
}

/// Wrap a data key to the recipients (age binary format over `RSBKDK01 || key`).
pub fn wrap_data_key(key: &DataKey, recipients: &Recipients) -> Result<Vec<u8>> {
    let _ = (key, recipients);
    todo!()
}

/// Unwrap a data key; `ErrorKind::WrongIdentity` when no identity matches, `Corrupt` when the
/// plaintext is malformed.
pub fn unwrap_data_key(wrapped: &[u8], identities: &Identities) -> Result<DataKey> {
    let _ = (wrapped, identities);
    todo!()
}

/// Wrap the repository secret (age binary format over `RSBKSEC1 || secret`).
pub fn wrap_secret(secret: &RepoSecret, recipients: &Recipients) -> Result<Vec<u8>> {
    let _ = (secret, recipients);
    todo!()
}

/// Unwrap the repository secret; `WrongIdentity` when no identity matches.
pub fn unwrap_secret(wrapped: &[u8], identities: &Identities) -> Result<RepoSecret> {
    let _ = (wrapped, identities);
    todo!()
}
