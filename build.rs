// Stamps the git commit into the binary (shown by `cnibox --version` and the
// plugins' about text). A build outside a git checkout says "unknown".
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let stamp = if dirty && commit != "unknown" { format!("{commit}-dirty") } else { commit };
    println!("cargo:rustc-env=CNIBOX_COMMIT={stamp}");
    // Target and build kind for `cnibox --version`: "tiny" is the nightly
    // build-std build with immediate-abort panics (make tiny, make dist).
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let kind = if flags.contains("panic=immediate-abort") { format!("{profile} tiny") } else { profile };
    println!("cargo:rustc-env=CNIBOX_BUILD={target}, {kind}");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    release_link_args(&target, &std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}

/// Smaller and quicker to start release binaries, same code (README, "Size"
/// and "Benchmark"): where the release profile's panic=abort means nothing
/// unwinds, the unwind tables are left out (link/no-unwind-tables.ld); the
/// functions the common calls run come first in the code, so that an exec
/// maps a few 64 KiB windows of it instead of all (link/hot-text.ld, written
/// by scripts/hot-text.sh); and the position-independent binary's
/// relocations are packed (DT_RELR, which musl's static-pie start applies)
/// instead of 24 bytes each. PIE, RELRO and BIND_NOW stay. Only on the target
/// and with the linker (the default `cc`) where all were measured and tested;
/// others (scripts/cross.sh's rust-lld) link as before.
fn release_link_args(target: &str, profile: &str) {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if profile != "release" || target != "x86_64-unknown-linux-musl" || std::env::var_os("RUSTC_LINKER").is_some() {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link/no-unwind-tables.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link/hot-text.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=link/no-unwind-tables.ld");
    println!("cargo:rerun-if-changed=link/hot-text.ld");
}
