//! age wrapping of the repository secret and of data keys (format-spec/keys.md).
//!
//! Both are the age binary format (v1, X25519 recipients) over a 40-byte plaintext: an 8-byte
//! magic that says what the plaintext is, then the 32-byte key. The magic stops a wrapped data
//! key from being accepted as a secret (or the reverse) and catches a file that decrypts but is
//! not ours. Plaintext buffers are zeroized; no key material ever goes into an error message.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::crypto::dictionary::{Dictionary, MAX_DICTIONARY_FRAME};
use crate::crypto::{ChunkIdKey, DataKey, RepoSecret};
use crate::error::{Error, ErrorKind, Result};

/// Magic of a wrapped data key's plaintext.
pub const DATA_KEY_MAGIC: &[u8; 8] = b"RSBKDK01";
/// Magic of the repository secret's plaintext (in `keys/secret` and `keys/secret.age`).
pub const SECRET_MAGIC: &[u8; 8] = b"RSBKSEC1";
/// Length of a wrapped plaintext: magic and key.
pub const WRAPPED_PLAINTEXT_LEN: usize = 40;
/// Magic of a scoped data key's plaintext (a client's own dedup scope, keys.md).
pub const SCOPED_DATA_KEY_MAGIC: &[u8; 8] = b"RSBKDKC1";
/// Largest wrapped key (age file) the wire formats carry; a writer keeps a dictionary out of a
/// key that would be larger with it.
pub const MAX_WRAPPED_KEY: usize = 64 << 10;
/// Magic of a data key that carries its ingest's dictionary (keys.md "Dictionaries").
pub const DICT_DATA_KEY_MAGIC: &[u8; 8] = b"RSBKDK02";
/// Magic of a key of a client's scope that carries its ingest's dictionary.
pub const DICT_SCOPED_DATA_KEY_MAGIC: &[u8; 8] = b"RSBKDKC2";
/// A scoped data key's plaintext before the scope's name: magic, key, chunk-id key, length.
pub const SCOPED_FIXED_LEN: usize = 73;
/// Longest scope name (a client name).
pub const MAX_SCOPE_NAME: usize = 64;

/// A client's own dedup scope: its name and the key that names its chunks.
#[derive(Clone)]
pub struct KeyScope {
    /// The client.
    pub client: String,
    /// The chunk-id key of its scope ([`RepoSecret::client_chunk_id_key`]).
    pub id_key: ChunkIdKey,
}

impl std::fmt::Debug for KeyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyScope")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// An unwrapped data key, with its client scope when it has one.
#[derive(Debug, Clone)]
pub struct UnwrappedKey {
    /// The key.
    pub key: DataKey,
    /// `Some` for a key of a client's own scope (`RSBKDKC1`).
    pub scope: Option<KeyScope>,
}

/// The repository's age recipients (public keys).
#[derive(Clone)]
pub struct Recipients(pub Vec<age::x25519::Recipient>);

/// Age identities (private keys) loaded from an identity file.
pub struct Identities(pub Vec<age::x25519::Identity>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

impl std::fmt::Debug for Identities {
    // Never the keys themselves; their public halves are enough to tell files apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Identities")
            .field(&self.recipients())
            .finish()
    }
}

impl Recipients {
    /// Parse `age1...` strings; an invalid one is an error naming it.
    pub fn parse(list: &[String]) -> Result<Recipients> {
        if list.is_empty() {
            return Err(Error::invalid(
                "no age recipients given: at least one `age1...` public key is needed",
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let trimmed = s.trim();
            if trimmed.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                // Do not echo it: it is a private key pasted where a public key belongs.
                return Err(Error::invalid(format!(
                    "recipient #{} is an age identity (private key), not a recipient; give its \
                     public key (`age-keygen -y` or the `# public key:` line of the identity file)",
                    i + 1
                )));
            }
            let r = trimmed.parse::<age::x25519::Recipient>().map_err(|e| {
                Error::invalid(format!(
                    "recipient #{} {trimmed:?} is not an age X25519 public key (age1...): {e}",
                    i + 1
                ))
            })?;
            out.push(r);
        }
        Ok(Recipients(out))
    }

    /// The recipients as `age1...` strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|r| r.to_string()).collect()
    }
}

