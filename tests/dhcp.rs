//! The dhcp IPAM plugin and its daemon against a real DHCP server (Debian's
//! dnsmasq), all inside namespaces the test makes:
//!
//! ```text
//!   server ns: srv0 10.55.0.1/24, dnsmasq ──veth── node ns: lan0 ── macvlan eth0 in each container ns
//!                                                   cnibox dhcp daemon (socket in the test's temp dir)
//! ```
//!
//! The plugin runs as a runtime runs it: `macvlan` with `"ipam":{"type":"dhcp"}`
//! in the node namespace, delegating to `dhcp`, which asks the daemon. What
//! the server saw is read from dnsmasq's own log and lease file. Every
//! process the test starts is killed, and every namespace deleted, on drop.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Skip when dnsmasq is missing (scripts/setup.sh installs `dnsmasq-base`).
macro_rules! need_dnsmasq {
    () => {
        need_root!();
        if !std::path::Path::new(DNSMASQ).exists() {
            common::missing(&format!("needs {DNSMASQ} (apt-get install dnsmasq-base)"));
            return;
        }
    };
}

/// Start `exe args` inside `ns`, stdout and stderr appended to `log`.
fn spawn_in(ns: &Netns, exe: &str, args: &[&str], log: &std::path::Path) -> Child {
    let f = ns.file();
    let fd = f.as_raw_fd();
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {exe}: {e}"));
    drop(f);
    child
}

/// Poll `ok` every 100 ms for at most `secs`; panic with `what` if it never holds.
fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

struct Lab {
    tmp: TempDir,
    path: String,
    node: Netns,
    srv: Netns,
    server: Option<Child>,
    daemon: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        stop(&mut self.daemon);
        stop(&mut self.server);
        if std::thread::panicking() {
            eprintln!("--- daemon log:\n{}--- dnsmasq log:\n{}", self.daemon_log(), self.server_log());
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let tmp = TempDir::new("dhcp");
        let path = plugin_dir(&tmp);
        let (node, srv) = (Netns::new("node"), Netns::new("srv"));
        node.sh(&["link", "add", "lan0", "type", "veth", "peer", "name", "srv0", "netns", &srv.name]);
        node.sh(&["link", "set", "lan0", "up"]);
        srv.sh(&["addr", "add", "10.55.0.1/24", "dev", "srv0"]);
        srv.sh(&["link", "set", "srv0", "up"]);
        Lab { tmp, path, node, srv, server: None, daemon: None }
    }

    /// (Re)start dnsmasq handing out `range` (e.g. "10.55.0.50,10.55.0.150")
    /// for two minutes (its minimum) with T1 = 3 s, so renewals come quickly
    /// (dnsmasq 2.90 ignores a T1 of 2).
    fn start_server(&mut self, range: &str, leasefile: &str, extra: &[&str]) {
        stop(&mut self.server);
        let log = self.tmp.join("dnsmasq.log");
        let starts = self.server_log().matches("DHCP, IP range").count();
        let mut args = vec![
            "--conf-file=/dev/null".to_string(),
            "--keep-in-foreground".into(),
            "--port=0".into(),
            "--interface=srv0".into(),
            "--pid-file=".into(),
            "--user=root".into(),
            "--log-dhcp".into(),
            // no ping check of an address before offering it: answers in milliseconds
            "--no-ping".into(),
            format!("--log-facility={}", log.display()),
            format!("--dhcp-leasefile={}", self.tmp.join(leasefile).display()),
            format!("--dhcp-range={range},255.255.255.0,2m"),
            "--dhcp-option=option:T1,3".into(),
            "--dhcp-option=option:dns-server,10.55.0.1".into(),
            "--dhcp-option=option:domain-name,lab.test".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.server = Some(spawn_in(&self.srv, DNSMASQ, &a, &self.tmp.join("dnsmasq.out")));
        wait_for("dnsmasq to start", 10, || self.server_log().matches("DHCP, IP range").count() > starts);
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("dnsmasq.log")).unwrap_or_default()
    }

    /// dnsmasq's lease file: one line per lease it holds.
    fn server_leases(&self) -> String {
        std::fs::read_to_string(self.tmp.join("leases")).unwrap_or_default()
    }

    fn sock(&self) -> String {
        self.tmp.join("run/dhcp.sock").to_string_lossy().into_owned()
    }

