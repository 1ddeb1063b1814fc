#!/bin/sh
# make size: where the bytes of the stripped cnibox binary go.
#
#   scripts/size.sh [stable|tiny|both]   (default both; tiny needs nightly)
#
# Builds the same binary as `make` (and `make tiny`) once more without
# stripping, into target/size/ (target/size-tiny/), and adds up the sizes of
# its symbols (nm --size-sort -S, demangled) by crate and cnibox module:
# every byte of code and data that a symbol owns in the file (.bss owns none). What no symbol owns
# (ELF headers, relocations, unwind tables, string padding) is the rest up
# to the stripped binary's size, shown as such. The stripped binaries are
# the ones `make` and `make tiny` build; their sizes are printed first.
#
# Environment: TARGET (default x86_64-unknown-linux-musl), FEATURES (as make),
# TOP (rows shown per build, default 40), TINYFLAGS and TINYSTD (default: the
# Makefile's, TINYFLAGS with its TINYLINK, so that the tiny build measured is
# the one make tiny links).
set -eu
cd "$(dirname "$0")/.."

TARGET=${TARGET:-x86_64-unknown-linux-musl}
TOP=${TOP:-40}
WHICH=${1:-both}
from_makefile() { sed -n "s/^$1 *:= *//p" Makefile; }
TINYFLAGS=${TINYFLAGS:-$(from_makefile TINYFLAGS) $(from_makefile TINYLINK)}
TINYSTD=${TINYSTD:-$(from_makefile TINYSTD)}
FEATURE_FLAGS=""
if [ -n "${FEATURES:-}" ]; then
    # Commas, not spaces: the flags are split on spaces when expanded.
    FEATURE_FLAGS="--no-default-features --features $(echo "$FEATURES" | tr -s ' ' ',')"
fi

say() { echo "size.sh: $*" >&2; }

# Symbol sizes of an unstripped ELF file, added up per crate / cnibox module.
breakdown() {
    elf=$1
    stripped=$2
    # nm prints "address size type name"; -C demangles Rust's legacy mangling.
    nm -S -t d --size-sort -C --defined-only "$elf" | awk '
    function owner(name,   n, parts, i, c, depth, key, toks) {
        # <A as B>::f and <A>::f belong to A.
        if (substr(name, 1, 1) == "<") {
            sub(/^<+/, "", name)
            sub(/ as .*/, "", name)
            sub(/>::/, "::", name)
        }
        sub(/^(&mut |&|\*mut |\*const |dyn |\[)+/, "", name)
        # Generic arguments, innermost first; C++ parameter lists; the hash.
        while (gsub(/<[^<>]*>/, "", name) > 0) { }
        sub(/\(.*/, "", name)
        sub(/::h[0-9a-f]+$/, "", name)
        # C++ names carry a return type or a "vtable for" first: keep the qualified word.
        n = split(name, toks, " ")
        for (i = 1; i <= n; i++) if (index(toks[i], "::") > 0) { name = toks[i]; break }
        if (index(name, "::") == 0) return "(C: musl libc, compiler builtins)"
        n = split(name, parts, "::")
        c = parts[1]
        if (c !~ /^[A-Za-z_][A-Za-z0-9_]*$/) return "(other generic instances)"
        if (c == "cnibox") {
            depth = 2
            if (parts[2] == "plugins" || parts[2] == "runtime" || parts[2] == "nft" || parts[2] == "rtnl" || parts[2] == "ipam" || parts[2] == "cni" || parts[2] == "dhcp") depth = 3
            key = c
            for (i = 2; i <= depth && i < n; i++) key = key "::" parts[i]
            return key
        }
        if (c == "core" || c == "alloc" || c == "std") return c "::" parts[2]
        return c
    }
    # .bss (b, B) takes no bytes of the file: the allocator arena is one such symbol.
    $3 == "b" || $3 == "B" { next }
    {
        size = $2 + 0
        name = $0
        sub(/^[0-9a-f]+ [0-9a-f]+ . /, "", name)
        print size "\t" owner(name)
    }' | awk -F '\t' '{ s[$2] += $1; t += $1 } END { for (k in s) print s[k] "\t" k; print t "\t(all symbols)" }' |
        sort -rn >"$TMP/rows"
    total=$(awk -F '\t' '$2 == "(all symbols)" { print $1 }' "$TMP/rows")
    crate_rows=$(grep -v '(all symbols)' "$TMP/rows")
    printf '  %-48s %9s %6s\n' "crate / cnibox module (symbol bytes)" bytes share
    echo "$crate_rows" | head -n "$TOP" | awk -F '\t' -v s="$stripped" '{ printf "  %-48s %9d %5.1f%%\n", $2, $1, 100 * $1 / s }'
    n=$(echo "$crate_rows" | wc -l)
    if [ "$n" -gt "$TOP" ]; then
        echo "$crate_rows" | tail -n +"$((TOP + 1))" | awk -F '\t' -v s="$stripped" -v n="$((n - TOP))" \
            '{ t += $1 } END { printf "  %-48s %9d %5.1f%%\n", "(" n " more)", t, 100 * t / s }'
    fi
    # Per crate, all modules folded (cnibox as one).
    echo "$crate_rows" | awk -F '\t' '{ k = $2; sub(/::.*/, "", k); s[k] += $1 } END { for (k in s) print s[k] "\t" k }' |
        sort -rn | awk -F '\t' -v s="$stripped" 'BEGIN { printf "  by crate:" } { printf " %s %d (%.0f%%);", $2, $1, 100 * $1 / s } END { print "" }'
    awk -v t="$total" -v s="$stripped" 'BEGIN { printf "  %-48s %9d %5.1f%%\n  %-48s %9d\n", "not in any symbol (headers, unwind tables, relocations, padding)", s - t, 100 * (s - t) / s, "stripped binary", s }'
}

TMP=$(mktemp -d /tmp/cnibox-size.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

one() {
    kind=$1
    if [ "$kind" = tiny ]; then
        if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
            say "no nightly toolchain: skipping the tiny build (make tiny installs it)"
            return 0
        fi
        # shellcheck disable=SC2086
        CARGO_PROFILE_RELEASE_STRIP=none RUSTFLAGS="$TINYFLAGS" cargo +nightly build --release --locked \
            $TINYSTD --target "$TARGET" --target-dir target/size-tiny --bin cnibox $FEATURE_FLAGS >&2
        elf=target/size-tiny/$TARGET/release/cnibox
    else
        # shellcheck disable=SC2086
        CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --locked --target "$TARGET" --target-dir target/size \
            --bin cnibox $FEATURE_FLAGS >&2
        elf=target/size/$TARGET/release/cnibox
    fi
    # What `make` ships: the same binary with its symbols stripped.
    strip -o "$TMP/stripped" "$elf"
    stripped=$(stat -c %s "$TMP/stripped")
    echo "== $kind build ($TARGET${FEATURES:+, features: $FEATURES}): $stripped bytes stripped"
    breakdown "$elf" "$stripped"
    echo
}

case $WHICH in
    stable) one stable ;;
    tiny) one tiny ;;
    both) one stable && one tiny ;;
    *)
        say "usage: scripts/size.sh [stable|tiny|both]"
        exit 2
        ;;
esac
