//! Passphrase-protected identity files (format-spec/keys.md "Identities and recipients"): an
//! identity file encrypted with age's scrypt passphrase mode, armored or binary, as `rsbackup
//! keygen --passphrase` or `age -p` writes it. The passphrase comes from the caller (the binary
//! prompts on a terminal or reads a file); this module never asks for one itself.

use std::io::{Read, Write};

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

const BINARY_HEADER: &[u8] = b"age-encryption.org/v1\n";
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Whether an identity file's bytes are an age-encrypted file (binary or armored).
pub fn is_encrypted(bytes: &[u8]) -> bool {
    let start = bytes.trim_ascii_start();
    start.starts_with(BINARY_HEADER) || start.starts_with(ARMOR_BEGIN)
}

/// Decrypt a passphrase-protected identity file; `origin` names it in errors. A wrong
/// passphrase is `WrongIdentity` (the administrator needs the right passphrase or file); a
/// file encrypted to a recipient rather than a passphrase, or damaged, is `WrongIdentity` too,
/// saying so.
pub fn decrypt(bytes: &[u8], origin: &str, passphrase: SecretString) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::WrongIdentity,
            format!("identity file {origin} {why}"),
        )
    };
    let reader = age::armor::ArmoredReader::new(bytes.trim_ascii_start());
    let decryptor = age::Decryptor::new_buffered(reader)
        .map_err(|e| bad(format!("is not a readable age-encrypted file: {e}")))?;
    if !decryptor.is_scrypt() {
        return Err(bad(
            "is encrypted to a recipient, not with a passphrase: decrypt it first".into(),
        ));
    }
    let identity = age::scrypt::Identity::new(passphrase);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                bad("cannot be opened with this passphrase (wrong passphrase?)".into())
            }
            age::DecryptError::ExcessiveWork { required, target } => bad(format!(
                "asks for scrypt work factor 2^{required}, more than this machine allows \
                 (2^{target} and some margin)"
            )),
            other => bad(format!("cannot be decrypted: {other}")),
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    (&mut reader)
        .take(1 << 20)
        .read_to_end(&mut plain)
        .map_err(|e| bad(format!("failed authentication: {e}")))?;
    Ok(plain)
}

/// Encrypt identity file text with a passphrase (age scrypt, ASCII armored, a work factor
/// of about a second on this machine).
pub fn encrypt(text: &str, passphrase: SecretString) -> Result<String> {
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorKind::Internal,
            format!("encrypting the identity in memory failed: {e}"),
        )
    };
    let encryptor = age::Encryptor::with_user_passphrase(passphrase);
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(failed)?;
    let mut writer = encryptor.wrap_output(armor).map_err(failed)?;
    writer.write_all(text.as_bytes()).map_err(failed)?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(failed)?;
    String::from_utf8(out).map_err(|_| Error::new(ErrorKind::Internal, "armor is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::wrap::Identities;

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn an_encrypted_identity_opens_with_its_passphrase_only() {
        let (text, recipient) = crate::crypto::wrap::keygen();
        let armored = encrypt(&text, pass("right")).unwrap();
        assert!(is_encrypted(armored.as_bytes()));
        assert!(!is_encrypted(text.as_bytes()));
        assert!(!armored.contains("AGE-SECRET-KEY"));
        let plain = decrypt(armored.as_bytes(), "f.txt", pass("right")).unwrap();
        let ids = Identities::parse(std::str::from_utf8(&plain).unwrap(), "f.txt").unwrap();
        assert_eq!(ids.recipients().to_strings(), vec![recipient]);

        let err = decrypt(armored.as_bytes(), "f.txt", pass("wrong")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongIdentity);
        assert!(err.message().contains("f.txt") && err.message().contains("wrong passphrase"));
    }

    #[test]
    fn a_file_encrypted_to_a_recipient_is_not_a_passphrase_identity() {
        let (text, _) = crate::crypto::wrap::keygen();
        let other = age::x25519::Identity::generate().to_public();
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&other as &dyn age::Recipient))
                .unwrap();
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).unwrap();
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap();
        assert!(is_encrypted(&out));
        let err = decrypt(&out, "g.age", pass("any")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongIdentity);
        assert!(err.message().contains("not with a passphrase"), "{err}");
    }
}
