// Randomized conformance fixtures from the seed itself: plays generated scenarios through the
// seed's RoutingStats (../../../shared/seed/stats.rs, compiled unchanged by build.rs) and writes
// them in the format of ../shared/conformance/README.md, plus two ops the port's replay knows:
//   {"reset": true}          RoutingStats::reset()
//   {"reject": OP}           an input the port refuses on purpose (README, "What differs from the
//                            seed"): not played through the seed; the port must throw and keep its state.
// Usage: seed-fixtures OUT_DIR [commit|full|search] [SEEDS]   (README.md beside this file)

use seed_fixtures::expert_parallelism::router::RoutingDecision;
use seed_fixtures::expert_parallelism::stats::RoutingStats;
use std::fmt::Write as _;
use std::time::Duration;

// ---------------------------------------------------------------- random numbers (splitmix64)

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 { if n == 0 { 0 } else { self.next() % n } }
    fn range(&mut self, lo: u64, hi: u64) -> u64 { lo + self.below(hi - lo + 1) }
    fn unit(&mut self) -> f64 { (self.next() >> 11) as f64 / (1u64 << 53) as f64 }
    fn chance(&mut self, p: f64) -> bool { self.unit() < p }
}

// ---------------------------------------------------------------- ops

#[derive(Clone)]
struct Decision {
    caps: Vec<usize>,
    tokens: usize,
    dropped: usize,
    lb: f32,
    z: f32,
    aux: f32,
}

#[derive(Clone)]
enum Reject {
    NoExperts(Decision),
    DropsAboveTokens(Decision),
    NonFiniteLoss(Decision, &'static str, &'static str),
    NegativeCount(Decision, usize),
    NegativeLatency(i64),
}

#[derive(Clone)]
enum Op {
    Route(Decision),
    Latency(u64),
    Reset,
    Reject(Reject),
}

fn decision_of(d: &Decision) -> RoutingDecision {
    RoutingDecision {
        expert_assignments: vec![],
        expert_capacities: d.caps.clone(),
        total_tokens: d.tokens,
        tokens_dropped: d.dropped,
        load_balance_loss: d.lb,
        router_z_loss: d.z,
        auxiliary_loss: d.aux,
    }
}

fn play(stats: &mut RoutingStats, op: &Op) {
    match op {
        Op::Route(d) => stats.record_routing(&decision_of(d)),
        Op::Latency(n) => stats.record_routing_latency(Duration::from_nanos(*n)),
        Op::Reset => stats.reset(),
        Op::Reject(_) => {} // the seed would take it (and go wrong); the port refuses it
    }
}

// ---------------------------------------------------------------- JSON

/// A float in a state: shortest round-trip text, non-finite values as strings.
fn st32(x: f32) -> String {
    if x.is_nan() { "\"NaN\"".into() } else if x.is_infinite() { if x > 0.0 { "\"Infinity\"".into() } else { "\"-Infinity\"".into() } } else { format!("{x:?}") }
}
fn st64(x: f64) -> String {
    if x.is_nan() { "\"NaN\"".into() } else if x.is_infinite() { if x > 0.0 { "\"Infinity\"".into() } else { "\"-Infinity\"".into() } } else { format!("{x:?}") }
}
/// A float as serde_json writes it: non-finite values as null.
fn sj32(x: f32) -> String { if x.is_finite() { format!("{x:?}") } else { "null".into() } }
fn sj64(x: f64) -> String { if x.is_finite() { format!("{x:?}") } else { "null".into() } }

fn list<T>(xs: &[T], f: impl Fn(&T) -> String) -> String {
    let mut s = String::from("[");
    for (i, x) in xs.iter().enumerate() {
        if i > 0 { s.push(','); }
        s.push_str(&f(x));
    }
    s.push(']');
    s
}

