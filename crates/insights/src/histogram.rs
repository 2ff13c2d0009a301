//! A small log-bucketed histogram for processing times.
//!
//! Why not HDR (`hdrhistogram`): one histogram is kept per district-local
//! day and kind, for up to [`crate::MAX_DAYS_KEPT`] days, and an HDR
//! histogram with 3 significant figures over hours of milliseconds is tens
//! of KB each. Here a value is kept in a bucket whose width is at most
//! 1/[`SUB_BUCKETS`] of its value (6.25 %), stored sparsely: a day with a
//! few hundred orders holds a few dozen buckets. Counts and the maximum
//! are exact; percentiles are the upper bound of their bucket (never above
//! the maximum), so they err high by less than one bucket width.

use std::collections::BTreeMap;

use serde::Serialize;

/// Buckets per power of two (values below this are exact).
pub const SUB_BUCKETS: u64 = 16;
const SUB_BITS: u32 = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: BTreeMap<u16, u64>,
    count: u64,
    max: u64,
}

/// What a report shows of a histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

fn bucket_of(value: u64) -> u16 {
    if value < SUB_BUCKETS {
        return value as u16;
    }
    let exp = 63 - value.leading_zeros(); // >= SUB_BITS
    let sub = (value >> (exp - SUB_BITS)) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(exp - SUB_BITS) * SUB_BUCKETS + sub) as u16
}

/// The largest value bucket `b` holds.
fn upper_bound(b: u16) -> u64 {
    let b = u64::from(b);
    if b < SUB_BUCKETS {
        return b;
    }
    let exp = (b - SUB_BUCKETS) / SUB_BUCKETS + u64::from(SUB_BITS);
    let sub = (b - SUB_BUCKETS) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + sub) << (exp - u64::from(SUB_BITS));
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    low.saturating_add(width - 1)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        *self.buckets.entry(bucket_of(value)).or_default() += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest bucket bound at or below which `q` (0..=1) of the
    /// values lie; 0 for an empty histogram.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return upper_bound(*b).min(self.max);
            }
        }
        self.max
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count,
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lies_in_a_bucket_no_wider_than_a_sixteenth_of_it() {
        for v in (0..5000).chain([65_535, 1 << 40, u64::MAX / 3]) {
            let b = bucket_of(v);
            let hi = upper_bound(b);
            assert!(hi >= v, "{v} above its bucket's bound {hi}");
            assert!(
                (hi - v) as f64 <= (v as f64 / SUB_BUCKETS as f64).max(0.0),
                "{v}: {hi}"
            );
            if b > 0 {
                assert!(upper_bound(b - 1) < v, "{v} belongs in a lower bucket");
            }
        }
    }

    #[test]
    fn small_values_are_exact_and_percentiles_never_pass_the_maximum() {
        let mut h = Histogram::default();
        for v in 1..=10 {
            h.record(v);
        }
        let p = h.percentiles();
        assert_eq!((p.count, p.p50, p.p90, p.p99, p.max), (10, 5, 9, 10, 10));
        let mut big = Histogram::default();
        big.record(1000);
        assert_eq!(big.quantile(0.5), 1000, "clamped to the max");
        let mut merged = h.clone();
        merged.merge(&big);
        assert_eq!(merged.count(), 11);
        assert_eq!(merged.percentiles().max, 1000);
    }
}
