//! The network of --config: ADD, CHECK, DEL through its whole chain.

use super::{cycle, total, Ctx, It, Pod};
use crate::invoke::{Net, Side};
use crate::stats::{Figure, Unit};
use serde_json::{json, Value};
use std::time::Instant;

impl<'a> Ctx<'a> {
    // ---- the user's own network ------------------------------------------------

    pub(super) fn custom(&mut self) -> Result<(), String> {
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
            let mut it = It::new(3);
            let pod = Pod { add: 0, check: with_check.then_some(1), del: Some(2), time: total };
            cycle(&mut it, side, &nets[s], &side.netns(0), &format!("{}-custom-{i}", side.key), &pod)?;
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
        text.replace("@SET@", side.key).replace("@NET@", &(side.idx + 1).to_string()).replace("@DATADIR@", &datadir);
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