    /// `cnibox dhcp daemon ...`
    fn start_daemon(&mut self, extra: &[&str]) {
        self.start_daemon_as(bin().to_str().unwrap(), &["dhcp", "daemon"], extra);
    }

    /// `dhcp daemon ...` through the `dhcp` link, as the reference is started.
    fn start_daemon_link(&mut self, extra: &[&str]) {
        let exe = format!("{}/dhcp", self.path);
        self.start_daemon_as(&exe, &["daemon"], extra);
    }

    fn start_daemon_as(&mut self, exe: &str, pre: &[&str], extra: &[&str]) {
        let sock = self.sock();
        let mut args = pre.to_vec();
        args.extend_from_slice(&["-socketpath", &sock, "-timeout", "4s"]);
        args.extend_from_slice(extra);
        self.daemon = Some(spawn_in(&self.node, exe, &args, &self.tmp.join("daemon.log")));
        wait_for("the daemon's socket", 10, || UnixStream::connect(&sock).is_ok());
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("daemon.log")).unwrap_or_default()
    }

    /// The daemon is still the same live process.
    fn daemon_alive(&mut self) -> bool {
        self.daemon.as_mut().map(|c| c.try_wait().ok().flatten().is_none()).unwrap_or(false)
    }

    fn conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"lan","type":"macvlan","master":"lan0",
            "ipam":{{"type":"dhcp","daemonSocketPath":"{}","provide":[{{"option":"host-name","fromArg":"K8S_POD_NAME"}}]}}}}"#,
            self.sock()
        )
    }

    /// The dhcp plugin on its own (as a main plugin would delegate to it).
    fn ipam_conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.1.0","name":"lan","ipam":{{"type":"dhcp","daemonSocketPath":"{}"}}}}"#,
            self.sock()
        )
    }

    fn call(&self, plugin: &'static str, cmd: &str, id: &str, ctr: &Netns) -> Call<'_> {
        let mut c = Call::cni(&self.node, plugin, cmd, id, &ctr.path(), "eth0", &self.path);
        c.set("CNI_ARGS", &format!("IgnoreUnknown=1;K8S_POD_NAME=pod-{id}"));
        c
    }

    fn add(&self, id: &str, ctr: &Netns) -> Value {
        self.call("macvlan", "ADD", id, ctr).run(&self.conf()).ok().json()
    }

    /// CHECK through macvlan with the ADD result as prevResult.
    fn check(&self, id: &str, ctr: &Netns, prev: &Value) -> Run {
        let mut v: Value = serde_json::from_str(&self.conf()).unwrap();
        v["prevResult"] = prev.clone();
        self.call("macvlan", "CHECK", id, ctr).run(&v.to_string())
    }

    /// One raw request line to the daemon, and its answer.
    fn rpc(&self, line: &str) -> Value {
        let mut s = UnixStream::connect(self.sock()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut out = String::new();
        BufReader::new(&s).read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("daemon answer {out:?}: {e}"))
    }
}

