//! What the daemon does for each request (add, check, del, gc, status) and
//! for each client event (bound, renewed, failed, lost), keeping the leases
//! file in step.

use super::super::client::{Client, Event, Lease, Ms, Params};
use super::super::rpc::{Reply, Request};
use super::super::wire::Message;
use super::lease::{path_ident, result_of, Entry, NsIdent};
use super::store::{self, Saved};
use super::{log, Daemon};
use crate::error::{code, Error, Result};
use crate::sys::netns::Netns;
use crate::sys::service::{boottime_ms, fd_ident};

impl Daemon {
    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.leases.iter().position(|e| e.id == id)
    }

    pub(super) fn handle(&mut self, cid: u64, req: Request, now: Ms) {
        let r = match req.op.as_str() {
            "add" => return self.add(cid, req, now),
            "check" => match self.find(&req.id).map(|i| &self.leases[i]) {
                None => Reply::error(&Error::msg(format!("no DHCP lease is held for {}", req.id))),
                Some(e) if e.lost.is_some() => Reply::error(&Error::msg(format!(
                    "the DHCP lease of {} was lost: {}",
                    e.id,
                    e.lost.as_deref().unwrap_or("")
                ))),
                Some(e) if !e.held() => Reply::error(&Error::new(
                    code::TRY_AGAIN_LATER,
                    format!("the DHCP lease of {} is still being acquired", e.id),
                )),
                Some(e) => result_reply(e),
            },
            "del" => {
                if let Some(i) = self.find(&req.id) {
                    self.remove(i, "released on DEL", true);
                }
                Reply::ok(None)
            }
            "gc" => {
                while let Some(i) =
                    self.leases.iter().position(|e| e.network == req.network && !req.keep.contains(&e.id))
                {
                    self.remove(i, "released by GC", true);
                }
                Reply::ok(None)
            }
            "status" => Reply::ok(None),
            op => Reply::error(&Error::msg(format!("unknown DHCP daemon operation \"{op}\""))),
        };
        self.reply(cid, &r);
    }

    fn add(&mut self, cid: u64, req: Request, now: Ms) {
        let netns = format!("{}{}", self.o.hostprefix, req.netns);
        let ident = match Netns::open(&netns).and_then(|ns| fd_ident(ns.fd())) {
            Ok(i) => i,
            Err(e) => return self.reply(cid, &Reply::error(&e)),
        };
        if ident == self.own_ns {
            // DHCP there would configure the node's own interface (a stale
            // /proc/<pid>/ns/net, or a mistaken path), as the plugin refuses too.
            let e = Error::new(
                code::INVALID_NETNS,
                format!(
                    "network namespace {netns} is the DHCP daemon's own; refusing to run DHCP on the node's interfaces"
                ),
            );
            return self.reply(cid, &Reply::error(&e));
        }
        if let Some(i) = self.find(&req.id) {
            let e = &mut self.leases[i];
            if e.ns_ident == ident && e.ifname == req.ifname && e.lost.is_none() {
                if e.held() {
                    let r = result_reply(e);
                    return self.reply(cid, &r);
                }
                return e.waiters.push(cid);
            }
            // Another attachment under the same name, or a lost lease: start over.
            self.remove(i, "replaced by a new ADD", true);
        }
        let mut e = self.entry(req, netns, ident, Client::new([0; 6], now, now + self.o.timeout));
        e.waiters.push(cid);
        if let Err(err) = e.open(true) {
            let err = err.context(format_args!("DHCP on {} in {}", e.ifname, e.netns));
            return self.reply(cid, &Reply::error(&err));
        }
        log(format_args!("{}: acquiring a lease on {} in {}", e.id, e.ifname, e.netns));
        self.leases.push(e);
    }

    /// A lease record for the ADD `req` (the client identifier is type 0 and the id).
    fn entry(&self, req: Request, netns: String, ns_ident: NsIdent, client: Client) -> Entry {
        let mut client_id = vec![0u8];
        client_id.extend_from_slice(req.id.as_bytes());
        Entry {
            params: Params {
                client_id,
                request: req.request,
                provide: req.provide.into_iter().map(|(c, v)| (c, v.into_bytes())).collect(),
                broadcast: self.o.broadcast,
                resend_max: self.o.resend_max,
            },
            id: req.id,
            network: req.network,
            netns,
            ns_ident,
            ifname: req.ifname,
            client,
            sock: None,
            waiters: Vec::new(),
            lost: None,
        }
    }

    /// Drop lease `i`, releasing it first when asked and it is held.
    pub(super) fn remove(&mut self, i: usize, why: &str, release: bool) {
        let mut e = self.leases.remove(i);
        if release && e.held() {
            let sent = (|| {
                if e.sock.is_none() {
                    e.open(false)?;
                }
                let out = e.client.release(&e.params).ok_or_else(|| Error::msg("no lease"))?;
                e.sock.as_ref().map(|s| s.send(&out.frame, out.dst_mac)).unwrap_or(Ok(()))
            })();
            match sent {
                Ok(()) => log(format_args!("{}: {why}: {}", e.id, e.addr_text())),
                Err(err) => log(format_args!("{}: {why}, but no DHCPRELEASE could be sent: {err}", e.id)),
            }
        } else {
            log(format_args!("{}: {why}", e.id));
        }
        let err = Error::new(code::TRY_AGAIN_LATER, format!("DHCP lease of {}: {why}", e.id));
        for w in std::mem::take(&mut e.waiters) {
            self.reply(w, &Reply::error(&err));
        }
        self.save();
    }

    pub(super) fn event(&mut self, i: usize, ev: Event) {
        let e = &mut self.leases[i];
        match ev {
            Event::Nothing => return,
            Event::Bound => {
                e.sock = None;
                log(format_args!("{}: lease {}", e.id, e.lease_text()));
                let r = result_reply(e);
                if r.code != 0 {
                    let why = r.msg;
                    return self.remove(i, &why, true);
                }
                // On disk before ADD hears of it: a daemon killed right after still knows the lease.
                let waiters = std::mem::take(&mut e.waiters);
                self.save();
                for w in waiters {
                    self.reply(w, &r);
                }
                return;
            }
            Event::Renewed => {
                e.sock = None;
                log(format_args!("{}: renewed {}", e.id, e.lease_text()));
            }
            Event::Failed(why) => {
                let err = Error::new(
                    code::TRY_AGAIN_LATER,
                    format!("no DHCP lease for {} on {} within {}s: {why}", e.id, e.ifname, self.o.timeout / 1000),
                );
                log(&err);
                for w in std::mem::take(&mut e.waiters) {
                    self.reply(w, &Reply::error(&err));
                }
                self.leases.remove(i);
                return;
            }
            Event::Lost(why) => {
                // As the reference does: the address may now be someone
                // else's, so the interface stops using it.
                e.sock = None;
                let addr = e.client.lease.as_ref().map(|l| l.addr().to_string()).unwrap_or_default();
                log(format_args!("{}: lease {addr} lost: {why}; setting {} down", e.id, e.ifname));
                let ifname = e.ifname.clone();
                let down = e.in_netns(|rt| match rt.link_by_name(&ifname)? {
                    Some(l) => rt.set_up(l.index, &ifname, false),
                    None => Ok(()),
                });
                if let Err(err) = down {
                    log(format_args!("{}: {err}", e.id));
                }
                e.lost = Some(why);
            }
        }
        self.save();
    }

    /// Write every held lease to the leases file.
    pub(super) fn save(&self) {
        let (now, wall) = (boottime_ms(), epoch_ms());
        let saved: Vec<Saved> = self
            .leases
            .iter()
            .filter(|e| e.held())
            .filter_map(|e| {
                let l = e.client.lease.as_ref()?;
                let p = &e.params;
                let add = Request {
                    op: "add".into(),
                    id: e.id.clone(),
                    network: e.network.clone(),
                    netns: e.netns.clone(),
                    ifname: e.ifname.clone(),
                    request: p.request.clone(),
                    provide: p.provide.iter().map(|(c, v)| (*c, String::from_utf8_lossy(v).into_owned())).collect(),
                    keep: Vec::new(),
                };
                let lease = [&e.client.mac[..], &l.server_mac, &l.ack.encode()].concat();
                let start = wall.saturating_sub(now.saturating_sub(l.start));
                Some(Saved { add, ns: e.ns_ident, start, lease })
            })
            .collect();
        if let Err(e) = store::save(&self.state_file, &saved) {
            log(format_args!("cannot save leases: {e}"));
        }
    }

    /// Take back the leases a previous daemon held, where their namespace is still there.
    pub(super) fn restore(&mut self) -> Result<()> {
        let saved = store::load(&self.state_file)?;
        let (now, wall) = (boottime_ms(), epoch_ms());
        for s in saved {
            if path_ident(&s.add.netns) != Some(s.ns) || s.ns == self.own_ns {
                log(format_args!("{}: network namespace {} is gone: lease dropped", s.add.id, s.add.netns));
                continue;
            }
            let Some(ack) = s.lease.get(12..).and_then(Message::decode) else { continue };
            let mac: [u8; 6] = s.lease[..6].try_into().unwrap_or_default();
            let server_mac: [u8; 6] = s.lease[6..12].try_into().unwrap_or_default();
            let lease = Lease { ack, server_mac, start: now.saturating_sub(wall.saturating_sub(s.start)) };
            let netns = s.add.netns.clone();
            let e = self.entry(s.add, netns, s.ns, Client::bound(mac, lease));
            log(format_args!("{}: restored lease {}", e.id, e.lease_text()));
            self.leases.push(e);
        }
        self.save();
        Ok(())
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(super) fn result_reply(e: &Entry) -> Reply {
    match result_of(e) {
        Ok(r) => Reply::ok(Some(r)),
        Err(err) => Reply::error(&err),
    }
}
