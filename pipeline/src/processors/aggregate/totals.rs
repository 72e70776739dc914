//! The cumulative side of `aggregate`: each output series of a cumulative sum or histogram is the
//! total of the newest value of every input series that maps to it, remembered across flushes, so an
//! input that did not report in this flush still counts. A monotonic input that restarts (its total
//! goes down, or its start time moves) leaves what it had counted in the output's carried total, so the
//! output never goes backwards because one input restarted. An input not seen for the staleness window
//! is forgotten (a monotonic one's count is carried); an output whose last input is forgotten goes too.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::{add_value, earliest_start, BoundsPolicy, Metric, MetricKind, Point, Value};
use crate::processors::Outcome;

/// One input series: its newest value and times.
struct Input {
    key: u64,
    value: Value,
    start_ns: u64,
    time_ns: u64,
}

/// One output series, holding its inputs side by side (a flush reads them without a lookup each).
struct Output {
    /// Its series' fingerprint (its key in `slot_of`).
    key: u64,
    metric: Arc<Metric>,
    inputs: Vec<Input>,
    /// What restarted or forgotten monotonic inputs had counted.
    carried: Option<Value>,
    /// The newest input point of this flush, reduced to the output's attributes: it becomes the
    /// output's point (its value replaced by the total), so no point is copied.
    pending: Option<Point>,
}

pub struct CumulativeTotals {
    /// Input series -> (its output's slot, its place among the output's inputs): one lookup per point.
    places: FxHashMap<u64, (usize, usize)>,
    /// The outputs, in slots that keep their index while others come and go.
    outputs: Vec<Option<Output>>,
    /// Slots emptied by forgotten outputs, to be used again.
    free: Vec<usize>,
    /// Output series fingerprint -> its slot (looked up only for an input seen for the first time).
    slot_of: FxHashMap<u64, usize>,
    /// Slots of the outputs touched in this flush, in the order they were first touched.
    order: Vec<usize>,
    bounds: BoundsPolicy,
    stale_ns: u64,
}

impl CumulativeTotals {
    pub fn new(bounds: BoundsPolicy, stale_ns: u64) -> CumulativeTotals {
        CumulativeTotals {
            places: FxHashMap::default(),
            outputs: Vec::new(),
            free: Vec::new(),
            slot_of: FxHashMap::default(),
            order: Vec::new(),
            bounds,
            stale_ns,
        }
    }

    /// Records the newest point of input series `input_key`, already reduced to its output's attributes.
    pub fn record(&mut self, input_key: u64, mut reduced: Point, outcome: &mut Outcome) {
        let value = std::mem::replace(&mut reduced.value, Value::Number(0.0));
        let known = self.places.get(&input_key).copied();
        let (slot, place) = match known {
            Some(known) => known,
            None => {
                let slot = self.slot_for(&reduced);
                let Some(output) = self.outputs[slot].as_mut() else { return };
                let place = output.inputs.len();
                output.inputs.push(Input { key: input_key, value: Value::Number(0.0), start_ns: 0, time_ns: 0 });
                self.places.insert(input_key, (slot, place));
                (slot, place)
            }
        };
        let Some(output) = self.outputs.get_mut(slot).and_then(Option::as_mut) else { return };
        let input = &mut output.inputs[place];
        // A new input has nothing to compare with (its place holds a placeholder).
        let restarted = known.is_some()
            && ((reduced.start_ns != 0 && reduced.start_ns > input.start_ns)
                || value.magnitude() < input.value.magnitude());
        let previous = std::mem::replace(&mut input.value, value);
        input.start_ns = reduced.start_ns;
        input.time_ns = reduced.time_ns;
        if restarted && is_monotonic(output.metric.kind) {
            carry(&mut output.carried, previous, self.bounds, &output.metric.name, outcome);
        }
        if output.pending.is_none() {
            self.order.push(slot);
        }
        output.pending = Some(reduced);
    }

