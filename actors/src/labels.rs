//! Labels on agents and label selectors.

use std::collections::BTreeMap;

/// `key -> value` labels of an agent (sorted, so they serialise deterministically).
pub type Labels = BTreeMap<String, String>;

/// Checks a label key or value: 1–63 characters of letters, digits, `-`, `_`, `.` and `/`.
pub fn validate_label_part(part: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if part.is_empty() || part.len() > 63 {
        return Err(format!("'{part}' must be 1 to 63 characters long"));
    }
    if !part.chars().all(ok_char) {
        return Err(format!("'{part}' may contain only letters, digits, '-', '_', '.' and '/'"));
    }
    Ok(())
}

/// Every problem with a set of labels, as `labels.<key>: message`.
pub fn validate_labels(labels: &Labels) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (key, value) in labels {
        if let Err(e) = validate_label_part(key) {
            problems.push((format!("labels.{key}"), format!("key {e}")));
        }
        if let Err(e) = validate_label_part(value) {
            problems.push((format!("labels.{key}"), format!("value {e}")));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_odd_characters_are_reported_by_key() {
        let labels: Labels =
            [("env".to_string(), "prod".to_string()), ("bad key".to_string(), "x y".to_string())].into();
        let problems = validate_labels(&labels);
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|(path, _)| path == "labels.bad key"));
    }
}