fn decision_json(d: &Decision, neg_count: Option<usize>, lb: Option<&str>, z: Option<&str>) -> String {
    let caps = match neg_count {
        None => list(&d.caps, |c| c.to_string()),
        Some(at) => {
            let v: Vec<String> = d.caps.iter().enumerate().map(|(i, c)| if i == at { "-1".into() } else { c.to_string() }).collect();
            format!("[{}]", v.join(","))
        }
    };
    format!(
        "{{\"expert_capacities\":{},\"total_tokens\":{},\"tokens_dropped\":{},\"load_balance_loss\":{},\"router_z_loss\":{},\"auxiliary_loss\":{}}}",
        caps, d.tokens, d.dropped,
        lb.map(|s| format!("\"{s}\"")).unwrap_or_else(|| format!("{:?}", d.lb)),
        z.map(|s| format!("\"{s}\"")).unwrap_or_else(|| format!("{:?}", d.z)),
        format!("{:?}", d.aux))
}

fn op_json(op: &Op) -> String {
    match op {
        Op::Route(d) => decision_json(d, None, None, None),
        Op::Latency(n) => format!("{{\"latency_nanos\":{n}}}"),
        Op::Reset => "{\"reset\":true}".into(),
        Op::Reject(r) => {
            let inner = match r {
                Reject::NoExperts(d) | Reject::DropsAboveTokens(d) => decision_json(d, None, None, None),
                Reject::NonFiniteLoss(d, lb, z) => decision_json(d, None, Some(lb).filter(|s| !s.is_empty()).copied(), Some(z).filter(|s| !s.is_empty()).copied()),
                Reject::NegativeCount(d, at) => decision_json(d, Some(*at), None, None),
                Reject::NegativeLatency(n) => format!("{{\"latency_nanos\":{n}}}"),
            };
            format!("{{\"reject\":{inner}}}")
        }
    }
}

fn dedup(mut v: Vec<u64>) -> Vec<u64> { v.sort_unstable(); v.dedup(); v }

/// Every observable value, keys and order as the existing fixtures have them.
fn state_json(s: &RoutingStats, windows: &[u64], ps: &[f64]) -> String {
    let mut o = String::with_capacity(4096);
    let l = &s.routing_latency_stats;
    let c = &s.capacity_stats;
    let t = s.throughput_stats();
    let expert = |e: Option<(usize, f32)>| match e { Some((i, v)) => format!("[{i},{}]", st32(v)), None => "null".into() };
    let mut summary: Vec<(String, f32)> = s.utilization_summary().into_iter().collect();
    summary.sort_by(|a, b| a.0.cmp(&b.0));
    write!(o, "{{\"total_routings\":{},\"total_tokens\":{},\"tokens_dropped\":{}", s.total_routings, s.total_tokens, s.tokens_dropped).unwrap();
    write!(o, ",\"expert_utilization\":{}", list(&s.expert_utilization, |x| st32(*x))).unwrap();
    write!(o, ",\"average_load_balance_loss\":{},\"average_router_z_loss\":{},\"routing_efficiency\":{}",
        st32(s.average_load_balance_loss), st32(s.average_router_z_loss), st32(s.routing_efficiency)).unwrap();
    write!(o, ",\"expert_token_counts\":{}", list(&s.expert_token_counts, |x| x.to_string())).unwrap();
    write!(o, ",\"load_variance_history_len\":{},\"load_variance_last\":{}", s.load_variance_history.len(),
        s.load_variance_history.last().map(|x| st32(*x)).unwrap_or_else(|| "null".into())).unwrap();
    write!(o, ",\"utilization_cv\":{},\"most_utilized\":{},\"least_utilized\":{}", st32(s.utilization_cv()),
        expert(s.most_utilized_expert()), expert(s.least_utilized_expert())).unwrap();
    write!(o, ",\"summary\":{{{}}}", summary.iter().map(|(k, v)| format!("\"{k}\":{}", st32(*v))).collect::<Vec<_>>().join(",")).unwrap();
    write!(o, ",\"trend_windows\":{},\"trends\":{}", list(windows, |w| w.to_string()),
        list(windows, |w| st32(s.recent_load_variance_trend(*w as usize)))).unwrap();
    write!(o, ",\"latency\":{{\"total_measurements\":{},\"total_latency_ms\":{},\"min_latency_ms\":{},\"max_latency_ms\":{},\"recent_len\":{},\"average\":{},\"p95\":{},\"p99\":{},\"percentile_ps\":{},\"percentiles\":{}}}",
        l.total_measurements, st64(l.total_latency_ms), st64(l.min_latency_ms), st64(l.max_latency_ms), l.recent_latencies.len(),
        st64(l.average_latency()), st64(l.p95_latency()), st64(l.p99_latency()), list(ps, |p| format!("{p:?}")),
        list(ps, |p| st64(l.percentile(*p)))).unwrap();
    write!(o, ",\"capacity\":{{\"average_utilization\":{},\"peak_utilization\":{},\"capacity_exceeded_count\":{},\"total_capacity\":{},\"total_used\":{},\"overall_utilization\":{}}}",
        st32(c.average_utilization), st32(c.peak_utilization), c.capacity_exceeded_count, c.total_capacity, c.total_used, st32(c.overall_utilization())).unwrap();
    write!(o, ",\"throughput\":{{\"total_tokens\":{},\"total_routings\":{},\"tokens_per_routing\":{},\"routing_efficiency\":{},\"average_latency\":{},\"tokens_per_second\":{},\"routings_per_second\":{}}}}}",
        t.total_tokens, t.total_routings, st32(t.tokens_per_routing), st32(t.routing_efficiency), st64(t.average_latency),
        st64(t.tokens_per_second()), st64(t.routings_per_second())).unwrap();
    o
}

