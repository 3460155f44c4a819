//! `rsbackup add-client`: a new `[clients.NAME]` table appended to `server.toml`.
//!
//! The file is extended, never rewritten: the new table is rendered by `toml_edit` (so its
//! strings are quoted correctly) and appended to the text as it is, which keeps every comment,
//! blank line and key order the administrator wrote. The result must load with
//! [`ServerConfig::parse`] before anything is written.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::server::parse_network;
use super::{ClientName, ServerConfig, SourceFile, SshPublicKey, TimeWindow};
use crate::error::{Error, Result};

/// What `add-client` was asked to add.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// The client's name (checked by [`ClientName::parse`]).
    pub name: String,
    /// The key file's text (`id_ed25519.pub`: one key line; blank and `#` lines are skipped).
    pub key_text: String,
    /// Where the key came from, for errors.
    pub key_file: std::path::PathBuf,
    /// `--address`: addresses and networks; empty leaves `[defaults]` in force.
    pub addresses: Vec<String>,
    /// `--window`: time windows; empty leaves `[defaults]` in force.
    pub windows: Vec<String>,
}

/// The text of `server.toml` (`text`, read from `path`) with `client` appended, validated.
pub fn append_client(
    text: &str,
    path: &Path,
    client: &NewClient,
) -> Result<(String, ServerConfig)> {
    let src = SourceFile::new(path, text);
    // The file as it is must load: a problem already there is reported as such, not blamed on
    // the new table.
    ServerConfig::parse(text, path)?;
    let name = ClientName::parse(&client.name)?;
    let doc: toml_edit::Document<&str> = toml_edit::Document::parse(text)
        .map_err(|e| src.error(format!("not TOML: {}", e.message())))?;
    if let Some(existing) = doc.get("clients").and_then(|c| c.get(name.as_str())) {
        let at = existing
            .span()
            .map(|s| format!(" (line {})", src.line_of(&s)))
            .unwrap_or_default();
        return Err(Error::new(
            crate::ErrorKind::Config,
            format!(
                "{}: a client named {name} exists already{at}; pick another name, or add the key \
                 to its keys",
                path.display()
            ),
        ));
    }
    let key = key_line(client)?;
    for address in &client.addresses {
        parse_network(address)
            .map_err(|e| Error::invalid(format!("--address {address:?}: {e}")))?;
    }
    for window in &client.windows {
        TimeWindow::parse(window).map_err(|e| Error::invalid(format!("--window: {e}")))?;
    }

    let mut table = Table::new();
    table.insert("keys", value(Array::from_iter([key.as_str()])));
    if !client.addresses.is_empty() {
        table.insert("addresses", value(strings(&client.addresses)));
    }
    if !client.windows.is_empty() {
        table.insert("windows", value(strings(&client.windows)));
    }
    let mut clients = Table::new();
    clients.set_implicit(true);
    clients.insert(name.as_str(), Item::Table(table));
    let mut rendered = DocumentMut::new();
    rendered.insert("clients", Item::Table(clients));

    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&rendered.to_string());
    let config = ServerConfig::parse(&out, path)?;
    if !config.clients.contains_key(&name) {
        // An inline `clients = {...}` table, say: the appended table did not become a client.
        return Err(src.error(format!(
            "client {name} could not be appended (is [clients] written as an inline table?); \
             add the table by hand"
        )));
    }
    Ok((out, config))
}

/// The one key line of the key file, checked.
fn key_line(client: &NewClient) -> Result<String> {
    let mut lines = client
        .key_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let file = client.key_file.display();
    if client.key_text.contains("PRIVATE KEY") {
        return Err(Error::invalid(format!(
            "--key {file}: this is a private key; give the public key (the .pub file)"
        )));
    }
    let Some(line) = lines.next() else {
        return Err(Error::invalid(format!(
            "--key {file}: the file holds no key"
        )));
    };
    if lines.next().is_some() {
        return Err(Error::invalid(format!(
            "--key {file}: the file holds more than one key; give one key per add-client"
        )));
    }
    SshPublicKey::parse(line).map_err(|e| Error::invalid(format!("--key {file}: {e}")))?;
    Ok(line.to_owned())
}

fn strings(items: &[String]) -> Array {
    Array::from_iter(items.iter().map(String::as_str))
}

#[cfg(test)]
#[path = "add_client_tests.rs"]
mod tests;