impl Identities {
    /// Load an identity file (`AGE-SECRET-KEY-1...` lines, `#` comments); errors name the file.
    /// A missing file is `NotFound`; a file that is not an age identity is `WrongIdentity`, as
    /// is an identity that fits no recipient: either way the administrator needs the right file.
    /// A passphrase-protected file is refused: see [`Identities::load_with_passphrase`].
    pub fn load(path: &Path) -> Result<Identities> {
        Self::load_with_passphrase(path, &mut || {
            Err(Error::invalid(format!(
                "identity file {} is passphrase-protected, and no passphrase was given",
                path.display()
            )))
        })
    }

    /// [`Identities::load`], and a passphrase-protected file (age scrypt, armored or binary)
    /// is decrypted with the passphrase `passphrase` returns (called only for such a file).
    pub fn load_with_passphrase(
        path: &Path,
        passphrase: &mut dyn FnMut() -> Result<age::secrecy::SecretString>,
    ) -> Result<Identities> {
        let origin = path.display().to_string();
        let mut bytes = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("identity file {origin} does not exist"),
                ));
            }
            Err(e) => return Err(Error::io(format!("cannot read identity file {origin}"), e)),
        };
        if crate::crypto::passphrase::is_encrypted(&bytes) {
            bytes = crate::crypto::passphrase::decrypt(&bytes, &origin, passphrase()?)?;
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            not_an_identity(
                &origin,
                "it is not text (expected AGE-SECRET-KEY-1... lines, or a passphrase-protected \
                 identity file)",
            )
        })?;
        Self::parse(text, &origin)
    }

    /// Parse identity file text; `origin` names it in errors (`WrongIdentity`: not an age
    /// identity). A line is never echoed: it may be a damaged private key.
    pub fn parse(text: &str, origin: &str) -> Result<Identities> {
        let mut out = Vec::new();
        // A byte-order mark from a Windows editor must not make line 1 unreadable.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = n + 1;
            let id = line.parse::<age::x25519::Identity>().map_err(|_| {
                let why = if line.starts_with("age1") {
                    format!(
                        "line {n} is a recipient (public key); restore needs the identity \
                         (private key)"
                    )
                } else if line.starts_with("-----BEGIN") {
                    format!(
                        "line {n} starts an armored file that is not a passphrase-protected \
                         age identity file; decrypt it first"
                    )
                } else if line.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-1") {
                    format!(
                        "line {n} is an AGE-SECRET-KEY-1... line that does not decode (damaged?)"
                    )
                } else {
                    format!("line {n} is not an AGE-SECRET-KEY-1... line")
                };
                not_an_identity(origin, &why)
            })?;
            out.push(id);
        }
        if out.is_empty() {
            return Err(not_an_identity(
                origin,
                "it holds no AGE-SECRET-KEY-1... line",
            ));
        }
        Ok(Identities(out))
    }

    /// The public keys of these identities.
    pub fn recipients(&self) -> Recipients {
        Recipients(self.0.iter().map(|i| i.to_public()).collect())
    }
}

/// The identity file `origin` is not an age identity, because of `why`.
fn not_an_identity(origin: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::WrongIdentity,
        format!("identity file {origin} is not an age identity: {why}"),
    )
}

/// A new identity: (identity file text including a `# public key:` comment, recipient string).
///
/// The text holds the private key: write it to a file only the administrator can read.
pub fn keygen() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    let secret = identity.to_string();
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        secret.expose_secret()
    );
    (text, recipient)
}

