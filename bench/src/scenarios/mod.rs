//! The scenarios. Each builds its figures by driving both sets through the
//! same calls, interleaved, and records a failing set with its error instead
//! of stopping the run. This file holds the loop they share (`drive`); the
//! scenarios live in one file per job.

mod bridge;
mod custom;
mod exec;
mod load;
mod probes;
mod runtime;

use crate::cli::Opts;
use crate::floor::BridgeFloor;
use crate::invoke::{Net, Side};
use crate::lab::{Lab, PREFIX};
use crate::spawn::{self, interrupted};
use crate::stats::Figure;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

pub struct Ctx<'a> {
    pub lab: &'a mut Lab,
    pub opts: &'a Opts,
    pub sides: Vec<Side>,
    pub figures: Vec<Figure>,
    /// Lines for the report (answers, caveats, what was not measured).
    pub notes: Vec<String>,
    /// The no-op binary of the exec floor (--noop), if given.
    pub noop: Option<PathBuf>,
    /// Container namespaces of the kernel floor's pods.
    pub floor_pool: Vec<String>,
}

/// The floor's part of one iteration (see `Ctx::drive_with`).
type FloorFn<'f, 'a> = &'f mut dyn FnMut(&mut Ctx<'a>, usize) -> Result<It, String>;

/// What one iteration of one set produced: samples per figure, failures that
/// did not stop the iteration (a CHECK that failed, a pod of many).
pub struct It {
    samples: Vec<Vec<u64>>,
    fails: Vec<(usize, String)>,
}

impl It {
    pub(super) fn new(n: usize) -> It {
        It { samples: vec![Vec::new(); n], fails: Vec::new() }
    }
    pub(super) fn put(&mut self, f: usize, v: u64) {
        self.samples[f].push(v);
    }
    pub(super) fn fail(&mut self, f: usize, why: String) {
        self.fails.push((f, why));
    }
}

const IFACE_INTERRUPTED: &str = "interrupted";

const VERSION_CONF: &str = r#"{"cniVersion":"1.1.0"}"#;

/// Put the exec floor's time into figure `f` (nothing without --noop).
fn put_exec(it: &mut It, f: usize, r: Option<Result<u64, String>>) -> Result<(), String> {
    if let Some(r) = r {
        it.put(f, r?);
    }
    Ok(())
}

/// Where one pod's ADD, CHECK and DEL times go (figure indexes), and how a
/// chain's per-plugin times make one sample.
pub(super) struct Pod {
    pub add: usize,
    pub check: Option<usize>,
    /// None: the DEL is not a figure (a failure counts against `add`).
    pub del: Option<usize>,
    pub time: fn(&[u64]) -> u64,
}

/// The first plugin's time: the figure of a one-plugin network.
pub(super) fn first(t: &[u64]) -> u64 {
    t.first().copied().unwrap_or(0)
}

/// The whole chain's time.
pub(super) fn total(t: &[u64]) -> u64 {
    t.iter().sum()
}

/// One pod through `net`: ADD, CHECK (when asked), DEL, their times into
/// `it`. A failed ADD is undone and ends the iteration (Err); a failed CHECK
/// or DEL counts against its figure. Returns the ADD's result.
pub(super) fn cycle(it: &mut It, side: &Side, net: &Net, ns: &str, id: &str, pod: &Pod) -> Result<Value, String> {
    let result = match net.add(side, ns, id) {
        Ok((t, r)) => {
            it.put(pod.add, (pod.time)(&t));
            r
        }
        Err(e) => {
            let _ = net.del(side, ns, id, None);
            return Err(e);
        }
    };
    if let Some(c) = pod.check {
        match net.check(side, ns, id, &result) {
            Ok(t) => it.put(c, (pod.time)(&t)),
            Err(e) => it.fail(c, e),
        }
    }
    match (net.del(side, ns, id, Some(&result)), pod.del) {
        (Ok(t), Some(d)) => it.put(d, (pod.time)(&t)),
        (Ok(_), None) => {}
        (Err(e), d) => it.fail(d.unwrap_or(pod.add), e),
    }
    Ok(result)
}

fn progress(msg: &str) {
    eprintln!("cnibox-bench: {msg}");
}

