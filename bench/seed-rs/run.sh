#!/usr/bin/env bash
# Times the seed itself on the seed workload: builds a throwaway crate in a temp folder from
# ../shared/seed/stats.rs (serde derives and log calls removed: no crates.io here) and main.rs.
#   bash bench/seed-rs/run.sh [E ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seed=${SEED_RS:-$here/../../../shared/seed/stats.rs}
crate=$(mktemp -d)
trap 'rm -rf "$crate"' EXIT
mkdir -p "$crate/src"
printf '[package]\nname = "seedbench"\nversion = "0.1.0"\nedition = "2021"\n[profile.release]\nopt-level = 3\n' > "$crate/Cargo.toml"
cp "$here/main.rs" "$crate/src/main.rs"
sed -e 's/^use super::router::RoutingDecision;/use crate::router::RoutingDecision;/' \
    -e '/^use log::info;/d' -e '/^use serde::/d' \
    -e 's/#\[derive(Debug, Clone, Serialize, Deserialize)\]/#[derive(Debug, Clone)]/' \
    -e 's/^\( *\)info!(/\1println!(/' \
    -e 's/use crate::expert_parallelism::router::/use crate::router::/' \
    "$seed" > "$crate/src/stats.rs"
(cd "$crate" && cargo build --release --offline -q 2>&1 | grep -v '^warning' >&2 || true)
for e in "${@:-256}"; do "$crate/target/release/seedbench" "$e"; done
