#!/bin/sh
# The make test-vm scenarios, run by /init inside the guest (busybox sh) for
# the link kinds the build machine's kernel lacks: ipvlan (l2, l3), 802.1Q
# vlan, dummy, bridge VLAN filtering (vlan, vlanTrunk), and vrf once a vrf
# plugin exists. Each scenario makes its own namespaces with `cnibox netns`:
# a "node" in which the plugins run as a runtime runs them (CNI_* environment,
# config on stdin, CNI_NETNS a /run/netns path) and container namespaces;
# host-local IPAM keeps its state under /tmp. Each one: ADD into two
# containers, the kernel's view of the links (iproute2 ip -d, bridge vlan,
# sysfs, /proc/net/vlan), traffic between the containers, CHECK with
# prevResult, DEL, DEL again, and nothing left: no link in the container or
# the node, no reservation in host-local's state.
# Prints PASS/FAIL per scenario, then "N passed, M failed" alone on a line.

CNI=/opt/cni/bin
IP=/usr/sbin/ip          # iproute2: busybox's ip shows no link kind
BRIDGE=/usr/sbin/bridge
TC=/usr/sbin/tc
NFT=/usr/sbin/nft
DATA=/tmp/ipam
PASSED=0
FAILED=0
WHY=

# --- helpers: each returns non-zero with WHY set when something is wrong ------

fail() { WHY=$1; return 1; }
note() { echo "    ok: $*"; }

# nsx NS CMD...: run CMD in namespace NS (as `ip netns exec` would).
nsx() { _n=$1; shift; cnibox netns exec "$_n" -- "$@"; }

# new_ns NAME...: fresh namespaces, made the iproute2 way.
new_ns() {
  for _n in "$@"; do
    _o=$(cnibox netns add "$_n" 2>&1) || fail "cnibox netns add $_n: $_o" || return 1
  done
}

# cni PLUGIN COMMAND ID NETNS CONFIG: run PLUGIN in the node namespace as a
# runtime does; OUT gets its stdout, ERR its stderr, RC its exit status.
cni() {
  OUT=$(printf '%s' "$5" | cnibox netns exec node -- env CNI_COMMAND="$2" CNI_CONTAINERID="$3" \
    CNI_NETNS="/run/netns/$4" CNI_IFNAME="${IFNAME:-eth0}" CNI_PATH="$CNI" "$CNI/$1" 2>/tmp/cni.err)
  RC=$?
  ERR=$(cat /tmp/cni.err)
}
cni_ok() {
  cni "$@"
  [ "$RC" = 0 ] && { note "$1 $2 $3"; return 0; }
  fail "$1 $2 $3 (netns $4) exited $RC: $OUT $ERR"
}
cni_fails() {
  cni "$@"
  [ "$RC" != 0 ] && { note "$1 $2 $3 fails as it must: $(echo "$OUT" | tr -d '\n')"; return 0; }
  fail "$1 $2 $3 (netns $4) succeeded but must fail: $OUT"
}

# on_net1 CMD...: CMD with CNI_IFNAME=net1.
on_net1() { IFNAME=net1; "$@"; _r=$?; IFNAME=; return $_r; }

# with_prev CONFIG RESULT: CONFIG with RESULT as its prevResult.
with_prev() { printf '%s' "${1%\}},\"prevResult\":$2}"; }

# addr_of RESULT [N]: the Nth address of a result, without its prefix length.
addr_of() { printf '%s' "$1" | grep -o '"address": *"[^"]*"' | sed -n "${2:-1}p" | sed 's/.*"\([^"/]*\)\/.*/\1/'; }
# name_of RESULT N: the Nth interface name of a result.
name_of() { printf '%s' "$1" | grep -o '"name": *"[^"]*"' | sed -n "$2p" | sed 's/.*"\([^"]*\)"$/\1/'; }
mac_of() { printf '%s' "$1" | grep -o '"mac": *"[^"]*"' | sed -n "${2:-1}p" | sed 's/.*"\([^"]*\)"$/\1/'; }

# link_has NS IF REGEX: `ip -d link show IF` in NS matches REGEX.
link_has() {
  _l=$(nsx "$1" $IP -d -o link show dev "$2" 2>&1) || fail "$2 missing in $1: $_l" || return 1
  echo "$_l" | grep -qE -- "$3" || fail "$2 in $1 does not match /$3/: $_l" || return 1
  note "$1 $2: /$3/"
}

# has_addr NS IF ADDR: ADDR is on IF in NS.
has_addr() {
  nsx "$1" $IP -o addr show dev "$2" | grep -q "inet6\? $3/" || fail "$3 not on $2 in $1: $(nsx "$1" $IP -o addr show 2>&1)" || return 1
  note "$1 $2 has $3"
}

