//! Test-vector files (format-spec/vectors/README.md): the test pattern `P(seed, n)` and the
//! one-case-per-file format (`key: value` header lines, a blank line, then the data).
//! Compiled for tests only; any module's tests may use it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `P(seed, n)`: `n` bytes of the BLAKE3 XOF keyed with `[seed; 32]` over the empty input.
pub(crate) fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The path of a vector file in `format-spec/vectors/`.
pub(crate) fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/vectors")
        .join(name)
}

/// True when the tests should rewrite vectors instead of checking them.
pub(crate) fn writing() -> bool {
    std::env::var_os("RSBACKUP_WRITE_VECTORS").is_some_and(|v| v == "1")
}

/// One vector case: ordered header fields and the data lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Vector {
    /// Comment lines (without `# `), written first.
    pub comments: Vec<String>,
    /// Header fields in file order.
    pub fields: Vec<(String, String)>,
    /// Data: hex (or, where the header says so, decimal lines), whitespace-free per line.
    pub data: Vec<String>,
}

impl Vector {
    /// A header field; panics naming the field when it is missing.
    pub fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("vector has no `{key}:` field"))
    }

    /// A header field decoded from hex.
    pub fn hex(&self, key: &str) -> Vec<u8> {
        hex::decode(self.get(key)).unwrap_or_else(|e| panic!("field {key}: bad hex: {e}"))
    }

    /// The data lines joined and decoded from hex.
    pub fn data_hex(&self) -> Vec<u8> {
        hex::decode(self.data.concat()).expect("vector data is not hex")
    }

    /// Add a header field.
    pub fn field(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// Set the data to `bytes` in hex, 64 digits a line.
    pub fn set_data_hex(&mut self, bytes: &[u8]) {
        self.data = bytes.chunks(32).map(hex::encode).collect();
    }

    /// The file text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.comments {
            s.push_str("# ");
            s.push_str(c);
            s.push('\n');
        }
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push('\n');
        for line in &self.data {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Parse file text.
    pub fn parse(text: &str) -> Vector {
        let mut v = Vector::default();
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                break;
            }
            if let Some(c) = line.strip_prefix('#') {
                v.comments.push(c.trim_start().to_string());
                continue;
            }
            let (k, val) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("vector header line without `: `: {line:?}"));
            v.fields.push((k.to_string(), val.to_string()));
        }
        v.data = lines
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        v
    }

    /// In writing mode, write `self` to `name`; otherwise check the file equals `self`.
    pub fn check_or_write(&self, name: &str) {
        let p = path(name);
        if writing() {
            std::fs::write(&p, self.render()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            return;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (generate with RSBACKUP_WRITE_VECTORS=1 cargo test)",
                p.display()
            )
        });
        let stored = Vector::parse(&text);
        let stored_fields: BTreeMap<_, _> = stored.fields.iter().cloned().collect();
        for (k, want) in &self.fields {
            assert_eq!(
                stored_fields.get(k),
                Some(want),
                "{}: field {k} differs from what the code produces",
                p.display()
            );
        }
        assert_eq!(
            stored.fields.len(),
            self.fields.len(),
            "{}: field count",
            p.display()
        );
        assert_eq!(stored.data, self.data, "{}: data differs", p.display());
    }

    /// Read a vector file.
    pub fn load(name: &str) -> Vector {
        let p = path(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Vector::parse(&text)
    }
}

#[test]
fn vector_text_round_trip() {
    let mut v = Vector {
        comments: vec!["a comment".into()],
        ..Vector::default()
    };
    v.field("expect", "success").field("n", 3);
    v.set_data_hex(&[0xab; 40]);
    let parsed = Vector::parse(&v.render());
    assert_eq!(parsed, v);
    assert_eq!(parsed.data_hex(), vec![0xab; 40]);
    assert_eq!(parsed.get("n"), "3");
}

#[test]
fn pattern_is_the_keyed_xof() {
    let p = pattern(1, 100);
    assert_eq!(&p[..32], blake3::keyed_hash(&[1; 32], b"").as_bytes());
    assert_eq!(pattern(1, 40)[..], p[..40]);
    assert_ne!(pattern(2, 40), pattern(1, 40));
}
