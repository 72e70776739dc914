//! `attributes`: changes point attributes with a list of actions, in order, as the Collector's
//! `attributes` processor does — `delete`, `hash` (the value becomes its hex SHA-256), `rename` (to
//! `new_key`), `insert` (only when absent), `update` (only when present), `upsert` — then, with `keep`,
//! removes every attribute not listed. Series that collide once attributes are gone are merged by type
//! within the flush (for totals of cumulative series across flushes, use `aggregate`).

use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Outcome, Processor};
use crate::model::{Batch, Merger, Point};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    #[serde(default)]
    actions: Vec<ActionConfig>,
    /// When given, the only attributes kept (after the actions).
    keep: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    key: String,
    action: ActionKind,
    /// For `rename`.
    new_key: Option<String>,
    /// For `insert`, `update`, `upsert`.
    value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Delete,
    Hash,
    Rename,
    Insert,
    Update,
    Upsert,
}

enum Action {
    Delete(String),
    Hash(String),
    Rename(String, Arc<str>),
    Set { key: Arc<str>, value: Arc<str>, when_present: bool, when_absent: bool },
}

pub struct AttributeActions {
    actions: Vec<Action>,
    keep: Option<Vec<String>>,
    /// True when attributes can disappear, so series can collide and must be merged.
    may_merge: bool,
}

impl AttributeActions {
    pub fn new(config: AttributesConfig, path: &str) -> Result<AttributeActions, Vec<Problem>> {
        let mut problems = Vec::new();
        if config.actions.is_empty() && config.keep.is_none() {
            problems.push(Problem::new(path, "needs `actions`, `keep` or both"));
        }
        let mut actions = Vec::new();
        for (i, action) in config.actions.into_iter().enumerate() {
            let at = format!("{path}.actions[{i}]");
            match build_action(action, &at) {
                Ok(action) => actions.push(action),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let may_merge = config.keep.is_some()
            || actions.iter().any(|a| matches!(a, Action::Delete(_) | Action::Rename(..) | Action::Hash(_)));
        Ok(AttributeActions { actions, keep: config.keep, may_merge })
    }

    fn apply(&self, point: &mut Point) {
        for action in &self.actions {
            match action {
                Action::Delete(key) => point.labels.retain(|(k, _)| **k != **key),
                Action::Hash(key) => {
                    if let Some(slot) = point.labels.iter_mut().find(|(k, _)| **k == **key) {
                        slot.1 = Arc::from(hex_sha256(&slot.1));
                    }
                }
                Action::Rename(key, new_key) => {
                    if let Some(at) = point.labels.iter().position(|(k, _)| **k == **key) {
                        let (_, value) = point.labels.remove(at);
                        point.set_label(new_key.clone(), value);
                    }
                }
                Action::Set { key, value, when_present, when_absent } => {
                    let present = point.labels.iter().any(|(k, _)| k == key);
                    if (present && *when_present) || (!present && *when_absent) {
                        point.set_label(key.clone(), value.clone());
                    }
                }
            }
        }
        if let Some(keep) = &self.keep {
            point.labels.retain(|(k, _)| keep.iter().any(|kept| **kept == **k));
        }
    }
}

fn build_action(action: ActionConfig, at: &str) -> Result<Action, Problem> {
    let needs = |what: Option<String>, field: &str| {
        what.ok_or_else(|| Problem::new(at, format!("`{:?}` needs `{field}`", action.action).to_lowercase()))
    };
    Ok(match action.action {
        ActionKind::Delete => Action::Delete(action.key),
        ActionKind::Hash => Action::Hash(action.key),
        ActionKind::Rename => {
            let new_key = needs(action.new_key.clone(), "new_key")?;
            Action::Rename(action.key, Arc::from(new_key))
        }
        kind => {
            let value = needs(action.value.clone(), "value")?;
            Action::Set {
                key: Arc::from(action.key),
                value: Arc::from(value),
                when_present: kind != ActionKind::Insert,
                when_absent: kind != ActionKind::Update,
            }
        }
    })
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Processor for AttributeActions {
    fn process(&mut self, mut batch: Batch, outcome: &mut Outcome) -> Batch {
        for point in &mut batch {
            self.apply(point);
        }
        if !self.may_merge {
            return batch;
        }
        let mut merger = Merger::with_capacity(batch.len());
        for point in batch {
            if let Err(e) = merger.add(point) {
                outcome.refuse(e.to_string());
            }
        }
        merger.finish()
    }

    fn output_is_distinct(&self) -> bool {
        self.may_merge
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;
    use crate::processors::test_support::{problems, Run};

    fn attributes(yaml: &str) -> Result<AttributeActions, Vec<Problem>> {
        AttributeActions::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "processors.attributes")
    }

    #[test]
    fn actions_run_in_order_and_colliding_series_merge() {
        let mut p = attributes(
            "actions:\n- {key: user_id, action: delete}\n- {key: method, action: rename, new_key: http.method}\n- {key: email, action: hash}\n- {key: env, action: insert, value: prod}\n- {key: route, action: update, value: /x}",
        )
        .expect("valid");
        let batch = vec![
            Point::new("hits", MetricKind::COUNTER, &[("user_id", "1"), ("method", "GET"), ("email", "a@b")], 2.0, 1),
            Point::new("hits", MetricKind::COUNTER, &[("user_id", "2"), ("method", "GET"), ("email", "a@b")], 3.0, 1),
        ];
        let out = p.run(batch);
        assert_eq!(out.len(), 1, "user_id gone: the two series are one");
        assert_eq!(out[0].number(), 5.0);
        let keys: Vec<&str> = out[0].labels.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["email", "env", "http.method"], "route was absent, so update did not add it");
        assert_eq!(out[0].label("email").map(|v| v.len()), Some(64), "hashed");
        assert_ne!(out[0].label("email").map(|v| &**v), Some("a@b"));
    }

    #[test]
    fn keep_removes_every_other_attribute() {
        let mut p = attributes("keep: [route]").expect("valid");
        let out = p.run(vec![Point::new("hits", MetricKind::Gauge, &[("route", "/"), ("user", "u")], 1.0, 0)]);
        assert_eq!(out[0].labels.len(), 1);
    }

    #[test]
    fn incomplete_actions_are_problems_with_their_paths() {
        let found = problems(attributes("actions:\n- {key: a, action: rename}\n- {key: b, action: upsert}"));
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["processors.attributes.actions[0]", "processors.attributes.actions[1]"]);
        assert!(found[0].message.contains("new_key"), "{found:?}");
        assert!(attributes("{}").is_err());
    }
}