# links NS: interface names in NS, one a line.
links() { nsx "$1" $IP -o link show | sed 's/^[0-9]*: \([^:@]*\).*/\1/'; }

# only_links NS NAME...: NS holds exactly these interfaces (any order).
only_links() {
  _ns=$1; shift
  _want=$(for _x in "$@"; do echo "$_x"; done | sort | tr '\n' ' ')
  _have=$(links "$_ns" | sort | tr '\n' ' ')
  [ "$_have" = "$_want" ] || fail "$_ns holds [$_have], expected [$_want]" || return 1
  note "$_ns holds only [$_have]"
}

# reach NS ADDR / unreach NS ADDR: ping from NS. reach tries for up to 20 s:
# under TCG on a loaded machine neighbour discovery, and an IPv6 address's
# duplicate address detection (ping fails at once while it is tentative), take
# seconds; a try that fails at once must not use up the tries.
reach() {
  _end=$(($(date +%s) + 20))
  while :; do
    nsx "$1" ping -c 1 -W 2 $2 >/dev/null 2>&1 && { note "$1 reaches $2"; return 0; }
    [ "$(date +%s)" -lt "$_end" ] || break
    sleep 1
  done
  fail "$1 cannot reach $2 within 20 s ($(nsx "$1" $IP -o addr show | grep -v ' lo ' | tr -s ' ' | cut -d' ' -f2,4- | tr '\n' ' '))"
}
unreach() {
  if nsx "$1" ping -c 2 -W 1 $2 >/dev/null 2>&1; then fail "$1 reaches $2, which it must not"; return 1; fi
  note "$1 does not reach $2"
}

# listening NS PORT: wait up to 20 s until a TCP socket in NS listens on PORT.
listening() {
  _hex=$(printf ':%04X$' "$2")
  _end=$(($(date +%s) + 20))
  until nsx "$1" cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p="$_hex" '$2 ~ p && $4 == "0A" {f=1} END {exit !f}'; do
    [ "$(date +%s)" -lt "$_end" ] || fail "nothing listens on port $2 in $1 after 20 s" || return 1
    sleep 1
  done
}

