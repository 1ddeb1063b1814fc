//! The scenarios. Each builds its figures by driving both sets through the
//! same calls, interleaved, and records a failing set with its error instead
//! of stopping the run.

use crate::cli::Opts;
use crate::floor::BridgeFloor;
use crate::invoke::{self, bridge_plugin, portmap_plugin, Fill, Net, Side};
use crate::lab::{Lab, PREFIX};
use crate::spawn::{self, interrupted, Spec};
use crate::stats::{Figure, Unit, PLAIN_TWIN};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
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
    fn new(n: usize) -> It {
        It { samples: vec![Vec::new(); n], fails: Vec::new() }
    }
    fn put(&mut self, f: usize, v: u64) {
        self.samples[f].push(v);
    }
    fn fail(&mut self, f: usize, why: String) {
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
    fn drive<F>(&mut self, figs: &mut [Figure], iters: usize, warmup: usize, body: F) -> Result<(), String>
    where
        F: FnMut(&mut Ctx<'a>, usize, usize) -> Result<It, String>,
    {
        self.drive_with(figs, iters, warmup, body, None)
    }

    /// `drive`, with the floor's part of each iteration run in the same loop
    /// (first on even iterations, last on odd ones); its samples go to each
    /// figure's `floor`.
    fn drive_with<F>(
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
            let mut one: Vec<[Option<u64>; 2]> = vec![[None, None]; figs.len()];
            if it % 2 == 0 {
                run_floor(self, it, measured, figs);
            }
            for s in order {
                if dead[s] {
                    continue;
                }
                let b = self.sides[s].b;
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
                                one[f][b as usize] = Some(v[0]);
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
            for (f, pair) in one.iter().enumerate() {
                if let [Some(a), Some(b)] = pair {
                    if *a > 0 && figs[f].a.skipped.is_none() && figs[f].b.skipped.is_none() {
                        figs[f].ratios.push(*b as f64 / *a as f64);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, figs: Vec<Figure>, t0: Instant) {
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

    fn iters(&self) -> (usize, usize) {
        (self.opts.iterations, self.opts.warmup)
    }

    // ---- VERSION -------------------------------------------------------

    fn version(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        let mut figs = vec![Figure::new("version", "version", "VERSION (bridge, cold exec)", Unit::Ns)];
        let (n, w) = self.iters();
        let mut floor = |cx: &mut Ctx<'a>, _: usize| {
            let mut it = It::new(1);
            put_exec(&mut it, 0, cx.exec_floor("bridge", "VERSION", "", "", VERSION_CONF.into()))?;
            Ok(it)
        };
        let fl: Option<FloorFn> = if self.noop.is_some() { Some(&mut floor) } else { None };
        self.drive_with(
            &mut figs,
            n,
            w,
            |cx, s, _| {
                let side = &cx.sides[s];
                let o = side.exec("bridge", "VERSION", "", "", VERSION_CONF.into())?;
                if !o.ok() {
                    return Err(invoke::failed("bridge", "VERSION", &o));
                }
                let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or(Value::Null);
                if !v["supportedVersions"].is_array() {
                    return Err(format!("bridge VERSION printed no supportedVersions: {}", o.stdout.trim()));
                }
                let mut it = It::new(1);
                it.put(0, o.ns);
                Ok(it)
            },
            fl,
        )?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- loopback ------------------------------------------------------

    fn loopback(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let mut figs = vec![
            Figure::new("loopback", "loopback.add", "loopback ADD (0.3.1, as containerd)", Unit::Ns),
            Figure::new("loopback", "loopback.del", "loopback DEL (0.3.1)", Unit::Ns),
        ];
        let (n, w) = self.iters();
        let net = Net::single("cni-loopback", "0.3.1", json!({"type": "loopback"}));
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let (ns, id) = (cx.sides[0].netns(0), format!("floor-lo-{i}"));
            let mut it = It::new(2);
            put_exec(&mut it, 0, cx.exec_floor("loopback", "ADD", &id, &ns, net.conf(0, None)))?;
            put_exec(&mut it, 1, cx.exec_floor("loopback", "DEL", &id, &ns, net.conf(0, None)))?;
            Ok(it)
        };
        let fl: Option<FloorFn> = if self.noop.is_some() { Some(&mut floor) } else { None };
        self.drive_with(
            &mut figs,
            n,
            w,
            |cx, s, i| {
                let side = &cx.sides[s];
                let id = format!("{}-lo-{i}", side.key);
                let ns = side.netns(0);
                let mut it = It::new(2);
                match net.add(side, &ns, &id) {
                    Ok((t, _)) => it.put(0, t[0]),
                    Err(e) => {
                        let _ = net.del(side, &ns, &id, None);
                        return Err(e);
                    }
                }
                match net.del(side, &ns, &id, None) {
                    Ok(t) => it.put(1, t[0]),
                    Err(e) => it.fail(1, e),
                }
                Ok(it)
            },
            fl,
        )?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- STATUS --------------------------------------------------------

    fn status(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        let mut figs = vec![Figure::new("status", "status", "STATUS (1.1.0, bridge + host-local)", Unit::Ns)];
        let (n, w) = self.iters();
        let mut answers: Vec<Option<String>> = vec![None; self.sides.len()];
        let mut floor = |cx: &mut Ctx<'a>, _: usize| {
            let net = Net::single("cnb-status-a", "1.1.0", bridge_plugin(&cx.sides[0], 0, false));
            let mut it = It::new(1);
            put_exec(&mut it, 0, cx.exec_floor("bridge", "STATUS", "", "", net.conf(0, None)))?;
            Ok(it)
        };
        let fl: Option<FloorFn> = if self.noop.is_some() { Some(&mut floor) } else { None };
        self.drive_with(
            &mut figs,
            n,
            w,
            |cx, s, _| {
                let side = &cx.sides[s];
                let net = Net::single(&format!("cnb-status-{}", side.key), "1.1.0", bridge_plugin(side, 0, false));
                let o = side.exec("bridge", "STATUS", "", "", net.conf(0, None))?;
                if answers[s].is_none() {
                    answers[s] = Some(if o.ok() {
                        "succeeds (ready)".into()
                    } else {
                        format!("answers with an error: {}", o.reason())
                    });
                }
                // An error is an answer too (a plugin set without STATUS): time it all the same.
                if o.timed_out {
                    return Err(invoke::failed("bridge", "STATUS", &o));
                }
                let mut it = It::new(1);
                it.put(0, o.ns);
                Ok(it)
            },
            fl,
        )?;
        for (s, a) in answers.iter().enumerate() {
            if let Some(a) = a {
                let label = &self.sides[s].label;
                let sep = if figs[0].note.is_empty() { "" } else { "; " };
                figs[0].note = format!("{}{sep}{label} {a}", figs[0].note);
            }
        }
        self.finish(figs, t0);
        Ok(())
    }

    // ---- bridge + host-local ---------------------------------------------

    fn bridge_like(
        &mut self,
        scen: &'static str,
        title: &str,
        n: u8,
        masq: bool,
        with_check: bool,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let mut figs = vec![
            Figure::new(scen, format!("{scen}.add"), format!("{title} ADD"), Unit::Ns),
            Figure::new(scen, format!("{scen}.check"), format!("{title} CHECK"), Unit::Ns),
            Figure::new(scen, format!("{scen}.del"), format!("{title} DEL"), Unit::Ns),
        ];
        let (iters, w) = self.iters();
        let nets: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-{scen}-{}", s.key), "1.0.0", bridge_plugin(s, n, masq)))
            .collect();
        // The floor's pod: the exec of the no-op as A's bridge ADD/DEL, plus the kernel's requests.
        let bf = BridgeFloor::new(&format!("cnbf{n}"), 200 + n, masq)?;
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let (ns, id) = (cx.floor_netns(0), format!("floor-{scen}-{i}"));
            let conf = nets[0].conf(0, None);
            let mut it = It::new(3);
            let ex = cx.exec_floor("bridge", "ADD", &id, &ns, conf.clone()).unwrap_or(Ok(0))?;
            it.put(0, ex + bf.add(&ns, i as u32)?);
            let ex = cx.exec_floor("bridge", "DEL", &id, &ns, conf).unwrap_or(Ok(0))?;
            it.put(2, ex + bf.del(&ns, i as u32)?);
            Ok(it)
        };
        self.drive_with(
            &mut figs,
            iters,
            w,
            |cx, s, i| {
                let side = &cx.sides[s];
                let net = &nets[s];
                let id = format!("{}-{scen}-{i}", side.key);
                let ns = side.netns(0);
                let mut it = It::new(3);
                let result = match net.add(side, &ns, &id) {
                    Ok((t, r)) => {
                        it.put(0, t[0]);
                        r
                    }
                    Err(e) => {
                        let _ = net.del(side, &ns, &id, None);
                        return Err(e);
                    }
                };
                if with_check {
                    match net.check(side, &ns, &id, &result) {
                        Ok(t) => it.put(1, t[0]),
                        Err(e) => it.fail(1, e),
                    }
                }
                match net.del(side, &ns, &id, Some(&result)) {
                    Ok(t) => it.put(2, t[0]),
                    Err(e) => it.fail(2, e),
                }
                Ok(it)
            },
            Some(&mut floor),
        )?;
        if !with_check {
            figs.remove(1);
        }
        self.finish(figs, t0);
        Ok(())
    }

    fn bridge(&mut self) -> Result<(), String> {
        self.bridge_like("bridge", "bridge+host-local", 1, false, true)
    }

    fn masq(&mut self) -> Result<(), String> {
        self.masq_like("masq", "bridge+host-local ipMasq", false)?;
        self.masq_like("masq_beside", "bridge+host-local ipMasq, another pod attached", true)
    }

    /// ipMasq ADD and DEL of one pod, and in the same iteration (order
    /// alternating) the same ADD without ipMasq on a twin network, so that
    /// what ipMasq adds is a difference of neighbours rather than of two
    /// runs minutes apart on a noisy machine. With `beside`, another pod
    /// stays attached to the ipMasq network throughout, as on any node that
    /// runs pods: its masquerade rule keeps conntrack on in the node
    /// namespace. Without one, the first conntrack user switches it on (a walk
    /// of the whole conntrack table per family) and the last one's DEL off,
    /// unless something else holds it (cnibox's socket keeper does while it
    /// lives; the reference has nothing of the kind).
    fn masq_like(&mut self, key: &str, title: &str, beside: bool) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(if beside { 2 } else { 1 })?;
        let mut figs = vec![
            Figure::new("masq", format!("{key}.add"), format!("{title} ADD"), Unit::Ns),
            Figure::new("masq", format!("{key}.del"), format!("{title} DEL"), Unit::Ns),
            Figure::new("masq", format!("{key}.plain_add"), format!("{title}: {PLAIN_TWIN}"), Unit::Ns),
        ];
        let (iters, w) = self.iters();
        let masq: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-masq-{}", s.key), "1.0.0", bridge_plugin(s, 2, true)))
            .collect();
        let plain: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-masq0-{}", s.key), "1.0.0", bridge_plugin(s, 8, false)))
            .collect();
        let mut standing = Vec::new();
        if beside {
            for (side, net) in self.sides.iter().zip(&masq) {
                let id = format!("{}-masq-standing", side.key);
                let (_, r) = net.add(side, &side.netns(1), &id).map_err(|e| format!("{title}: the pod beside: {e}"))?;
                standing.push((id, r));
            }
        }
        // The floor's pods: with ipMasq (figures 0 and 1) and without (2), exec of the no-op included.
        let (bf_masq, bf_plain) = (BridgeFloor::new("cnbf2", 202, true)?, BridgeFloor::new("cnbf8", 208, false)?);
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let ns = cx.floor_netns(0);
            let mut it = It::new(3);
            for (bf, net, add, del) in [(&bf_masq, &masq[0], 0, Some(1)), (&bf_plain, &plain[0], 2, None)] {
                let (id, conf) = (format!("floor-masq-{i}-{add}"), net.conf(0, None));
                let ex = cx.exec_floor("bridge", "ADD", &id, &ns, conf.clone()).unwrap_or(Ok(0))?;
                it.put(add, ex + bf.add(&ns, i as u32)?);
                let ex = cx.exec_floor("bridge", "DEL", &id, &ns, conf).unwrap_or(Ok(0))?;
                let t = ex + bf.del(&ns, i as u32)?;
                if let Some(d) = del {
                    it.put(d, t);
                }
            }
            Ok(it)
        };
        let res = self.drive_with(
            &mut figs,
            iters,
            w,
            |cx, s, i| {
                let side = &cx.sides[s];
                let ns = side.netns(0);
                let mut it = It::new(3);
                let order: [(&Net, usize); 2] =
                    if i % 2 == 0 { [(&plain[s], 2), (&masq[s], 0)] } else { [(&masq[s], 0), (&plain[s], 2)] };
                for (net, fig) in order {
                    let id = format!("{}-masq-{i}-{fig}", side.key);
                    let result = match net.add(side, &ns, &id) {
                        Ok((t, r)) => {
                            it.put(fig, t[0]);
                            r
                        }
                        Err(e) => {
                            let _ = net.del(side, &ns, &id, None);
                            return Err(e);
                        }
                    };
                    match net.del(side, &ns, &id, Some(&result)) {
                        Ok(t) if fig == 0 => it.put(1, t[0]),
                        Ok(_) => {}
                        Err(e) => it.fail(if fig == 0 { 1 } else { 2 }, e),
                    }
                }
                Ok(it)
            },
            Some(&mut floor),
        );
        for ((side, net), (id, r)) in self.sides.iter().zip(&masq).zip(&standing) {
            let _ = net.del(side, &side.netns(1), id, Some(r));
        }
        res?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- portmap chained after bridge --------------------------------------

    fn portmap(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let mut figs = vec![
            Figure::new("portmap", "portmap.add", "portmap ADD (2 mappings, after bridge)", Unit::Ns),
            Figure::new("portmap", "portmap.del", "portmap DEL", Unit::Ns),
            Figure::new("portmap", "portmap.chain_add", "chain ADD bridge+portmap (exec'd by the tool)", Unit::Ns),
            Figure::new("portmap", "portmap.chain_del", "chain DEL bridge+portmap (exec'd by the tool)", Unit::Ns),
        ];
        let (iters, w) = self.iters();
        let nets: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net {
                name: format!("cnb-portmap-{}", s.key),
                version: "1.0.0".into(),
                plugins: vec![bridge_plugin(s, 3, false), portmap_plugin(s, true)],
            })
            .collect();
        self.drive(&mut figs, iters, w, |cx, s, i| {
            let side = &cx.sides[s];
            let net = &nets[s];
            let id = format!("{}-pm-{i}", side.key);
            let ns = side.netns(0);
            let mut it = It::new(4);
            let result = match net.add(side, &ns, &id) {
                Ok((t, r)) => {
                    it.put(0, t[1]);
                    it.put(2, t[0] + t[1]);
                    r
                }
                Err(e) => {
                    let _ = net.del(side, &ns, &id, None);
                    return Err(e);
                }
            };
            match net.del(side, &ns, &id, Some(&result)) {
                Ok(t) => {
                    it.put(1, t[1]);
                    it.put(3, t[0] + t[1]);
                }
                Err(e) => {
                    it.fail(1, e.clone());
                    it.fail(3, e);
                }
            }
            Ok(it)
        })?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- a runtime running a two-plugin conflist ---------------------------

    fn runtime(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(2)?;
        let mut figs = vec![
            Figure::new("runtime", "runtime.add", "runtime add: bridge+portmap conflist", Unit::Ns),
            Figure::new("runtime", "runtime.del", "runtime del: bridge+portmap conflist", Unit::Ns),
        ];
        let mut nets = Vec::new();
        for s in &self.sides {
            let net = Net {
                name: format!("cnb-rt-{}", s.key),
                version: "1.0.0".into(),
                plugins: vec![bridge_plugin(s, 4, false), portmap_plugin(s, false)],
            };
            let dir = s.work.join("net.d");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::create_dir_all(s.work.join("cache"));
            std::fs::write(dir.join(format!("10-{}.conflist", net.name)), net.conflist().to_string())
                .map_err(|e| format!("cannot write the conflist: {e}"))?;
            nets.push(net);
        }
        for s in &self.sides {
            let who = match &s.runtime {
                Some((p, _)) => p.display().to_string(),
                None => "none found".into(),
            };
            let sep = if figs[0].note.is_empty() { "" } else { "; " };
            figs[0].note = format!("{}{sep}runtime for {}: {who}", figs[0].note, s.label);
            if s.runtime.is_none() {
                let why = if s.b {
                    "no cnitool-compatible runtime (cnitool not on PATH; pass --cnitool PATH)".to_string()
                } else {
                    "no runtime (pass --runtime-a PATH)".to_string()
                };
                for f in figs.iter_mut() {
                    f.side(s.b).skipped = Some(why.clone());
                }
                self.notes.push(format!("runtime scenario: {}: {why}.", s.label));
            }
        }
        let (iters, w) = self.iters();
        let run = |side: &Side, net: &Net, verb: &str, ns: &str| -> Result<u64, String> {
            let Some((exe, argv0)) = &side.runtime else { return Err("no runtime".into()) };
            let mut sp = Spec::new(exe, argv0);
            sp.arg(verb).arg(&net.name).arg(ns);
            sp.env("PATH", invoke::PATH)
                .env("CNI_PATH", &side.dir)
                .env("NETCONFPATH", side.work.join("net.d"))
                .env("CNI_CACHE_DIR", side.work.join("cache"))
                .env("CNI_IFNAME", "eth0")
                .env("CAP_ARGS", json!({"portMappings": invoke::port_mappings(side)}).to_string());
            sp.timeout = side.timeout;
            let o = spawn::run(&sp)?;
            if !o.ok() {
                return Err(format!("{} {verb}: {}", exe.display(), o.reason()));
            }
            Ok(o.ns)
        };
        self.drive(&mut figs, iters, w, |cx, s, _| {
            let side = &cx.sides[s];
            if side.runtime.is_none() {
                return Ok(It::new(2));
            }
            let ns = side.netns(1);
            let mut it = It::new(2);
            match run(side, &nets[s], "add", &ns) {
                Ok(t) => it.put(0, t),
                Err(e) => {
                    let _ = run(side, &nets[s], "del", &ns);
                    return Err(e);
                }
            }
            match run(side, &nets[s], "del", &ns) {
                Ok(t) => it.put(1, t),
                Err(e) => it.fail(1, e),
            }
            Ok(it)
        })?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- many pods at once -----------------------------------------------

    fn parallel(&mut self) -> Result<(), String> {
        let sizes = self.opts.parallel.clone();
        let max = sizes.iter().copied().max().unwrap_or(1);
        self.ensure_pool(max)?;
        let nets: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-par-{}", s.key), "1.0.0", bridge_plugin(s, 6, false)))
            .collect();
        let bf = BridgeFloor::new("cnbf6", 206, false)?;
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

    fn allocs(&mut self) -> Result<(), String> {
        self.ensure_pool(2)?;
        let levels = self.opts.allocations.clone();
        let nets: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-alloc-{}", s.key), "1.0.0", bridge_plugin(s, 5, false)))
            .collect();
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
                    let bb = self.sides[s].b;
                    for f in figs.iter_mut() {
                        f.side(bb).skipped = Some(why.clone());
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
                let net = &nets[s];
                let id = format!("{}-al{level}-{i}", side.key);
                let ns = side.netns(0);
                let mut it = It::new(2);
                let r = match net.add(side, &ns, &id) {
                    Ok((t, r)) => {
                        it.put(0, t[0]);
                        if let Some(off) = address_offset(&r, side) {
                            lowest[s] = Some(lowest[s].map_or(off, |l| l.min(off)));
                        }
                        r
                    }
                    Err(e) => {
                        let _ = net.del(side, &ns, &id, None);
                        return Err(e);
                    }
                };
                match net.del(side, &ns, &id, Some(&r)) {
                    Ok(t) => it.put(1, t[0]),
                    Err(e) => it.fail(1, e),
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

    // ---- peak RSS ----------------------------------------------------------

    fn rss(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let mut figs = vec![
            Figure::new("rss", "rss.add", "peak RSS: bridge+host-local ADD", Unit::Kib),
            Figure::new("rss", "rss.del", "peak RSS: bridge+host-local DEL", Unit::Kib),
            Figure::new("rss", "rss.version", "peak RSS: VERSION", Unit::Kib),
        ];
        let nets: Vec<Net> = self
            .sides
            .iter()
            .map(|s| Net::single(&format!("cnb-rss-{}", s.key), "1.0.0", bridge_plugin(s, 7, false)))
            .collect();
        let mut seen: Vec<Option<invoke::Rss>> = vec![None; self.sides.len()];
        self.drive(&mut figs, 5, 1, |cx, s, i| {
            let side = &cx.sides[s];
            let net = &nets[s];
            let id = format!("{}-rss-{i}", side.key);
            let ns = side.netns(0);
            let mut it = It::new(3);
            let (o, rss) = side.exec_probed("bridge", "ADD", &id, &ns, net.conf(0, None))?;
            seen[s] = Some(rss);
            if !o.ok() {
                let e = invoke::failed("bridge", "ADD", &o);
                let _ = net.del(side, &ns, &id, None);
                return Err(e);
            }
            it.put(0, o.maxrss_kib);
            let result: Value = serde_json::from_str(o.stdout.trim()).unwrap_or(Value::Null);
            let (d, _) = side.exec_probed("bridge", "DEL", &id, &ns, net.conf(0, Some(&result)))?;
            if d.ok() {
                it.put(1, d.maxrss_kib);
            } else {
                it.fail(1, invoke::failed("bridge", "DEL", &d));
            }
            let (v, _) = side.exec_probed("bridge", "VERSION", "", "", r#"{"cniVersion":"1.1.0"}"#.into())?;
            if v.ok() {
                it.put(2, v.maxrss_kib);
            } else {
                it.fail(2, invoke::failed("bridge", "VERSION", &v));
            }
            Ok(it)
        })?;
        let exact = seen.iter().flatten().all(|r| r.hwm.is_some());
        let detail: Vec<String> = self
            .sides
            .iter()
            .zip(&seen)
            .filter_map(|(s, r)| {
                let r = r.as_ref()?;
                Some(match r.hwm {
                    Some(h) => format!(
                        "{}: ADD ran {} process{}, largest {h} KiB, bridge itself {} KiB",
                        s.label,
                        r.procs,
                        if r.procs == 1 { "" } else { "es" },
                        r.own
                    ),
                    None => format!("{}: ru_maxrss {} KiB, probe floor {} KiB", s.label, r.maxrss, r.floor),
                })
            })
            .collect();
        let note = if exact {
            format!(
                "peak RSS = the largest VmHWM among the plugin and the processes it ran, read under ptrace as each exits (exact; {})",
                detail.join("; ")
            )
        } else {
            format!(
                "ptrace unavailable: ru_maxrss, which also counts the probe's pre-exec image, so figures at or below its floor mean \"no more than that\" ({})",
                detail.join("; ")
            )
        };
        for f in figs.iter_mut() {
            f.note = note.clone();
        }
        self.notes.push(note);
        self.finish(figs, t0);
        Ok(())
    }

    // ---- size on disk --------------------------------------------------------

    fn size(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        const K3S: [&str; 7] = ["bandwidth", "bridge", "firewall", "flannel", "host-local", "loopback", "portmap"];
        let mut figs = vec![
            Figure::new("size", "size.k3s_bytes", "k3s plugin set: bytes (7 names)", Unit::Bytes),
            Figure::new("size", "size.k3s_alloc", "k3s plugin set: allocated on disk", Unit::Bytes),
        ];
        let mut notes = Vec::new();
        for s in &self.sides {
            let mut seen = std::collections::BTreeMap::new();
            let mut missing = Vec::new();
            let mut links = 0;
            for n in K3S {
                let p = s.dir.join(n);
                let Ok(meta) = std::fs::metadata(&p) else {
                    missing.push(n);
                    continue;
                };
                if std::fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                    links += 1;
                }
                let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                seen.insert((meta.dev(), meta.ino()), (real, meta.len(), meta.blocks() * 512));
            }
            let bytes: u64 = seen.values().map(|v| v.1).sum();
            let alloc: u64 = seen.values().map(|v| v.2).sum();
            figs[0].side(s.b).samples.push(bytes);
            figs[1].side(s.b).samples.push(alloc);
            let files: Vec<String> =
                seen.values().map(|v| v.0.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
            let mut d = format!(
                "{}: {} file{} ({})",
                s.label,
                seen.len(),
                if seen.len() == 1 { "" } else { "s" },
                files.join(" ")
            );
            if links > 0 {
                d.push_str(&format!(" + {links} symlink{}", if links == 1 { "" } else { "s" }));
            }
            if !missing.is_empty() {
                d.push_str(&format!(", missing: {}", missing.join(" ")));
            }
            notes.push(d);
        }
        for f in figs.iter_mut() {
            f.note = notes.join("; ");
        }
        self.notes.push(format!(
            "k3s plugin set (bandwidth bridge firewall flannel host-local loopback portmap): {}.",
            notes.join("; ")
        ));
        self.finish(figs, t0);
        Ok(())
    }

    // ---- the user's own network ------------------------------------------------

    fn custom(&mut self) -> Result<(), String> {
        let Some(path) = self.opts.config.clone() else { return Ok(()) };
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {}: {e}", path.display()))?;
        let mut nets = Vec::new();
        for s in &self.sides {
            nets.push(custom_net(&text, s).map_err(|e| format!("--config {}: {e}", path.display()))?);
        }
        let with_check = nets.first().map(|n| at_least(&n.version, 4)).unwrap_or(false);
        let kinds: Vec<String> = (0..nets[0].plugins.len()).map(|i| nets[0].kind(i)).collect();
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let title = format!("{file} ({})", kinds.join("+"));
        let mut figs = vec![
            Figure::new("custom", "custom.add", format!("{title} ADD"), Unit::Ns),
            Figure::new("custom", "custom.check", format!("{title} CHECK"), Unit::Ns),
            Figure::new("custom", "custom.del", format!("{title} DEL"), Unit::Ns),
        ];
        let (iters, w) = self.iters();
        self.drive(&mut figs, iters, w, |cx, s, i| {
            let side = &cx.sides[s];
            let net = &nets[s];
            let id = format!("{}-custom-{i}", side.key);
            let ns = side.netns(0);
            let mut it = It::new(3);
            let r = match net.add(side, &ns, &id) {
                Ok((t, r)) => {
                    it.put(0, t.iter().sum());
                    r
                }
                Err(e) => {
                    let _ = net.del(side, &ns, &id, None);
                    return Err(e);
                }
            };
            if with_check {
                match net.check(side, &ns, &id, &r) {
                    Ok(t) => it.put(1, t.iter().sum()),
                    Err(e) => it.fail(1, e),
                }
            }
            match net.del(side, &ns, &id, Some(&r)) {
                Ok(t) => it.put(2, t.iter().sum()),
                Err(e) => it.fail(2, e),
            }
            Ok(it)
        })?;
        if !with_check {
            figs.remove(1);
        }
        self.finish(figs, t0);
        Ok(())
    }
}

fn at_least(v: &str, minor: u32) -> bool {
    let p: Vec<u32> = v.split('.').map(|x| x.parse().unwrap_or(0)).collect();
    p.first().copied().unwrap_or(0) >= 1 || p.get(1).copied().unwrap_or(0) >= minor
}

/// The --config network for one set: placeholders substituted, a host-local
/// without dataDir pointed at the set's own directory.
pub fn custom_net(text: &str, side: &Side) -> Result<Net, String> {
    let datadir = side.work.join("custom-ipam").to_string_lossy().into_owned();
    let t =
        text.replace("@SET@", side.key).replace("@NET@", if side.b { "2" } else { "1" }).replace("@DATADIR@", &datadir);
    let v: Value = serde_json::from_str(&t).map_err(|e| format!("not valid JSON: {e}"))?;
    let name = v.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        return Err("the network has no \"name\"".into());
    }
    let version = v.get("cniVersion").and_then(Value::as_str).unwrap_or("0.1.0").to_string();
    let mut plugins = match v.get("plugins") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err("\"plugins\" is not a list".into()),
        None => {
            let mut p = v.clone();
            if let Some(o) = p.as_object_mut() {
                o.remove("name");
                o.remove("cniVersion");
            }
            vec![p]
        }
    };
    if plugins.is_empty() {
        return Err("the conflist has no plugins".into());
    }
    for p in plugins.iter_mut() {
        if p.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
            return Err("a plugin config has no \"type\"".into());
        }
        if let Some(ipam) = p.get_mut("ipam").and_then(Value::as_object_mut) {
            if ipam.get("type").and_then(Value::as_str) == Some("host-local") && !ipam.contains_key("dataDir") {
                ipam.insert("dataDir".into(), json!(datadir));
            }
        }
    }
    Ok(Net { name, version, plugins })
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