/// age-encrypt a plaintext (40 bytes, a scoped data key's 74 to 137, or either with a
/// dictionary section) to every recipient.
fn wrap(plaintext: &[u8], recipients: &Recipients, what: &str) -> Result<Vec<u8>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::invalid(format!("cannot wrap the {what}: {e}")))?;
    let mut out = Vec::with_capacity(512);
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorKind::Internal,
            format!("wrapping the {what} in memory failed: {e}"),
        )
    };
    let mut writer = encryptor.wrap_output(&mut out).map_err(failed)?;
    writer.write_all(plaintext).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// age-decrypt a wrapped plaintext of at most `max` bytes (a longer one is refused without
/// reading it whole).
fn unwrap_plaintext(
    wrapped: &[u8],
    identities: &Identities,
    max: usize,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let corrupt = |why: String| Error::corrupt(format!("wrapped {what} {why}"));
    let decryptor = age::Decryptor::new_buffered(wrapped).map_err(|e| match e {
        age::DecryptError::UnknownFormat => Error::new(
            ErrorKind::UnsupportedVersion,
            format!("wrapped {what} uses an age format version this build does not know"),
        ),
        other => corrupt(format!("is not a valid age file: {other}")),
    })?;
    if decryptor.is_scrypt() {
        return Err(corrupt(
            "is passphrase-encrypted; rsbackup wraps to X25519 recipients".into(),
        ));
    }
    let mut reader = decryptor
        .decrypt(identities.0.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::new(
                ErrorKind::WrongIdentity,
                format!(
                    "none of the {} given identities can unwrap the {what}: use an identity \
                     whose public key is one of the repository's recipients",
                    identities.0.len()
                ),
            ),
            other => corrupt(format!("cannot be decrypted: {other}")),
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(max + 1));
    (&mut reader)
        .take(max as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| corrupt(format!("failed authentication: {e}")))?;
    Ok(plain)
}

/// The refusal of a plaintext of the wrong length.
fn wrong_length(what: &str, len: usize, max: usize, expected: &str) -> Error {
    Error::corrupt(format!(
        "wrapped {what} has a plaintext of {}{} bytes, expected {expected}",
        len.min(max),
        if len > max { "+" } else { "" }
    ))
}

/// The refusal of a plaintext with another magic.
fn wrong_magic(what: &str, magic: &[u8; 8]) -> Error {
    Error::corrupt(format!(
        "wrapped {what} has the wrong magic (expected {}): it is not a {what}",
        String::from_utf8_lossy(magic)
    ))
}

/// age-decrypt a wrapped 40-byte plaintext and check its magic; returns the 32-byte key.
fn unwrap(
    wrapped: &[u8],
    identities: &Identities,
    magic: &[u8; 8],
    what: &str,
) -> Result<Zeroizing<[u8; 32]>> {
    let plain = unwrap_plaintext(wrapped, identities, WRAPPED_PLAINTEXT_LEN, what)?;
    key_of(&plain, magic, what)
}

/// The key of a 40-byte plaintext `magic || key`; wrong length or magic are corrupt.
fn key_of(plain: &[u8], magic: &[u8; 8], what: &str) -> Result<Zeroizing<[u8; 32]>> {
    if plain.len() != WRAPPED_PLAINTEXT_LEN {
        return Err(wrong_length(
            what,
            plain.len(),
            WRAPPED_PLAINTEXT_LEN,
            &WRAPPED_PLAINTEXT_LEN.to_string(),
        ));
    }
    if &plain[..8] != magic {
        return Err(wrong_magic(what, magic));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain[8..]);
    Ok(key)
}

fn with_magic(magic: &[u8; 8], key: &[u8; 32]) -> Zeroizing<[u8; WRAPPED_PLAINTEXT_LEN]> {
    let mut plain = Zeroizing::new([0u8; WRAPPED_PLAINTEXT_LEN]);
    plain[..8].copy_from_slice(magic);
    plain[8..].copy_from_slice(key);
    plain
}

