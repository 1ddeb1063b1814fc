#!/usr/bin/env bash
# Regenerate link/hot-text.ld: the functions the common calls run, laid out
# first in the binary's code, in the order the calls need them.
#
#   sudo scripts/hot-text.sh
#
# Why: the kernel maps a file's code on a fault 64 KiB at a time (fault-around)
# and unmaps it all at exit, so an exec pays for every 64 KiB window of code
# it touches. Linked in the compiler's order, even VERSION touches most of the
# binary's windows; with these functions first, a few (README, "Benchmark",
# has the measured figures).
#
# How: the stable and the tiny build, unstripped, each run VERSION, STATUS, loopback ADD/DEL,
# bridge + host-local ADD/CHECK/DEL (with and without ipMasq) and portmap
# ADD/DEL under valgrind's callgrind, in network namespaces this script
# creates and removes; every function that ran is listed once, in the order of
# the first call that ran it, with the hashes in its mangled name replaced by
# wildcards so that the list survives code changes. A function renamed since
# is merely left in the compiler's order; rerun this after large changes.
# Needs root, valgrind, python3 and the nightly toolchain (make tiny installs
# it). build.rs passes the result to the linker for the x86_64 musl release
# builds (make, make tiny). Environment: TINYFLAGS and TINYSTD (as the Makefile's).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "hot-text.sh: needs root (it creates network namespaces)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "hot-text.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "hot-text.sh: needs python3" >&2; exit 1; }

TARGET=x86_64-unknown-linux-musl
TINYFLAGS=${TINYFLAGS:--Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none -Cforce-unwind-tables=no -Cllvm-args=-enable-machine-outliner}
TINYSTD=${TINYSTD:--Z build-std=std,panic_abort -Z build-std-features=optimize_for_size}
# Both builds, unstripped: their symbols differ (nightly mangles everything
# the v0 way, std is built anew), and the list holds the names of both.
CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --locked --target "$TARGET" --target-dir target/hot-text \
    --bin cnibox >&2
# shellcheck disable=SC2086
CARGO_PROFILE_RELEASE_STRIP=none RUSTFLAGS="$TINYFLAGS" cargo +nightly build --release --locked $TINYSTD \
    --target "$TARGET" --target-dir target/hot-text-tiny --bin cnibox >&2

TMP=$(mktemp -d /tmp/cnibox-hot.XXXXXX)
NODE=cnibox-hot-node-$$
POD=cnibox-hot-pod-$$
cleanup() {
    ip netns del "$POD" 2>/dev/null || true
    ip netns del "$NODE" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NODE"
ip netns add "$POD"
mkdir -p "$TMP/out"

# run NAME PLUGIN COMMAND IFNAME CONFIG: one call under callgrind (and the
# delegates it execs: valgrind's /proc/self/exe is not the binary, so
# host-local runs as its own process there).
run() {
    step=$((step + 1))
    local out
    out=$(printf '%s' "$5" | CNI_COMMAND=$3 CNI_CONTAINERID=hot CNI_NETNS=/var/run/netns/$POD CNI_IFNAME=$4 \
        CNI_PATH=$TMP/$KIND/bin ip netns exec "$NODE" valgrind --tool=callgrind --trace-children=yes --demangle=no \
        --callgrind-out-file="$TMP/out/$(printf %02d $step)-$KIND-$1.%p.out" "$TMP/$KIND/bin/$2" 2>/dev/null) ||
        { echo "hot-text.sh: $1 failed: $out" >&2; exit 1; }
    LAST=$out
}
# conf NAME IPMASQ: a bridge network on this build's data directory
conf() {
    printf '{"cniVersion":"1.1.0","name":"%s","type":"bridge","bridge":"cnbhot0","isGateway":true,"isDefaultGateway":true,"forceAddress":true,"hairpinMode":true,"ipMasq":%s,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.250.0.0/16"}]],"dataDir":"%s"}}' \
        "$1" "$2" "$TMP/$KIND/ipam"
}
with_prev() { # with_prev CONFIG RESULT: the config with prevResult (and portmap's runtimeConfig) added
    python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["prevResult"]=json.loads(sys.argv[2])
if c["type"]=="portmap": c["runtimeConfig"]={"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}
print(json.dumps(c))' "$1" "$2"
}
PORTMAP='{"cniVersion":"1.1.0","name":"hot","type":"portmap","capabilities":{"portMappings":true},"snat":true}'

for KIND in stable tiny; do
    step=0
    case $KIND in
        stable) BIN=$(pwd)/target/hot-text/$TARGET/release/cnibox ;;
        tiny) BIN=$(pwd)/target/hot-text-tiny/$TARGET/release/cnibox ;;
    esac
    mkdir -p "$TMP/$KIND/bin"
    for p in bridge host-local loopback portmap; do ln -sf "$BIN" "$TMP/$KIND/bin/$p"; done
    PLAIN=$(conf hot false)
    MASQ=$(conf hotmasq true)

    run version bridge VERSION eth0 "$PLAIN"
    # STATUS comes before any pod: the data directory does not exist yet
    run status bridge STATUS eth0 "$PLAIN"
    run lo-add loopback ADD lo '{"cniVersion":"0.3.1","name":"lo","type":"loopback"}'
    run lo-del loopback DEL lo '{"cniVersion":"0.3.1","name":"lo","type":"loopback"}'
    run bridge-add bridge ADD eth0 "$PLAIN"
    ADDED=$LAST
    run bridge-check bridge CHECK eth0 "$(with_prev "$PLAIN" "$ADDED")"
    run status-again bridge STATUS eth0 "$PLAIN"
    run portmap-add portmap ADD eth0 "$(with_prev "$PORTMAP" "$ADDED")"
    run portmap-del portmap DEL eth0 "$(with_prev "$PORTMAP" "$ADDED")"
    run bridge-del bridge DEL eth0 "$PLAIN"
    run masq-add bridge ADD eth1 "$MASQ"
    run masq-del bridge DEL eth1 "$MASQ"