/// The whole RoutingStats as serde_json writes the seed's #[derive(Serialize)].
fn serde_json_of(s: &RoutingStats) -> String {
    let l = &s.routing_latency_stats;
    let c = &s.capacity_stats;
    format!(
        "{{\"total_routings\":{},\"total_tokens\":{},\"tokens_dropped\":{},\"expert_utilization\":{},\"average_load_balance_loss\":{},\"average_router_z_loss\":{},\"routing_efficiency\":{},\"expert_token_counts\":{},\"routing_latency_stats\":{{\"total_measurements\":{},\"total_latency_ms\":{},\"min_latency_ms\":{},\"max_latency_ms\":{},\"recent_latencies\":{}}},\"load_variance_history\":{},\"capacity_stats\":{{\"average_utilization\":{},\"peak_utilization\":{},\"capacity_exceeded_count\":{},\"total_capacity\":{},\"total_used\":{}}}}}",
        s.total_routings, s.total_tokens, s.tokens_dropped, list(&s.expert_utilization, |x| sj32(*x)),
        sj32(s.average_load_balance_loss), sj32(s.average_router_z_loss), sj32(s.routing_efficiency),
        list(&s.expert_token_counts, |x| x.to_string()),
        l.total_measurements, sj64(l.total_latency_ms), sj64(l.min_latency_ms), sj64(l.max_latency_ms), list(&l.recent_latencies, |x| sj64(*x)),
        list(&s.load_variance_history, |x| sj32(*x)),
        sj32(c.average_utilization), sj32(c.peak_utilization), c.capacity_exceeded_count, c.total_capacity, c.total_used)
}

// ---------------------------------------------------------------- generators

struct Gen {
    rng: Rng,
    experts: usize,
}

impl Gen {
    /// A loss from a mix of ordinary, zero, negative, tiny (subnormal included) and large values.
    fn loss(&mut self, extremes: bool) -> f32 {
        let r = self.rng.unit();
        let mag = |g: &mut Gen, lo: f64, hi: f64| -> f32 { (lo * (hi / lo).powf(g.rng.unit())) as f32 };
        let v = if r < 0.45 {
            (self.rng.unit() * 3.0) as f32
        } else if r < 0.55 {
            0.0
        } else if r < 0.7 {
            -(self.rng.unit() * 2.0) as f32
        } else if r < 0.8 {
            mag(self, 1e-30, 1e-3)
        } else if r < 0.9 {
            mag(self, 1e3, 1e12)
        } else if extremes {
            match self.rng.below(4) {
                0 => mag(self, 1e-45, 1e-38), // subnormal
                1 => mag(self, 1e30, 3.0e38),
                2 => f32::MAX,
                _ => -mag(self, 1e30, 3.0e38),
            }
        } else {
            mag(self, 1e-6, 1e6)
        };
        if self.rng.chance(0.15) { -v } else { v }
    }