fn ip_of(r: &Value) -> String {
    r["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// How many times the server acknowledged `ip`.
fn acks(lab: &Lab, ip: &str) -> usize {
    lab.server_log().lines().filter(|l| l.contains(&format!("DHCPACK(srv0) {ip} "))).count()
}

#[test]
fn lease_is_obtained_renewed_checked_and_released() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    let c1 = Netns::new("c1");
    let r = lab.add("ctr1", &c1);
    // the lease as an IPAM result inside macvlan's result
    let ip = ip_of(&r);
    assert!(r["ips"][0]["address"].as_str().unwrap().ends_with("/24"), "{r}");
    assert_eq!(r["ips"][0]["gateway"], "10.55.0.1");
    assert_eq!(r["routes"], serde_json::json!([{"dst":"0.0.0.0/0","gw":"10.55.0.1"}]));
    assert_eq!(r["dns"], serde_json::json!({"nameservers":["10.55.0.1"],"domain":"lab.test"}));
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(ip.starts_with("10.55.0.") && (50..=150).contains(&last), "{ip}");
    // ... applied by macvlan, and the server reachable through it
    assert_eq!(c1.addrs("eth0").iter().filter(|a| a.starts_with("10.55.")).collect::<Vec<_>>(), [&format!("{ip}/24")]);
    assert!(c1.ping("10.55.0.1"));
    // the server saw our client identifier and the host name from CNI_ARGS
    let leases = lab.server_leases();
    let line = leases.lines().find(|l| l.contains(&ip)).unwrap_or_else(|| panic!("no lease for {ip} in {leases}"));
    let client_id: String = "ctr1/lan/eth0".bytes().map(|b| format!(":{b:02x}")).collect();
    assert!(line.contains("pod-ctr1") && line.ends_with(&format!("00{client_id}")), "{line}");
    // renewed at T1 (3 s), again and again, without changing the address
    wait_for("two renewals", 20, || acks(&lab, &ip) >= 3);
    let renew = lab.server_log().lines().filter(|l| l.contains(&format!("DHCPREQUEST(srv0) {ip} "))).count();
    assert!(renew >= 3, "{}", lab.server_log());
    lab.check("ctr1", &c1, &r).ok();
    // CHECK against a prevResult with another address fails
    let mut other = r.clone();
    other["ips"][0]["address"] = "10.55.0.250/24".into();
    let v = lab.call("dhcp", "CHECK", "ctr1", &c1).run(&{
        let mut c: Value = serde_json::from_str(&lab.ipam_conf()).unwrap();
        c["prevResult"] = other;
        c.to_string()
    });
    assert!(v.err(999)["msg"].as_str().unwrap().contains("is not in prevResult"), "{}", v.stdout);
    // DEL releases: the server says so and forgets the lease
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    wait_for("DHCPRELEASE at the server", 10, || lab.server_log().contains(&format!("DHCPRELEASE(srv0) {ip} ")));
    wait_for("the server to drop the lease", 10, || !lab.server_leases().contains(&ip));
    assert!(c1.link("eth0").is_none());
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    let v = lab.call("dhcp", "CHECK", "ctr1", &c1).run(&lab.ipam_conf()).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no DHCP lease is held for ctr1/lan/eth0"), "{v}");
    // STATUS: the daemon answers
    Call::new(Some(&lab.node), "dhcp")
        .set("CNI_COMMAND", "STATUS")
        .set("CNI_PATH", &lab.path)
        .run(&lab.ipam_conf())
        .ok();
    assert!(lab.daemon_alive());
}

#[test]
fn two_containers_get_different_leases() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let (r1, r2) = (lab.add("ctr1", &c1), lab.add("ctr2", &c2));
    assert_ne!(ip_of(&r1), ip_of(&r2));
    assert!(c1.ping(&ip_of(&r2)), "the two containers reach each other");
    // ADD again for an attachment the daemon already holds returns the same lease
    let again = lab.call("dhcp", "ADD", "ctr1", &c1).run(&lab.ipam_conf()).ok().json();
    assert_eq!(ip_of(&again), ip_of(&r1));
    // GC keeps the listed attachment and releases the other
    let mut gc: Value = serde_json::from_str(&lab.ipam_conf()).unwrap();
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID":"ctr2","ifname":"eth0"}]);
    Call::new(Some(&lab.node), "dhcp").set("CNI_COMMAND", "GC").set("CNI_PATH", &lab.path).run(&gc.to_string()).ok();
    wait_for("GC's DHCPRELEASE", 10, || lab.server_log().contains(&format!("DHCPRELEASE(srv0) {} ", ip_of(&r1))));
    assert!(!lab.server_log().contains(&format!("DHCPRELEASE(srv0) {} ", ip_of(&r2))));
    lab.check("ctr2", &c2, &r2).ok();
    lab.call("macvlan", "DEL", "ctr2", &c2).run(&lab.conf()).ok();
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
}