done

python3 - "$TMP/out" link/hot-text.ld target/hot-text/$TARGET/release/cnibox \
    target/hot-text-tiny/$TARGET/release/cnibox <<'EOF'
import os, re, subprocess, sys
src, dst, bins = sys.argv[1], sys.argv[2], sys.argv[3:]
# A C function is often known by an alias (sigaction for __sigaction,
# __init_tls for static_init_tls) while its section is named after the
# definition: every name at the same address is listed with it.
aliases = {}
for b in bins:
    at = {}
    for line in subprocess.run(["nm", "--defined-only", b], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tTwW" and not f[2].startswith("_R") and not f[2].startswith("_ZN"):
            at.setdefault(f[0], []).append(f[2])
    for group in at.values():
        for n in group:
            aliases.setdefault(n, set()).update(group)
seen, patterns = set(), []
for f in sorted(os.listdir(src)):
    names, ran = {}, []
    for line in open(os.path.join(src, f), errors="replace"):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        if name:
            names[ident] = name
        if kind == "fn" and ident not in ran:
            ran.append(ident)
    for ident in ran:
        name = names.get(ident, "")
        name = re.sub(r"'\d+$", "", name)  # callgrind's mark of a recursive call's level
        if name == "(below main)":  # valgrind's name for the C start that calls main
            name = "__libc_start_main"
        if not name or name.startswith(("0x", "(")):
            continue
        if name.startswith("OUTLINED_FUNCTION_"):  # the machine outliner's, numbered anew each build
            p = "OUTLINED_FUNCTION_*"
        elif name.startswith("_ZN"):  # legacy mangling: the hash is the last element
            p = re.sub(r"17h[0-9a-f]{16}E$", "17h*", name)
        elif name.startswith("_R"):  # v0 mangling: crate disambiguators
            p = re.sub(r"\*+", "*", re.sub(r"Cs[0-9A-Za-z]+_", "*", name))
        else:  # C (musl, compiler builtins), under each of its names
            for p in sorted(aliases.get(name, {name})):
                if p not in seen:
                    seen.add(p)
                    patterns.append(p)
            continue
        if p not in seen:
            seen.add(p)
            patterns.append(p)
with open(dst, "w") as out:
    out.write("/* Generated by scripts/hot-text.sh: the functions the common calls run,\n")
    out.write(" * first in the code, in the order the calls need them (see the script). */\n")
    out.write("SECTIONS\n{\n    .text.first : {\n")
    # The C start files and musl's functions without a section of their own (assembly).
    out.write("        *crt1.o(.text .text.*)\n        *libc.a:*(.text)\n")
    # LLVM puts a function it deems cold (#[cold], or reached only on a
    # cold path) in .text.unlikely.<name>; that is still run, so it comes too.
    for p in patterns:
        out.write("        *(.text.%s .text.unlikely.%s)\n" % (p, p))
    out.write("    }\n}\nINSERT BEFORE .text;\n")
print("hot-text.sh: %d functions in %s" % (len(patterns), dst), file=sys.stderr)
EOF
