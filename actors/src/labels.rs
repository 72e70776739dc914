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
    if labels.len() > crate::limits::LABELS {
        problems.push(("labels".into(), format!("at most {} labels", crate::limits::LABELS)));
    }
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

/// A label selector: every `key=value` must be present on the agent. Empty selects all agents.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LabelSelector(pub Labels);

impl LabelSelector {
    /// Parses `env=prod,region=eu` (the query-string form).
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut labels = Labels::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not key=value"))?;
            validate_label_part(key)?;
            validate_label_part(value)?;
            labels.insert(key.to_string(), value.to_string());
        }
        if labels.len() > crate::limits::LABELS {
            return Err(format!("a selector has at most {} labels", crate::limits::LABELS));
        }
        Ok(LabelSelector(labels))
    }

    /// True when `labels` has every pair of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(key, value)| labels.get(key) == Some(value))
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    #[test]
    fn a_selector_matches_agents_having_all_its_pairs() {
        let selector = LabelSelector::parse("env=prod, region=eu").expect("valid");
        let agent: Labels = [("env", "prod"), ("region", "eu"), ("rack", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(selector.matches(&agent));
        assert!(!LabelSelector::parse("env=dev").expect("valid").matches(&agent));
        assert!(LabelSelector::default().matches(&agent));
        assert!(LabelSelector::parse("nonsense").is_err());
    }
}
