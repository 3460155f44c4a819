//! Passphrases of identity files: from a file (`--identity-passphrase-file`,
//! `keygen --passphrase-file`) or asked on the terminal with echo off; never from an argument.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use rsbackup::crypto::secrecy::SecretString;
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

/// The first line of `path` (without its line ending); an empty one is refused.
pub fn from_file(path: &Path) -> rsbackup::Result<SecretString> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        rsbackup::Error::io(
            format_args!("reading passphrase file {}", path.display()),
            e,
        )
    })?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| {
        rsbackup::Error::invalid(format!(
            "passphrase file {}: the first line is not UTF-8",
            path.display()
        ))
    })?;
    if text.is_empty() {
        return Err(rsbackup::Error::invalid(format!(
            "passphrase file {}: the first line is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// Ask `question` on the terminal (`/dev/tty`), echo off. Without a terminal the error says
/// `what` needs a passphrase and that `flag` gives it from a file.
pub fn prompt(question: &str, what: &str, flag: &str) -> rsbackup::Result<SecretString> {
    ask(question).map_err(|e| {
        rsbackup::Error::invalid(format!(
            "{what} needs a passphrase, and it cannot be asked on a terminal ({e:#}): give \
             {flag} FILE"
        ))
    })
}

/// Ask for a new passphrase twice on the terminal; refuses two that differ.
pub fn prompt_twice() -> rsbackup::Result<SecretString> {
    use rsbackup::crypto::secrecy::ExposeSecret;
    let what = "keygen --passphrase";
    let first = prompt(
        "New passphrase for the identity: ",
        what,
        "--passphrase-file",
    )?;
    let second = prompt("The same passphrase again: ", what, "--passphrase-file")?;
    if first.expose_secret() != second.expose_secret() {
        return Err(rsbackup::Error::invalid(
            "the two passphrases differ; nothing was written",
        ));
    }
    Ok(first)
}

fn ask(question: &str) -> Result<SecretString> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("cannot open /dev/tty")?;
    let saved = tcgetattr(&tty).context("/dev/tty is not a terminal")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Flush, &quiet).context("turning the terminal echo off")?;
    let mut line = Zeroizing::new(String::new());
    let read = (|| -> std::io::Result<()> {
        (&tty).write_all(question.as_bytes())?;
        (&tty).flush()?;
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        Ok(())
    })();
    tcsetattr(&tty, OptionalActions::Flush, &saved).context("restoring the terminal echo")?;
    read.context("reading the passphrase from the terminal")?;
    let text = line.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        bail!("empty passphrase");
    }
    Ok(SecretString::from(text.to_owned()))
}
