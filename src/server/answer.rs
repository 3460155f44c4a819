//! Keeping a JSON answer short enough to arrive whole.
//!
//! The client keeps the first and the last half of [`MAX_CAPTURE_BYTES`] of a step's output
//! (ssh's messages included); a longer answer would lose its middle and not parse, and the run
//! would lose the session's statistics with it. Answers are therefore held under
//! [`MAX_ANSWER_BYTES`]: when one would be longer, its lists (path errors, notes, the staging
//! step's errors) keep only their first entries and each hook's output its first bytes, each
//! with a count of what was left out (`errors_left_out`, `notes_left_out`, a marker in the
//! output). The numbers (entries, bytes, chunks, the error count) are never cut.

use serde_json::Value;

use crate::process::MAX_CAPTURE_BYTES;

/// Longest answer printed, pretty-printed as it is sent.
pub const MAX_ANSWER_BYTES: usize = MAX_CAPTURE_BYTES / 2 - 16 * 1024;

/// Shorten `value` until it prints in at most [`MAX_ANSWER_BYTES`]: each try cuts the whole
/// answer afresh, keeping less, so the counts of what was left out are always the whole lists'.
pub fn fit(value: &mut Value) {
    if printed_len(value) <= MAX_ANSWER_BYTES {
        return;
    }
    let whole = value.clone();
    for keep in [100, 20, 5, 0] {
        *value = whole.clone();
        shorten(value, keep);
        if printed_len(value) <= MAX_ANSWER_BYTES {
            return;
        }
    }
}

fn printed_len(value: &Value) -> usize {
    format!("{value:#}").len()
}

/// Keep `keep` entries of each list and `keep * 64` bytes of each hook's output.
fn shorten(value: &mut Value, keep: usize) {
    let Some(top) = value.as_object_mut() else {
        return;
    };
    cut_list(top, "errors", keep);
    cut_list(top, "notes", keep);
    if let Some(staging) = top.get_mut("staging").and_then(Value::as_object_mut) {
        cut_list(staging, "errors", keep);
    }
    if let Some(hooks) = top.get_mut("hooks").and_then(Value::as_array_mut) {
        for hook in hooks {
            if let Some(Value::String(output)) = hook.get_mut("output") {
                cut_text(output, keep * 64);
            }
        }
    }
}

fn cut_list(obj: &mut serde_json::Map<String, Value>, key: &str, keep: usize) {
    let Some(Value::Array(list)) = obj.get_mut(key) else {
        return;
    };
    if list.len() <= keep {
        return;
    }
    let dropped = list.len() - keep;
    list.truncate(keep);
    obj.insert(format!("{key}_left_out"), Value::from(dropped as u64));
}

fn cut_text(text: &mut String, keep: usize) {
    let whole = text.len();
    if whole <= keep {
        return;
    }
    let mut end = keep;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(
        "\n[rsbackup: output cut to fit the answer; {whole} bytes in all]"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_answer_is_left_alone() {
        let mut v = json!({"errors": [{"path": "a", "message": "m"}], "hooks": [{"output": "hi"}]});
        let before = v.clone();
        fit(&mut v);
        assert_eq!(v, before);
    }

    #[test]
    fn a_huge_answer_is_cut_to_fit_and_says_what_it_left_out() {
        let errors: Vec<Value> = (0..20_000)
            .map(|i| json!({"path": format!("dir/file-{i:05}"), "message": "cannot read: Permission denied"}))
            .collect();
        let noisy = "\u{1}\u{2}progress 42%\n".repeat(20_000);
        let mut v = json!({
            "session": 7, "files": 123_456, "errors_count": 20_000,
            "errors": errors,
            "notes": vec!["a note"; 5000],
            "staging": {"mode": "hollow", "errors": vec!["x"; 5000]},
            "hooks": [{"argv": ["/bin/a"], "output": noisy.clone()}, {"argv": ["/bin/b"], "output": "short\n"}],
        });
        fit(&mut v);
        let printed = format!("{v:#}");
        assert!(printed.len() <= MAX_ANSWER_BYTES, "{}", printed.len());
        let back: Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(back["session"], 7);
        assert_eq!(back["files"], 123_456);
        let kept = back["errors"].as_array().unwrap().len() as u64;
        assert_eq!(kept + back["errors_left_out"].as_u64().unwrap(), 20_000);
        assert_eq!(back["errors"][0]["path"], "dir/file-00000");
        let notes = back["notes"].as_array().unwrap().len() as u64;
        assert_eq!(notes + back["notes_left_out"].as_u64().unwrap(), 5000);
        let staged = back["staging"]["errors"].as_array().unwrap().len() as u64;
        assert_eq!(
            staged + back["staging"]["errors_left_out"].as_u64().unwrap(),
            5000
        );
        let out = back["hooks"][0]["output"].as_str().unwrap();
        assert!(out.starts_with("\u{1}\u{2}progress 42%\n"), "{out:?}");
        assert!(
            out.ends_with(&format!("{} bytes in all]", noisy.len())),
            "{out:?}"
        );
        assert_eq!(back["hooks"][1]["output"], "short\n");
    }
}
