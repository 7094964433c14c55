//! The real `p2pchat-registry` binary for end-to-end tests of other packages (peer/tests/e2e.rs
//! and bench/tests/toolkit.rs include this file with `#[path]`; the registry's own tests use
//! `CARGO_BIN_EXE_p2pchat-registry`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

/// The registry binary, next to this test's own target dir. It is (re)built first, so a stale
/// binary is never tested; if that build fails but a binary is there, that one is used.
pub fn registry_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/PROFILE/deps/TEST-HASH -> target/PROFILE
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory");
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let bin = profile_dir.join("p2pchat-registry");
        let mut cargo = Command::new(env!("CARGO"));
        // `cargo test` runs us with the variables it sets for the package under test
        // (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...). Build scripts that watch one of them (ring's
        // does, for CARGO_MANIFEST_DIR) would see a change and rebuild, and the next plain
        // `cargo build` would rebuild again: pass the build our caller's environment instead.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_by_cargo_for_us = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .iter()
            .any(|p| key.starts_with(p));
            if set_by_cargo_for_us {
                cargo.env_remove(&*key);
            }
        }
        let status = cargo
            // The whole workspace's binaries and tests, as `cargo test --workspace` builds
            // them: the same feature set, so after it this is a no-op. Building
            // `-p p2pchat-registry` alone unifies fewer features and rebuilt ~25 dependencies
            // (minutes on a 2-core CI machine).
            .args(["build", "--workspace", "--bins", "--tests"])
            .args(["--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .status();
        let built = status.as_ref().is_ok_and(ExitStatus::success);
        assert!(
            built || bin.exists(),
            "building p2pchat-registry failed ({status:?}) and {} is missing",
            bin.display()
        );
        bin
    })
}
