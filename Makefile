# cnibox build, test, install, benchmark.
#   make              stripped static musl binary (stable toolchain)
#   make tiny         the same, built with nightly's build-std (much smaller)
#   make test         unit tests + integration tests against the release binary (root)
#   make test-tiny    integration tests against the tiny binary
#   make test-vm      ipvlan, vlan, dummy, vrf under Debian's kernel in qemu
#   make fuzz-smoke   every cargo-fuzz target for 60 s (nightly)
#   make demo         the README's demo: two containers on a bridge, in throwaway namespaces
#   make bench        exec latency side by side with the reference Go plugins
#   make install DESTDIR=... PREFIX=/opt/cni/bin
#   make dist         release tarballs for x86_64 arm64 armhf riscv64 i686 s390x in dist/ (tiny builds)
#   make dist-check   one of them rebuilt from a fresh clone elsewhere: the same bytes?
#   make test-arch    unit tests of every target (qemu-user), i686 integration suite, VM suite
#                     under the arm64, armhf and s390x Debian kernels (qemu-system)

TARGET   ?= x86_64-unknown-linux-musl
PREFIX   ?= /opt/cni/bin
DESTDIR  ?=
# FEATURES="bridge host-local loopback" builds only those plugins (cargo
# features named as the plugins, plus `runtime` for the runtime side).
FEATURES ?=
FEATURE_FLAGS = $(if $(strip $(FEATURES)),--no-default-features --features "$(strip $(FEATURES))")
# immediate-abort never unwinds, so the unwind tables (.eh_frame, 125 KB) are dead weight.
# LLVM's machine outliner shares repeated instruction sequences (-16 KB on x86_64;
# scripts/cross.sh leaves it out for the other architectures, see there).
TINYFLAGS := -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none -Cforce-unwind-tables=no -Cllvm-args=-enable-machine-outliner
# The tiny build links with the toolchain's own lld (through cc, so build.rs's
# scripts still apply), as make dist does for every target: it lays the
# segments out without padding each to a page in the file (-7 KB beside GNU
# ld; R, RX and RW stay apart in memory), and folds functions whose code is
# identical (--icf=all, -1 KB; nothing in cnibox compares function
# addresses). Only make tiny, make size and a tiny bench use this;
# scripts/cross.sh names rust-lld itself. make hot-text traces a build linked
# without it, where every function runs under its own name, so that the list
# names each of the functions lld may fold together.
TINYLINK := -Clinker-features=+lld -Clink-self-contained=+linker -Clink-arg=-Wl,--icf=all
# std rebuilt for size: heapsort for every sort (one small instance per element type
# instead of driftsort/ipnsort's), the short integer formatting loops (-28 KB).
TINYSTD := -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size

BIN      = $(or $(CARGO_TARGET_DIR),target)/$(TARGET)/release/cnibox
TINY_BIN = target/tiny/$(TARGET)/release/cnibox
FAILPOINT_BIN = target/failpoints/debug/cnibox

.PHONY: all build tiny need-root test test-features test-unit test-tiny test-vm demo bench install clean target size hot-text failpoints fuzz-smoke

all: build

# Add the musl target when rustup can; otherwise fall back to the host target.
target:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)'; then \
	  rustup target add $(TARGET) >/dev/null 2>&1 || \
	  echo "cnibox: cannot add $(TARGET); build with TARGET=x86_64-unknown-linux-gnu instead" >&2; \
	fi

build: target
	cargo build --release --locked --target $(TARGET) --bin cnibox $(FEATURE_FLAGS)
	@ls -l $(BIN) | awk '{print "cnibox: " $$5 " bytes, $(BIN)"}'

tiny:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@rustup component list --toolchain nightly --installed | grep -q '^rust-src' || rustup component add rust-src --toolchain nightly
	@rustup target list --toolchain nightly --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET) --toolchain nightly
	RUSTFLAGS="$(TINYFLAGS) $(TINYLINK)" cargo +nightly build --release --locked $(TINYSTD) \
	  --target $(TARGET) --target-dir target/tiny --bin cnibox $(FEATURE_FLAGS)
	@ls -l $(TINY_BIN) | awk '{print "cnibox (tiny): " $$5 " bytes, $(TINY_BIN)"}'

