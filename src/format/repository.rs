//! `repository.toml` (format-spec/repository.md): parse, validate, serialize.

use serde::Deserialize;

use crate::chunking::ChunkerParams;
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::ManifestParams;

/// Repository format version written by this build.
pub const REPOSITORY_VERSION: u32 = 1;

/// The value of the `format` key.
pub const REPOSITORY_FORMAT: &str = "rsbackup-repository";

/// The only chunker algorithm of version 1 (format-spec/chunking.md).
pub const CHUNKER_ALGORITHM: &str = "fastcdc2020-keyed";

/// Bounds on `[packs] target-size`: small enough that offsets and sizes stay sane, large
/// enough that a repository is not millions of files.
const PACK_TARGET_MIN: u64 = 4096;
const PACK_TARGET_MAX: u64 = 1 << 32;

/// A manifest chunk holds at most 16 MiB entries plus one more (format-spec/manifest.md).
const MANIFEST_MAX_LIMIT: u32 = 16 << 20;

/// The validated contents of `repository.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// 16 random bytes, hex.
    pub id: String,
    /// Creation time, server Unix seconds.
    pub created: i64,
    /// age recipients (`age1...`).
    pub recipients: Vec<String>,
    /// Secret check value, 16 bytes hex.
    pub secret_check: String,
    /// Chunker parameters (frozen).
    pub chunker: ChunkerParams,
    /// Manifest cut parameters (frozen).
    pub manifest: ManifestParams,
    /// zstd level.
    pub zstd_level: i32,
    /// Target pack size in bytes.
    pub pack_target_size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    format: String,
    #[allow(dead_code)] // checked in the first pass, before anything else
    version: i64,
    id: String,
    created: i64,
    recipients: Vec<String>,
    secret_check: String,
    chunker: RawChunker,
    manifest: RawManifest,
    compression: RawCompression,
    packs: RawPacks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawChunker {
    algorithm: String,
    min_size: u32,
    avg_size: u32,
    max_size: u32,
    normalization: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    min_size: u32,
    avg_size: u32,
    max_size: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCompression {
    algorithm: String,
    level: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPacks {
    target_size: u64,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn toml_error(text: &str, origin: &str, err: &toml::de::Error) -> Error {
    let message = err.message().trim_end();
    let at = match err.span() {
        Some(span) => format!("{origin}: line {}", line_of(text, span.start)),
        None => origin.to_string(),
    };
    Error::new(ErrorKind::Config, format!("{at}: {message}"))
}

fn invalid(origin: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{origin}: {what}"))
}

fn check_hex(origin: &str, key: &str, value: &str, bytes: usize) -> Result<()> {
    let ok = value.len() == bytes * 2
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            origin,
            format!(
                "`{key}` must be {} lowercase hex digits, got {value:?}",
                bytes * 2
            ),
        ))
    }
}