# reserved NET ID / released NET ID: host-local's state for network NET holds
# (or no longer holds) a reservation for container ID. Host-local's scratch
# files (dot files) are not state.
reserved() {
  grep -qw "$2" "$DATA/$1/cnibox.state" 2>/dev/null || fail "no reservation for $2 in $DATA/$1/cnibox.state: $(cat "$DATA/$1/cnibox.state" 2>&1)" || return 1
  note "$1 reserves an address for $2"
}
released() {
  for _f in "$DATA/$1"/*; do
    [ -f "$_f" ] || continue
    if grep -qw "$2" "$_f"; then fail "$2 still holds an address in $_f: $(cat "$_f")"; return 1; fi
  done
  note "$1 holds nothing for $2"
}

# ipam CONFIG-NAME SUBNET: a host-local ipam object.
ipam() { printf '"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"%s"}]]}' "$DATA" "$1"; }

# nic NAME: a "NIC" in the node: a veth pair NAME <-> NAMEp, both up.
nic() {
  _o=$( { nsx node $IP link add "$1" type veth peer name "$1p" &&
    nsx node $IP link set "$1" up && nsx node $IP link set "$1p" up; } 2>&1) || fail "node NIC $1: $_o"
}

cleanup() {
  for _n in $(cnibox netns list 2>/dev/null); do cnibox netns del "$_n" 2>/dev/null; done
  rm -rf "$DATA" /tmp/cni.err
}

run() {
  WHY=
  echo "--- $1"
  T0=$(date +%s)
  if "$1"; then
    PASSED=$((PASSED + 1))
    echo "PASS $1 ($(($(date +%s) - T0)) s)"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $1: $WHY"
  fi
  cleanup
}

# --- scenarios ---------------------------------------------------------------

# cnibox netns itself, as the other scenarios use it.
netns() {
  new_ns t1 || return 1
  grep -q " /run/netns/t1 " /proc/mounts || fail "/run/netns/t1 is not a mount: $(grep netns /proc/mounts)" || return 1
  cnibox netns list | grep -qx t1 || fail "netns list: $(cnibox netns list 2>&1)" || return 1
  [ "$(readlink /proc/self/ns/net)" != "$(nsx t1 readlink /proc/self/ns/net)" ] || fail "netns exec t1 stayed in the initial namespace" || return 1
  only_links t1 lo || return 1
  # exec's own /sys shows the namespace's devices, not the initial ones.
  _s=$(nsx t1 ls /sys/class/net | tr '\n' ' ')
  [ "$_s" = "lo " ] || fail "/sys/class/net in t1 shows [$_s]" || return 1
  if _o=$(cnibox netns add t1 2>&1); then fail "netns add t1 twice succeeded"; return 1; fi
  note "second add refused: $_o"
  cnibox netns del t1 || fail "netns del t1" || return 1
  [ ! -e /run/netns/t1 ] || fail "/run/netns/t1 left after del" || return 1
  ! grep -q " /run/netns/t1 " /proc/mounts || fail "/run/netns/t1 still mounted" || return 1
  note "add, list, exec, del"
}

# ipvlan in MODE: two containers on one master talk through it.
ipvlan_mode() {
  mode=$1 sub=$2 net=ipvlan-$1
  new_ns node c1 c2 || return 1
  nic nic0 || return 1
  conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"ipvlan\",\"master\":\"nic0\",\"mode\":\"$mode\",\"mtu\":1400,$(ipam "$sub")}"
  cni_ok ipvlan ADD ctr1 c1 "$conf" || return 1
  r1=$OUT
  cni_ok ipvlan ADD ctr2 c2 "$conf" || return 1
  r2=$OUT
  a1=$(addr_of "$r1") a2=$(addr_of "$r2")
  [ -n "$a1" ] && [ -n "$a2" ] && [ "$a1" != "$a2" ] || fail "results lack two distinct addresses: $r1 / $r2" || return 1
  link_has c1 eth0 "ipvlan +mode $mode " || return 1
  link_has c2 eth0 "ipvlan +mode $mode " || return 1
  link_has c1 eth0 " mtu 1400 " || return 1
  has_addr c1 eth0 "$a1" || return 1
  has_addr c2 eth0 "$a2" || return 1
  if [ "$mode" = l3 ]; then link_has c1 eth0 "NOARP" || return 1; fi
  # An ipvlan carries its master's MAC; the result reports it.
  m0=$(nsx node cat /sys/class/net/nic0/address) m1=$(nsx c1 cat /sys/class/net/eth0/address)
  [ "$m0" = "$m1" ] || fail "eth0 MAC $m1 is not its master's $m0" || return 1
  [ "$(mac_of "$r1")" = "$m1" ] || fail "result MAC $(mac_of "$r1") is not eth0's $m1" || return 1
  note "eth0 carries nic0's MAC $m0"
  reserved "$net" ctr1 || return 1
  only_links node lo nic0 nic0p || return 1
  reach c1 "$a2" || return 1
  reach c2 "$a1" || return 1
  cni_ok ipvlan CHECK ctr1 c1 "$(with_prev "$conf" "$r1")" || return 1
  cni_ok ipvlan DEL ctr1 c1 "$conf" || return 1
  only_links c1 lo || return 1
  released "$net" ctr1 || return 1
  cni_ok ipvlan DEL ctr1 c1 "$conf" || return 1
  cni_fails ipvlan CHECK ctr1 c1 "$(with_prev "$conf" "$r1")" || return 1
  cni_ok ipvlan DEL ctr2 c2 "$conf" || return 1
  only_links c2 lo || return 1
  released "$net" ctr2 || return 1
  only_links node lo nic0 nic0p
}
ipvlan_l2() { ipvlan_mode l2 10.70.0.0/24; }
ipvlan_l3() { ipvlan_mode l3 10.71.0.0/24; }

# vlan: 802.1Q 42 on both ends of a wire (a veth pair in the node), one
# container on each; a third container on VLAN 43 in the same subnet is not
# reachable. The same VLAN twice on one master is refused and rolled back.
vlan() {
  net=vlan
  new_ns node c1 c2 c3 c4 || return 1
  nic nic0 || return 1
  conf() { printf '{"cniVersion":"1.0.0","name":"%s","type":"vlan","master":"%s","vlanId":%s,%s%s}' "$net" "$1" "$2" "$3" "$(ipam 10.72.0.0/24)"; }
  c42a=$(conf nic0 42 '"mtu":1400,') c42b=$(conf nic0p 42 '') c43=$(conf nic0p 43 '')
  cni_ok vlan ADD ctr1 c1 "$c42a" || return 1
  r1=$OUT
  cni_ok vlan ADD ctr2 c2 "$c42b" || return 1
  r2=$OUT
  cni_ok vlan ADD ctr3 c3 "$c43" || return 1
  r3=$OUT
  a1=$(addr_of "$r1") a2=$(addr_of "$r2") a3=$(addr_of "$r3")
  link_has c1 eth0 "vlan protocol 802.1Q id 42 " || return 1
  link_has c1 eth0 " mtu 1400 " || return 1
  link_has c2 eth0 "vlan protocol 802.1Q id 42 " || return 1
  link_has c3 eth0 "vlan protocol 802.1Q id 43 " || return 1
  _v=$(nsx c1 cat /proc/net/vlan/eth0 | tr -s ' \t' ' ')
  echo "$_v" | grep -q "VID: 42 " && echo "$_v" | grep -q "Device: nic0" || fail "/proc/net/vlan/eth0 in c1: $_v" || return 1
  note "c1 /proc/net/vlan/eth0: VID 42 on nic0"
  has_addr c1 eth0 "$a1" || return 1
  reserved "$net" ctr1 || return 1
  only_links node lo nic0 nic0p || return 1
  reach c1 "$a2" || return 1
  reach c2 "$a1" || return 1
  unreach c1 "$a3" || return 1
  # VLAN 42 on nic0 exists (in c1): a second one is refused, leaving nothing.
  cni_fails vlan ADD ctr4 c4 "$c42a" || return 1
  only_links c4 lo || return 1
  released "$net" ctr4 || return 1
  cni_ok vlan CHECK ctr1 c1 "$(with_prev "$c42a" "$r1")" || return 1
  cni_ok vlan DEL ctr1 c1 "$c42a" || return 1
  only_links c1 lo || return 1
  released "$net" ctr1 || return 1
  cni_ok vlan DEL ctr1 c1 "$c42a" || return 1
  cni_fails vlan CHECK ctr1 c1 "$(with_prev "$c42a" "$r1")" || return 1
  cni_ok vlan DEL ctr2 c2 "$c42b" || return 1
  # CHECK of a link that is no longer a vlan: c3's eth0 replaced by a dummy.
  _o=$( { nsx c3 $IP link del eth0 && nsx c3 $IP link add eth0 type dummy; } 2>&1) || fail "replace eth0 in c3: $_o" || return 1
  cni_fails vlan CHECK ctr3 c3 "$(with_prev "$c43" "$r3")" || return 1
  echo "$OUT" | grep -q 'not of type vlan' || fail "CHECK of a dummy eth0 as vlan: $OUT" || return 1
  cni_ok vlan DEL ctr3 c3 "$c43" || return 1
  only_links c2 lo && only_links c3 lo || return 1
  released "$net" ctr2 && released "$net" ctr3 || return 1
  only_links node lo nic0 nic0p
}

# dummy: an addressed dummy in each of two containers; nothing in the node.
dummy() {
  net=dummy
  new_ns node c1 c2 || return 1
  conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"dummy\",$(ipam 10.73.0.0/24)}"
  cni_ok loopback ADD ctr1 c1 '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}' || return 1
  cni_ok dummy ADD ctr1 c1 "$conf" || return 1
  r1=$OUT
  cni_ok dummy ADD ctr2 c2 "$conf" || return 1
  r2=$OUT
  a1=$(addr_of "$r1") a2=$(addr_of "$r2")
  [ -n "$a1" ] && [ -n "$a2" ] && [ "$a1" != "$a2" ] || fail "results lack two distinct addresses: $r1 / $r2" || return 1
  link_has c1 eth0 " dummy " || return 1
  link_has c1 eth0 "<[^>]*UP" || return 1
  link_has c2 eth0 " dummy " || return 1
  has_addr c1 eth0 "$a1" || return 1
  has_addr c2 eth0 "$a2" || return 1
  nsx c1 $IP route show | grep -q "^10.73.0.0/24 dev eth0" || fail "no subnet route in c1: $(nsx c1 $IP route show)" || return 1
  note "c1 routes 10.73.0.0/24 to eth0"
  reach c1 "$a1" || return 1
  reserved "$net" ctr1 || return 1
  only_links node lo || return 1
  cni_ok dummy CHECK ctr1 c1 "$(with_prev "$conf" "$r1")" || return 1
  cni_ok dummy DEL ctr1 c1 "$conf" || return 1
  only_links c1 lo || return 1
  released "$net" ctr1 || return 1
  cni_ok dummy DEL ctr1 c1 "$conf" || return 1
  cni_fails dummy CHECK ctr1 c1 "$(with_prev "$conf" "$r1")" || return 1
  # The interface gone but the address still held: CHECK names the interface,
  # DEL still releases the address.
  nsx c2 $IP link del eth0 || fail "cannot delete eth0 in c2" || return 1
  cni_fails dummy CHECK ctr2 c2 "$(with_prev "$conf" "$r2")" || return 1
  echo "$OUT" | grep -q 'eth0' || fail "CHECK without eth0 does not name it: $OUT" || return 1
  cni_ok dummy DEL ctr2 c2 "$conf" || return 1
  only_links c2 lo || return 1
  released "$net" ctr2 || return 1
  only_links node lo
}

# port_vlans PORT: "vid flags" per VLAN of a bridge port in the node, one a line.
port_vlans() {
  nsx node $BRIDGE vlan show dev "$1" | sed 1d | sed "s/^$1//" | tr -s ' \t' ' ' | sed 's/^ //; s/ $//' | grep .
}

# bridge with VLAN filtering: access VLAN 100 (two containers, gateway on
# cbr0.100), access VLAN 200 (isolated from 100 in the same subnet), a trunk
# port (100, 200-201 tagged) whose container reaches VLAN 100 through its own
# 802.1Q sub-interface.
bridge_vlan() {
  new_ns node c1 c2 c3 c4 || return 1
  bconf() { printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"cbr0",%s,%s}' "$1" "$2" "$(ipam "$3")"; }
  gw100=$(bconf bvlan '"vlan":100,"isGateway":true' 10.74.0.0/24)
  acc100=$(bconf bvlan '"vlan":100' 10.74.0.0/24)
  acc200=$(bconf bvlan '"vlan":200' 10.74.0.0/24)
  trunk=$(bconf btrunk '"vlanTrunk":[{"id":100},{"minID":200,"maxID":201}]' 10.75.0.0/24)
  cni_ok bridge ADD ctr1 c1 "$gw100" || return 1
  r1=$OUT
  cni_ok bridge ADD ctr2 c2 "$acc100" || return 1
  r2=$OUT
  cni_ok bridge ADD ctr3 c3 "$acc200" || return 1
  r3=$OUT
  cni_ok bridge ADD ctr4 c4 "$trunk" || return 1
  r4=$OUT
  a1=$(addr_of "$r1") a2=$(addr_of "$r2") a3=$(addr_of "$r3")
  p1=$(name_of "$r1" 2) p2=$(name_of "$r2" 2) p3=$(name_of "$r3" 2) p4=$(name_of "$r4" 2)
  [ -n "$p1" ] && [ -n "$p4" ] || fail "no host port in the results: $r1 / $r4" || return 1
  _f=$(nsx node cat /sys/class/net/cbr0/bridge/vlan_filtering)
  [ "$_f" = 1 ] || fail "cbr0 vlan_filtering is $_f" || return 1
  note "cbr0 filters VLANs"
  for _p in "$p1" "$p2"; do
    [ "$(port_vlans "$_p" | tr '\n' ';')" = "100 PVID Egress Untagged;" ] || fail "port $_p VLANs: $(port_vlans "$_p" | tr '\n' ';')" || return 1
  done
  [ "$(port_vlans "$p3" | tr '\n' ';')" = "200 PVID Egress Untagged;" ] || fail "port $p3 VLANs: $(port_vlans "$p3" | tr '\n' ';')" || return 1
  [ "$(port_vlans "$p4" | tr '\n' ';')" = "100;200;201;" ] || fail "trunk port $p4 VLANs: $(port_vlans "$p4" | tr '\n' ';')" || return 1
  note "ports: $p1 $p2 access 100, $p3 access 200, $p4 trunk 100,200,201 (VLAN 1 removed)"
  has_addr node cbr0.100 10.74.0.1 || return 1
  reserved bvlan ctr1 && reserved btrunk ctr4 || return 1
  reach c1 10.74.0.1 || return 1
  reach c1 "$a2" || return 1
  reach c2 "$a1" || return 1
  unreach c1 "$a3" || return 1
  # The trunk carries VLAN 100 tagged: the container's own eth0.100 is on it.
  _o=$( { nsx c4 $IP link add link eth0 name eth0.100 type vlan id 100 &&
    nsx c4 $IP addr add 10.74.0.200/24 dev eth0.100 && nsx c4 $IP link set eth0.100 up; } 2>&1) ||
    fail "eth0.100 in c4: $_o" || return 1
  reach c4 "$a1" || return 1
  unreach c4 "$a3" || return 1
  cni_ok bridge CHECK ctr1 c1 "$(with_prev "$gw100" "$r1")" || return 1
  cni_ok bridge CHECK ctr4 c4 "$(with_prev "$trunk" "$r4")" || return 1
  cni_ok bridge DEL ctr1 c1 "$gw100" || return 1
  only_links c1 lo || return 1
  released bvlan ctr1 || return 1
  cni_ok bridge DEL ctr1 c1 "$gw100" || return 1
  cni_ok bridge DEL ctr2 c2 "$acc100" || return 1
  cni_ok bridge DEL ctr3 c3 "$acc200" || return 1
  cni_ok bridge DEL ctr4 c4 "$trunk" || return 1
  only_links c2 lo && only_links c3 lo && only_links c4 lo || return 1
  for _id in ctr2 ctr3; do released bvlan $_id || return 1; done
  released btrunk ctr4 || return 1
  _left=$(links node | grep -E "^($p1|$p2|$p3|$p4)\$" | tr '\n' ' ')
  [ -z "$_left" ] || fail "host ports left in the node: $_left" || return 1
  note "node keeps: $(links node | tr '\n' ' ')"
}

# vrf chained after macvlan: c1's eth0 (IPv4, IPv6, a gateway route) and net1
# go into VRF blue (table 1001), made on first use; addresses stay, routes
# move to the VRF's table, so c1 reaches c2 only from inside the VRF. DEL of
# one member keeps the VRF, DEL of the last removes it.
vrf() {
  new_ns node c1 c2 || return 1
  nic nic0 || return 1
  mconf="{\"cniVersion\":\"1.0.0\",\"name\":\"vrfnet\",\"type\":\"macvlan\",\"master\":\"nic0\",\"mode\":\"bridge\",\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$DATA\",\"ranges\":[[{\"subnet\":\"10.76.0.0/24\"}],[{\"subnet\":\"fd76::/64\"}]],\"routes\":[{\"dst\":\"192.0.2.0/24\",\"gw\":\"10.76.0.1\"}]}}"
  m2conf="{\"cniVersion\":\"1.0.0\",\"name\":\"vrfnet2\",\"type\":\"macvlan\",\"master\":\"nic0\",\"mode\":\"bridge\",$(ipam 10.77.0.0/24)}"
  vconf='{"cniVersion":"1.0.0","name":"vrfnet","type":"vrf","vrfname":"blue","table":1001}'
  v2conf='{"cniVersion":"1.0.0","name":"vrfnet2","type":"vrf","vrfname":"blue"}'
  cni_ok macvlan ADD ctr1 c1 "$mconf" || return 1
  m1=$OUT
  cni_ok macvlan ADD ctr2 c2 "$mconf" || return 1
  m2=$OUT
  a1=$(addr_of "$m1") a2=$(addr_of "$m2") a16=$(addr_of "$m1" 2) a26=$(addr_of "$m2" 2)
  reach c1 "$a2" || return 1
  cni_ok vrf ADD ctr1 c1 "$(with_prev "$vconf" "$m1")" || return 1
  v1=$OUT
  echo "$v1" | grep -q "\"$a1/24\"" || fail "vrf ADD does not pass its prevResult on: $v1" || return 1
  link_has c1 blue "vrf table 1001 " || return 1
  link_has c1 eth0 " master blue " || return 1
  has_addr c1 eth0 "$a1" || return 1
  has_addr c1 eth0 "$a16" || return 1
  _t=$(nsx c1 $IP route show table 1001)
  echo "$_t" | grep -q "^10.76.0.0/24 dev eth0" && echo "$_t" | grep -q "^192.0.2.0/24 via 10.76.0.1 dev eth0" ||
    fail "table 1001 in c1: $_t" || return 1
  _m=$(nsx c1 $IP route show table main)
  ! echo "$_m" | grep -q "eth0" || fail "main table in c1 still routes via eth0: $_m" || return 1
  _t6=$(nsx c1 $IP -6 route show table 1001)
  echo "$_t6" | grep -q "^fd76::/64 dev eth0" || fail "IPv6 table 1001 in c1: $_t6" || return 1
  note "c1 routes (IPv4, IPv6, via the gateway) are in table 1001, none left in main"
  reach c1 "-I blue $a2" || return 1
  reach c2 "$a1" || return 1
  reach c2 "$a16" || return 1
  unreach c1 "$a2" || return 1
  # A second interface joins the existing VRF (its table found, not given).
  on_net1 cni_ok macvlan ADD ctr1 c1 "$m2conf" || return 1
  n1=$OUT
  on_net1 cni_ok vrf ADD ctr1 c1 "$(with_prev "$v2conf" "$n1")" || return 1
  link_has c1 net1 " master blue " || return 1
  cni_ok vrf CHECK ctr1 c1 "$(with_prev "$vconf" "$v1")" || return 1
  on_net1 cni_ok vrf CHECK ctr1 c1 "$(with_prev "$v2conf" "$n1")" || return 1
  cni_fails vrf CHECK ctr1 c1 "$(with_prev '{"cniVersion":"1.0.0","name":"vrfnet","type":"vrf","vrfname":"blue","table":1002}' "$v1")" || return 1
  cni_ok vrf DEL ctr1 c1 "$vconf" || return 1
  link_has c1 blue "vrf table 1001 " || return 1
  ! nsx c1 $IP -o link show eth0 | grep -q " master " || fail "eth0 still enslaved after DEL" || return 1
  note "eth0 out of blue, blue kept for net1"
  cni_ok vrf DEL ctr1 c1 "$vconf" || return 1
  on_net1 cni_ok vrf DEL ctr1 c1 "$v2conf" || return 1
  only_links c1 lo eth0 net1 || return 1
  on_net1 cni_ok vrf DEL ctr1 c1 "$v2conf" || return 1
  cni_ok macvlan DEL ctr1 c1 "$mconf" || return 1
  on_net1 cni_ok macvlan DEL ctr1 c1 "$m2conf" || return 1
  cni_ok macvlan DEL ctr2 c2 "$mconf" || return 1
  only_links c1 lo && only_links c2 lo || return 1
  released vrfnet ctr1 && released vrfnet2 ctr1 && released vrfnet ctr2 || return 1
  only_links node lo nic0 nic0p
}

# bridge with ipMasq, then firewall, portmap and bandwidth chained on it, as a
# node runs them; a client namespace "cl" on a wire to the node (192.168.77.0/24)
# has no route to the pod network, so c1 reaches it only masqueraded, and cl
# reaches c1's port 80 only through the node's 8080. The oracles: nft's and
# tc's view of the kernel, and the packets. DEL in reverse order leaves no
# link, rule, qdisc or reservation.
edge() {
  new_ns node c1 cl || return 1
  _o=$( { nsx node $IP link add up0 type veth peer name up0p && nsx node $IP link set up0p netns cl &&
    nsx node $IP addr add 192.168.77.1/24 dev up0 && nsx node $IP link set up0 up &&
    nsx cl $IP addr add 192.168.77.2/24 dev up0p && nsx cl $IP link set up0p up && nsx cl $IP link set lo up; } 2>&1) ||
    fail "wire node-cl: $_o" || return 1
  net=edge
  bconf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"bridge\",\"bridge\":\"cbr1\",\"isGateway\":true,\"ipMasq\":true,\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$DATA\",\"ranges\":[[{\"subnet\":\"10.80.0.0/24\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}}"
  fconf='{"cniVersion":"1.0.0","name":"edge","type":"firewall"}'
  pconf='{"cniVersion":"1.0.0","name":"edge","type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}'
  wconf='{"cniVersion":"1.0.0","name":"edge","type":"bandwidth","runtimeConfig":{"bandwidth":{"ingressRate":8000000,"ingressBurst":1000000,"egressRate":8000000,"egressBurst":1000000}}}'
  cni_ok bridge ADD ctr1 c1 "$bconf" || return 1
  r1=$OUT
  a1=$(addr_of "$r1") host=$(name_of "$r1" 2)
  [ -n "$a1" ] && [ -n "$host" ] || fail "bridge result lacks address or host port: $r1" || return 1
  _r=$(nsx node $NFT list ruleset 2>&1)
  echo "$_r" | grep -q "ip saddr $a1 .*jump\|ip saddr $a1 " || fail "no masquerade rule for $a1: $_r" || return 1
  note "nft: masquerade rule for $a1"
  reach c1 192.168.77.2 || return 1
  cni_ok firewall ADD ctr1 c1 "$(with_prev "$fconf" "$r1")" || return 1
  _r=$(nsx node $NFT list table inet cni_firewall 2>&1)
  echo "$_r" | grep -q "$a1" || fail "firewall: $a1 not in table inet cni_firewall: $_r" || return 1
  note "nft: inet cni_firewall accepts $a1"
  cni_ok firewall CHECK ctr1 c1 "$(with_prev "$fconf" "$r1")" || return 1
  # the same attachment with only an IPv6 address, then back: its IPv4 set goes and comes back
  _v6='{"cniVersion":"1.0.0","interfaces":[{"name":"x"}],"ips":[{"address":"fd00::5/64"}]}'
  cni_ok firewall ADD ctr1 c1 "$(with_prev "$fconf" "$_v6")" || return 1
  cni_ok firewall CHECK ctr1 c1 "$(with_prev "$fconf" "$_v6")" || return 1
  cni_ok firewall ADD ctr1 c1 "$(with_prev "$fconf" "$r1")" || return 1
  cni_ok firewall CHECK ctr1 c1 "$(with_prev "$fconf" "$r1")" || return 1
  note "firewall: CHECK, and ADD again with other families (sets replaced)"
  cni_ok portmap ADD ctr1 c1 "$(with_prev "$pconf" "$r1")" || return 1
  _r=$(nsx node $NFT list table ip cni_hostport 2>&1)
  echo "$_r" | grep -q "dport 8080 .*dnat to $a1:80" || fail "portmap: no DNAT 8080 -> $a1:80: $_r" || return 1
  note "nft: tcp dport 8080 dnat to $a1:80"
  nsx c1 nc -l -p 80 -e /bin/echo hello-from-c1 >/dev/null 2>&1 &
  _srv=$!
  listening c1 80 || { kill $_srv 2>/dev/null; return 1; }
  _got=$(nsx cl nc -w 5 192.168.77.1 8080 </dev/null 2>&1)
  kill $_srv 2>/dev/null
  [ "$_got" = hello-from-c1 ] || fail "cl -> 192.168.77.1:8080 answered [$_got], not c1's server" || return 1
  note "cl reaches c1:80 through the node's 8080"
  cni_ok bandwidth ADD ctr1 c1 "$(with_prev "$wconf" "$r1")" || return 1
  _q=$(nsx node $TC qdisc show dev "$host" 2>&1)
  echo "$_q" | grep -q "qdisc tbf " && echo "$_q" | grep -q "qdisc ingress " || fail "bandwidth: $host qdiscs: $_q" || return 1
  _ifb=$(nsx node $IP -o link show type ifb | sed 's/^[0-9]*: \([^:@]*\).*/\1/' | head -1)
  [ -n "$_ifb" ] && nsx node $TC qdisc show dev "$_ifb" | grep -q "qdisc tbf " || fail "bandwidth: no ifb with tbf: $(nsx node $IP -o link show)" || return 1
  reach c1 192.168.77.2 || return 1
  _sent=$(nsx node $TC -s qdisc show dev "$host" | sed -n 's/^ *Sent \([0-9]*\) bytes.*/\1/p' | head -1)
  [ "${_sent:-0}" -gt 0 ] || fail "bandwidth: nothing sent through $host's tbf" || return 1
  note "tc: tbf on $host ($_sent bytes sent through it) and on $_ifb, ingress redirect"
  cni_ok bandwidth CHECK ctr1 c1 "$(with_prev "$wconf" "$r1")" || return 1
  cni_ok bandwidth DEL ctr1 c1 "$(with_prev "$wconf" "$r1")" || return 1
  cni_ok portmap DEL ctr1 c1 "$(with_prev "$pconf" "$r1")" || return 1
  cni_ok firewall DEL ctr1 c1 "$(with_prev "$fconf" "$r1")" || return 1
  cni_ok bridge DEL ctr1 c1 "$bconf" || return 1
  cni_ok bridge DEL ctr1 c1 "$bconf" || return 1
  only_links c1 lo || return 1
  released "$net" ctr1 || return 1
  _r=$(nsx node $NFT list ruleset 2>&1)
  ! echo "$_r" | grep -q "$a1\|ctr1" || fail "rules left for $a1/ctr1: $_r" || return 1
  _left=$(links node | grep -E "^($host|$_ifb)\$" | tr '\n' ' ')
  [ -z "$_left" ] || fail "links left in the node: $_left" || return 1
  note "nothing left: no link, rule or reservation for ctr1"
}

