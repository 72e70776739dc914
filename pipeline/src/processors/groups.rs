//! Attribute groups and their ranking, shared by `topk` and `adaptive_filter`: a group is the values of
//! the `group_by` attributes (a process is `[pid]`, a user `[user_id]`); groups are ranked by the total of
//! one metric (each group kept or folded with all its metrics), or each metric by its own values.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use super::default_process_labels;
use crate::model::Point;
use crate::Problem;

/// The values of the `group_by` attributes of one point.
pub type GroupId = Vec<Arc<str>>;

/// One ranked group.
pub struct Ranked {
    pub score: f64,
    /// Its [`Grouping::group_key`].
    pub key: u64,
    values: GroupId,
}

/// Ranked groups: per ranking metric, best first.
pub type Rankings = FxHashMap<Arc<str>, Vec<Ranked>>;

/// Which attributes make a group, and which metric ranks them.
pub struct Grouping {
    pub keys: Vec<String>,
    /// `None`: every metric ranks its own groups.
    pub metric: Option<Arc<str>>,
}

/// The ranking metric of processes when a config names none.
pub const PROCESS_RANKING_METRIC: &str = "process.cpu.time";

impl Grouping {
    /// The grouping a `topk` or `adaptive_filter` config names, with the process defaults: no
    /// `group_by`/`key` means processes (`[pid]`), ranked by CPU time unless `metric` says otherwise,
    /// with their descriptive attributes (`process_labels`: executable, command, owner) removed from
    /// merged series. Named groups without `metric` are ranked per metric by their own values. Also
    /// returns the attributes a merged rest loses (the group's and `extra`).
    pub fn from_config(
        group_by: Option<Vec<String>>,
        key: Option<String>,
        metric: Option<String>,
        extra: Option<Vec<String>>,
        path: &str,
    ) -> Result<(Grouping, HashSet<String>), Vec<Problem>> {
        let processes = group_by.is_none() && key.is_none();
        let keys = match (group_by, key) {
            (Some(_), Some(_)) => return Err(vec![Problem::new(path, "give `group_by` or `key`, not both")]),
            (Some(keys), None) => keys,
            (None, Some(key)) => vec![key],
            (None, None) => vec!["pid".to_string()],
        };
        if keys.is_empty() || keys.iter().any(|k| k.is_empty()) {
            return Err(vec![Problem::new(&format!("{path}.group_by"), "must name at least one attribute")]);
        }
        let metric = metric.or_else(|| processes.then(|| PROCESS_RANKING_METRIC.to_string())).map(Arc::from);
        let extra = extra.unwrap_or_else(|| if processes { default_process_labels() } else { Vec::new() });
        let removed = extra.into_iter().chain(keys.iter().cloned()).collect();
        Ok((Grouping { keys, metric }, removed))
    }

    /// The group of `point`: a hash of its group attributes' values (what every point is looked up
    /// by: no allocation; two groups share a key with odds of 2^-64), or `None` when it lacks one of
    /// them (then it is not ranked and passes).
    pub fn group_key(&self, point: &Point) -> Option<u64> {
        let mut hasher = FxHasher::default();
        for key in &self.keys {
            point.label(key)?.hash(&mut hasher);
        }
        Some(hasher.finish())
    }

    /// The values of the group attributes (kept once per group, to break ties in a stable order).
    fn group_values(&self, point: &Point) -> GroupId {
        self.keys.iter().filter_map(|key| point.label(key).cloned()).collect()
    }

    /// The ranking that decides about `point`: its metric's, or the one ranking metric's.
    pub fn ranking_key<'a>(&'a self, point: &'a Point) -> &'a Arc<str> {
        self.metric.as_ref().unwrap_or(&point.metric.name)
    }

    /// Each group's score (the total of its points' values in the ranking metric), best first; ties in
    /// the order of the groups' values, so the ranking is a total order and the same input always ranks
    /// the same way.
    pub fn rank(&self, batch: &[Point]) -> Rankings {
        let mut totals: FxHashMap<Arc<str>, FxHashMap<u64, Ranked>> = FxHashMap::default();
        for point in batch {
            if self.metric.as_ref().is_some_and(|m| **m != *point.metric.name) {
                continue;
            }
            let Some(key) = self.group_key(point) else { continue };
            let per_metric = match totals.get_mut(&*point.metric.name) {
                Some(per_metric) => per_metric,
                None => totals.entry(point.metric.name.clone()).or_default(),
            };
            per_metric
                .entry(key)
                .or_insert_with(|| Ranked { score: 0.0, key, values: self.group_values(point) })
                .score += score(point);
        }
        totals
            .into_iter()
            .map(|(metric, groups)| {
                let mut ranked: Vec<Ranked> = groups.into_values().collect();
                ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.values.cmp(&b.values)));
                (metric, ranked)
            })
            .collect()
    }
}

/// Groups kept, per ranking metric.
#[derive(Default)]
pub struct Kept(FxHashMap<Arc<str>, FxHashSet<u64>>);

impl Kept {
    pub fn insert(&mut self, metric: &Arc<str>, group: u64) {
        self.0.entry(metric.clone()).or_default().insert(group);
    }

    pub fn contains(&self, metric: &str, group: u64) -> bool {
        self.0.get(metric).is_some_and(|groups| groups.contains(&group))
    }
}

/// What a point contributes to its group's score: its number, or a histogram's count. A NaN counts
/// as nothing, so it can never outrank a real value.
fn score(point: &Point) -> f64 {
    let value = point.number();
    if value.is_nan() {
        0.0
    } else {
        value
    }
}
