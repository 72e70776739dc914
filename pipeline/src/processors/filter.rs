//! `filter`: keep the series matching `include` (when given), then drop those matching `exclude`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use super::Processor;
use crate::model::{Batch, Point};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    include: Option<MatchConfig>,
    exclude: Option<MatchConfig>,
}

/// A series matches when its name matches one of `metric_names` (if any are given) and every label
/// regex matches the label's value (a missing label does not match).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    metric_names: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

struct Matcher {
    names: Vec<Regex>,
    labels: Vec<(String, Regex)>,
}

impl Matcher {
    fn new(config: MatchConfig, path: &str, problems: &mut Vec<Problem>) -> Matcher {
        let mut compile = |pattern: &str, at: String| match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => Some(regex),
            Err(e) => {
                problems.push(Problem::new(&at, format!("invalid regular expression: {e}")));
                None
            }
        };
        let names = config
            .metric_names
            .iter()
            .enumerate()
            .filter_map(|(i, p)| compile(p, format!("{path}.metric_names[{i}]")))
            .collect();
        let labels = config
            .labels
            .iter()
            .filter_map(|(key, p)| compile(p, format!("{path}.labels.{key}")).map(|r| (key.clone(), r)))
            .collect();
        Matcher { names, labels }
    }

    fn matches(&self, point: &Point) -> bool {
        let name_ok = self.names.is_empty() || self.names.iter().any(|r| r.is_match(&point.metric));
        name_ok && self.labels.iter().all(|(key, r)| point.label(key).is_some_and(|v| r.is_match(v)))
    }
}

pub struct Filter {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl Filter {
    pub fn new(config: FilterConfig, path: &str) -> Result<Filter, Vec<Problem>> {
        let mut problems = Vec::new();
        if config.include.is_none() && config.exclude.is_none() {
            problems.push(Problem::new(path, "needs `include`, `exclude` or both"));
        }
        let include = config.include.map(|m| Matcher::new(m, &format!("{path}.include"), &mut problems));
        let exclude = config.exclude.map(|m| Matcher::new(m, &format!("{path}.exclude"), &mut problems));
        if problems.is_empty() {
            Ok(Filter { include, exclude })
        } else {
            Err(problems)
        }
    }
}

impl Processor for Filter {
    fn process(&mut self, mut batch: Batch) -> Batch {
        batch.retain(|p| {
            self.include.as_ref().is_none_or(|m| m.matches(p)) && !self.exclude.as_ref().is_some_and(|m| m.matches(p))
        });
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::test_support::processes;

    fn filter(yaml: &str) -> Result<Filter, Vec<Problem>> {
        Filter::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "processors.filter")
    }

    #[test]
    fn include_then_exclude_by_name_and_label() {
        let mut f =
            filter("include: {metric_names: ['process\\.cpu\\..*']}\nexclude: {labels: {pid: '1|2'}}").expect("valid");
        let out = f.process(processes(5));
        let pids: Vec<&str> = out.iter().filter_map(|p| p.label("pid").map(|v| &**v)).collect();
        assert_eq!(pids, ["3", "4", "5"]);
        assert!(out.iter().all(|p| &*p.metric == "process.cpu.time"));
    }

    #[test]
    fn bad_regexes_are_reported_with_their_paths() {
        let problems = crate::processors::test_support::problems(filter(
            "include: {metric_names: ['ok', '(']}\nexclude: {labels: {pid: '['}}",
        ));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["processors.filter.include.metric_names[1]", "processors.filter.exclude.labels.pid"]);
        assert!(filter("{}").is_err(), "a filter without rules is a mistake");
    }
}
