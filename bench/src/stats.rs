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
    pub a: Series,
    pub b: Series,
    /// The floor measured in the same iterations (see `floor`): an exec of a
    /// no-op binary, or the kernel's requests issued in-process.
    pub floor: Series,
    /// B/A of the samples taken in the same iteration (A and B back to back).
    pub ratios: Vec<f64>,
    pub note: String,
    /// Shown in the latency plot.
    pub plot: bool,
}

impl Figure {
    pub fn new(scenario: &'static str, key: impl Into<String>, name: impl Into<String>, unit: Unit) -> Figure {
        Figure {
            scenario,
            key: key.into(),
            name: name.into(),
            unit,
            a: Series::default(),
            b: Series::default(),
            floor: Series::default(),
            ratios: Vec::new(),
            note: String::new(),
            plot: unit == Unit::Ns,
        }
    }

    pub fn side(&mut self, b: bool) -> &mut Series {
        if b {
            &mut self.b
        } else {
            &mut self.a
        }
    }

    /// Median of the paired ratios; without pairs (different counts, one
    /// sample each side), the ratio of the medians.
    pub fn ratio(&self) -> Option<f64> {
        if let Some(s) = summarize(&self.ratios) {
            return Some(s.median);
        }
        match (self.a.summary(), self.b.summary()) {
            (Some(a), Some(b)) if a.median > 0.0 => Some(b.median / a.median),
            _ => None,
        }
    }

    /// A's median over the floor's: how far above the floor A is.
    pub fn x_floor(&self) -> Option<f64> {
        match (self.a.summary(), self.floor.summary()) {
            (Some(a), Some(f)) if f.median > 0.0 => Some(a.median / f.median),
            _ => None,
        }
    }

    pub fn ratio_p99(&self) -> Option<f64> {
        match (self.a.summary(), self.b.summary()) {
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
        f.a.samples = vec![1, 2, 3];
        f.b.samples = vec![10, 20, 300];
        assert_eq!(f.ratio(), Some(10.0));
        f.ratios = vec![4.0, 5.0, 6.0];
        assert_eq!(f.ratio(), Some(5.0));
    }
}