/// Wrap a data key to the recipients (age binary format over `RSBKDK01 || key`, or
/// `RSBKDK02 || key || dictionary` for a key that carries a dictionary).
pub fn wrap_data_key(key: &DataKey, recipients: &Recipients) -> Result<Vec<u8>> {
    let Some(dictionary) = key.dictionary() else {
        return wrap(
            &*with_magic(DATA_KEY_MAGIC, key.expose()),
            recipients,
            "data key",
        );
    };
    let mut plain = Zeroizing::new(Vec::with_capacity(
        WRAPPED_PLAINTEXT_LEN + 4 + dictionary.stored().len(),
    ));
    plain.extend_from_slice(DICT_DATA_KEY_MAGIC);
    plain.extend_from_slice(key.expose());
    push_dictionary(&mut plain, key);
    wrap(&plain, recipients, "data key")
}

/// Append a key's dictionary section (u32 length, stored form), if it has a dictionary.
fn push_dictionary(plain: &mut Vec<u8>, key: &DataKey) {
    if let Some(d) = key.dictionary() {
        plain.extend_from_slice(&(d.stored().len() as u32).to_le_bytes());
        plain.extend_from_slice(d.stored());
    }
}

/// Split a dictionary section (u32 length, then exactly that many bytes) off the end of a
/// plaintext and decode it.
fn dictionary_section(section: &[u8]) -> Result<Arc<Dictionary>> {
    let bad = |why: &str| Error::corrupt(format!("wrapped data key's dictionary section {why}"));
    let Some((len, frame)) = section.split_first_chunk::<4>() else {
        return Err(bad("is truncated"));
    };
    if u32::from_le_bytes(*len) as usize != frame.len() {
        return Err(bad("does not have the length it declares"));
    }
    Dictionary::decode(frame)
}

/// Wrap a data key of a client's dedup scope (format-spec/keys.md "Client scopes"):
/// `RSBKDKC1 || key || scope's chunk-id key || u8 name length || name`.
pub fn wrap_scoped_data_key(
    key: &DataKey,
    scope: &KeyScope,
    recipients: &Recipients,
) -> Result<Vec<u8>> {
    let name = scope.client.as_bytes();
    if name.is_empty() || name.len() > MAX_SCOPE_NAME {
        return Err(Error::invalid(format!(
            "client name {:?} cannot name a key scope (1 to {MAX_SCOPE_NAME} bytes)",
            scope.client
        )));
    }
    let dict_len = key.dictionary().map_or(0, |d| 4 + d.stored().len());
    let mut plain = Zeroizing::new(Vec::with_capacity(SCOPED_FIXED_LEN + name.len() + dict_len));
    plain.extend_from_slice(if key.dictionary().is_some() {
        DICT_SCOPED_DATA_KEY_MAGIC
    } else {
        SCOPED_DATA_KEY_MAGIC
    });
    plain.extend_from_slice(key.expose());
    plain.extend_from_slice(scope.id_key.expose());
    plain.push(name.len() as u8);
    plain.extend_from_slice(name);
    push_dictionary(&mut plain, key);
    wrap(&plain, recipients, "data key")
}

/// Unwrap a data key; `ErrorKind::WrongIdentity` when no identity matches, `Corrupt` when the
/// plaintext is malformed. A scoped key's scope is dropped: see [`unwrap_data_key_scoped`].
pub fn unwrap_data_key(wrapped: &[u8], identities: &Identities) -> Result<DataKey> {
    Ok(unwrap_data_key_scoped(wrapped, identities)?.key)
}

