// Wraps the seed's stats.rs, unchanged, in `pub mod stats { ... }` for lib.rs to include.
// SEED_STATS_RS names the file; the default is the shared seed beside the repository.
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let seed = env::var("SEED_STATS_RS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../../../shared/seed/stats.rs"));
    println!("cargo:rerun-if-env-changed=SEED_STATS_RS");
    println!("cargo:rerun-if-changed={}", seed.display());
    let text = fs::read_to_string(&seed).unwrap_or_else(|e| panic!("cannot read the seed {}: {e} (set SEED_STATS_RS to its stats.rs)", seed.display()));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("stats_mod.rs");
    fs::write(out, format!("pub mod stats {{\n{text}\n}}\n")).unwrap();
}