#[test]
fn missing_daemon_is_try_again_later_and_a_restart_keeps_the_leases() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    let c1 = Netns::new("c1");
    // no daemon yet: code 11, and macvlan leaves nothing behind
    let v = lab.call("macvlan", "ADD", "ctr1", &c1).run(&lab.conf()).err(11);
    assert!(v["msg"].as_str().unwrap().starts_with("DHCP daemon is not running"), "{v}");
    assert!(c1.link("eth0").is_none());
    let v = Call::new(Some(&lab.node), "dhcp")
        .set("CNI_COMMAND", "STATUS")
        .set("CNI_PATH", &lab.path)
        .run(&lab.ipam_conf())
        .err(50);
    assert!(v["msg"].as_str().unwrap().contains("not running"), "{v}");
    lab.start_daemon(&[]);
    let r = lab.add("ctr1", &c1);
    let ip = ip_of(&r);
    // killed without warning: the socket file stays, the leases are on disk
    lab.daemon.as_mut().unwrap().kill().unwrap();
    lab.daemon.as_mut().unwrap().wait().unwrap();
    lab.daemon = None;
    let v = lab.call("dhcp", "CHECK", "ctr1", &c1).run(&lab.ipam_conf()).err(11);
    assert!(v["msg"].as_str().unwrap().contains("not running"), "{v}");
    // a new daemon (started through the `dhcp` link this time) takes over the
    // stale socket and the lease: CHECK, renewals, DEL
    lab.start_daemon_link(&[]);
    wait_for("the lease to be restored", 10, || lab.daemon_log().contains("ctr1/lan/eth0: restored lease"));
    lab.check("ctr1", &c1, &r).ok();
    let before = acks(&lab, &ip);
    wait_for("a renewal by the new daemon", 20, || acks(&lab, &ip) > before);
    // a second daemon on the same socket refuses to start
    let log = lab.tmp.join("second.log");
    let status = spawn_in(&lab.node, bin().to_str().unwrap(), &["dhcp", "daemon", "-socketpath", &lab.sock()], &log)
        .wait()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(std::fs::read_to_string(&log).unwrap().contains("another DHCP daemon is listening"));
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    wait_for("DHCPRELEASE after the restart", 10, || lab.server_log().contains(&format!("DHCPRELEASE(srv0) {ip} ")));
    // SIGTERM: a clean stop removes the socket
    let pid = lab.daemon.as_ref().unwrap().id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(lab.daemon.as_mut().unwrap().wait().unwrap().success());
    lab.daemon = None;
    assert!(!std::path::Path::new(&lab.sock()).exists());
}

#[test]
fn silent_server_fails_add_in_bounded_time_then_recovers() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_daemon(&["-timeout", "3s", "-resendmax", "2s"]);
    let c1 = Netns::new("c1");
    let v = lab.call("macvlan", "ADD", "ctr1", &c1).run(&lab.conf()).err(11);
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("no DHCP lease for ctr1/lan/eth0 on eth0 within 3s: no answer from any DHCP server"), "{v}");
    assert!(c1.link("eth0").is_none(), "macvlan removed its link after the failed IPAM");
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    let r = lab.add("ctr1", &c1);
    assert!(ip_of(&r).starts_with("10.55.0."));
    assert!(lab.daemon_alive());
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
}

#[test]
fn nak_on_renewal_loses_the_lease_and_check_says_so() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    let c1 = Netns::new("c1");
    let r = lab.add("ctr1", &c1);
    let ip = ip_of(&r);
    // A new, authoritative server that never heard of this lease and whose
    // range does not hold the address refuses the next renewal.
    lab.start_server("10.55.0.200,10.55.0.220", "leases2", &["--dhcp-authoritative"]);
    wait_for("the server's DHCPNAK", 20, || lab.server_log().contains(&format!("DHCPNAK(srv0) {ip} ")));
    wait_for("the daemon to report the loss", 10, || {
        lab.daemon_log().contains("lost: DHCP server 10.55.0.1 refused (DHCPNAK)")
    });
    let v = lab.check("ctr1", &c1, &r).err(999);
    assert!(v["msg"].as_str().unwrap().contains("the DHCP lease of ctr1/lan/eth0 was lost"), "{v}");
    // the address is not used any more: the interface is down
    wait_for("eth0 down", 10, || !c1.link("eth0").unwrap()["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    assert!(lab.daemon_alive());
}

#[test]
fn a_vanished_namespace_or_interface_drops_its_lease() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    let c1 = Netns::new("c1");
    lab.add("ctr1", &c1);
    let gone = c1.path();
    drop(c1); // ip netns del: the container is gone without a DEL
    wait_for("the daemon to drop the lease", 15, || {
        lab.daemon_log().contains(&format!("network namespace {gone} is gone"))
    });
    let ghost = Netns::new("c1b");
    let v = lab.call("dhcp", "CHECK", "ctr1", &ghost).run(&lab.ipam_conf()).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no DHCP lease is held"), "{v}");
    // a DEL that comes late still succeeds
    lab.call("dhcp", "DEL", "ctr1", &ghost).run(&lab.ipam_conf()).ok();
    // an interface deleted behind the daemon's back: noticed at the next renewal
    let c2 = Netns::new("c2");
    lab.add("ctr2", &c2);
    c2.sh(&["link", "del", "eth0"]);
    wait_for("the daemon to drop the lease", 15, || lab.daemon_log().contains("interface eth0 is gone: lease dropped"));
    let v = lab.call("dhcp", "CHECK", "ctr2", &c2).run(&lab.ipam_conf()).err(999);
    assert!(v["msg"].as_str().unwrap().contains("no DHCP lease is held"), "{v}");
    assert!(lab.daemon_alive());
}

