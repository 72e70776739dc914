//! Values of each metric type, and how two values of one type add up (what merging series, or the
//! points of a delta series, means for that type).

use std::sync::Arc;

/// A point's value; its variant follows the metric's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Gauges and sums.
    Number(f64),
    Histogram(Box<Histogram>),
    ExponentialHistogram(Box<ExponentialHistogram>),
    Summary(Box<Summary>),
}

/// Counts of values in explicit buckets: `counts[i]` counts values in `(bounds[i-1], bounds[i]]`, the
/// last one those above the last bound (`counts.len() == bounds.len() + 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Shared between the points of a series (they rarely change).
    pub bounds: Arc<[f64]>,
    pub counts: Vec<u64>,
}

/// Counts of values in buckets whose bounds grow by `2^(2^-scale)`: bucket `offset + i` counts values in
/// `(base^(offset+i), base^(offset+i+1)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialHistogram {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive: Buckets,
    pub negative: Buckets,
}

/// A contiguous run of exponential buckets starting at index `offset`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

/// Precomputed quantiles of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub sum: f64,
    pub quantiles: Vec<Quantile>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    pub quantile: f64,
    pub value: f64,
}

impl Value {
    /// The number of a gauge or sum; the count of the other types (what a ranking compares, and the
    /// total an accuracy check preserves).
    pub fn magnitude(&self) -> f64 {
        match self {
            Value::Number(n) => *n,
            Value::Histogram(h) => h.count as f64,
            Value::ExponentialHistogram(h) => h.count as f64,
            Value::Summary(s) => s.count as f64,
        }
    }

    /// True for NaN or infinite numbers, sums, minimums or maximums (refused at the receivers).
    pub fn has_non_finite(&self) -> bool {
        let bad = |x: Option<f64>| x.is_some_and(|x| !x.is_finite());
        match self {
            Value::Number(n) => !n.is_finite(),
            Value::Histogram(h) => bad(h.sum) || bad(h.min) || bad(h.max),
            Value::ExponentialHistogram(h) => bad(h.sum) || bad(h.min) || bad(h.max) || !h.zero_threshold.is_finite(),
            Value::Summary(s) => !s.sum.is_finite() || s.quantiles.iter().any(|q| !q.value.is_finite()),
        }
    }
}

impl Histogram {
    /// A histogram of `counts` in `bounds`, its count their total, without a minimum or maximum.
    pub fn of_counts(bounds: &[f64], counts: &[u64], sum: Option<f64>) -> Histogram {
        Histogram {
            count: saturating_total(counts),
            sum,
            min: None,
            max: None,
            bounds: Arc::from(bounds),
            counts: counts.to_vec(),
        }
    }

    /// True when the counts fit the bounds and add up to the count.
    pub fn is_consistent(&self) -> bool {
        self.counts.len() == self.bounds.len() + 1
            && self.counts.iter().try_fold(0u64, |total, &c| total.checked_add(c)) == Some(self.count)
            && self.bounds.windows(2).all(|w| w[0] < w[1])
    }

    /// Adds `other` bucket by bucket; its bounds must equal ours (see [`Histogram::rebucketed`]).
    pub fn add_same_bounds(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            // Counts from senders can be anything: a merge saturates rather than wraps or panics.
            *mine = mine.saturating_add(*theirs);
        }
        self.add_totals(other.count, other.sum, other.min, other.max);
    }

    /// `other`'s counts moved into `bounds`: each bucket's count goes to the target bucket that holds the
    /// source bucket's upper bound. No count is lost; a value may be counted in a higher bucket than the
    /// one it would have been counted in with the target bounds from the start.
    pub fn rebucketed(&self, bounds: &Arc<[f64]>) -> Histogram {
        let mut counts = vec![0u64; bounds.len() + 1];
        for (i, &count) in self.counts.iter().enumerate() {
            let target = match self.bounds.get(i) {
                Some(&upper) => bounds.partition_point(|&b| b < upper),
                None => bounds.len(),
            };
            counts[target] = counts[target].saturating_add(count);
        }
        Histogram { counts, bounds: bounds.clone(), ..self.clone() }
    }

    fn add_totals(&mut self, count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) {
        self.count = self.count.saturating_add(count);
        self.sum = add_optional(self.sum, sum);
        self.min = combine(self.min, min, f64::min);
        self.max = combine(self.max, max, f64::max);
    }
}

impl ExponentialHistogram {
    /// Adds `other`, first bringing both to the coarser of the two scales (a bucket at scale `s` is two
    /// buckets at scale `s+1`, so lowering the scale merges neighbours without losing a count).
    pub fn add(&mut self, other: &ExponentialHistogram) {
        let scale = self.scale.min(other.scale);
        self.downscale(self.scale - scale);
        let mut other = other.clone();
        other.downscale(other.scale - scale);
        self.positive.add(&other.positive);
        self.negative.add(&other.negative);
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.zero_threshold = self.zero_threshold.max(other.zero_threshold);
        self.count = self.count.saturating_add(other.count);
        self.sum = add_optional(self.sum, other.sum);
        self.min = combine(self.min, other.min, f64::min);
        self.max = combine(self.max, other.max, f64::max);
    }