impl RepoConfig {
    /// Parse and validate; errors name `origin` (the file) and, where TOML says, the line.
    /// Unknown keys are refused; a `version` other than 1 is `UnsupportedVersion`.
    pub fn parse(text: &str, origin: &str) -> Result<RepoConfig> {
        // First pass: only the version, so that a file written by a future build (with keys
        // this build does not know) reports its version rather than an unknown key.
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, origin, &e))?;
        match table.get("version") {
            None => return Err(invalid(origin, "missing key `version`")),
            Some(toml::Value::Integer(v)) if *v == i64::from(REPOSITORY_VERSION) => {}
            Some(toml::Value::Integer(v)) => {
                return Err(Error::new(
                    ErrorKind::UnsupportedVersion,
                    format!(
                        "{origin}: repository format version {v} is not supported \
                         (this build reads version {REPOSITORY_VERSION}); use a newer rsbackup"
                    ),
                ));
            }
            Some(other) => {
                return Err(invalid(
                    origin,
                    format!("`version` must be an integer, got {other}"),
                ));
            }
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, origin, &e))?;
        Self::validate(raw, origin)
    }

    fn validate(raw: RawConfig, origin: &str) -> Result<RepoConfig> {
        if raw.format != REPOSITORY_FORMAT {
            return Err(invalid(
                origin,
                format!(
                    "`format` must be {REPOSITORY_FORMAT:?}, got {:?}",
                    raw.format
                ),
            ));
        }
        check_hex(origin, "id", &raw.id, 16)?;
        check_hex(origin, "secret-check", &raw.secret_check, 16)?;
        if raw.recipients.is_empty() {
            return Err(invalid(
                origin,
                "`recipients` must name at least one age recipient",
            ));
        }
        for r in &raw.recipients {
            // Full parsing needs the age crate (crypto layer): Repo::recipients does it.
            if !r.starts_with("age1") || r.len() < 10 || r.chars().any(char::is_whitespace) {
                return Err(invalid(
                    origin,
                    format!("recipient {r:?} is not an age X25519 recipient (age1...)"),
                ));
            }
        }
        if raw.chunker.algorithm != CHUNKER_ALGORITHM {
            return Err(invalid(
                origin,
                format!(
                    "[chunker] algorithm must be {CHUNKER_ALGORITHM:?}, got {:?}",
                    raw.chunker.algorithm
                ),
            ));
        }
        let chunker = ChunkerParams {
            min_size: raw.chunker.min_size,
            avg_size: raw.chunker.avg_size,
            max_size: raw.chunker.max_size,
            normalization: raw.chunker.normalization,
        };
        chunker
            .validate()
            .map_err(|e| invalid(origin, format!("[chunker]: {}", e.message())))?;
        let m = &raw.manifest;
        if !(m.min_size < m.avg_size
            && m.avg_size <= m.max_size
            && m.max_size <= MANIFEST_MAX_LIMIT)
        {
            return Err(invalid(
                origin,
                format!(
                    "[manifest] sizes must satisfy min-size < avg-size <= max-size <= {MANIFEST_MAX_LIMIT}, \
                     got {} / {} / {}",
                    m.min_size, m.avg_size, m.max_size
                ),
            ));
        }
        if raw.compression.algorithm != "zstd" {
            return Err(invalid(
                origin,
                format!(
                    "[compression] algorithm must be \"zstd\", got {:?}",
                    raw.compression.algorithm
                ),
            ));
        }
        let levels = zstd::compression_level_range();
        if !levels.contains(&raw.compression.level) {
            return Err(invalid(
                origin,
                format!(
                    "[compression] level must be in {}..={}, got {}",
                    levels.start(),
                    levels.end(),
                    raw.compression.level
                ),
            ));
        }
        let target = raw.packs.target_size;
        if !(PACK_TARGET_MIN..=PACK_TARGET_MAX).contains(&target) {
            return Err(invalid(
                origin,
                format!(
                    "[packs] target-size must be in {PACK_TARGET_MIN}..={PACK_TARGET_MAX}, got {target}"
                ),
            ));
        }
        Ok(RepoConfig {
            id: raw.id,
            created: raw.created,
            recipients: raw.recipients,
            secret_check: raw.secret_check,
            chunker,
            manifest: ManifestParams {
                min_size: m.min_size,
                avg_size: m.avg_size,
                max_size: m.max_size,
            },
            zstd_level: raw.compression.level,
            pack_target_size: target,
        })
    }

    /// Serialize as TOML.
    pub fn to_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_string()).to_string();
        let recipients: Vec<String> = self.recipients.iter().map(|r| s(r)).collect();
        format!(
            "format = {format}\n\
             version = {REPOSITORY_VERSION}\n\
             id = {id}\n\
             created = {created}\n\
             recipients = [{recipients}]\n\
             secret-check = {check}\n\
             \n\
             [chunker]\n\
             algorithm = {algorithm}\n\
             min-size = {cmin}\n\
             avg-size = {cavg}\n\
             max-size = {cmax}\n\
             normalization = {norm}\n\
             \n\
             [manifest]\n\
             min-size = {mmin}\n\
             avg-size = {mavg}\n\
             max-size = {mmax}\n\
             \n\
             [compression]\n\
             algorithm = \"zstd\"\n\
             level = {level}\n\
             \n\
             [packs]\n\
             target-size = {target}\n",
            format = s(REPOSITORY_FORMAT),
            id = s(&self.id),
            created = self.created,
            recipients = recipients.join(", "),
            check = s(&self.secret_check),
            algorithm = s(CHUNKER_ALGORITHM),
            cmin = self.chunker.min_size,
            cavg = self.chunker.avg_size,
            cmax = self.chunker.max_size,
            norm = self.chunker.normalization,
            mmin = self.manifest.min_size,
            mavg = self.manifest.avg_size,
            mmax = self.manifest.max_size,
            level = self.zstd_level,
            target = self.pack_target_size,
        )
    }
}

#[cfg(test)]
mod tests;
