//! The index's side of `rsbackup key rewrap` (format-spec/keys.md "Changing recipients"):
//! replace every wrapped data key in one transaction.

use rusqlite::params;

use super::{Index, to_i64};
use crate::error::Result;
use crate::ids::KeyId;

impl Index {
    /// Replace the wrapped form of these data keys in one transaction; a key no longer in the
    /// index (collected since) is skipped. Returns the ids whose rows were replaced.
    pub fn replace_data_keys(&self, keys: &[(KeyId, Vec<u8>)]) -> Result<Vec<KeyId>> {
        self.write_tx("replacing wrapped data keys", |conn| {
            let mut done = Vec::with_capacity(keys.len());
            let mut stmt =
                conn.prepare_cached("UPDATE data_keys SET wrapped = ?1 WHERE id = ?2")?;
            for (id, wrapped) in keys {
                if stmt.execute(params![wrapped, to_i64(id.0, "key id")?])? == 1 {
                    done.push(*id);
                }
            }
            Ok(done)
        })
    }
}
