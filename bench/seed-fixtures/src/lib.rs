// The seed's stats.rs, compiled unchanged (build.rs wraps it in a module), beside stand-ins for the
// router types it imports, for this crate's two programs: seed-fixtures and seed-bench.

#![allow(dead_code)] // the seed's monitoring module and the router fields the stats never read

pub mod expert_parallelism {
    pub mod router {
        pub struct ExpertAssignment {
            pub expert_id: usize,
            pub probability: f32,
            pub token_idx: usize,
            pub expert_rank: usize,
        }
        impl ExpertAssignment {
            pub fn new(expert_id: usize, probability: f32, token_idx: usize, expert_rank: usize) -> Self {
                Self { expert_id, probability, token_idx, expert_rank }
            }
        }
        pub struct RoutingDecision {
            pub expert_assignments: Vec<Vec<ExpertAssignment>>,
            pub expert_capacities: Vec<usize>,
            pub total_tokens: usize,
            pub tokens_dropped: usize,
            pub load_balance_loss: f32,
            pub router_z_loss: f32,
            pub auxiliary_loss: f32,
        }
    }
    include!(concat!(env!("OUT_DIR"), "/stats_mod.rs"));
}