#[test]
fn daemon_survives_broken_and_abandoned_requests() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    // no server yet, so that ADDs are still waiting when their plugins vanish
    lab.start_daemon(&["-timeout", "30s"]);
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    // half a line, then hang up
    UnixStream::connect(lab.sock()).unwrap().write_all(b"{\"op\":\"ad").unwrap();
    // not JSON; an unknown operation; a namespace that does not exist
    assert_eq!(lab.rpc("nonsense\n")["code"], 6);
    assert_eq!(lab.rpc("{\"op\":\"frobnicate\"}\n")["code"], 999);
    let v = lab.rpc(&format!(
        "{{\"op\":\"add\",\"id\":\"x/lan/eth0\",\"netns\":\"{}/nope\",\"ifname\":\"eth0\"}}\n",
        lab.tmp.str()
    ));
    assert!(v["msg"].as_str().unwrap().contains("/nope"), "{v}");
    for (ctr, name) in [(&c2, "mv2"), (&c3, "mv3")] {
        lab.node.sh(&["link", "add", name, "link", "lan0", "netns", &ctr.name, "type", "macvlan", "mode", "bridge"]);
        ctr.sh(&["link", "set", name, "name", "eth0"]);
    }
    // an ADD whose connection is dropped right after the request
    let mut s = UnixStream::connect(lab.sock()).unwrap();
    let add = format!("{{\"op\":\"add\",\"id\":\"ctr2/lan/eth0\",\"network\":\"lan\",\"netns\":\"{}\",\"ifname\":\"eth0\",\"request\":[1,3]}}\n", c2.path());
    s.write_all(add.as_bytes()).unwrap();
    drop(s);
    // a real plugin process killed while it waits for its lease
    let call = lab.call("dhcp", "ADD", "ctr3", &c3);
    let mut cmd = Command::new(bin());
    cmd.arg0("dhcp").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in &call.env {
        cmd.env(k, v);
    }
    let f = lab.node.file();
    let fd = f.as_raw_fd();
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut p = cmd.spawn().unwrap();
    p.stdin.take().unwrap().write_all(lab.ipam_conf().as_bytes()).unwrap();
    wait_for("the plugin's ADD to reach the daemon", 10, || lab.daemon_log().contains("ctr3/lan/eth0: acquiring"));
    p.kill().unwrap();
    p.wait().unwrap();
    // the daemon carries on: the abandoned leases are acquired once a server
    // answers, and later requests are served
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    let r1 = lab.add("ctr1", &c1);
    let mut held = Vec::new();
    for id in ["ctr2/lan/eth0", "ctr3/lan/eth0"] {
        let check = format!("{{\"op\":\"check\",\"id\":\"{id}\"}}\n");
        wait_for("an abandoned ADD's lease", 20, || lab.rpc(&check).get("result").is_some());
        held.push(lab.rpc(&check)["result"]["ips"][0]["address"].clone());
    }
    assert!(
        held[0] != held[1] && held[0] != r1["ips"][0]["address"] && held[1] != r1["ips"][0]["address"],
        "{held:?} {r1}"
    );
    assert_eq!(lab.rpc("{\"op\":\"del\",\"id\":\"ctr2/lan/eth0\"}\n"), serde_json::json!({}));
    lab.call("dhcp", "DEL", "ctr3", &c3).run(&lab.ipam_conf()).ok();
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    wait_for("three releases", 10, || lab.server_log().matches("DHCPRELEASE(srv0)").count() == 3);
    assert!(lab.daemon_alive());
}

