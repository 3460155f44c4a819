//! Fuzz targets: every decoder that reads bytes from outside the server's own hands, each as
//! one `fn(&[u8])`.
//!
//! Two runners share this list, so that the targets never drift apart: the stable runner of
//! the test suite (`tests/fuzz/`: replays the seed corpora and every saved crash, then mutates
//! for a few seconds per target) and the coverage-guided long run (`fuzz/afl/`, driven by
//! `tools/fuzz.sh`). See docs/architecture.md, "Fuzzing".
//!
//! A target panics when its decoder breaks a promise: it panicked itself, accepted input that
//! does not survive a round trip through its encoder (`decode(encode(decode(b))) ==
//! decode(b)`), or let through something it exists to refuse. The runners watch for hangs and
//! for allocations past a cap; the decoders bound every length before allocating.
//!
//! Each target also has seeds: valid inputs built with the encoders of this build, so that
//! mutation starts from the shapes the decoders accept (the committed corpora under
//! `fuzz/corpus/` add the format-spec vectors and real files).

mod config;
mod server;
mod storage;
mod wire;

/// One fuzz target.
pub struct Target {
    /// Name: the corpus directory under `fuzz/corpus/` and the runners' argument.
    pub name: &'static str,
    /// What it decodes.
    pub what: &'static str,
    /// Decode `data`, panicking on a broken promise.
    pub run: fn(&[u8]),
    /// Valid inputs made by this build's encoders.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order of the layers they exercise.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pack",
        what: "pack header and record header (format-spec/pack.md)",
        run: storage::pack,
        seeds: storage::pack_seeds,
    },
    Target {
        name: "envelope",
        what: "chunk envelope: header, authentication, bounded zstd (format-spec/chunk.md)",
        run: storage::envelope,
        seeds: storage::envelope_seeds,
    },
    Target {
        name: "manifest",
        what: "manifest chunks through the reader, and back through the builder",
        run: storage::manifest,
        seeds: storage::manifest_seeds,
    },
    Target {
        name: "records",
        what: "session records and pack reference lists (format-spec/records.md)",
        run: storage::records,
        seeds: storage::records_seeds,
    },
    Target {
        name: "keys",
        what: "age-wrapped data keys and secret, identity files (format-spec/keys.md)",
        run: storage::keys,
        seeds: storage::keys_seeds,
    },
    Target {
        name: "files_cache",
        what: "the files cache reader (format-spec/files-cache.md)",
        run: storage::files_cache,
        seeds: storage::files_cache_seeds,
    },
    Target {
        name: "repository_toml",
        what: "repository.toml, as a mirror receives it (format-spec/repository.md)",
        run: storage::repository_toml,
        seeds: storage::repository_toml_seeds,
    },
    Target {
        name: "wire",
        what: "mirror protocol frames and messages (format-spec/wire.md)",
        run: wire::frames,
        seeds: wire::frames_seeds,
    },
    Target {
        name: "restore_wire",
        what: "restore-fetch frames and messages (format-spec/wire.md \"Restore fetch\")",
        run: wire::restore_frames,
        seeds: wire::restore_frames_seeds,
    },
    Target {
        name: "server_answer",
        what: "the server's JSON answer as the client reads it from ssh's output",
        run: wire::server_answer,
        seeds: wire::server_answer_seeds,
    },
    Target {
        name: "command",
        what: "SSH_ORIGINAL_COMMAND: identity prefix, complete arguments, rsync argv",
        run: server::command,
        seeds: server::command_seeds,
    },
    Target {
        name: "machines",
        what: "a client's machines file (format-spec/machines.md)",
        run: server::machines,
        seeds: server::machines_seeds,
    },
    Target {
        name: "placeholders",
        what: "the placeholder table's extent lists (format-spec/placeholders.md)",
        run: server::placeholders,
        seeds: server::placeholders_seeds,
    },
    Target {
        name: "staging_meta",
        what: "fake-super staging metadata: %stat, %aacl/%dacl, user.rsync.* names",
        run: server::staging_meta,
        seeds: server::staging_meta_seeds,
    },
    Target {
        name: "server_config",
        what: "server.toml, with its windows, networks, sizes and keys",
        run: config::server_config,
        seeds: config::server_config_seeds,
    },
    Target {
        name: "client_config",
        what: "client.toml",
        run: config::client_config,
        seeds: config::client_config_seeds,
    },
    Target {
        name: "config_values",
        what: "single config values: windows, networks, sizes, spans, client names",
        run: config::values,
        seeds: config::values_seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// `data` split at its first `0xff` byte: a selector-free way for one input to carry two
/// parts, which byte mutation keeps apart or merges as it likes.
fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The first byte as a selector and the rest.
fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&s, rest)) => (s, rest),
        None => (0, data),
    }
}

/// The data of a format-spec vector file: the hex lines after the first blank line.
fn vector_data(text: &str) -> Vec<u8> {
    let hex_text: String = text
        .split_once("\n\n")
        .map_or("", |(_, data)| data)
        .split_whitespace()
        .collect();
    hex::decode(hex_text).expect("a format-spec vector holds hex")
}
