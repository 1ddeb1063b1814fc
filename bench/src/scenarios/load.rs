//! Load: many pods at once (and their floor), and ADD/DEL on a network that
//! already holds many allocations.

use super::{cycle, first, progress, Ctx, It, Pod, IFACE_INTERRUPTED};
use crate::floor::{BridgeFloor, FLOOR_OCTET};
use crate::invoke::{self, bridge_plugin, Fill, Net, Side};
use crate::spawn::{self, interrupted};
use crate::stats::{Figure, Unit};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

impl<'a> Ctx<'a> {
    // ---- many pods at once -----------------------------------------------

    pub(super) fn parallel(&mut self) -> Result<(), String> {
        let sizes = self.opts.parallel.clone();
        let max = sizes.iter().copied().max().unwrap_or(1);
        self.ensure_pool(max)?;
        let nets = self.nets(|s| Net::single(&format!("cnb-par-{}", s.key), "1.0.0", bridge_plugin(s, 6, false)));
        let bf = BridgeFloor::new("cnbf6", FLOOR_OCTET + 6, false)?;
        for (k, &p) in sizes.iter().enumerate() {
            let t0 = Instant::now();
            let mut figs = vec![
                Figure::new("parallel", format!("parallel.{p}.add_wall"), format!("parallel ADD x{p}: wall"), Unit::Ns),
                Figure::new(
                    "parallel",
                    format!("parallel.{p}.add_pod"),
                    format!("parallel ADD x{p}: per pod"),
                    Unit::Ns,
                ),
                Figure::new("parallel", format!("parallel.{p}.del_wall"), format!("parallel DEL x{p}: wall"), Unit::Ns),
            ];
            let warm = if k == 0 { 1.min(self.opts.warmup) } else { 0 };
            // The floor's p pods at once: each an exec of the no-op and the kernel's requests.
            let mut floor = |cx: &mut Ctx<'a>, round: usize| {
                let conf = nets[0].conf(0, None);
                let spec = |cmd: &str, j: usize| {
                    let noop = cx.noop.as_ref()?;
                    let mut sp = cx.sides[0].spec("bridge", cmd, &format!("floor-par-{round}-{j}"), "", conf.clone());
                    sp.set_exe(noop);
                    Some(sp)
                };
                let specs: Vec<_> = (0..p).map(|j| (spec("ADD", j), spec("DEL", j))).collect();
                let nss: Vec<String> = (0..p).map(|j| cx.floor_netns(j)).collect();
                let exec = |sp: &Option<spawn::Spec>| -> Result<u64, String> {
                    match sp {
                        Some(sp) => spawn::run(sp).map(|o| o.ns),
                        None => Ok(0),
                    }
                };
                let pod = |j: usize| (round * 1000 + j) as u32;
                let adds = fan_out(p, |j| Ok((exec(&specs[j].0)? + bf.add(&nss[j], pod(j))?, ())));
                let dels = fan_out(p, |j| Ok((exec(&specs[j].1)? + bf.del(&nss[j], pod(j))?, ())));
                let mut it = It::new(3);
                for r in adds.runs.into_iter().flatten() {
                    it.put(1, r.0);
                }
                if adds.failed + dels.failed > 0 {
                    return Err(format!("{} of {p} floor pods failed", adds.failed.max(dels.failed)));
                }
                it.put(0, adds.wall);
                it.put(2, dels.wall);
                Ok(it)
            };
            self.drive_with(
                &mut figs,
                self.opts.rounds,
                warm,
                |cx, s, round| {
                    let side = &cx.sides[s];
                    let net = &nets[s];
                    let ids: Vec<String> = (0..p).map(|j| format!("{}-par{p}-r{round}-{j}", side.key)).collect();
                    let adds = fan_out(p, |j| net.add(side, &side.netns(j), &ids[j]).map(|(t, r)| (t[0], r)));
                    let mut it = It::new(3);
                    let mut results: Vec<Option<Value>> = vec![None; p];
                    for (j, r) in adds.runs.into_iter().enumerate() {
                        match r {
                            Ok((t, v)) => {
                                it.put(1, t);
                                results[j] = Some(v);
                            }
                            Err(e) => it.fail(1, e),
                        }
                    }
                    if adds.failed == 0 {
                        it.put(0, adds.wall);
                    } else {
                        it.fail(0, format!("{} of {p} pods failed", adds.failed));
                    }
                    let dels =
                        fan_out(p, |j| net.del(side, &side.netns(j), &ids[j], results[j].as_ref()).map(|t| (t[0], ())));
                    if dels.failed == 0 {
                        it.put(2, dels.wall);
                    } else {
                        let first = dels.runs.into_iter().find_map(|r| r.err()).unwrap_or_default();
                        it.fail(2, format!("{} of {p} pods failed: {first}", dels.failed));
                    }
                    if adds.failed == p {
                        return Err(it.fails.first().map(|f| f.1.clone()).unwrap_or_default());
                    }
                    Ok(it)
                },
                Some(&mut floor),
            )?;
            self.finish(figs, t0);
        }
        Ok(())
    }

    // ---- ADD on a network that already holds many allocations ---------------

    pub(super) fn allocs(&mut self) -> Result<(), String> {
        self.ensure_pool(2)?;
        let levels = self.opts.allocations.clone();
        let nets = self.nets(|s| Net::single(&format!("cnb-alloc-{}", s.key), "1.0.0", bridge_plugin(s, 5, false)));
        let mut filled = vec![0usize; self.sides.len()];
        let mut broken: Vec<Option<String>> = vec![None; self.sides.len()];
        let iters = (self.opts.iterations / 2).max(3);
        for &level in &levels {
            let t0 = Instant::now();
            for s in 0..self.sides.len() {
                if broken[s].is_some() || filled[s] >= level {
                    continue;
                }
                progress(&format!(
                    "  {}: pre-filling {} allocations ({:?})",
                    self.sides[s].label, level, self.sides[s].fill
                ));
                if let Err(e) = prefill(&self.sides[s], &nets[s], 5, filled[s], level) {
                    if interrupted() {
                        return Err(IFACE_INTERRUPTED.into());
                    }
                    broken[s] = Some(format!("pre-fill failed: {e}"));
                } else {
                    filled[s] = level;
                }
            }
            let mut figs = vec![
                Figure::new(
                    "allocs",
                    format!("allocs.{level}.add"),
                    format!("bridge ADD with {level} allocations"),
                    Unit::Ns,
                ),
                Figure::new(
                    "allocs",
                    format!("allocs.{level}.del"),
                    format!("bridge DEL with {level} allocations"),
                    Unit::Ns,
                ),
            ];
            for (s, b) in broken.iter().enumerate() {
                if let Some(why) = b {
                    for f in figs.iter_mut() {
                        f.side(s).skipped = Some(why.clone());
                    }
                }
            }
            let warm = self.opts.warmup.min(2);
            let broken_now = broken.clone();
            // The lowest address an ADD got at this level: below `level`, the
            // pre-filled allocations were not seen and the figure means nothing.
            let mut lowest: Vec<Option<u32>> = vec![None; self.sides.len()];
            self.drive(&mut figs, iters, warm, |cx, s, i| {
                if broken_now[s].is_some() {
                    return Ok(It::new(2));
                }
                let side = &cx.sides[s];
                let mut it = It::new(2);
                let pod = Pod { add: 0, check: None, del: Some(1), time: first };
                let r = cycle(&mut it, side, &nets[s], &side.netns(0), &format!("{}-al{level}-{i}", side.key), &pod)?;
                if let Some(off) = address_offset(&r, side) {
                    lowest[s] = Some(lowest[s].map_or(off, |l| l.min(off)));
                }
                Ok(it)
            })?;
            for (s, low) in lowest.iter().enumerate() {
                if let Some(low) = low {
                    if (*low as usize) < level {
                        let side = &self.sides[s];
                        let msg = format!(
                            "{}: at {level} allocations an ADD got host number {low} of the /16: the pre-filled allocations were not all seen (--fill-{} {:?})",
                            side.label, side.key, side.fill
                        );
                        figs[0].note = msg.clone();
                        self.notes.push(msg);
                    }
                }
            }
            self.finish(figs, t0);
        }
        Ok(())
    }
}