    /// One batch's histogram of `k * tokens` slots minus the dropped ones, skewed across `experts`.
    fn decision(&mut self, tokens: usize, big_counts: bool, extremes: bool) -> Decision {
        let e = self.experts;
        let k = self.rng.range(1, e.min(8) as u64) as usize;
        let dropped = match self.rng.below(10) {
            0..=4 => 0,
            5 | 6 => tokens,
            _ => self.rng.below(tokens as u64 + 1) as usize,
        };
        let mut slots = if big_counts { self.rng.range(0, 2_000_000_000) as usize } else { k * (tokens - dropped.min(tokens)) };
        if !big_counts && self.rng.chance(0.1) { slots = k * tokens; } // counts that disagree with the drops (the seed does not care)
        let caps = match self.rng.below(6) {
            0 => vec![0; e],                          // nothing routed
            1 => vec![slots / e; e],                  // perfectly even: ties everywhere
            2 => { let mut v = vec![0; e]; v[self.rng.below(e as u64) as usize] = slots; v } // collapsed
            _ => {
                let skew = 0.5 + 3.0 * self.rng.unit();
                let w: Vec<f64> = (0..e).map(|_| self.rng.unit().powf(skew)).collect();
                let sum: f64 = w.iter().sum::<f64>().max(1e-300);
                let mut v: Vec<usize> = w.iter().map(|x| (x / sum * slots as f64) as usize).collect();
                let rest = slots.saturating_sub(v.iter().sum::<usize>());
                for _ in 0..rest.min(64) { let i = self.rng.below(e as u64) as usize; v[i] += 1; }
                v
            }
        };
        Decision { caps, tokens, dropped, lb: self.loss(extremes), z: self.loss(extremes), aux: self.loss(false) }
    }

    fn tokens(&mut self) -> usize {
        match self.rng.below(10) {
            0 | 1 => 0,
            2 => 1,
            3..=6 => self.rng.range(1, 64) as usize,
            7 | 8 => self.rng.range(64, 4096) as usize,
            _ => self.rng.range(4096, 200_000) as usize,
        }
    }

    /// A latency, whole multiples of 100 ns: zero, 100 ns, ordinary, very long, and repeats.
    fn latency(&mut self, pool: &mut Vec<u64>) -> u64 {
        let r = self.rng.below(20);
        let n = match r {
            0 => 0,
            1 => 1,
            2..=4 if !pool.is_empty() => pool[self.rng.below(pool.len() as u64) as usize],
            5 => self.rng.range(1, 10),
            6 => self.rng.range(10_000_000_000, 90_000_000_000_000_000) / 100, // up to ~100 days
            _ => { let x = (10f64).powf(1.0 + 8.0 * self.rng.unit()); x as u64 }
        } * 100;
        if pool.len() < 16 { pool.push(n / 100); }
        n
    }
}

fn windows_for(len: usize, rng: &mut Rng) -> Vec<u64> {
    let l = len as u64;
    let mut w = vec![0, 1, 2, 3, 5, 10, 100, 999, 1000, 1001, 5000, l.saturating_sub(1), l, l + 1, l + 2];
    w.push(rng.range(0, l + 3));
    dedup(w)
}

fn ps_for(rng: &mut Rng) -> Vec<f64> {
    let mut p = vec![0.0, 0.1, 1.0, 5.0, 25.0, 100.0 / 3.0, 50.0, 200.0 / 3.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];
    for _ in 0..3 { p.push((rng.unit() * 100.0 * 1e4).round() / 1e4); }
    p
}

struct Fixture {
    name: String,
    seed: u64,
    ops: Vec<Op>,
    dump: Vec<bool>,
}