impl<'a> Ctx<'a> {
    /// Make sure every set has `n` container namespaces.
    pub fn ensure_pool(&mut self, n: usize) -> Result<(), String> {
        let pid = std::process::id();
        let mut names = Vec::new();
        for s in &mut self.sides {
            while s.pool.len() < n {
                s.pool.push(format!("{PREFIX}{pid}-{}{}", s.key, s.pool.len()));
            }
            names.extend(s.pool.iter().cloned());
        }
        while self.floor_pool.len() < n {
            self.floor_pool.push(format!("{PREFIX}{pid}-f{}", self.floor_pool.len()));
        }
        names.extend(self.floor_pool.iter().cloned());
        self.lab.ensure_netns(&names)
    }

    /// One network per set, made by `f`.
    pub(super) fn nets(&self, f: impl Fn(&Side) -> Net) -> Vec<Net> {
        self.sides.iter().map(f).collect()
    }

    /// One floor pod on `bf`: the no-op exec'd as A's bridge ADD on `net`
    /// (nothing without --noop) plus the kernel's ADD requests, then the same
    /// for DEL; (ADD, DEL) in nanoseconds.
    pub(super) fn floor_pod(
        &self,
        bf: &BridgeFloor,
        net: &Net,
        ns: &str,
        id: &str,
        pod: u32,
    ) -> Result<(u64, u64), String> {
        let conf = net.conf(0, None);
        let add = self.exec_floor("bridge", "ADD", id, ns, conf.clone()).unwrap_or(Ok(0))? + bf.add(ns, pod)?;
        let del = self.exec_floor("bridge", "DEL", id, ns, conf).unwrap_or(Ok(0))? + bf.del(ns, pod)?;
        Ok((add, del))
    }

    pub fn floor_netns(&self, i: usize) -> String {
        Lab::netns_path(&self.floor_pool[i])
    }

    /// The exec floor: the no-op binary run exactly as set A's `plugin` would
    /// be for `cmd` (same environment, same stdin); None without --noop.
    pub fn exec_floor(
        &self,
        plugin: &str,
        cmd: &str,
        id: &str,
        netns: &str,
        stdin: String,
    ) -> Option<Result<u64, String>> {
        let noop = self.noop.as_ref()?;
        let mut spec = self.sides[0].spec(plugin, cmd, id, netns, stdin);
        spec.set_exe(noop);
        Some(spawn::run(&spec).and_then(|o| {
            if o.ok() {
                Ok(o.ns)
            } else {
                Err(format!("the no-op binary failed: {}", o.reason()))
            }
        }))
    }

