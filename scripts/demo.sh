#!/usr/bin/env bash
# cnibox demo: a throwaway "node" namespace with two container namespaces,
# both attached to a bridge with host-local addresses by the cnibox binary,
# exactly as a container runtime would call it. Pings between them, then
# deletes everything and shows that nothing is left. The machine's own
# network namespace is never touched.
set -euo pipefail
BIN=$(readlink -f "${1:-target/x86_64-unknown-linux-musl/release/cnibox}")
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "demo: $BIN not found; run make first" >&2; exit 1; }

tag=cnibox-demo-$$
node=$tag-node; c1=$tag-c1; c2=$tag-c2
work=$(mktemp -d /tmp/cnibox-demo.XXXXXX)
cleanup() {
  for ns in "$c1" "$c2" "$node"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bin"
for p in bridge host-local loopback; do ln -s "$BIN" "$work/bin/$p"; done
conf=$(cat <<JSON
{"cniVersion":"1.0.0","name":"demo","type":"bridge","bridge":"cni0",
 "isDefaultGateway":true,"hairpinMode":true,
 "ipam":{"type":"host-local","dataDir":"$work/ipam","ranges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:88::/64"}]]}}
JSON
)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cni() { # cni COMMAND CONTAINER-ID NETNS
  echo "$conf" | ip netns exec "$node" env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="/run/netns/$3" CNI_IFNAME=eth0 CNI_PATH="$work/bin" "$work/bin/bridge"
}

say "network config (embedded)"; echo "$conf"
for ns in "$node" "$c1" "$c2"; do ip netns add "$ns"; done
ip -n "$node" link set lo up

say "ADD container 1"; r1=$(cni ADD ctr1 "$c1"); echo "$r1"
say "ADD container 2"; r2=$(cni ADD ctr2 "$c2"); echo "$r2"
ip2=$(echo "$r2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])')
ip2v6=$(echo "$r2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][1]["address"].split("/")[0])')

say "kernel state in the node namespace"
ip -n "$node" -br link; ip -n "$node" -br addr show dev cni0
say "container 1"; ip -n "$c1" -br addr; ip -n "$c1" route

say "ping container 1 -> gateway 10.88.0.1"; ip netns exec "$c1" ping -c 2 -W 2 10.88.0.1
say "ping container 1 -> container 2 ($ip2)"; ip netns exec "$c1" ping -c 2 -W 2 "$ip2"
say "ping6 container 1 -> container 2 ($ip2v6)"; ip netns exec "$c1" ping -c 2 -W 2 "$ip2v6"

say "DEL both"; cni DEL ctr1 "$c1"; cni DEL ctr2 "$c2"; echo ok
say "what is left"
left=$(ip -n "$node" -o link | grep -c veth || true)
echo "veth interfaces on the node: $left"
echo "host-local state ($work/ipam/demo):"; ls -la "$work/ipam/demo"; cat "$work/ipam/demo"/* 2>/dev/null | sed 's/^/  | /'
[ "$left" = 0 ] || { echo "demo: interfaces leaked" >&2; exit 1; }
say "done: namespaces and state are removed on exit"
