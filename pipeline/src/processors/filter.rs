//! `filter`: keep the series matching `include` (when given), then drop those matching `exclude`. A rule
//! matches a point when its name matches one of `metric_names` (any name when none are given) and every
//! attribute in `attributes` (the point's own, else its resource's) matches its pattern. Patterns are
//! anchored regular expressions, or exact strings with `match_type: strict`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::names::{MatchType, NameSet, Pattern};
use super::{Outcome, Processor};
use crate::model::{Batch, Point};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    include: Option<MatchConfig>,
    exclude: Option<MatchConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    match_type: MatchType,
    #[serde(default)]
    metric_names: Vec<String>,
    /// Attribute patterns (`labels` is the earlier name, still accepted).
    #[serde(default, alias = "labels")]
    attributes: BTreeMap<String, String>,
}

struct Matcher {
    names: NameSet,
    attributes: Vec<(String, Pattern)>,
}

impl Matcher {
    fn new(config: MatchConfig, path: &str, problems: &mut Vec<Problem>) -> Matcher {
        let names =
            NameSet::compile(&config.metric_names, config.match_type, &format!("{path}.metric_names"), problems);
        let attributes = config
            .attributes
            .iter()
            .filter_map(|(key, p)| {
                Pattern::compile(p, config.match_type, &format!("{path}.attributes.{key}"), problems)
                    .map(|r| (key.clone(), r))
            })
            .collect();
        Matcher { names, attributes }
    }

    fn matches(&self, point: &Point) -> bool {
        self.names.matches(point.name())
            && self.attributes.iter().all(|(key, r)| point.label(key).is_some_and(|v| r.matches(v)))
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
    fn process(&mut self, mut batch: Batch, _: &mut Outcome) -> Batch {
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
    use crate::processors::test_support::Run;

    fn filter(yaml: &str) -> Result<Filter, Vec<Problem>> {
        Filter::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "processors.filter")
    }

    #[test]
    fn include_then_exclude_by_name_and_label() {
        let mut f =
            filter("include: {metric_names: ['process\\.cpu\\..*']}\nexclude: {labels: {pid: '1|2'}}").expect("valid");
        let out = f.run(processes(5));
        let pids: Vec<&str> = out.iter().filter_map(|p| p.label("pid").map(|v| &**v)).collect();
        assert_eq!(pids, ["3", "4", "5"]);
        assert!(out.iter().all(|p| p.name() == "process.cpu.time"));
    }

    #[test]
    fn bad_regexes_are_reported_with_their_paths() {
        let problems = crate::processors::test_support::problems(filter(
            "include: {metric_names: ['ok', '(']}\nexclude: {labels: {pid: '['}}",
        ));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["processors.filter.include.metric_names[1]", "processors.filter.exclude.attributes.pid"]);
        assert!(filter("{}").is_err(), "a filter without rules is a mistake");
    }
}
