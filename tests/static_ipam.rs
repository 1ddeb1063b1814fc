//! static IPAM, run as a runtime runs it. It keeps no state and touches no
//! namespace, so CNI_NETNS names a path that does not exist; what is checked
//! is the exact result (against the reference's outputs) and its errors.

mod common;
use common::*;
use serde_json::{json, Value};

fn run(cmd: &str, args: &str, conf: &Value) -> Run {
    let mut c = Call::new(None, "static");
    c.set("CNI_COMMAND", cmd)
        .set("CNI_CONTAINERID", "ctr1")
        .set("CNI_NETNS", "/nonexistent/netns")
        .set("CNI_IFNAME", "eth0");
    c.set("CNI_PATH", "/nonexistent/bin").set("CNI_ARGS", args);
    c.run(&conf.to_string())
}

fn conf(v: &str, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("static");
    json!({"cniVersion": v, "name": "st", "type": "macvlan", "ipam": ipam})
}

#[test]
fn addresses_routes_and_dns_in_every_version() {
    let c = |v: &str| {
        conf(
            v,
            json!({"addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00:10::5/64"}],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:10::1"}],
                   "dns": {"nameservers": ["10.10.0.53"], "domain": "example", "search": ["example"], "options": ["ndots:1"]}}),
        )
    };
    let dns =
        json!({"nameservers": ["10.10.0.53"], "domain": "example", "search": ["example"], "options": ["ndots:1"]});
    assert_eq!(
        run("ADD", "", &c("1.0.0")).ok().json(),
        json!({"cniVersion": "1.0.0", "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00:10::5/64"}],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:10::1"}], "dns": dns})
    );
    assert_eq!(
        run("ADD", "", &c("0.3.1")).ok().json(),
        json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.10.0.5/24", "gateway": "10.10.0.1"},
               {"version": "6", "address": "fd00:10::5/64"}],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:10::1"}], "dns": dns})
    );
    assert_eq!(
        run("ADD", "", &c("0.2.0")).ok().json(),
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.10.0.5/24", "gateway": "10.10.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
               "ip6": {"ip": "fd00:10::5/64", "routes": [{"dst": "::/0", "gw": "fd00:10::1"}]}, "dns": dns})
    );
}

#[test]
fn precedence_of_cni_args_args_and_runtime_config() {
    let base = conf("1.0.0", json!({"addresses": [{"address": "10.1.0.5/24"}]}));
    // CNI_ARGS IP adds to the config's list; GATEWAY goes to the CNI_ARGS address in its subnet
    let v = run("ADD", "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.2.0.5/24, 10.3.0.5/24;GATEWAY=10.1.0.254,10.2.0.1", &base)
        .ok()
        .json();
    assert_eq!(
        v["ips"],
        json!([{"address": "10.1.0.5/24"}, {"address": "10.2.0.5/24", "gateway": "10.2.0.1"}, {"address": "10.3.0.5/24"}])
    );
    // args.cni.ips replace everything before them
    let mut c = base.clone();
    c["args"] = json!({"cni": {"ips": ["10.4.0.5/16"]}});
    assert_eq!(run("ADD", "IP=10.2.0.5/24", &c).ok().json()["ips"], json!([{"address": "10.4.0.5/16"}]));
    // and runtimeConfig.ips replace those
    c["runtimeConfig"] = json!({"ips": ["10.5.0.5/16", "fd00::5/64"]});
    assert_eq!(run("ADD", "", &c).ok().json()["ips"], json!([{"address": "10.5.0.5/16"}, {"address": "fd00::5/64"}]));
    // no addresses at all is a result without ips
    assert_eq!(run("ADD", "", &conf("1.0.0", json!({}))).ok().json(), json!({"cniVersion": "1.0.0"}));
}

#[test]
fn errors_are_the_reference_ones() {
    let e = run("ADD", "IP=10.2.0.5", &conf("1.0.0", json!({}))).err(7);
    assert_eq!(e["msg"], "the 'ip' field is expected to be in CIDR notation, got: '10.2.0.5'");
    let e = run("ADD", "IP=10.2.0.5/24;GATEWAY=nope", &conf("1.0.0", json!({}))).err(7);
    assert_eq!(e["msg"], "invalid gateway address: nope");
    let e = run("ADD", "", &conf("1.0.0", json!({"addresses": [{"address": "10.1.0.5"}]}))).err(7);
    assert_eq!(e["msg"], "the 'address' field is expected to be in CIDR notation, got: '10.1.0.5'");
    let mut c = conf("1.0.0", json!({}));
    c["runtimeConfig"] = json!({"ips": ["10.1.0.5"]});
    let e = run("ADD", "", &c).err(7);
    assert_eq!(e["msg"], "an entry in the 'ips' field is NOT in CIDR notation, got: '10.1.0.5'");
    let two = json!({"addresses": [{"address": "10.1.0.5/24"}, {"address": "10.1.1.5/24"}]});
    let e = run("ADD", "", &conf("0.2.0", two.clone())).err(7);
    assert_eq!(e["msg"], "CNI version 0.2.0 does not support more than 1 address per family");
    run("ADD", "", &conf("0.3.0", two)).ok();
    let e = run("ADD", "", &json!({"cniVersion": "1.0.0", "name": "st"})).err(7);
    assert_eq!(e["msg"], "IPAM config missing 'ipam' key");
    let e = run("ADD", "MAC=x", &conf("1.0.0", json!({}))).err(999);
    assert_eq!(e["msg"], "ARGS: unknown args [\"MAC=x\"]");
}

#[test]
fn check_compares_gateways_and_del_is_a_no_op() {
    let c = conf(
        "1.0.0",
        json!({"addresses": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}, {"address": "10.9.0.5/24"}]}),
    );
    let e = run("CHECK", "", &c).err(999);
    assert_eq!(e["msg"], "Required prevResult missing");
    let mut ok = c.clone();
    ok["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}, {"address": "10.9.0.5/24", "gateway": "10.9.0.9"}]});
    run("CHECK", "", &ok).ok();
    let mut bad = c.clone();
    bad["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.2"}]});
    let e = run("CHECK", "", &bad).err(999);
    assert_eq!(e["msg"], "static: Failed to match addr 10.1.0.5 on interface eth0");
    // an address the previous result does not carry is not checked (as the reference)
    let mut other = c.clone();
    other["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.7.0.5/24"}]});
    run("CHECK", "", &other).ok();
    // DEL, GC and STATUS have nothing to do
    run("DEL", "", &c).ok();
    run("DEL", "", &c).ok();
    let mut g = Call::new(None, "static");
    g.set("CNI_COMMAND", "GC").set("CNI_PATH", "/x");
    g.run(&conf("1.1.0", json!({})).to_string()).ok();
    g.set("CNI_COMMAND", "STATUS");
    g.run(&conf("1.1.0", json!({})).to_string()).ok();
}