    /// Run `body` for warm-up + measured iterations, the sets interleaved and
    /// their order flipped every iteration; fill `figs`.
    pub(super) fn drive<F>(&mut self, figs: &mut [Figure], iters: usize, warmup: usize, body: F) -> Result<(), String>
    where
        F: FnMut(&mut Ctx<'a>, usize, usize) -> Result<It, String>,
    {
        self.drive_with(figs, iters, warmup, body, None)
    }

    /// `drive`, with the floor's part of each iteration run in the same loop
    /// (first on even iterations, last on odd ones); its samples go to each
    /// figure's `floor`.
    pub(super) fn drive_with<F>(
        &mut self,
        figs: &mut [Figure],
        iters: usize,
        warmup: usize,
        mut body: F,
        mut floor: Option<FloorFn<'_, 'a>>,
    ) -> Result<(), String>
    where
        F: FnMut(&mut Ctx<'a>, usize, usize) -> Result<It, String>,
    {
        let nsides = self.sides.len();
        let mut floor_dead = false;
        let mut run_floor = |cx: &mut Ctx<'a>, it: usize, measured: bool, figs: &mut [Figure]| {
            let Some(fl) = floor.as_mut() else { return };
            if floor_dead {
                return;
            }
            match fl(cx, it) {
                Ok(out) if measured => {
                    for (f, v) in out.samples.into_iter().enumerate() {
                        figs[f].floor.samples.extend(v);
                    }
                    for (f, why) in out.fails {
                        figs[f].floor.fail(why);
                    }
                }
                Ok(_) => {}
                Err(why) if !measured => {
                    floor_dead = true;
                    progress(&format!("  floor: {why}"));
                    for f in figs.iter_mut() {
                        f.floor.skipped.get_or_insert_with(|| format!("failed in warm-up: {why}"));
                    }
                }
                Err(why) => {
                    for f in figs.iter_mut() {
                        f.floor.fail(why.clone());
                    }
                }
            }
        };
        let mut dead = vec![false; nsides];
        let mut streak = vec![0usize; nsides];
        for it in 0..warmup + iters {
            if interrupted() {
                return Err(IFACE_INTERRUPTED.into());
            }
            let measured = it >= warmup;
            let order: Vec<usize> = if it % 2 == 0 { (0..nsides).collect() } else { (0..nsides).rev().collect() };
            let mut one: Vec<Vec<Option<u64>>> = vec![vec![None; nsides]; figs.len()];
            if it % 2 == 0 {
                run_floor(self, it, measured, figs);
            }
            for s in order {
                if dead[s] {
                    continue;
                }
                let b = s;
                let r = body(self, s, it);
                if interrupted() {
                    return Err(IFACE_INTERRUPTED.into());
                }
                match r {
                    Ok(out) => {
                        streak[s] = 0;
                        if !measured {
                            // A warm-up failure of a figure means this set cannot do it.
                            for (f, why) in out.fails {
                                if figs[f].side(b).skipped.is_none() {
                                    figs[f].side(b).skipped = Some(format!("failed in warm-up: {why}"));
                                }
                            }
                            continue;
                        }
                        for (f, v) in out.samples.into_iter().enumerate() {
                            if v.len() == 1 {
                                one[f][b] = Some(v[0]);
                            }
                            if figs[f].side(b).skipped.is_none() {
                                figs[f].side(b).samples.extend(v);
                            }
                        }
                        for (f, why) in out.fails {
                            figs[f].side(b).fail(why);
                        }
                    }
                    Err(why) => {
                        if !measured {
                            dead[s] = true;
                            for f in figs.iter_mut() {
                                f.side(b).skipped.get_or_insert_with(|| format!("failed in warm-up: {why}"));
                            }
                            progress(&format!("  {}: {why}", self.sides[s].label));
                            continue;
                        }
                        for f in figs.iter_mut() {
                            f.side(b).fail(why.clone());
                        }
                        streak[s] += 1;
                        if streak[s] >= 3 {
                            dead[s] = true;
                            progress(&format!("  {}: giving up after 3 failures in a row: {why}", self.sides[s].label));
                        }
                    }
                }
            }
            if it % 2 == 1 {
                run_floor(self, it, measured, figs);
            }
            for (f, row) in one.iter().enumerate() {
                let Some(&Some(a)) = row.first() else { continue };
                for (k, v) in row.iter().enumerate().skip(1) {
                    if let Some(v) = v {
                        if a > 0 && figs[f].a().skipped.is_none() && figs[f].set(k).skipped.is_none() {
                            figs[f].push_ratio(k, *v as f64 / a as f64);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, figs: Vec<Figure>, t0: Instant) {
        let names: Vec<String> = figs.iter().map(|f| f.name.clone()).collect();
        progress(&format!("  done in {:.1} s: {}", t0.elapsed().as_secs_f64(), names.join(", ")));
        self.figures.extend(figs);
    }

    pub fn run_all(&mut self) -> Result<(), String> {
        type Scenario<'c> = fn(&mut Ctx<'c>) -> Result<(), String>;
        let all: [(&str, Scenario<'a>); 12] = [
            ("version", Ctx::version),
            ("loopback", Ctx::loopback),
            ("status", Ctx::status),
            ("bridge", Ctx::bridge),
            ("masq", Ctx::masq),
            ("portmap", Ctx::portmap),
            ("runtime", Ctx::runtime),
            ("parallel", Ctx::parallel),
            ("allocs", Ctx::allocs),
            ("rss", Ctx::rss),
            ("size", Ctx::size),
            ("custom", Ctx::custom),
        ];
        for (name, f) in all {
            if !self.opts.wants(name) {
                continue;
            }
            progress(&format!("scenario {name}"));
            f(self)?;
        }
        Ok(())
    }

    pub(super) fn iters(&self) -> (usize, usize) {
        (self.opts.iterations, self.opts.warmup)
    }
}
