//! Series identity over a batch: counting distinct series, and finding the slot of a point's series.

use std::collections::hash_map::Entry;

use rustc_hash::{FxHashMap, FxHashSet};

use super::Point;

/// Number of distinct series in a batch, by fingerprint (a 64-bit collision would undercount by one,
/// which is far below any measurement's noise).
pub fn series_count(batch: &[Point]) -> usize {
    let mut seen = FxHashSet::with_capacity_and_hasher(batch.len(), Default::default());
    batch.iter().filter(|p| seen.insert(p.fingerprint())).count()
}

/// Finds the slot of a point's series among the series seen so far: by fingerprint, then by full
/// comparison, so two series whose fingerprints collide never share a slot.
#[derive(Default)]
pub struct SeriesIndex {
    /// Fingerprint -> slot of the first series with it.
    first: FxHashMap<u64, usize>,
    /// Further series whose fingerprint collided with an earlier one's (practically never).
    collided: Vec<(u64, usize)>,
}

impl SeriesIndex {
    pub fn with_capacity(capacity: usize) -> SeriesIndex {
        SeriesIndex { first: FxHashMap::with_capacity_and_hasher(capacity, Default::default()), collided: Vec::new() }
    }

    /// The slot of `point`'s series among `slots` (where `slots[i]` is a point of the series in slot
    /// `i`), or `None` after giving a new series slot `new_slot` — one hash probe either way.
    pub fn find_or_insert(
        &mut self,
        fingerprint: u64,
        point: &Point,
        slots: &[Point],
        new_slot: usize,
    ) -> Option<usize> {
        match self.first.entry(fingerprint) {
            Entry::Vacant(vacant) => {
                vacant.insert(new_slot);
                None
            }
            Entry::Occupied(taken) if slots[*taken.get()].same_series(point) => Some(*taken.get()),
            // A different series with the same fingerprint (practically never): the collision list.
            Entry::Occupied(_) => {
                let found = self.collided.iter().find(|(f, i)| *f == fingerprint && slots[*i].same_series(point));
                match found {
                    Some((_, i)) => Some(*i),
                    None => {
                        self.collided.push((fingerprint, new_slot));
                        None
                    }
                }
            }
        }
    }
}

/// Keeps one point per series for level types (gauges, cumulative sums and histograms, summaries): the
/// newest, in the place of the series' first point. Delta points all stay: each adds to its series. A
/// pipeline flushes what arrived since its previous flush, and a sender may have sent a series twice
/// in that time; processors may then assume one point per level series.
///
/// Also returns the number of distinct series, found in the same hash pass (the engine measures it).
/// The batch is only rebuilt when a level series does repeat.
pub fn keep_newest_levels(mut batch: Vec<Point>) -> (Vec<Point>, usize) {
    let mut index = SeriesIndex::with_capacity(batch.len());
    let mut delta_series = FxHashSet::default();
    // (repeat, the earlier point of its series); rare: senders seldom send a series twice a flush.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut level_series = 0;
    for (at, point) in batch.iter().enumerate() {
        let fingerprint = point.fingerprint();
        if !point.kind().is_level() {
            delta_series.insert(fingerprint);
            continue;
        }
        match index.find_or_insert(fingerprint, point, &batch, at) {
            Some(first) => repeats.push((at, first)),
            None => level_series += 1,
        }
    }
    let series = level_series + delta_series.len();
    if repeats.is_empty() {
        return (batch, series);
    }
    // The newest point of each repeated series takes its first point's place; the others go.
    let mut gone = vec![false; batch.len()];
    for (repeat, first) in repeats {
        if batch[repeat].time_ns >= batch[first].time_ns {
            batch.swap(repeat, first);
        }
        gone[repeat] = true;
    }
    let mut at = 0;
    batch.retain(|_| {
        at += 1;
        !gone[at - 1]
    });
    (batch, series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, Temporality};

    #[test]
    fn the_newest_point_of_a_level_series_is_kept_and_deltas_all_stay() {
        let delta = MetricKind::Sum { temporality: Temporality::Delta, monotonic: true };
        let batch = vec![
            Point::new("c", MetricKind::COUNTER, &[("k", "a")], 5.0, 2),
            Point::new("d", delta, &[("k", "a")], 1.0, 1),
            Point::new("c", MetricKind::COUNTER, &[("k", "a")], 3.0, 1),
            Point::new("c", MetricKind::COUNTER, &[("k", "b")], 1.0, 1),
            Point::new("d", delta, &[("k", "a")], 2.0, 2),
        ];
        let (out, series) = keep_newest_levels(batch);
        let values: Vec<(&str, f64)> = out.iter().map(|p| (p.name(), p.number())).collect();
        assert_eq!(values, [("c", 5.0), ("d", 1.0), ("c", 1.0), ("d", 2.0)]);
        assert_eq!((series, series_count(&out)), (3, 3));
    }
}
