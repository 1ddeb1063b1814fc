//! Cold execs: VERSION, loopback ADD/DEL as containerd makes them, STATUS;
//! each against the exec floor.

use super::{cycle, first, put_exec, Ctx, FloorFn, It, Pod, VERSION_CONF};
use crate::invoke::{self, bridge_plugin, Net};
use crate::stats::{Figure, Unit};
use serde_json::{json, Value};
use std::time::Instant;

impl<'a> Ctx<'a> {
    // ---- VERSION -------------------------------------------------------

    pub(super) fn version(&mut self) -> Result<(), String> {
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

    pub(super) fn loopback(&mut self) -> Result<(), String> {
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
                let mut it = It::new(2);
                let pod = Pod { add: 0, check: None, del: Some(1), time: first };
                cycle(&mut it, side, &net, &side.netns(0), &format!("{}-lo-{i}", side.key), &pod)?;
                Ok(it)
            },
            fl,
        )?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- STATUS --------------------------------------------------------

    pub(super) fn status(&mut self) -> Result<(), String> {
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
}
