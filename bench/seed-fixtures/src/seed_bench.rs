// The seed workload of bench/MoeGpuStats.Bench/SeedWorkload.cs, run on the seed's own code
// (its stats.rs compiled unchanged), so that the managed engine and the seed are timed on one
// machine in one run.
//   seed-bench [E]   (E experts; default 256)
use seed_fixtures::expert_parallelism::router::RoutingDecision;
use seed_fixtures::expert_parallelism::stats::RoutingStats;
use std::time::{Duration, Instant};

fn main() {
    let experts: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let mut x: u64 = 88172645463325252;
    let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
    let decisions: Vec<RoutingDecision> = (0..64).map(|_| {
        let caps: Vec<usize> = (0..experts).map(|_| (next() % 512) as usize).collect();
        let tokens = caps.iter().sum::<usize>() / 8;
        RoutingDecision { expert_assignments: vec![], expert_capacities: caps, total_tokens: tokens,
            tokens_dropped: (next() % 4) as usize, load_balance_loss: 0.5, router_z_loss: 0.01, auxiliary_loss: 0.0 }
    }).collect();
    let mut sink = 0.0f64;
    let mut run = || -> (f64, f64, f64, f64) {
        let mut s = RoutingStats::new();
        let t = Instant::now();
        for i in 0..200_000 { s.record_routing(&decisions[i % 64]); }
        let rec = t.elapsed().as_nanos() as f64 / 200_000.0;
        let t = Instant::now();
        for i in 0..200_000u64 { s.record_routing_latency(Duration::from_nanos(1000 + (i * 7919) % 100_000)); }
        let lat = t.elapsed().as_nanos() as f64 / 200_000.0;
        let t = Instant::now();
        for _ in 0..20_000 { sink += s.routing_latency_stats.p99_latency(); }
        let p99 = t.elapsed().as_nanos() as f64 / 20_000.0;
        let t = Instant::now();
        for _ in 0..20_000 { sink += (s.utilization_cv() + s.recent_load_variance_trend(100)) as f64; }
        let cv = t.elapsed().as_nanos() as f64 / 20_000.0;
        (rec, lat, p99, cv)
    };
    run();
    let (rec, lat, p99, cv) = run();
    println!("seed experts={} record_routing_ns={:.1} record_latency_ns={:.1} p99_query_ns={:.1} cv_trend_query_ns={:.1}", experts, rec, lat, p99, cv);
    eprintln!("(checksum {})", sink);
}
