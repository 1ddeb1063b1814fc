//! What is not a latency: peak RSS of an ADD, DEL and VERSION, and the size
//! on disk of the plugin set a k3s node needs.

use super::{Ctx, It};
use crate::invoke::{self, bridge_plugin, Net};
use crate::stats::{Figure, Unit};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

impl<'a> Ctx<'a> {
    // ---- peak RSS ----------------------------------------------------------

    pub(super) fn rss(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        self.ensure_pool(1)?;
        let mut figs = vec![
            Figure::new("rss", "rss.add", "peak RSS: bridge+host-local ADD", Unit::Kib),
            Figure::new("rss", "rss.del", "peak RSS: bridge+host-local DEL", Unit::Kib),
            Figure::new("rss", "rss.version", "peak RSS: VERSION", Unit::Kib),
        ];
        let nets = self.nets(|s| Net::single(&format!("cnb-rss-{}", s.key), "1.0.0", bridge_plugin(s, 7, false)));
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

    pub(super) fn size(&mut self) -> Result<(), String> {
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
            figs[0].side(s.idx).samples.push(bytes);
            figs[1].side(s.idx).samples.push(alloc);
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
}