/// Mixed routing and latency, expert count 1..=max_e changing now and then, resets, optional rejects.
fn mixed(name: &str, seed: u64, steps: usize, max_e: usize, p_latency: f64, p_resize: f64, p_reset: f64, p_reject: f64, extremes: bool, dump_every: usize) -> Fixture {
    let mut g = Gen { rng: Rng(seed.wrapping_mul(0x2545F4914F6CDD1D) ^ 0xC0FFEE), experts: 1 };
    g.experts = g.rng.range(1, max_e as u64) as usize;
    let mut pool = Vec::new();
    let mut ops = Vec::with_capacity(steps);
    let mut dump = Vec::with_capacity(steps);
    for i in 0..steps {
        if g.rng.chance(p_resize) {
            g.experts = if g.rng.chance(0.5) { g.rng.range(1, max_e as u64) as usize } else { (g.experts as i64 + g.rng.range(0, 2) as i64 - 1).clamp(1, max_e as i64) as usize };
        }
        let r = g.rng.unit();
        let op = if r < p_reset {
            Op::Reset
        } else if r < p_reset + p_reject {
            let tokens = g.tokens();
            let d = g.decision(tokens, false, false);
            Op::Reject(match g.rng.below(6) {
                0 => Reject::NoExperts(Decision { caps: vec![], ..d }),
                1 => Reject::DropsAboveTokens(Decision { dropped: d.tokens + 1 + g.rng.below(5) as usize, ..d }),
                2 => Reject::NonFiniteLoss(d, "NaN", ""),
                3 => Reject::NonFiniteLoss(d, "", if g.rng.chance(0.5) { "Infinity" } else { "-Infinity" }),
                4 => { let at = g.rng.below(d.caps.len() as u64) as usize; Reject::NegativeCount(d, at) }
                _ => Reject::NegativeLatency(-100 * g.rng.range(1, 1000) as i64),
            })
        } else if r < p_reset + p_reject + p_latency {
            Op::Latency(g.latency(&mut pool))
        } else {
            let tokens = g.tokens();
            let big = extremes && g.rng.chance(0.2);
            let tokens = if big { g.rng.range(0, i32::MAX as u64) as usize } else { tokens };
            Op::Route(g.decision(tokens, big, extremes))
        };
        let after_special = matches!(op, Op::Reset | Op::Reject(_));
        ops.push(op);
        dump.push(i < 8 || after_special || i % dump_every == 0 || i + 1 == steps);
    }
    Fixture { name: name.into(), seed, ops, dump }
}

/// Symmetric histories: each batch permutes one multiset of counts over E experts, so every
/// expert's exact mean ties after each full rotation; plus all-equal and zero-token batches.
fn ties(seed: u64, steps: usize, every: usize) -> Fixture {
    let mut g = Gen { rng: Rng(seed ^ 0x7135), experts: 2 };
    let mut ops = Vec::new();
    let mut e = 2usize;
    let mut base: Vec<usize> = vec![];
    let mut rot = 0usize;
    for i in 0..steps {
        if i % 60 == 0 {
            e = g.rng.range(2, 9) as usize;
            base = (0..e).map(|_| g.rng.range(0, 40) as usize).collect();
            rot = 0;
        }
        let kind = g.rng.below(10);
        let tokens = if kind == 0 { 0 } else { [7usize, 10, 13, 64, 100, 3][g.rng.below(6) as usize] };
        let caps: Vec<usize> = if kind == 1 { vec![base[0]; e] } else { (0..e).map(|j| base[(j + rot) % e]).collect() };
        rot += 1;
        let lb = [0.1f32, 0.2, 0.3, 1.0 / 3.0, -0.1, 0.0][g.rng.below(6) as usize];
        ops.push(Op::Route(Decision { caps, tokens, dropped: 0, lb, z: lb * 0.01, aux: 0.0 }));
    }
    let n = ops.len();
    Fixture { name: "ties".into(), seed, ops, dump: (0..n).map(|i| i % every == 0 || i + 1 == n).collect() }
}

/// Latencies only: every window size from 1 to 60 and around 1,000 dumped.
fn latency_windows(seed: u64, steps: usize, every: usize) -> Fixture {
    let mut g = Gen { rng: Rng(seed ^ 0x1a7e), experts: 1 };
    let mut pool = Vec::new();
    let ops: Vec<Op> = (0..steps).map(|_| Op::Latency(g.latency(&mut pool))).collect();
    let dump = (0..steps).map(|i| i < 40 || (997..=1003).contains(&i) || i % every == 0 || i + 1 == steps).collect();
    Fixture { name: "latwin".into(), seed, ops, dump }
}