#[test]
fn lost_unicast_renewals_fall_back_to_rebinding_at_t2() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &["--dhcp-option=option:T2,8"]);
    lab.start_daemon(&[]);
    let c1 = Netns::new("c1");
    let r = lab.add("ctr1", &c1);
    let ip = ip_of(&r);
    // The server stops hearing unicast: the renewal at T1 is lost, only the
    // broadcast REQUEST of rebinding (from T2) gets through.
    let rules = "table inet t { chain in { type filter hook input priority 0; ip daddr 10.55.0.1 udp dport 67 counter drop; }; }";
    let out = lab.srv.exec(&["nft", rules]);
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    let before = acks(&lab, &ip);
    wait_for("an ACK to a rebinding REQUEST", 30, || acks(&lab, &ip) > before);
    let nft = lab.srv.nft_json().to_string();
    assert!(!nft.contains(r#""packets":0"#), "no unicast renewal was dropped: {nft}");
    lab.check("ctr1", &c1, &r).ok();
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
}

/// Run the daemon in the node namespace expecting it to refuse to start:
/// its exit code and log, within 5 s.
fn daemon_refuses(lab: &Lab, args: &[&str]) -> (Option<i32>, String) {
    let log = lab.tmp.join("refused.log");
    let _ = std::fs::remove_file(&log);
    let mut a = vec!["dhcp", "daemon"];
    a.extend_from_slice(args);
    let mut c = spawn_in(&lab.node, bin().to_str().unwrap(), &a, &log);
    let end = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("the daemon neither started nor refused within 5 s: {}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn idle_connections_do_not_delay_other_clients() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    // Only the daemon's user may connect (socket 0600 in a 0700 directory):
    // an unprivileged user cannot even open an idle connection.
    let sock = lab.sock();
    let st = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(st.permissions().mode() & 0o777, 0o600);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c"])
        .arg(format!("import socket; socket.socket(socket.AF_UNIX).connect({sock:?})"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // So, as root: more idle connections than the daemon keeps, each sending
    // nothing (or half a request), held open for the whole test.
    let idle: Vec<UnixStream> = (0..300)
        .map(|i| {
            let mut s = UnixStream::connect(&sock).unwrap();
            if i % 2 == 0 {
                s.write_all(b"{\"op\":\"ad").unwrap();
            }
            s
        })
        .collect();
    let c1 = Netns::new("c1");
    let t = Instant::now();
    let r = lab.add("ctr1", &c1);
    assert!(t.elapsed() < Duration::from_secs(5), "ADD took {:?} behind idle connections", t.elapsed());
    assert!(ip_of(&r).starts_with("10.55.0."), "{r}");
    let t = Instant::now();
    lab.check("ctr1", &c1, &r).ok();
    assert!(t.elapsed() < Duration::from_secs(5), "CHECK took {:?}", t.elapsed());
    drop(idle);
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    assert!(lab.daemon_alive());
}

#[test]
fn a_request_naming_the_daemons_own_namespace_is_refused() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    // the node namespace (where the daemon runs), by its name and through /proc
    let pid = lab.daemon.as_ref().unwrap().id();
    for ns in [lab.node.path(), format!("/proc/{pid}/ns/net")] {
        let v = lab.rpc(&format!(
            "{{\"op\":\"add\",\"id\":\"x/lan/lan0\",\"network\":\"lan\",\"netns\":\"{ns}\",\"ifname\":\"lan0\"}}\n"
        ));
        assert_eq!(v["code"], 8, "{v}");
        assert_eq!(
            v["msg"],
            format!("network namespace {ns} is the DHCP daemon's own; refusing to run DHCP on the node's interfaces")
        );
    }
    assert!(!lab.daemon_log().contains("acquiring"), "{}", lab.daemon_log());
    assert!(!lab.server_log().contains("DHCPDISCOVER"), "{}", lab.server_log());
    // the node's interface is as it was: no address, no lease
    assert!(lab.node.addrs("lan0").iter().all(|a| !a.starts_with("10.55.")));
    assert!(lab.daemon_alive());
}

#[test]
fn a_state_directory_or_file_others_control_is_refused() {
    need_root!();
    let lab = Lab::new();
    let run = lab.tmp.join("run");
    let sock = lab.sock();
    use std::os::unix::fs::PermissionsExt;
    // a directory anyone may write to
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, log) = daemon_refuses(&lab, &["-socketpath", &sock]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&format!("{} belongs to uid 0 with mode 1777", run.display())), "{log}");
    // a directory another user owns (made before the daemon, as an attacker would)
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&run, Some(4242), Some(4242)).unwrap();
    let (code, log) = daemon_refuses(&lab, &["-socketpath", &sock]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("belongs to uid 4242"), "{log}");
    // the directory reached through a symbolic link
    std::fs::remove_dir(&run).unwrap();
    std::fs::create_dir(lab.tmp.join("real")).unwrap();
    std::os::unix::fs::symlink(lab.tmp.join("real"), &run).unwrap();
    let (code, log) = daemon_refuses(&lab, &["-socketpath", &sock]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is a symbolic link"), "{log}");
    std::fs::remove_file(&run).unwrap();
    // a leases file that is a symbolic link, or a FIFO (no hang)
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let leases = format!("{sock}.leases");
    std::os::unix::fs::symlink("/etc/passwd", &leases).unwrap();
    let (code, log) = daemon_refuses(&lab, &["-socketpath", &sock]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is a symbolic link; refusing to follow it"), "{log}");
    std::fs::remove_file(&leases).unwrap();
    assert!(Command::new("mkfifo").arg(&leases).status().unwrap().success());
    let (code, log) = daemon_refuses(&lab, &["-socketpath", &sock]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is not a regular file"), "{log}");
    // none of these left a socket behind
    assert!(!std::path::Path::new(&sock).exists());
}

/// Start the daemon as systemd would with socket activation: a python3
/// wrapper binds and listens on `sock`, puts the listener on descriptor 3,
/// sets LISTEN_FDS=1 and LISTEN_PID to its own pid, and execs the daemon
/// (same pid). The daemon is given another -socketpath, which it must ignore.
fn start_activated(lab: &mut Lab, sock: &str) {
    let wrapper = "import os, socket, sys\n\
        path = sys.argv[1]\n\
        if os.path.exists(path): os.unlink(path)\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.bind(path); os.chmod(path, 0o600); s.listen(128)\n\
        os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
        os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid())\n\
        os.execv(sys.argv[2], sys.argv[2:])\n";
    let unused = lab.tmp.join("unused/dhcp.sock").to_string_lossy().into_owned();
    let exe = bin();
    let args = ["-c", wrapper, sock, exe.to_str().unwrap(), "dhcp", "daemon", "-socketpath", &unused, "-timeout", "4s"];
    lab.daemon = Some(spawn_in(&lab.node, "python3", &args, &lab.tmp.join("daemon.log")));
    wait_for("the daemon to serve", 10, || lab.daemon_log().matches("listening on").count() > 0);
}

#[test]
fn socket_activation_and_a_restart_keep_the_lease() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    let run = lab.tmp.join("run");
    std::fs::create_dir_all(&run).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = lab.sock();
    start_activated(&mut lab, &sock);
    assert!(lab.daemon_log().contains(&format!("listening on {sock},")), "{}", lab.daemon_log());
    let c1 = Netns::new("c1");
    let r = lab.add("ctr1", &c1);
    let ip = ip_of(&r);
    // kept beside the socket systemd made, not at -socketpath
    let saved = std::fs::read_to_string(format!("{sock}.leases")).unwrap();
    assert!(saved.contains("ctr1/lan/eth0"), "{saved}");
    assert!(!lab.tmp.join("unused").exists());
    // killed and started again (as systemd restarts a service): the same lease is held
    stop(&mut lab.daemon);
    start_activated(&mut lab, &sock);
    wait_for("the lease to be restored", 10, || lab.daemon_log().contains("ctr1/lan/eth0: restored lease"));
    lab.check("ctr1", &c1, &r).ok();
    let again = lab.call("dhcp", "ADD", "ctr1", &c1).run(&lab.ipam_conf()).ok().json();
    assert_eq!(ip_of(&again), ip);
    let before = acks(&lab, &ip);
    wait_for("a renewal by the restarted daemon", 20, || acks(&lab, &ip) > before);
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    wait_for("DHCPRELEASE after the restart", 10, || lab.server_log().contains(&format!("DHCPRELEASE(srv0) {ip} ")));
    // an activated daemon leaves systemd's socket in place when it stops
    let pid = lab.daemon.as_ref().unwrap().id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(lab.daemon.as_mut().unwrap().wait().unwrap().success());
    lab.daemon = None;
    assert!(std::path::Path::new(&sock).exists());
}

#[test]
fn systemd_units_use_the_plugins_socket() {
    need_root!();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let socket = std::fs::read_to_string(dir.join("cnibox-dhcp.socket")).unwrap();
    let service = std::fs::read_to_string(dir.join("cnibox-dhcp.service")).unwrap();
    let listen = socket.lines().find_map(|l| l.strip_prefix("ListenStream=")).expect("ListenStream");
    assert!(socket.contains("SocketMode=0600") && socket.contains("DirectoryMode=0700"), "{socket}");
    assert!(service.lines().any(|l| l.starts_with("ExecStart=") && l.ends_with("cnibox dhcp daemon")), "{service}");
    // the plugin, given no daemonSocketPath, looks exactly there
    let node = Netns::new("node");
    let tmp = TempDir::new("units");
    let path = plugin_dir(&tmp);
    let conf = r#"{"cniVersion":"1.1.0","name":"lan","ipam":{"type":"dhcp"}}"#;
    let v = Call::new(Some(&node), "dhcp").set("CNI_COMMAND", "STATUS").set("CNI_PATH", &path).run(conf).err(50);
    assert!(v["msg"].as_str().unwrap().contains(&format!("cannot connect to {listen}: ")), "{v}");
}

#[test]
fn root_without_cap_net_admin_is_not_served() {
    need_dnsmasq!();
    let mut lab = Lab::new();
    lab.start_server("10.55.0.50,10.55.0.150", "leases", &[]);
    lab.start_daemon(&[]);
    let c1 = Netns::new("c1");
    let r = lab.add("ctr1", &c1);
    // uid 0 with no capability (a hostNetwork pod's root) passes the socket's
    // permissions, but may not release someone's lease
    let client = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\n\
         try: s.sendall(b'{{\"op\":\"del\",\"id\":\"ctr1/lan/eth0\"}}\\n')\n\
         except OSError: pass\nprint(s.makefile().readline())",
        lab.sock()
    );
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "python3", "-c", &client])
        .output()
        .unwrap();
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let msg = reply["msg"].as_str().unwrap();
    assert!(msg.contains("refusing a request from pid") && msg.contains("does not hold CAP_NET_ADMIN"), "{reply}");
    assert!(!lab.server_log().contains("DHCPRELEASE"), "{}", lab.server_log());
    lab.check("ctr1", &c1, &r).ok();
    lab.call("macvlan", "DEL", "ctr1", &c1).run(&lab.conf()).ok();
    wait_for("the runtime's DHCPRELEASE", 10, || lab.server_log().contains("DHCPRELEASE"));
}

