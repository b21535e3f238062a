//! The least work a CNF count of two clauses needs, timed query by query beside
//! `find_cnf`: what bounds how fast any exact CNF can be on this machine.
//!
//! Usage: `cnf_floor INDEX QUERIES [MIN_RAREST] [REPEAT]` (QUERIES as for
//! `cnf_profile`: one n-gram a clause, tab-separated, then the rarest clause's
//! count; only two-clause queries of one n-gram a clause are timed).
//!
//! For each query, on one thread, each stage timed: both clauses' ranges found,
//! each cut to its first `MAX_CLAUSE_FREQ` ranks (as subsampling keeps that many),
//! and their pointers read; the more frequent clause's pointers sorted; for each
//! occurrence of the other (the anchors) a binary search for its nearest
//! occurrence; the text at each anchor read (the document check's least cost:
//! one miss a window). Prints p50/p99 µs of each beside `find_cnf` (all cores).

use std::time::Instant;

use anygram::interleave::{prefetch, AHEAD};
use anygram::{Engine, OpenOptions};

mod common;

const MAX_CLAUSE_FREQ: u64 = 50_000;
const MAX_DIFF_TOKENS: u64 = 100;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let min_rarest: u64 = args.get(3).map_or(0, |a| a.parse().unwrap());
    let repeat: usize = args.get(4).map_or(3, |a| a.parse().unwrap());
    let options = OpenOptions {
        accelerator: false,
        ..OpenOptions::default()
    };
    let engine = Engine::open(&args[1], &options).expect("open the index");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let queries: Vec<Vec<Vec<Vec<u32>>>> = common::read_cnf_queries(&args[2], min_rarest)
        .into_iter()
        .map(|(cnf, _)| cnf)
        .filter(|cnf| cnf.len() == 2)
        .collect();
    let shard = &engine.shards()[0];
    let text = shard.tokenized().expect("a local index");
    let w = engine.token_width().bytes() as u64;
    let mut times: [Vec<f64>; 5] = Default::default();
    let mut checksum = 0u64;
    for _ in 0..repeat {
        for q in &queries {
            let t = Instant::now();
            checksum += engine
                .find_cnf(q, MAX_CLAUSE_FREQ, MAX_DIFF_TOKENS)
                .expect("query")
                .count;
            times[0].push(t.elapsed().as_secs_f64() * 1e6);
            // The stages on one thread, each timed: read the pointers, sort the
            // second clause's, match each anchor, read each anchor's text (hinted
            // `AHEAD` windows ahead, as `find_cnf` does).
            let mut stage = Instant::now();
            let mut lap = |k: usize, times: &mut [Vec<f64>; 5]| {
                times[k].push(stage.elapsed().as_secs_f64() * 1e6);
                stage = Instant::now();
            };
            let ptrs: Vec<Vec<u64>> = q
                .iter()
                .map(|clause| {
                    let bytes = engine.encode(&clause[0]).expect("ids in the vocabulary");
                    let (lo, hi) = shard.find(&bytes, (0, shard.num_tokens())).expect("search");
                    shard
                        .ptrs_in(lo, hi.min(lo + MAX_CLAUSE_FREQ))
                        .expect("pointers")
                })
                .collect();
            lap(1, &mut times);
            let [mut anchors, mut others]: [Vec<u64>; 2] = ptrs.try_into().expect("two clauses");
            if anchors.len() > others.len() {
                std::mem::swap(&mut anchors, &mut others);
            }
            others.sort_unstable();
            lap(2, &mut times);
            let reach = MAX_DIFF_TOKENS * w;
            for &a in &anchors {
                let at = others.partition_point(|&p| p < a.saturating_sub(reach));
                checksum += others.get(at).is_some_and(|&p| p <= a + reach) as u64;
            }
            lap(3, &mut times);
            for (i, &a) in anchors.iter().enumerate() {
                if let Some(&ahead) = anchors.get(i + AHEAD) {
                    prefetch(text, ahead as usize);
                }
                checksum += text[a as usize] as u64;
            }
            lap(4, &mut times);
        }
    }
    println!("{} queries x {repeat}; checksum {checksum}", queries.len());
    for (name, mut t) in [
        "find_cnf (all cores)",
        "read pointers",
        "sort",
        "match",
        "text reads",
    ]
    .into_iter()
    .zip(times)
    {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
        println!("{name:>20}: p50 {:.0} µs, p99 {:.0} µs", p(0.5), p(0.99));
    }
}