    /// The slot of the output series of `reduced`, made when it is new.
    fn slot_for(&mut self, reduced: &Point) -> usize {
        let key = reduced.fingerprint();
        if let Some(&slot) = self.slot_of.get(&key) {
            return slot;
        }
        let output = Output { key, metric: reduced.metric.clone(), inputs: Vec::new(), carried: None, pending: None };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.outputs[slot] = Some(output);
                slot
            }
            None => {
                self.outputs.push(Some(output));
                self.outputs.len() - 1
            }
        };
        self.slot_of.insert(key, slot);
        slot
    }

    /// Returns the totals of the outputs touched in this flush, then forgets stale inputs.
    pub fn finish(&mut self, now_ns: u64, outcome: &mut Outcome) -> Vec<Point> {
        let touched = std::mem::take(&mut self.order);
        let mut out = Vec::with_capacity(touched.len());
        for slot in touched {
            if let Some(output) = self.outputs.get_mut(slot).and_then(Option::as_mut) {
                out.extend(total(output, self.bounds, outcome));
            }
        }
        self.forget_stale(now_ns, outcome);
        out
    }

    /// Inputs and outputs remembered (for the pipeline's memory measurement).
    pub fn state_bytes(&self) -> usize {
        self.places.len() * (std::mem::size_of::<Input>() + 40)
            + self.slot_of.len() * (std::mem::size_of::<Output>() + 16)
    }

    fn forget_stale(&mut self, now_ns: u64, outcome: &mut Outcome) {
        let oldest = now_ns.saturating_sub(self.stale_ns);
        for slot in 0..self.outputs.len() {
            let Some(output) = self.outputs[slot].as_mut() else { continue };
            let mut place = 0;
            while place < output.inputs.len() {
                if output.inputs[place].time_ns >= oldest {
                    place += 1;
                    continue;
                }
                let gone = output.inputs.swap_remove(place);
                self.places.remove(&gone.key);
                if let Some(moved) = output.inputs.get(place) {
                    self.places.insert(moved.key, (slot, place));
                }
                if is_monotonic(output.metric.kind) {
                    carry(&mut output.carried, gone.value, self.bounds, &output.metric.name, outcome);
                }
            }
            // An output whose every input is gone goes too; should it come back, it starts afresh.
            if output.inputs.is_empty() {
                self.slot_of.remove(&output.key);
                self.outputs[slot] = None;
                self.free.push(slot);
            }
        }
    }
}

/// The output's point for this flush: its pending point with the total of its inputs and carried count.
fn total(output: &mut Output, bounds: BoundsPolicy, outcome: &mut Outcome) -> Option<Point> {
    let mut point = output.pending.take()?;
    let mut total: Option<Value> = output.carried.clone();
    let (mut start_ns, mut time_ns) = (0u64, 0u64);
    for input in &output.inputs {
        match &mut total {
            None => total = Some(input.value.clone()),
            Some(total) => {
                if let Err(e) = add_value(total, &input.value, bounds, &output.metric.name) {
                    outcome.refuse(e.to_string());
                }
            }
        }
        start_ns = earliest_start(start_ns, input.start_ns);
        time_ns = time_ns.max(input.time_ns);
    }
    point.value = total?;
    point.start_ns = start_ns;
    point.time_ns = time_ns;
    Some(point)
}

/// Adds what an input had counted to an output's carried total.
fn carry(carried: &mut Option<Value>, counted: Value, bounds: BoundsPolicy, metric: &str, outcome: &mut Outcome) {
    match carried {
        None => *carried = Some(counted),
        Some(carried) => {
            if let Err(e) = add_value(carried, &counted, bounds, metric) {
                outcome.refuse(e.to_string());
            }
        }
    }
}

fn is_monotonic(kind: MetricKind) -> bool {
    matches!(
        kind,
        MetricKind::Sum { monotonic: true, .. }
            | MetricKind::Histogram { .. }
            | MetricKind::ExponentialHistogram { .. }
    )
}