    /// Lowers the scale by `by`: bucket `i` becomes bucket `i >> by`.
    pub fn downscale(&mut self, by: i32) {
        if by > 0 {
            self.positive.downscale(by);
            self.negative.downscale(by);
            self.scale -= by;
        }
    }
}

impl Buckets {
    fn downscale(&mut self, by: i32) {
        if self.counts.is_empty() {
            return;
        }
        let by = by.min(62);
        let first = i64::from(self.offset) >> by;
        let last = (i64::from(self.offset) + self.counts.len() as i64 - 1) >> by;
        let mut counts = vec![0u64; (last - first + 1) as usize];
        for (i, &count) in self.counts.iter().enumerate() {
            let index = (i64::from(self.offset) + i as i64) >> by;
            let at = (index - first) as usize;
            counts[at] = counts[at].saturating_add(count);
        }
        self.offset = first as i32;
        self.counts = counts;
    }

    fn add(&mut self, other: &Buckets) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        let first = self.offset.min(other.offset);
        let end = (self.offset + self.counts.len() as i32).max(other.offset + other.counts.len() as i32);
        let mut counts = vec![0u64; (end - first) as usize];
        for run in [&*self, other] {
            for (i, &count) in run.counts.iter().enumerate() {
                let at = (run.offset - first) as usize + i;
                counts[at] = counts[at].saturating_add(count);
            }
        }
        self.offset = first;
        self.counts = counts;
    }

    /// Total of the counts.
    pub fn total(&self) -> u64 {
        saturating_total(&self.counts)
    }
}

fn add_optional(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    // A sum missing on one side (OTLP leaves it out when negative values were recorded into a
    // histogram of a counter) makes the total unknown.
    Some(a? + b?)
}

fn combine(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (one, None) | (None, one) => one,
    }
}

/// The total of counts, at most `u64::MAX` (a sender's counts may add up past it).
pub fn saturating_total(counts: &[u64]) -> u64 {
    counts.iter().fold(0u64, |total, &c| total.saturating_add(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(bounds: &[f64], counts: &[u64], sum: f64) -> Histogram {
        Histogram::of_counts(bounds, counts, Some(sum))
    }

    #[test]
    fn histograms_with_the_same_bounds_add_bucket_by_bucket() {
        let mut a = histogram(&[1.0, 5.0], &[1, 2, 3], 20.0);
        a.add_same_bounds(&histogram(&[1.0, 5.0], &[4, 0, 1], 9.0));
        assert_eq!((a.counts, a.count, a.sum), (vec![5, 2, 4], 11, Some(29.0)));
    }

    #[test]
    fn rebucketing_moves_each_count_to_the_bucket_holding_its_upper_bound() {
        // Source buckets: (-inf,1] (1,2] (2,10] (10,inf); target bounds 2, 5.
        let source = histogram(&[1.0, 2.0, 10.0], &[1, 2, 3, 4], 0.0);
        let target: Arc<[f64]> = Arc::from(&[2.0, 5.0][..]);
        let moved = source.rebucketed(&target);
        assert_eq!(moved.counts, vec![3, 0, 7]);
        assert_eq!(moved.count, 10);
        assert!(moved.is_consistent());
    }

    #[test]
    fn exponential_histograms_at_different_scales_meet_at_the_coarser_one() {
        let mut a = ExponentialHistogram {
            count: 3,
            sum: Some(6.0),
            min: Some(1.0),
            max: Some(3.0),
            scale: 1,
            zero_count: 0,
            zero_threshold: 0.0,
            positive: Buckets { offset: -1, counts: vec![1, 1, 1] },
            negative: Buckets::default(),
        };
        let b = ExponentialHistogram {
            count: 2,
            sum: Some(4.0),
            min: Some(0.5),
            max: Some(3.5),
            scale: 0,
            zero_count: 1,
            zero_threshold: 0.0,
            positive: Buckets { offset: 0, counts: vec![1] },
            negative: Buckets::default(),
        };
        a.add(&b);
        // Scale 1 indexes -1, 0, 1 become scale 0 indexes -1, 0, 0.
        assert_eq!(a.scale, 0);
        assert_eq!(a.positive, Buckets { offset: -1, counts: vec![1, 3] });
        assert_eq!((a.count, a.zero_count, a.sum, a.min, a.max), (5, 1, Some(10.0), Some(0.5), Some(3.5)));
        assert_eq!(a.positive.total() + a.negative.total() + a.zero_count, a.count);
    }

    #[test]
    fn a_missing_sum_makes_the_total_unknown() {
        let mut a = histogram(&[1.0], &[1, 1], 3.0);
        let mut b = histogram(&[1.0], &[1, 0], 0.0);
        b.sum = None;
        a.add_same_bounds(&b);
        assert_eq!(a.sum, None);
    }
}