/// The host part of the first IPv4 address in an allocs-network result.
fn address_offset(r: &Value, side: &Side) -> Option<u32> {
    let a = r["ips"]
        .as_array()?
        .iter()
        .find_map(|i| i["address"].as_str()?.split('/').next()?.parse::<std::net::Ipv4Addr>().ok())?;
    let base = u32::from_be_bytes([10, invoke::subnet_octet(side, 5), 0, 0]);
    u32::from(a).checked_sub(base)
}

/// The outcome of one burst of concurrent invocations.
struct Burst<T> {
    runs: Vec<Result<(u64, T), String>>,
    failed: usize,
    /// First start to last end.
    wall: u64,
}

/// Run `f(0..n)` on n threads released together, as a runtime creating n
/// pods at once does. The threads wait on a start signal given once all of
/// them exist (a barrier would hang if one could not be started).
fn fan_out<T: Send, F>(n: usize, f: F) -> Burst<T>
where
    F: Fn(usize) -> Result<(u64, T), String> + Sync,
{
    let start = (Mutex::new(false), Condvar::new());
    let mut spans: Vec<(Instant, Instant)> = Vec::with_capacity(n);
    let mut runs = Vec::with_capacity(n);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|j| {
                let (f, start) = (&f, &start);
                std::thread::Builder::new().stack_size(256 * 1024).spawn_scoped(sc, move || {
                    let mut go = start.0.lock().unwrap_or_else(|e| e.into_inner());
                    while !*go {
                        go = start.1.wait(go).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(go);
                    let a = Instant::now();
                    let r = f(j);
                    (a, Instant::now(), r)
                })
            })
            .collect();
        *start.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        start.1.notify_all();
        for h in hs {
            match h {
                Ok(h) => match h.join() {
                    Ok((a, b, r)) => {
                        spans.push((a, b));
                        runs.push(r);
                    }
                    Err(_) => runs.push(Err("worker thread died".into())),
                },
                Err(e) => runs.push(Err(format!("cannot start a thread: {e}"))),
            }
        }
    });
    let failed = runs.iter().filter(|r| r.is_err()).count();
    let wall = match (spans.iter().map(|s| s.0).min(), spans.iter().map(|s| s.1).max()) {
        (Some(a), Some(b)) => b.duration_since(a).as_nanos() as u64,
        _ => 0,
    };
    Burst { runs, failed, wall }
}