# Rewrite link/hot-text.ld: the functions the common calls run, linked first (root, valgrind).
hot-text:
	TINYFLAGS="$(TINYFLAGS)" TINYSTD="$(TINYSTD)" ./scripts/hot-text.sh

# Where the bytes go, by crate and cnibox module, for both builds (scripts/size.sh).
size: build tiny
	@echo "normal: $$(stat -c %s $(BIN)) bytes; tiny: $$(stat -c %s $(TINY_BIN)) bytes"
	TARGET=$(TARGET) FEATURES="$(strip $(FEATURES))" TINYFLAGS="$(TINYFLAGS) $(TINYLINK)" TINYSTD="$(TINYSTD)" ./scripts/size.sh both

test-unit:
	cargo test --locked --lib

# Test-only build with the fault hook (src/failpoint.rs), used by tests/crash.rs.
failpoints:
	cargo build --locked --features failpoints --bin cnibox --target-dir target/failpoints

# The integration tests create namespaces and kernel objects: as another user
# they could only fail, so say so at once instead.
need-root:
	@[ "$$(id -u)" = 0 ] || { echo "make test: the integration tests need root (they create network namespaces): run it as root, e.g. sudo make test" >&2; exit 1; }

# Integration tests run the binary given by CNIBOX_BIN in namespaces they create.
test: need-root build failpoints test-features
	CNIBOX_BIN=$(abspath $(BIN)) CNIBOX_FAILPOINT_BIN=$(abspath $(FAILPOINT_BIN)) \
	  cargo test --locked --no-fail-fast -- --test-threads=$${TEST_THREADS:-4}

# A binary with only some plugins builds, answers to those and refuses the rest.
test-features:
	cargo build --locked --bin cnibox --target-dir target/features --no-default-features --features "loopback portmap"
	./scripts/test-features.sh target/features/debug/cnibox "loopback portmap"

test-tiny: need-root tiny failpoints
	CNIBOX_BIN=$(abspath $(TINY_BIN)) CNIBOX_FAILPOINT_BIN=$(abspath $(FAILPOINT_BIN)) \
	  cargo test --locked --no-fail-fast --test '*' -- --test-threads=$${TEST_THREADS:-4}

# Every cargo-fuzz target for FUZZ_SECONDS (60) each; needs nightly; not part of CI's default run.
fuzz-smoke:
	./scripts/fuzz-smoke.sh

# Interface kinds this kernel lacks (ipvlan, vlan, dummy, vrf), for real under
# Debian's kernel in qemu (software emulation); see scripts/test-vm.sh.
test-vm: build
	./scripts/test-vm.sh $(BIN)

demo: build
	./scripts/demo.sh $(BIN)

bench: build
	./scripts/bench.sh $(BIN)

install: build
	install -d $(DESTDIR)$(PREFIX)
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/cnibox
	@# one link per plugin the binary was built with, as its --help lists them
	@plugins=$$($(BIN) --help | sed -n 's/^plugins: //p'); \
	  for p in $$plugins; do ln -sf cnibox $(DESTDIR)$(PREFIX)/$$p; done; \
	  echo "installed cnibox and links: $$plugins -> $(DESTDIR)$(PREFIX)"

clean:
	cargo clean

# Other architectures: scripts/cross.sh says how each is built.
.PHONY: dist dist-check test-arch
dist:
	TINYFLAGS="$(TINYFLAGS)" ./scripts/dist.sh

DIST_CHECK_TARGET ?= aarch64-unknown-linux-musl
dist-check:
	TINYFLAGS="$(TINYFLAGS)" ./scripts/dist.sh --check $(DIST_CHECK_TARGET)

test-arch:
	TINYFLAGS="$(TINYFLAGS)" ./scripts/test-arch.sh
