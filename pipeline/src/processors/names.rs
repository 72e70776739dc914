//! Matching metric names and attribute values: exact strings or anchored regular expressions, compiled
//! once, each bad pattern one problem with its path.

use regex::Regex;
use serde::Deserialize;

use crate::Problem;

/// How the patterns of a matcher are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Equal strings.
    Strict,
    /// Regular expressions matching the whole value.
    #[default]
    Regexp,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Regex(Regex),
}

impl Pattern {
    /// Compiles `pattern`; a bad regular expression is pushed to `problems` at `path`.
    pub fn compile(pattern: &str, match_type: MatchType, path: &str, problems: &mut Vec<Problem>) -> Option<Pattern> {
        match match_type {
            MatchType::Strict => Some(Pattern::Exact(pattern.to_string())),
            MatchType::Regexp => match Regex::new(&format!("^(?:{pattern})$")) {
                Ok(regex) => Some(Pattern::Regex(regex)),
                Err(e) => {
                    problems.push(Problem::new(path, format!("invalid regular expression: {e}")));
                    None
                }
            },
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == text,
            Pattern::Regex(regex) => regex.is_match(text),
        }
    }
}

/// A set of metric-name patterns; an empty set matches every metric.
#[derive(Debug, Clone, Default)]
pub struct NameSet(Vec<Pattern>);

impl NameSet {
    pub fn compile(patterns: &[String], match_type: MatchType, path: &str, problems: &mut Vec<Problem>) -> NameSet {
        NameSet(
            patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Pattern::compile(p, match_type, &format!("{path}[{i}]"), problems))
                .collect(),
        )
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(name))
    }
}
