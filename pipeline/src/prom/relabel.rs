//! Prometheus's relabelling (`metric_relabel_configs`), applied to each scraped sample's labels
//! (`__name__` included) as Prometheus does: `replace` (the default), `keep`, `drop`, `labeldrop`,
//! `labelkeep` (which always keeps `__name__`: a sample without a name could not be stored) and
//! `labelmap`. Regexes are anchored at both ends; `$1`/`${name}` in `replacement` and
//! `target_label` refer to the regex's groups.

use regex::Regex;
use serde::Deserialize;

use crate::Problem;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default = "default_action")]
    pub action: String,
}

fn default_separator() -> String {
    ";".into()
}

fn default_regex() -> String {
    "(.*)".into()
}

fn default_replacement() -> String {
    "$1".into()
}

fn default_action() -> String {
    "replace".into()
}

/// The actions this relabelling implements.
pub const ACTIONS: [&str; 6] = ["replace", "keep", "drop", "labeldrop", "labelkeep", "labelmap"];

/// A checked rule, its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    config: RelabelConfig,
    regex: Regex,
}

impl Rule {
    pub fn new(config: RelabelConfig, path: &str) -> Result<Rule, Vec<Problem>> {
        let mut problems = Vec::new();
        if !ACTIONS.contains(&config.action.as_str()) {
            problems.push(Problem::new(
                &format!("{path}.action"),
                format!("'{}' is not supported (supported: {})", config.action, ACTIONS.join(", ")),
            ));
        }
        if config.action == "replace" && config.target_label.is_none() {
            problems.push(Problem::new(&format!("{path}.target_label"), "replace needs a target_label"));
        }
        if matches!(config.action.as_str(), "keep" | "drop" | "replace") && config.source_labels.is_empty() {
            problems
                .push(Problem::new(&format!("{path}.source_labels"), format!("{} needs source_labels", config.action)));
        }
        let regex = Regex::new(&format!("^(?:{})$", config.regex));
        if let Err(e) = &regex {
            problems.push(Problem::new(&format!("{path}.regex"), format!("not a regex: {e}")));
        }
        match regex {
            Ok(regex) if problems.is_empty() => Ok(Rule { config, regex }),
            _ => Err(problems),
        }
    }

    /// Applies the rule; `false` when the sample is to be dropped.
    pub fn apply(&self, labels: &mut Vec<(String, String)>) -> bool {
        let config = &self.config;
        match config.action.as_str() {
            "keep" => self.regex.is_match(&self.source_value(labels)),
            "drop" => !self.regex.is_match(&self.source_value(labels)),
            "labeldrop" => {
                labels.retain(|(name, _)| !self.regex.is_match(name));
                true
            }
            "labelkeep" => {
                labels.retain(|(name, _)| name == "__name__" || self.regex.is_match(name));
                true
            }
            "labelmap" => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        let captures = self.regex.captures(name)?;
                        let mut target = String::new();
                        captures.expand(&config.replacement, &mut target);
                        Some((target, value.clone()))
                    })
                    .collect();
                for (name, value) in mapped {
                    set(labels, name, value);
                }
                true
            }
            _ => {
                let value = self.source_value(labels);
                let Some(captures) = self.regex.captures(&value) else { return true };
                let (mut target, mut replacement) = (String::new(), String::new());
                captures.expand(config.target_label.as_deref().unwrap_or_default(), &mut target);
                captures.expand(&config.replacement, &mut replacement);
                if target.is_empty() {
                    return true;
                }
                if replacement.is_empty() {
                    labels.retain(|(name, _)| *name != target);
                } else {
                    set(labels, target, replacement);
                }
                true
            }
        }
    }

    fn source_value(&self, labels: &[(String, String)]) -> String {
        let values: Vec<&str> = self
            .config
            .source_labels
            .iter()
            .map(|source| labels.iter().find(|(name, _)| name == source).map(|(_, v)| v.as_str()).unwrap_or(""))
            .collect();
        values.join(&self.config.separator)
    }
}

fn set(labels: &mut Vec<(String, String)>, name: String, value: String) {
    match labels.iter_mut().find(|(n, _)| *n == name) {
        Some(existing) => existing.1 = value,
        None => labels.push((name, value)),
    }
}

/// Applies `rules` in order; `false` when one of them dropped the sample.
pub fn apply_all(rules: &[Rule], labels: &mut Vec<(String, String)>) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Rule {
        Rule::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "r").expect("valid")
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_action_behaves_as_in_prometheus() {
        let series = labels(&[("__name__", "http_requests_total"), ("user_id", "u7"), ("route", "/a")]);
        let keep = rule("source_labels: [__name__]\nregex: http_.*\naction: keep");
        assert!(keep.apply(&mut series.clone()));
        let anchored = rule("source_labels: [__name__]\nregex: requests\naction: keep");
        assert!(!anchored.apply(&mut series.clone()), "regexes match the whole value");
        let drop = rule("source_labels: [route, user_id]\nregex: /a;u.*\naction: drop");
        assert!(!drop.apply(&mut series.clone()), "source values are joined with ';'");
        let mut dropped = series.clone();
        rule("regex: user_id\naction: labeldrop").apply(&mut dropped);
        assert_eq!(dropped, labels(&[("__name__", "http_requests_total"), ("route", "/a")]));
        let mut replaced = series.clone();
        rule("source_labels: [route]\nregex: '/(.*)'\ntarget_label: path\nreplacement: 'p-${1}'").apply(&mut replaced);
        assert_eq!(replaced.last(), Some(&("path".to_string(), "p-a".to_string())));
        let mut emptied = series.clone();
        rule("source_labels: [nothing]\ntarget_label: route\nreplacement: ''").apply(&mut emptied);
        assert!(!emptied.iter().any(|(k, _)| k == "route"), "an empty result removes the target");
        let mut mapped = series.clone();
        rule("regex: 'user_(.*)'\naction: labelmap").apply(&mut mapped);
        assert!(mapped.contains(&("id".to_string(), "u7".to_string())));
    }

    #[test]
    fn unsupported_actions_and_bad_regexes_are_problems() {
        let config: RelabelConfig = serde_yaml_ng::from_str("action: hashmod\nregex: '('").expect("yaml");
        let paths: Vec<String> = Rule::new(config, "r").expect_err("invalid").into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["r.action", "r.regex"]);
    }
}
