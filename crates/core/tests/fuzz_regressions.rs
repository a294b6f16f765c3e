//! Replays the fuzzers' findings (`testdata/fuzz/<target>/*`, copied there by `scripts/fuzz.sh`)
//! and their seed corpus (`fuzz/seeds/<target>/*`) through the same checks the cargo-fuzz targets
//! run (`fuzz/src/checks.rs`), on stable, as part of `cargo test`.
//!
//! An input whose bug is not fixed yet is listed in `KNOWN`; it must still fail (like a strict
//! xfail), so a fix shows up here and the entry is removed.

use std::panic;
use std::path::{Path, PathBuf};

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

/// (target, input file name, what is wrong): findings not fixed yet.
const KNOWN: &[(&str, &str, &str)] = &[];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md" && x != "py"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn replay(root: &Path) -> (usize, Vec<String>) {
    let mut ran = 0;
    let mut problems = Vec::new();
    for (target, check) in checks::TARGETS {
        for file in inputs(&root.join(target)) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&file).unwrap();
            let known = KNOWN.iter().find(|(t, f, _)| t == target && *f == name);
            let outcome = panic::catch_unwind(|| check(&data));
            ran += 1;
            match (outcome, known) {
                (Ok(()), None) | (Err(_), Some(_)) => {}
                (Err(e), None) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    problems.push(format!("{target}/{name}: {msg}"));
                }
                (Ok(()), Some((_, _, why))) => problems.push(format!(
                    "{target}/{name} passes now ({why}): remove it from KNOWN"
                )),
            }
        }
    }
    (ran, problems)
}

#[test]
fn fuzz_findings_and_seeds_pass_the_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let quiet = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let (findings, mut problems) = replay(&root.join("testdata/fuzz"));
    let (seeds, more) = replay(&root.join("fuzz/seeds"));
    panic::set_hook(quiet);
    problems.extend(more);
    assert!(seeds > 0, "no seed corpus under fuzz/seeds");
    assert!(
        problems.is_empty(),
        "{} of {} inputs:\n{}",
        problems.len(),
        findings + seeds,
        problems.join("\n")
    );
}