/// Bring the set's allocation count on `net` from `from` to `to`, outside
/// any timed region.
fn prefill(side: &Side, net: &Net, n: u8, from: usize, to: usize) -> Result<(), String> {
    match side.fill {
        Fill::Files => {
            let ipam = net.plugins[0]["ipam"]["dataDir"].as_str().unwrap_or("").to_string();
            let dir = PathBuf::from(ipam).join(&net.name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let base = u32::from_be_bytes([10, invoke::subnet_octet(side, n), 0, 0]);
            let mut last = String::new();
            for k in from..to {
                // .1 is the gateway; fill upwards from .2.
                let ip = std::net::Ipv4Addr::from(base + 2 + k as u32).to_string();
                std::fs::write(dir.join(&ip), format!("{}-fill-{k}\r\neth0", side.key))
                    .map_err(|e| format!("cannot write {}: {e}", dir.join(&ip).display()))?;
                last = ip;
            }
            if !last.is_empty() {
                std::fs::write(dir.join("last_reserved_ip.0"), last)
                    .map_err(|e| format!("cannot write last_reserved_ip.0: {e}"))?;
            }
            Ok(())
        }
        Fill::Exec => {
            // host-local alone, as bridge would call it: the full bridge config on stdin.
            let conf = net.conf(0, None);
            let ns = side.netns(1);
            for k in from..to {
                if interrupted() {
                    return Err(IFACE_INTERRUPTED.into());
                }
                let id = format!("{}-fill-{k}", side.key);
                let o = side.exec("host-local", "ADD", &id, &ns, conf.clone())?;
                if !o.ok() {
                    return Err(invoke::failed("host-local", "ADD", &o));
                }
            }
            Ok(())
        }
    }
}
