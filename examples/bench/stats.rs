//! Histograms and the small arithmetic of the figures.

use std::time::Duration;

use hdrhistogram::Histogram;

pub type Hist = Histogram<u64>;

pub fn new_hist() -> Hist {
    // Nanoseconds from 1 ns to 1 hour, 3 significant digits.
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("1 ns ..= 1 h at 3 significant digits is a valid histogram")
}

/// The `q` quantile of `h` (in ns) in µs.
pub fn us(h: &Hist, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

pub fn max_us(h: &Hist) -> f64 {
    h.max() as f64 / 1e3
}

pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Round to one decimal for the JSON.
pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Median, min and max (0 for none).
pub fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