/// A long run of few experts, for the f32 running means' drift.
fn drift(seed: u64, steps: usize, every: usize) -> Fixture {
    let mut g = Gen { rng: Rng(seed ^ 0xd71f7), experts: 1 };
    g.experts = g.rng.range(2, 6) as usize;
    let mut ops = Vec::with_capacity(steps);
    for _ in 0..steps {
        let tokens = g.rng.range(0, 64) as usize;
        let mut d = g.decision(tokens, false, false);
        d.lb = (g.rng.unit() * 2.0) as f32;
        d.z = (g.rng.unit() * 0.05) as f32;
        ops.push(Op::Route(d));
    }
    let dump = (0..steps).map(|i| i % every == 0 || i + 1 == steps).collect();
    Fixture { name: "drift".into(), seed, ops, dump }
}

/// The running means as exact f64 sums over the batches since the last reset (utilization since the
/// last expert-count change, as the seed restarts it), divided by every batch, as the port keeps them.
#[derive(Default)]
struct ExactMeans {
    routings: u64,
    utilization: Vec<f64>,
    load_balance_loss: f64,
    router_z_loss: f64,
}

impl ExactMeans {
    fn play(&mut self, op: &Op) {
        match op {
            Op::Reset => *self = Self::default(),
            Op::Route(d) => {
                self.routings += 1;
                if self.utilization.len() != d.caps.len() {
                    self.utilization = vec![0.0; d.caps.len()];
                }
                for (u, &c) in self.utilization.iter_mut().zip(&d.caps) {
                    if d.tokens > 0 {
                        *u += (c as f32 / d.tokens as f32) as f64;
                    }
                }
                self.load_balance_loss += d.lb as f64;
                self.router_z_loss += d.z as f64;
            }
            _ => {}
        }
    }

    /// Whether the seed's means are off the exact ones beyond the fixtures' f32 tolerance, and whether
    /// its most or least utilized expert differs from the one its own query finds on the exact means.
    fn differences(&self, s: &RoutingStats) -> (bool, bool) {
        let n = self.routings.max(1) as f64;
        let far = |seed: f32, exact: f64| (seed as f64 - exact).abs() > (1e-5 * exact.abs()).max(1e-6);
        let off = far(s.average_load_balance_loss, self.load_balance_loss / n)
            || far(s.average_router_z_loss, self.router_z_loss / n)
            || s.expert_utilization.iter().zip(&self.utilization).any(|(a, b)| far(*a, b / n));
        let mut on_exact = RoutingStats::new();
        on_exact.expert_utilization = self.utilization.iter().map(|u| (u / n) as f32).collect();
        let index = |e: Option<(usize, f32)>| e.map(|p| p.0);
        let picks = index(s.most_utilized_expert()) != index(on_exact.most_utilized_expert())
            || index(s.least_utilized_expert()) != index(on_exact.least_utilized_expert());
        (off, picks)
    }

    /// The exact means, and what the seed's own queries give on them (its f32 formulas, unchanged).
    fn json(&self) -> String {
        let n = self.routings.max(1) as f64;
        let mut on_exact = RoutingStats::new();
        on_exact.expert_utilization = self.utilization.iter().map(|u| (u / n) as f32).collect();
        let mut summary: Vec<(String, f32)> = on_exact.utilization_summary().into_iter()
            .filter(|(k, _)| k.ends_with("_utilization") || k == "utilization_cv").collect();
        summary.sort_by(|a, b| a.0.cmp(&b.0));
        let expert = |e: Option<(usize, f32)>| match e { Some((i, v)) => format!("[{i},{}]", st32(v)), None => "null".into() };
        let mut o = format!("{{\"expert_utilization\":{},\"average_load_balance_loss\":{},\"average_router_z_loss\":{}",
            list(&self.utilization, |u| st64(u / n)), st64(self.load_balance_loss / n), st64(self.router_z_loss / n));
        for (k, v) in summary { write!(o, ",\"{k}\":{}", st32(v)).unwrap(); }
        write!(o, ",\"most_utilized\":{},\"least_utilized\":{}}}", expert(on_exact.most_utilized_expert()), expert(on_exact.least_utilized_expert())).unwrap();
        o
    }
}

