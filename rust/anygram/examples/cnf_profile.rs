//! Times `count_cnf` query by query (for profiling the CNF path with `perf`).
//!
//! Usage: `cnf_profile INDEX QUERIES [MIN_RAREST] [REPEAT] [MEMO_BYTES]` where QUERIES has one
//! query a line: one n-gram a clause (ids space-separated), tab-separated, then the
//! rarest clause's count. Queries whose rarest count is below MIN_RAREST are skipped;
//! MEMO_BYTES is the engine's `cnf_memo_bytes` (0: every clause sorted afresh).
//! Prints p50/p99 µs by rarest-count bucket.

use std::time::Instant;

use anygram::{Engine, OpenOptions};

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index = &args[1];
    let min_rarest: u64 = args.get(3).map_or(0, |a| a.parse().unwrap());
    let repeat: usize = args.get(4).map_or(1, |a| a.parse().unwrap());
    let options = OpenOptions {
        accelerator: false,
        cnf_memo_bytes: args
            .get(5)
            .map_or(OpenOptions::default().cnf_memo_bytes, |a| {
                a.parse().unwrap()
            }),
        ..OpenOptions::default()
    };
    let engine = Engine::open(index, &options).expect("open the index");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let queries = common::read_cnf_queries(&args[2], min_rarest);
    let cpu_before = cpu_seconds();
    let mut times: Vec<(u64, f64)> = Vec::new();
    let mut total = 0u64;
    for _ in 0..repeat {
        for (q, rarest) in &queries {
            let t = Instant::now();
            let (count, _) = engine.count_cnf(q, 50000, 100).expect("query");
            times.push((*rarest, t.elapsed().as_secs_f64() * 1e6));
            total += count;
        }
    }
    println!(
        "checksum {total}; process CPU {:.3} s",
        cpu_seconds() - cpu_before
    );
    for (lo, hi) in [
        (0, u64::MAX),
        (0, 100),
        (100, 1000),
        (1000, 10000),
        (10000, 50000),
        (50000, u64::MAX),
    ] {
        let mut t: Vec<f64> = times
            .iter()
            .filter(|(r, _)| *r >= lo && *r < hi)
            .map(|x| x.1)
            .collect();
        if t.is_empty() {
            continue;
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
        println!(
            "[{lo}, {hi}) n={} p50 {:.0} p99 {:.0} mean {:.0}",
            t.len(),
            p(0.5),
            p(0.99),
            t.iter().sum::<f64>() / t.len() as f64
        );
    }
}

/// User + system CPU time of the whole process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
