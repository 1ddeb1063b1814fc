//! One pod on a bridge network: bridge+host-local ADD, CHECK, DEL; the same
//! with ipMasq; portmap chained after bridge. Against the kernel floor.

use super::{cycle, first, Ctx, It, Pod};
use crate::floor::{self, BridgeFloor, FLOOR_OCTET};
use crate::invoke::{bridge_plugin, portmap_plugin, Net};
use crate::stats::{Figure, Unit, PLAIN_TWIN};
use std::time::Instant;

impl<'a> Ctx<'a> {
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
        let nets = self.nets(|s| Net::single(&format!("cnb-{scen}-{}", s.key), "1.0.0", bridge_plugin(s, n, masq)));
        // The floor's pod: the exec of the no-op as A's bridge ADD/DEL, plus the kernel's requests.
        let bf = BridgeFloor::new(&format!("cnbf{n}"), FLOOR_OCTET + n, masq)?;
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let (add, del) = cx.floor_pod(&bf, &nets[0], &cx.floor_netns(0), &format!("floor-{scen}-{i}"), i as u32)?;
            let mut it = It::new(3);
            it.put(0, add);
            it.put(2, del);
            Ok(it)
        };
        self.drive_with(
            &mut figs,
            iters,
            w,
            |cx, s, i| {
                let side = &cx.sides[s];
                let mut it = It::new(3);
                let pod = Pod { add: 0, check: with_check.then_some(1), del: Some(2), time: first };
                cycle(&mut it, side, &nets[s], &side.netns(0), &format!("{}-{scen}-{i}", side.key), &pod)?;
                Ok(it)
            },
            Some(&mut floor),
        )?;
        let mut checks = std::mem::take(&mut *bf.checks.lock().unwrap_or_else(|p| p.into_inner()));
        if !checks.is_empty() {
            checks.sort_unstable();
            self.notes.push(format!(
                "{scen}: the floor's ADD includes the lookups and checks cnibox makes besides creating and \
                 configuring (bridge lookup and MAC pin, gateway address, forwarding, the host end up): \
                 median {:.3} ms of it",
                checks[checks.len() / 2] as f64 / 1e6
            ));
        }
        if !with_check {
            figs.remove(1);
        }
        self.finish(figs, t0);
        Ok(())
    }

    pub(super) fn bridge(&mut self) -> Result<(), String> {
        self.bridge_like("bridge", "bridge+host-local", 1, false, true)
    }

    pub(super) fn masq(&mut self) -> Result<(), String> {
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
        let masq = self.nets(|s| Net::single(&format!("cnb-masq-{}", s.key), "1.0.0", bridge_plugin(s, 2, true)));
        let plain = self.nets(|s| Net::single(&format!("cnb-masq0-{}", s.key), "1.0.0", bridge_plugin(s, 8, false)));
        let mut standing = Vec::new();
        if beside {
            for (side, net) in self.sides.iter().zip(&masq) {
                let id = format!("{}-masq-standing", side.key);
                let (_, r) = net.add(side, &side.netns(1), &id).map_err(|e| format!("{title}: the pod beside: {e}"))?;
                standing.push((id, r));
            }
        }
        // The floor's pods: with ipMasq (figures 0 and 1) and without (2), exec of the no-op included.
        let (bf_masq, bf_plain) =
            (BridgeFloor::new("cnbf2", FLOOR_OCTET + 2, true)?, BridgeFloor::new("cnbf8", FLOOR_OCTET + 8, false)?);
        // The floor has its pod beside too (pod number 9999), or it would pay conntrack's switching on and off.
        const BESIDE: u32 = 9999;
        if beside {
            bf_masq.add(&self.floor_netns(1), BESIDE)?;
        }
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let ns = cx.floor_netns(0);
            let (add, del) = cx.floor_pod(&bf_masq, &masq[0], &ns, &format!("floor-masq-{i}"), i as u32)?;
            let (plain_add, _) = cx.floor_pod(&bf_plain, &plain[0], &ns, &format!("floor-masq0-{i}"), i as u32)?;
            let mut it = It::new(3);
            it.put(0, add);
            it.put(1, del);
            it.put(2, plain_add);
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
                    let pod = Pod { add: fig, check: None, del: (fig == 0).then_some(1), time: first };
                    cycle(&mut it, side, net, &ns, &format!("{}-masq-{i}-{fig}", side.key), &pod)?;
                }
                Ok(it)
            },
            Some(&mut floor),
        );
        for ((side, net), (id, r)) in self.sides.iter().zip(&masq).zip(&standing) {
            let _ = net.del(side, &side.netns(1), id, Some(r));
        }
        if beside {
            let _ = bf_masq.del(&self.floor_netns(1), BESIDE);
        }
        res?;
        self.finish(figs, t0);
        Ok(())
    }

    // ---- portmap chained after bridge --------------------------------------

    pub(super) fn portmap(&mut self) -> Result<(), String> {
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
        // The floor: the no-op exec'd as A's portmap (with a prevResult) plus its kernel requests.
        let bf = BridgeFloor::new("cnbf3", FLOOR_OCTET + 3, false)?;
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, FLOOR_OCTET + 3, 0, 2));
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": format!("{ip}/16")}]});
        let mut floor = |cx: &mut Ctx<'a>, i: usize| {
            let (ns, id, conf) = (cx.floor_netns(0), format!("floor-pm-{i}"), nets[0].conf(1, Some(&prev)));
            let mut it = It::new(4);
            let ex = cx.exec_floor("portmap", "ADD", &id, &ns, conf.clone()).unwrap_or(Ok(0))?;
            it.put(0, ex + floor::portmap_add(&id, ip, bf.name())?);
            let ex = cx.exec_floor("portmap", "DEL", &id, &ns, conf).unwrap_or(Ok(0))?;
            it.put(1, ex + floor::portmap_del(&id)?);
            Ok(it)
        };
        self.drive_with(
            &mut figs,
            iters,
            w,
            |cx, s, i| {
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
            },
            Some(&mut floor),
        )?;
        self.finish(figs, t0);
        Ok(())
    }
}
