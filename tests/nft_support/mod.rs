//! Helpers shared by the nftables tests (portmap, masquerade, spoofcheck):
//! wiring namespaces together, small python3 servers and clients for real
//! traffic, and readers for `nft -j list ruleset`. Included by those tests
//! with `#[path]`; in a folder of its own, it is not a test crate itself.

#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;
pub use common::*;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A veth pair between two namespaces, addresses given with `nodad` (so
/// IPv6 is usable at once) and both ends up.
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    a.sh(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", ifname];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.sh(&args);
        }
        ns.sh(&["link", "set", ifname, "up"]);
    }
}

/// Routing on in `ns` (both families), as on any node that forwards for containers.
pub fn forwarding(ns: &Netns) {
    for k in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        assert!(ns.exec(&["sysctl", "-qw", k]).status.success(), "sysctl {k}");
    }
}

/// A child process, killed when the guard drops (declare it after the
/// namespace it runs in, so that it dies first).
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER: &str = r#"
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def peer(a): return a[0].removeprefix('::ffff:')
def sock(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', port))
    return s
t, u = sock(socket.SOCK_STREAM), sock(socket.SOCK_DGRAM)
t.listen(16)
def tcp():
    while True:
        c, a = t.accept()
        try:
            c.recv(100)
            c.sendall(f'{name} {peer(a)}'.encode())
        except OSError:
            pass
        c.close()
threading.Thread(target=tcp, daemon=True).start()
print('ready', flush=True)
while True:
    d, a = u.recvfrom(100)
    u.sendto(f'{name} {peer(a)}'.encode(), a)
"#;

/// A TCP and UDP server on `port` (both families) in `ns` that answers
/// every request with "<name> <address of the peer it saw>".
pub fn serve(ns: &Netns, name: &str, port: u16) -> Bg {
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", SERVER, name, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 server");
    let mut line = String::new();
    let _ = BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line);
    let bg = Bg(c);
    assert_eq!(line.trim(), "ready", "server in {} did not start", ns.name);
    bg
}

const CLIENT: &str = r#"
import socket, sys
proto, host, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.settimeout(3)
if sport:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', sport))
try:
    if proto == 'tcp':
        s.connect((host, port)); s.sendall(b'hi'); print(s.recv(100).decode())
    else:
        s.sendto(b'hi', (host, port)); print(s.recvfrom(100)[0].decode())
except OSError as e:
    print('ERR', e); sys.exit(1)
"#;

/// One request from `ns` to `host:port` over `proto` ("tcp"/"udp"), from
/// source port `sport` (0: any); the server's answer, or None.
pub fn talk_from(ns: &Netns, proto: &str, host: &str, port: u16, sport: u16) -> Option<String> {
    let out = ns.exec(&["python3", "-c", CLIENT, proto, host, &port.to_string(), &sport.to_string()]);
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

pub fn talk(ns: &Netns, proto: &str, host: &str, port: u16) -> Option<String> {
    talk_from(ns, proto, host, port, 0)
}

/// The socket keeper's own table (src/nft/keeper.rs), which lives as long as
/// the keeper, not as any attachment: the readers below leave it out.
pub const KEEPER_TABLE: &str = "cnibox_keeper";

/// Every rule of the ruleset but the keeper's: (family, table, chain, comment).
pub fn rules(ns: &Netns) -> Vec<(String, String, String, String)> {
    let v = ns.nft_json();
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let r = &item["rule"];
        if r.is_object() && r["table"] != KEEPER_TABLE {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            out.push((s("family"), s("table"), s("chain"), s("comment")));
        }
    }
    out
}

/// The chains of the ruleset but the keeper's: (family, table, name).
pub fn chains(ns: &Netns) -> Vec<(String, String, String)> {
    let v = ns.nft_json();
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["chain"];
        if c.is_object() && c["table"] != KEEPER_TABLE {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            out.push((s("family"), s("table"), s("name")));
        }
    }
    out
}

/// `nft list ruleset` as text, for assertion messages and layout checks.
pub fn ruleset_text(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned()
}

/// Run `nft -f -` with `script` in `ns` (how the reference's knftables applies
/// a transaction); panics with nft's message on failure.
pub fn nft_apply(ns: &Netns, script: &str) {
    use std::io::Write;
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "nft -f failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
}

/// How many `execve` calls a CNI call made, the first (strace starting the
/// binary) included: run under `strace -f` inside `node`.
pub fn execves(node: &Netns, tmp: &TempDir, exe: &str, env: &[(&str, &str)], stdin: &str) -> (Run, Vec<String>) {
    let (run, lines) = traced(node, tmp, exe, env, stdin, "execve");
    (run, lines.into_iter().filter(|l| l.contains("execve(")).collect())
}

/// A CNI call run under `strace -f -e trace=<calls>` inside `node`: its
/// result and the trace's lines.
pub fn traced(
    node: &Netns,
    tmp: &TempDir,
    exe: &str,
    env: &[(&str, &str)],
    stdin: &str,
    calls: &str,
) -> (Run, Vec<String>) {
    use std::io::Write;
    let trace = tmp.join(&unique("strace-"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.name, "strace", "-f", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&trace)
        .arg(exe);
    for (k, _) in std::env::vars() {
        if k.starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run strace");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = std::fs::read_to_string(&trace).unwrap_or_default().lines().map(String::from).collect();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, lines)
}

/// Set `prevResult` in a config.
pub fn with_prev(conf: &str, prev: &Value) -> String {
    let mut v: Value = serde_json::from_str(conf).unwrap();
    v["prevResult"] = prev.clone();
    v.to_string()
}
