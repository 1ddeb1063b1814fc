#!/bin/sh
# make test-features: a cnibox built with only some plugin features (its
# path and plugin list are the arguments) lists exactly those plugins, runs
# them, and refuses the others and the runtime commands it was built without.
set -eu
BIN=$1
WANT=$2
fail() { echo "test-features: FAIL: $*" >&2; exit 1; }

got=$("$BIN" --help | sed -n 's/^plugins: //p')
[ "$got" = "$WANT" ] || fail "plugins listed: \"$got\", want \"$WANT\""
"$BIN" --help | grep -q 'cnibox run' && fail "--help offers the runtime commands"

for p in $WANT; do
    out=$(echo '{"cniVersion":"1.0.0","name":"n","type":"'"$p"'"}' | CNI_COMMAND=VERSION "$BIN" "$p")
    echo "$out" | grep -q '"supportedVersions"' || fail "$p VERSION printed: $out"
done

if "$BIN" bridge >/dev/null 2>&1; then fail "answers to bridge, which it was built without"; fi
if "$BIN" add n /dev/null >/dev/null 2>&1; then fail "runs the runtime command add, built without it"; fi
"$BIN" bridge 2>&1 | grep -q 'unknown plugin or command "bridge"' || fail "no clear message for a plugin it lacks"
echo "test-features: ok ($WANT)"
