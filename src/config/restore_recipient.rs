//! `restore-recipient = "age1..."` of `[clients.NAME]`: the client's own age public key, to
//! which the data keys of its sessions are also wrapped so that it restores them itself
//! (format-spec/keys.md "Client scopes"). One client's alone: never in `[defaults]`, never
//! shared by two clients, never one of the repository's recipients' private halves' business.

use std::collections::BTreeMap;

use toml::Spanned;

use super::SourceFile;
use crate::error::Result;

impl SourceFile<'_> {
    /// Check one client's `restore-recipient`; `owners` maps the recipients seen so far to
    /// their clients, so that a recipient given to two clients is refused at the second.
    pub(crate) fn restore_recipient(
        &self,
        client: &str,
        raw: Option<Spanned<String>>,
        owners: &mut BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let span = raw.span();
        let text = raw.get_ref().trim().to_owned();
        crate::crypto::wrap::Recipients::parse(std::slice::from_ref(&text)).map_err(|e| {
            self.error_at(
                &span,
                format!("client {client}: restore-recipient: {}", e.message()),
            )
        })?;
        if let Some(other) = owners.insert(text.clone(), client.to_owned()) {
            return Err(self.error_at(
                &span,
                format!(
                    "client {client}: restore-recipient is also client {other}'s; each client \
                     needs its own, or one could read the other's sessions"
                ),
            ));
        }
        Ok(Some(text))
    }

    /// `[defaults]` may not hold a `restore-recipient`.
    pub(crate) fn no_default_restore_recipient(&self, raw: &Option<Spanned<String>>) -> Result<()> {
        match raw {
            None => Ok(()),
            Some(r) => Err(self.error_at(
                &r.span(),
                "[defaults] restore-recipient: a restore recipient belongs to one client, not \
                 to the defaults",
            )),
        }
    }
}

#[cfg(test)]
#[path = "restore_recipient_tests.rs"]
mod tests;
