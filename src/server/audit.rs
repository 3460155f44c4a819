//! Audit records: one line per request, allowed or refused.

/// Escape `text` so that it is one printable line: backslash, quotes and every byte outside
/// printable ASCII become escapes; the result is cut to at most `max` bytes (an escape is never
/// split) and marked with `...` when cut.
pub fn escape_for_log(text: &str, max: usize) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        let piece = match b {
            b'\\' => "\\\\".to_owned(),
            b'"' => "\\\"".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            b'\n' => "\\n".to_owned(),
            b'\t' => "\\t".to_owned(),
            b'\r' => "\\r".to_owned(),
            _ => format!("\\x{b:02x}"),
        };
        if out.len() + piece.len() > max.saturating_sub(3) {
            out.push_str("...");
            return out;
        }
        out.push_str(&piece);
    }
    out
}