/// Unwrap a data key of either form: a repository-wide key (`RSBKDK01`) or a key of a client's
/// scope (`RSBKDKC1`), with that scope.
pub fn unwrap_data_key_scoped(wrapped: &[u8], identities: &Identities) -> Result<UnwrappedKey> {
    let what = "data key";
    let max = SCOPED_FIXED_LEN + MAX_SCOPE_NAME + 4 + MAX_DICTIONARY_FRAME;
    let plain = unwrap_plaintext(wrapped, identities, max, what)?;
    let magic = plain.get(..8);
    let scoped = magic == Some(SCOPED_DATA_KEY_MAGIC) || magic == Some(DICT_SCOPED_DATA_KEY_MAGIC);
    let with_dictionary =
        magic == Some(DICT_DATA_KEY_MAGIC) || magic == Some(DICT_SCOPED_DATA_KEY_MAGIC);
    if scoped {
        let expected = || format!("{SCOPED_FIXED_LEN} plus the scope's name");
        if plain.len() <= SCOPED_FIXED_LEN || plain.len() > max {
            return Err(wrong_length(what, plain.len(), max, &expected()));
        }
        let n = plain[SCOPED_FIXED_LEN - 1] as usize;
        let end = SCOPED_FIXED_LEN + n;
        if n == 0
            || n > MAX_SCOPE_NAME
            || end > plain.len()
            || (!with_dictionary && end != plain.len())
        {
            return Err(Error::corrupt(format!(
                "wrapped data key names a scope of {n} bytes in a plaintext of {} bytes",
                plain.len()
            )));
        }
        let client = std::str::from_utf8(&plain[SCOPED_FIXED_LEN..end])
            .map_err(|_| Error::corrupt("wrapped data key names a scope that is not UTF-8"))?
            .to_owned();
        let mut key = [0u8; 32];
        key.copy_from_slice(&plain[8..40]);
        let mut id_key = [0u8; 32];
        id_key.copy_from_slice(&plain[40..72]);
        let mut data_key = DataKey::from_bytes(key);
        zeroize::Zeroize::zeroize(&mut key);
        if with_dictionary {
            data_key = data_key.with_dictionary(dictionary_section(&plain[end..])?);
        }
        let unwrapped = UnwrappedKey {
            key: data_key,
            scope: Some(KeyScope {
                client,
                id_key: ChunkIdKey::from_bytes(id_key),
            }),
        };
        zeroize::Zeroize::zeroize(&mut id_key);
        return Ok(unwrapped);
    }
    if with_dictionary {
        if plain.len() <= WRAPPED_PLAINTEXT_LEN {
            return Err(wrong_length(
                what,
                plain.len(),
                max,
                &format!("{WRAPPED_PLAINTEXT_LEN} plus the dictionary section"),
            ));
        }
        let key = key_of(&plain[..WRAPPED_PLAINTEXT_LEN], DICT_DATA_KEY_MAGIC, what)?;
        let dictionary = dictionary_section(&plain[WRAPPED_PLAINTEXT_LEN..])?;
        return Ok(UnwrappedKey {
            key: DataKey::from_bytes(*key).with_dictionary(dictionary),
            scope: None,
        });
    }
    Ok(UnwrappedKey {
        key: DataKey::from_bytes(*key_of(&plain, DATA_KEY_MAGIC, what)?),
        scope: None,
    })
}

/// Wrap the repository secret (age binary format over `RSBKSEC1 || secret`).
pub fn wrap_secret(secret: &RepoSecret, recipients: &Recipients) -> Result<Vec<u8>> {
    wrap(
        &*with_magic(SECRET_MAGIC, secret.expose()),
        recipients,
        "repository secret",
    )
}

/// Unwrap the repository secret; `WrongIdentity` when no identity matches.
///
/// The caller MUST then compare [`RepoSecret::check_value`] with `repository.toml`'s
/// `secret-check` (format-spec/keys.md): this function does not know it.
pub fn unwrap_secret(wrapped: &[u8], identities: &Identities) -> Result<RepoSecret> {
    let key = unwrap(wrapped, identities, SECRET_MAGIC, "repository secret")?;
    Ok(RepoSecret::from_bytes(*key))
}

#[cfg(test)]
#[path = "wrap_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "wrap_scope_tests.rs"]
mod scope_tests;
