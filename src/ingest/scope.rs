//! Which dedup scope an ingest stores into (format-spec/keys.md "Client scopes"): the
//! repository's, or, for a client with a `restore-recipient`, the client's own. The scope
//! decides the chunk-id key, the recipients (and form) of the data key, and the files cache.

use crate::crypto::wrap::{KeyScope, wrap_data_key, wrap_scoped_data_key};
use crate::crypto::{ChunkIdKey, DataKey, RepoSecret};
use crate::error::Result;
use crate::index::Index;
use crate::repo::Repo;

/// Wraps a data key to an ingest's recipients, in its scope's form.
pub(super) type WrapKey = Box<dyn Fn(&DataKey) -> Result<Vec<u8>> + Send + Sync>;

/// What an ingest's scope decides.
pub(super) struct IngestScope {
    /// The data key, wrapped.
    pub wrapped: Vec<u8>,
    /// Wraps another data key (one that carries a dictionary) to the same recipients, in the
    /// same form.
    pub wrap: WrapKey,
    /// The key that names this ingest's chunks.
    pub id_key: ChunkIdKey,
    /// The name of its files cache (`cache/<name>.files`).
    pub cache_name: String,
}

/// The scope of `client`'s ingest sealed with `data_key`: its own when `restore_recipient` is
/// given (remembered in the index, so that `key rewrap` wraps the scope's keys to it again).
pub(super) fn choose(
    repo: &Repo,
    index: &Index,
    secret: &RepoSecret,
    client: &str,
    restore_recipient: Option<&str>,
    data_key: &DataKey,
) -> Result<IngestScope> {
    let Some(recipient) = restore_recipient else {
        let recipients = repo.recipients()?;
        return Ok(IngestScope {
            wrapped: wrap_data_key(data_key, &recipients)?,
            wrap: Box::new(move |key| wrap_data_key(key, &recipients)),
            id_key: secret.chunk_id_key(),
            cache_name: client.to_owned(),
        });
    };
    let scope = KeyScope {
        client: client.to_owned(),
        id_key: secret.client_chunk_id_key(client),
    };
    let recipients = crate::keys::client_recipients(repo, recipient)?;
    index.set_restore_recipient(client, recipient)?;
    Ok(IngestScope {
        wrapped: wrap_scoped_data_key(data_key, &scope, &recipients)?,
        id_key: scope.id_key.clone(),
        wrap: Box::new(move |key| wrap_scoped_data_key(key, &scope, &recipients)),
        // The cache holds chunk ids: the repository scope's are not this scope's.
        cache_name: format!("{client}{}", crate::files_cache::SCOPED_CACHE_SUFFIX),
    })
}
