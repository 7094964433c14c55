//! Replays the committed fuzz corpus and regression inputs through every fuzz target's body on
//! stable, so CI exercises them without libFuzzer (docs/fuzzing.md).
//!
//! The bodies are `fuzz/targets/*.rs`, compiled here as a module and in the `fuzz` crate's
//! libFuzzer binaries. For each target, every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` is run through it; a target finding is a panic, so a failing
//! file fails this test with its path in the message.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/targets/mod.rs"]
mod targets;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&path).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_committed_corpus_and_replays_it() {
    for (target, run) in targets::ALL {
        let n = replay(target, *run);
        assert!(
            n > 0,
            "{target}: no committed corpus under fuzz/corpus/{target}"
        );
    }
}

#[test]
fn every_target_accepts_its_seeds_and_the_empty_input() {
    for (target, run) in targets::ALL {
        run(&[]);
        for seed in targets::seeds(target) {
            let outcome = std::panic::catch_unwind(|| run(&seed));
            assert!(outcome.is_ok(), "{target}: a generated seed fails");
        }
    }
}

/// Rewrites the committed seed corpus from the protocol samples:
/// `cargo test -p p2pchat-bench --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a wire change"]
fn write_seeds() {
    for (target, _) in targets::ALL {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, seed) in targets::seeds(target).into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("write a seed");
        }
    }
}
