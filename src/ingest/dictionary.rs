//! When an ingest trains its dictionary (format-spec/keys.md "Dictionaries").
//!
//! The first new chunks of at most [`DICTIONARY_INPUT_MAX`] bytes are sealed as usual while a
//! copy of their start is kept as a training sample. Once [`SAMPLE_TARGET`] bytes of samples
//! (and at least [`SAMPLE_MIN_COUNT`] chunks) are in, the thread that brought the last one
//! trains a dictionary and makes a second data key that carries it, recorded like the first
//! (index row, then `keys/data/` file) before anything is sealed with it; every new chunk from
//! then on is sealed under that key. A key row never changes, so a mirror that copied the
//! first key early is never left with a stale one. Small chunks wait while it trains. An ingest with fewer new small chunks (an
//! unchanged or nightly run) never trains, and pays nothing but the copies.

use std::sync::{Mutex, OnceLock};

use crate::crypto::DataKey;
use crate::crypto::dictionary::{
    DICTIONARY_INPUT_MAX, Dictionary, DictionaryEncoder, SAMPLE_MAX, SAMPLE_MIN_COUNT,
    SAMPLE_TARGET, train,
};
use crate::crypto::wrap::MAX_WRAPPED_KEY;
use crate::error::Result;
use crate::ids::KeyId;
use crate::repo::Repo;

/// Samples so far, until training starts.
#[derive(Default)]
struct Samples {
    pieces: Vec<Vec<u8>>,
    bytes: usize,
    /// Training started (or was given up): collect no more.
    closed: bool,
}

/// One ingest's dictionary: collecting samples, then ready (or never).
#[derive(Default)]
pub(super) struct Trainer {
    samples: Mutex<Samples>,
    ready: OnceLock<Installed>,
}

/// A trained dictionary and the data key that carries it.
pub(super) struct Installed {
    /// The key new chunks are sealed under from now on.
    pub key: DataKey,
    /// Its id.
    pub key_id: KeyId,
    /// The dictionary, prepared at the repository's level.
    pub encoder: DictionaryEncoder,
}

/// What installing a dictionary needs: the repository, the level and how to wrap a key for
/// this ingest's scope.
pub(super) struct KeyPlace<'a> {
    pub repo: &'a Repo,
    pub zstd_level: i32,
    pub wrap: &'a (dyn Fn(&DataKey) -> Result<Vec<u8>> + Sync),
}

impl Trainer {
    /// The dictionary and its key to seal a new chunk of `plaintext` with, if there is one
    /// yet; otherwise the chunk may become a sample, and the one that completes the set trains.
    pub(super) fn for_new_chunk(
        &self,
        plaintext: &[u8],
        place: &KeyPlace<'_>,
    ) -> Result<Option<&Installed>> {
        if let Some(ready) = self.ready.get() {
            return Ok(Some(ready));
        }
        if plaintext.len() > DICTIONARY_INPUT_MAX || plaintext.len() < 8 {
            return Ok(None);
        }
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have trained while this one waited for the lock.
        if let Some(ready) = self.ready.get() {
            return Ok(Some(ready));
        }
        if s.closed {
            return Ok(None);
        }
        let piece = &plaintext[..plaintext.len().min(SAMPLE_MAX)];
        s.bytes += piece.len();
        s.pieces.push(piece.to_vec());
        if s.bytes < SAMPLE_TARGET || s.pieces.len() < SAMPLE_MIN_COUNT {
            return Ok(None);
        }
        s.closed = true;
        let pieces = std::mem::take(&mut s.pieces);
        // Trained under the lock: the other threads' small chunks wait for the dictionary
        // (about 0.2 s) instead of being sealed without it meanwhile.
        self.install(pieces, place)?;
        drop(s);
        Ok(self.ready.get())
    }

    /// Train on `pieces` and, when that gives a dictionary that fits a wrapped key, record a
    /// new data key that carries it, then publish both.
    fn install(&self, mut pieces: Vec<Vec<u8>>, place: &KeyPlace<'_>) -> Result<()> {
        let raw = train(&pieces);
        for p in &mut pieces {
            zeroize::Zeroize::zeroize(p);
        }
        let Some(raw) = raw else { return Ok(()) };
        let Some(dictionary) = Dictionary::new(raw)? else {
            return Ok(());
        };
        let key = DataKey::generate().with_dictionary(dictionary.clone());
        let wrapped = (place.wrap)(&key)?;
        if wrapped.len() > MAX_WRAPPED_KEY {
            return Ok(());
        }
        // As for the ingest's first key: the row, then the file, before any chunk is sealed.
        let key_id = place
            .repo
            .index()?
            .insert_data_key(&wrapped, crate::store::now())?;
        crate::store::records::write_data_key(place.repo.root(), key_id, &wrapped)?;
        let level = crate::crypto::envelope::level_for(DICTIONARY_INPUT_MAX, place.zstd_level);
        let encoder = DictionaryEncoder::new(&dictionary, level);
        let _ = self.ready.set(Installed {
            key,
            key_id,
            encoder,
        });
        Ok(())
    }
}