# tuning chained on bridge: MTU and a sysctl in the container; DEL restores the MTU.
tuning() {
  new_ns node c1 || return 1
  net=tun
  bconf="{\"cniVersion\":\"1.0.0\",\"name\":\"$net\",\"type\":\"bridge\",\"bridge\":\"cbr2\",$(ipam 10.81.0.0/24)}"
  tconf='{"cniVersion":"1.0.0","name":"tun","type":"tuning","mtu":1280,"sysctl":{"net.ipv4.conf.eth0.arp_filter":"1"}}'
  cni_ok bridge ADD ctr1 c1 "$bconf" || return 1
  r1=$OUT
  _before=$(nsx c1 cat /proc/sys/net/ipv4/conf/eth0/arp_filter)
  cni_ok tuning ADD ctr1 c1 "$(with_prev "$tconf" "$r1")" || return 1
  link_has c1 eth0 " mtu 1280 " || return 1
  _v=$(nsx c1 cat /proc/sys/net/ipv4/conf/eth0/arp_filter)
  [ "$_v" = 1 ] || fail "arp_filter in c1 is $_v after tuning ADD" || return 1
  note "c1 eth0 arp_filter 1 (was $_before)"
  cni_ok tuning CHECK ctr1 c1 "$(with_prev "$tconf" "$r1")" || return 1
  cni_ok tuning DEL ctr1 c1 "$(with_prev "$tconf" "$r1")" || return 1
  # link settings come back; sysctls stay, as the reference leaves them (they go with the namespace)
  link_has c1 eth0 " mtu 1500 " || return 1
  note "DEL restored mtu 1500"
  cni_ok bridge DEL ctr1 c1 "$bconf" || return 1
  only_links c1 lo || return 1
  released "$net" ctr1
}

# vrf: only when the binary has a vrf plugin.
has_vrf() { cnibox --help | grep -q '^plugins:.* vrf\( \|$\)'; }

echo "cnibox test-vm: $(cnibox --version), kernel $(uname -r)"
cleanup
for t in netns ipvlan_l2 ipvlan_l3 vlan dummy bridge_vlan edge tuning; do run $t; done
if has_vrf; then
  run vrf
else
  echo "SKIP vrf: this cnibox has no vrf plugin (the kernel here has vrf links)"
fi
echo "$PASSED passed, $FAILED failed"