fn write(dir: &str, f: &Fixture) -> std::io::Result<()> {
    let mut stats = RoutingStats::new();
    let mut exact = ExactMeans::default();
    let (mut off, mut picks) = (0, 0);
    let mut rng = Rng(f.seed ^ 0x5eed);
    let mut out = String::new();
    writeln!(out, "{{\"scenario\":\"{}\",\"seed\":{},\"steps\":{}}}", f.name, f.seed, f.ops.len()).unwrap();
    for (i, op) in f.ops.iter().enumerate() {
        play(&mut stats, op);
        exact.play(op);
        // Also dumped: every state where the seed picks another expert than its query on the exact means.
        let (o, p) = exact.differences(&stats);
        if f.dump[i] || p {
            off += o as u32;
            picks += p as u32;
            let w = windows_for(stats.load_variance_history.len(), &mut rng);
            let p = ps_for(&mut rng);
            let mut state = state_json(&stats, &w, &p);
            state.pop();
            write!(state, ",\"exact\":{}}}", exact.json()).unwrap();
            writeln!(out, "{{\"step\":{i},\"op\":{},\"state\":{state}}}", op_json(op)).unwrap();
        } else {
            writeln!(out, "{{\"step\":{i},\"op\":{}}}", op_json(op)).unwrap();
        }
    }
    writeln!(out, "{{\"final_serde\":{},\"exact\":{}}}", serde_json_of(&stats), exact.json()).unwrap();
    let path = format!("{dir}/{}-{}.jsonl", f.name, f.seed);
    std::fs::write(&path, out)?;
    eprintln!("{path}: {} steps, {} states; states where the seed's f32 means are off the exact ones by more than 1e-5: {off}; where its most/least utilized expert is not the one of the exact means: {picks}",
        f.ops.len(), f.dump.iter().filter(|d| **d).count());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("out");
    let profile = args.get(2).map(String::as_str).unwrap_or("full");
    let seeds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    std::fs::create_dir_all(dir)?;
    match profile {
        // Small enough to keep in the test project (a few hundred KB in all).
        "commit" => {
            write(dir, &mixed("experts", 101, 60, 300, 0.2, 0.1, 0.02, 0.0, false, 10))?;
            write(dir, &mixed("wrap", 102, 1100, 2, 0.05, 0.002, 0.0, 0.0, false, 250))?;
            write(dir, &mixed("extremes", 103, 200, 12, 0.2, 0.05, 0.0, 0.0, true, 8))?;
            write(dir, &mixed("rejects", 104, 120, 16, 0.25, 0.05, 0.03, 0.12, false, 20))?;
            write(dir, &ties(101, 600, 50))?;
            write(dir, &latency_windows(106, 1010, 250))?;
        }
        // One kind at a time over many seeds, to pick seeds for the commit profile: search KIND STEPS FIRST LAST
        "search" => {
            let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(200);
            let first: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1);
            let last: u64 = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(20);
            for s in first..=last {
                match args.get(3).map(String::as_str).unwrap_or("ties") {
                    "extremes" => write(dir, &mixed("extremes", s, steps, 12, 0.2, 0.05, 0.0, 0.0, true, 4))?,
                    _ => write(dir, &ties(s, steps, 10))?,
                }
            }
        }
        // Larger and more numerous, for a local differential run (MOE_CONFORMANCE_DIR).
        _ => {
            for s in 1..=seeds {
                write(dir, &mixed("experts", 1000 + s, 3000, 300, 0.2, 0.03, 0.002, 0.0, false, 7))?;
                write(dir, &mixed("wrap", 2000 + s, 5000, 8, 0.45, 0.001, 0.0005, 0.0, false, 23))?;
                write(dir, &mixed("extremes", 3000 + s, 2000, 40, 0.2, 0.03, 0.002, 0.0, true, 3))?;
                write(dir, &mixed("rejects", 4000 + s, 2000, 64, 0.25, 0.03, 0.01, 0.1, false, 5))?;
                write(dir, &ties(5000 + s, 1200, 1))?;
                write(dir, &latency_windows(6000 + s, 2600, 7))?;
                write(dir, &drift(7000 + s, 200_000, 10_000))?;
            }
        }
    }
    Ok(())
}
