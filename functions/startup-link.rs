//! The build script of every function (and of the bench's bare floor): a release build for Linux
//! is linked with functions/startup.ld, which gathers the code a function runs before it asks
//! Lambda for its first event at the front of the executable. The kernel maps code around each
//! page fault, 64 KiB at a time, so start-up code scattered through the binary makes most of it
//! resident at a cold start; gathered, little more than itself (BENCHMARKS.md, section 1).
//! `make startup-order` writes the script; BAKERY_STARTUP_ORDER=off links without it.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-env-changed=BAKERY_STARTUP_ORDER");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // The workspace's functions/ directory: where this script is, beside the linker script.
    let Some(functions) = Path::new(&manifest)
        .ancestors()
        .map(|dir| dir.join("functions"))
        .find(|dir| dir.join("startup-link.rs").is_file())
    else {
        return;
    };
    let script = functions.join("startup.ld");
    println!("cargo::rerun-if-changed={}", script.display());
    if !script.is_file() {
        println!(
            "cargo::warning={} not found: linked without the start-up order",
            script.display()
        );
        return;
    }
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    // GNU ld and lld (cargo-lambda's zig among them) take INSERT scripts; Apple's linker does not.
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let off = std::env::var("BAKERY_STARTUP_ORDER").as_deref() == Ok("off");
    if release && linux && !off {
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}
