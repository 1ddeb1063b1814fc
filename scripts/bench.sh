#!/bin/sh
# make bench: cnibox against the reference CNI plugins, side by side.
#
#   scripts/bench.sh [CNIBOX_BINARY] [-- extra cnibox-bench options]
#
# Builds the benchmark tool, makes sure the reference plugins (Debian's
# containernetworking-plugins) and iptables are installed, builds a
# cnitool-compatible driver on Debian's libcni when Go is available, puts the
# given cnibox binary behind a temporary plugin directory of symlinks, and runs
# cnibox-bench with defaults that finish in a few minutes. Results go to
# ./bench-out/ (bench.md, bench.json, bench.svg). Needs root: the tool creates
# throwaway network namespaces and never touches the machine's own.
#
# Environment: BENCH_ARGS (extra options, e.g. "--quick" or "--iterations 200"),
# BENCH_OUT (output directory, default bench-out), CARGO_TARGET_DIR (as cargo).
set -eu

BIN=${1:-target/x86_64-unknown-linux-musl/release/cnibox}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
OUT=${BENCH_OUT:-bench-out}

say() { echo "bench.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "needs root (it creates network namespaces); run: sudo make bench"
    exit 1
fi
if [ ! -x "$BIN" ]; then
    say "no cnibox binary at $BIN (run make first, or pass its path)"
    exit 1
fi
BIN=$(readlink -f "$BIN")

# The benchmark tool: a crate of its own (bench/), so the plugin binary stays small.
cargo build --release --locked -p cnibox-bench --bin cnibox-bench >&2
TOOL=${CARGO_TARGET_DIR:-target}/release/cnibox-bench

# The exec floor: a no-op of the same target and build profile as the binary
# measured (the tiny way when that binary is a tiny build and nightly is here).
TARGET=${TARGET:-x86_64-unknown-linux-musl}
case $BIN in
    */tiny/*)
        BUILD=tiny
        NOOP_DIR=target/tiny
        # shellcheck disable=SC2086
        RUSTFLAGS="${TINYFLAGS:-$(sed -n 's/^TINYFLAGS *:= *//p' Makefile)} ${TINYLINK:-$(sed -n 's/^TINYLINK *:= *//p' Makefile)}" \
            cargo +nightly build --release --locked -Z build-std=std,panic_abort --target "$TARGET" \
            --target-dir "$NOOP_DIR" -p cnibox-bench --bin cnibox-noop >&2 || NOOP_DIR=
        ;;
    *)
        BUILD=stable
        NOOP_DIR=${CARGO_TARGET_DIR:-target}
        cargo build --release --locked --target "$TARGET" -p cnibox-bench --bin cnibox-noop >&2 || NOOP_DIR=
        ;;
esac
NOOP_ARGS=""
if [ -n "$NOOP_DIR" ] && [ -x "$NOOP_DIR/$TARGET/release/cnibox-noop" ]; then
    NOOP_ARGS="--noop $(readlink -f "$NOOP_DIR/$TARGET/release/cnibox-noop")"
else
    say "could not build the no-op binary: floors without the exec part"
fi

# The reference plugins, and what their ipMasq/portmap (iptables backend) need.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not available: install $* by hand"
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; }
}
if [ ! -x /usr/lib/cni/bridge ]; then
    say "installing the reference plugins (containernetworking-plugins)"
    apt_install containernetworking-plugins || true
fi
if ! command -v iptables >/dev/null 2>&1; then
    say "installing iptables (the reference ipMasq and portmap use it)"
    apt_install iptables || true
fi
REF_ARGS=""
if [ -x /usr/lib/cni/bridge ]; then
    REF_VER=$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || true)
    REF_VER=${REF_VER%%+*}
    REF_LABEL="reference${REF_VER:+ $REF_VER}"
else
    say "reference plugins unavailable: measuring cnibox alone"
    REF_ARGS="--vs none"
    REF_LABEL=reference
fi

# cnitool for the reference side of the runtime scenario: on PATH if present,
# else a cnitool-compatible driver (add|check|del NET NETNS, same environment)
# built here on the libcni that Debian packages (golang-github-appc-cni-dev).
case $OUT in
    /*) TOOLS=$OUT/tools ;;
    *) TOOLS=$(pwd)/$OUT/tools ;;
esac
CNITOOL=$(command -v cnitool 2>/dev/null || true)
if [ -z "$CNITOOL" ] && [ -x "$TOOLS/cnitool" ]; then
    CNITOOL=$TOOLS/cnitool
fi
if [ -z "$CNITOOL" ]; then
    if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]; then
        say "building a cnitool needs Go and Debian's libcni: installing golang-go golang-github-appc-cni-dev"
        apt_install golang-go golang-github-appc-cni-dev || true
    fi
    if command -v go >/dev/null 2>&1 && [ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]; then
        mkdir -p "$TOOLS/src"
        cp "$(dirname "$0")/cnitool.go" "$TOOLS/src/main.go"
        GOTMP=$(mktemp -d /tmp/cnibox-bench-go.XXXXXX)
        if (cd "$TOOLS/src" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$GOTMP" GOFLAGS= \
            go build -o "$TOOLS/cnitool" main.go) >&2; then
            rm -rf "$GOTMP"
            CNITOOL=$TOOLS/cnitool
            say "built $CNITOOL on Debian's libcni"
        else
            rm -rf "$GOTMP"
            say "could not build a cnitool: the runtime scenario measures cnibox alone"
        fi
    else
        say "no Go or libcni: the runtime scenario measures cnibox alone"
    fi
fi

# A plugin directory: symlinks to the one cnibox binary, as an install makes them.
PLUGDIR=$(mktemp -d /tmp/cnibox-bench-plugins.XXXXXX)
trap 'rm -rf "$PLUGDIR"' EXIT INT TERM
# The names it answers to come from its own help text ("plugins: bridge ...").
ln -s "$BIN" "$PLUGDIR/cnibox"
NAMES=$("$BIN" --help 2>/dev/null | sed -n 's/^plugins: //p')
for p in ${NAMES:-bridge host-local static loopback portmap}; do
    ln -s cnibox "$PLUGDIR/$p"
done

# Defaults sized for a few minutes on a 2-core machine; the command line and
# BENCH_ARGS come after them and override them.
if [ -n "$CNITOOL" ]; then
    set -- --cnitool "$CNITOOL" "$@"
fi
# Reference sets given on the command line (--vs, each named by the
# --label-b that follows in order) replace the default one and its name.
case " $* ${BENCH_ARGS:-} " in
    *" --vs "*) ;;
    *) set -- --label-b "$REF_LABEL" "$@" ;;
esac
# shellcheck disable=SC2086
set -- --plugins "$PLUGDIR" --label-a cnibox --out "$OUT" \
    --iterations 100 --warmup 3 --rounds 3 --build "$BUILD" $REF_ARGS $NOOP_ARGS "$@" ${BENCH_ARGS:-}
"$TOOL" "$@"
