//! A runtime running a two-plugin conflist: `cnibox add|del` for A, a
//! cnitool-compatible runtime for the references.

use super::{Ctx, It};
use crate::invoke::{self, bridge_plugin, portmap_plugin, Net, Side};
use crate::spawn::{self, Spec};
use crate::stats::{Figure, Unit};
use serde_json::json;
use std::time::Instant;

impl<'a> Ctx<'a> {
    // ---- a runtime running a two-plugin conflist ---------------------------

    pub(super) fn runtime(&mut self) -> Result<(), String> {
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
                let why = if s.idx > 0 {
                    "no cnitool-compatible runtime (cnitool not on PATH; pass --cnitool PATH)".to_string()
                } else {
                    "no runtime (pass --runtime-a PATH)".to_string()
                };
                for f in figs.iter_mut() {
                    f.side(s.idx).skipped = Some(why.clone());
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
}