#[test]
fn a_stuck_daemon_is_try_again_later_not_a_hang() {
    need_root!();
    let mut lab = Lab::new();
    // A "daemon" that listens but never accepts, its backlog full.
    std::fs::create_dir_all(lab.tmp.join("run")).unwrap();
    let stuck = "import socket, sys, time\n\
        l = socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); l.listen(0)\n\
        held = []\n\
        while True:\n\
        \x20   c = socket.socket(socket.AF_UNIX); c.setblocking(False)\n\
        \x20   try: c.connect(sys.argv[1])\n\
        \x20   except BlockingIOError: break\n\
        \x20   held.append(c)\n\
        print('full', flush=True)\n\
        time.sleep(600)\n";
    let sock = lab.sock();
    lab.daemon = Some(spawn_in(&lab.node, "python3", &["-c", stuck, &sock], &lab.tmp.join("daemon.log")));
    wait_for("the backlog to fill", 10, || lab.daemon_log().contains("full"));
    let c1 = Netns::new("c1");
    // bounded by `timeout`, so that the test itself cannot hang on a plugin that does
    for (cmd, code) in [("ADD", 11), ("STATUS", 50)] {
        let mut c = Command::new("timeout");
        c.args(["20", bin().to_str().unwrap(), "dhcp"]).stdin(Stdio::piped()).stdout(Stdio::piped());
        for (k, v) in &lab.call("dhcp", cmd, "ctr1", &c1).env {
            c.env(k, v);
        }
        let f = lab.node.file();
        let fd = f.as_raw_fd();
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let t = Instant::now();
        let mut p = c.spawn().unwrap();
        p.stdin.take().unwrap().write_all(lab.ipam_conf().as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{cmd} took {:?}", t.elapsed());
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", String::from_utf8_lossy(&out.stdout));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["msg"].as_str().unwrap().contains("is not accepting connections"), "{v}");
    }
}
