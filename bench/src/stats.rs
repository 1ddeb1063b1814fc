//! Figures (one measured quantity, both sets), their summary statistics and
//! the paired B/A ratios.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds, shown as ms.
    Ns,
    Kib,
    Bytes,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Kib => "KiB",
            Unit::Bytes => "bytes",
        }
    }

    pub fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ns => fmt_ms(v),
            Unit::Kib => {
                if v >= 10240.0 {
                    format!("{:.1} MiB", v / 1024.0)
                } else {
                    format!("{v:.0} KiB")
                }
            }
            Unit::Bytes => {
                if v >= 1048576.0 {
                    format!("{:.2} MiB", v / 1048576.0)
                } else {
                    format!("{:.0} KiB", v / 1024.0)
                }
            }
        }
    }
}

pub fn fmt_ms(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// The masq scenario's figure of the same ADD without ipMasq (see
/// `Ctx::masq_like`), which the report pairs with the ipMasq one.
pub const PLAIN_TWIN: &str = "the same ADD without ipMasq";

/// One set's side of a figure.
#[derive(Default, Clone)]
pub struct Series {
    pub samples: Vec<u64>,
    /// Invocations that failed (not in `samples`).
    pub failures: usize,
    /// The first failure's reason.
    pub error: Option<String>,
    /// Set when the set could not be measured at all (plugin missing, failed in warm-up, ...).
    pub skipped: Option<String>,
}

#[derive(Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
}

impl Series {
    pub fn fail(&mut self, why: String) {
        self.failures += 1;
        if self.error.is_none() {
            self.error = Some(why);
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        summarize(&self.samples.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }

    /// A short status when the series has no usable numbers, or failures.
    pub fn problem(&self) -> Option<String> {
        if let Some(s) = &self.skipped {
            return Some(s.clone());
        }
        if self.failures > 0 {
            return Some(format!("{} failed: {}", self.failures, self.error.clone().unwrap_or_default()));
        }
        None
    }
}

/// Median (mean of the two middle values for even n); p90, p99 by nearest rank.
pub fn summarize(v: &[f64]) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    Some(Summary { n, median, p90: rank(&s, 90.0), p99: rank(&s, 99.0), max: s[n - 1], min: s[0] })
}

fn rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let k = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[k.clamp(1, n) - 1]
}

pub struct Figure {
    pub scenario: &'static str,
    /// What the report and the targets find it by (`bridge.add`, `parallel.128.add_wall`).
    pub key: String,
    /// What a reader sees; free to change.
    pub name: String,
    pub unit: Unit,
    /// One series per plugin set: A first, then each --vs in order.
    pub sets: Vec<Series>,
    /// The floor measured in the same iterations (see `floor`): an exec of a
    /// no-op binary, or the kernel's requests issued in-process.
    pub floor: Series,
    /// Per set k: set k / A of the samples taken in the same iteration (back
    /// to back); index 0 stays empty.
    pub ratios: Vec<Vec<f64>>,
    pub note: String,
    /// Shown in the latency plot.
    pub plot: bool,
}

/// A set that was not part of the run.
static NONE: Series = Series { samples: Vec::new(), failures: 0, error: None, skipped: None };

impl Figure {
    pub fn new(scenario: &'static str, key: impl Into<String>, name: impl Into<String>, unit: Unit) -> Figure {
        Figure {
            scenario,
            key: key.into(),
            name: name.into(),
            unit,
            sets: Vec::new(),
            floor: Series::default(),
            ratios: Vec::new(),
            note: String::new(),
            plot: unit == Unit::Ns,
        }
    }

    /// Set `k`'s series, made on first use.
    pub fn side(&mut self, k: usize) -> &mut Series {
        if self.sets.len() <= k {
            self.sets.resize_with(k + 1, Series::default);
        }
        &mut self.sets[k]
    }

    pub fn set(&self, k: usize) -> &Series {
        self.sets.get(k).unwrap_or(&NONE)
    }

    pub fn a(&self) -> &Series {
        self.set(0)
    }

    /// The first reference (the first --vs).
    pub fn b(&self) -> &Series {
        self.set(1)
    }

    pub fn push_ratio(&mut self, k: usize, r: f64) {
        if self.ratios.len() <= k {
            self.ratios.resize_with(k + 1, Vec::new);
        }
        self.ratios[k].push(r);
    }

    pub fn pair_ratios(&self, k: usize) -> &[f64] {
        self.ratios.get(k).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Set k over A: the median of the paired ratios; without pairs
    /// (different counts, one sample each side), the ratio of the medians.
    pub fn ratio(&self, k: usize) -> Option<f64> {
        if let Some(s) = summarize(self.pair_ratios(k)) {
            return Some(s.median);
        }
        match (self.a().summary(), self.set(k).summary()) {
            (Some(a), Some(b)) if a.median > 0.0 => Some(b.median / a.median),
            _ => None,
        }
    }

    /// A's median over the floor's: how far above the floor A is.
    pub fn x_floor(&self) -> Option<f64> {
        match (self.a().summary(), self.floor.summary()) {
            (Some(a), Some(f)) if f.median > 0.0 => Some(a.median / f.median),
            _ => None,
        }
    }

    pub fn ratio_p99(&self, k: usize) -> Option<f64> {
        match (self.a().summary(), self.set(k).summary()) {
            (Some(a), Some(b)) if a.p99 > 0.0 => Some(b.p99 / a.p99),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(s.median, 50.5);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p90, s.p99, s.max), (2.0, 3.0, 3.0, 3.0));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn ratio_prefers_pairs() {
        let mut f = Figure::new("x", "x", "y", Unit::Ns);
        f.side(0).samples = vec![1, 2, 3];
        f.side(1).samples = vec![10, 20, 300];
        assert_eq!(f.ratio(1), Some(10.0));
        for r in [4.0, 5.0, 6.0] {
            f.push_ratio(1, r);
        }
        assert_eq!(f.ratio(1), Some(5.0));
        assert_eq!(f.ratio(2), None);
    }
}
