//! Hot-cache cost of one search through the accelerator and through the plain
//! search (sampled keys in RAM), same queries, same process, no Python: the
//! figures behind choosing a shard's search path (`bench/bench_hot_accel.py`
//! measures the same from Python).
//!
//! Usage: `search_paths INDEX QUERIES [ROUNDS [accel|plain]]`, QUERIES as for `hot_floor`
//! (`KIND<TAB>ids<TAB>token` a line; kinds count, prob, infgram_prob).
//! Prints one JSON object: per kind and path, µs per query (best of ROUNDS loops).

use std::time::{Duration, Instant};

use anygram::{Engine, OpenOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: search_paths INDEX QUERIES [ROUNDS]");
        std::process::exit(2);
    }
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(3);
    let text = std::fs::read_to_string(&args[2]).expect("read the queries");
    let queries: Vec<(String, Vec<u32>, u32)> = text
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let kind = fields.next().unwrap_or_default().to_string();
            let ids = fields
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(|t| t.parse().expect("a token id"))
                .collect();
            let token = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            (kind, ids, token)
        })
        .collect();
    let only = args.get(4).map(String::as_str);
    let mut out = Vec::new();
    for accelerator in [true, false] {
        if only.is_some_and(|o| o != if accelerator { "accel" } else { "plain" }) {
            continue;
        }
        let options = OpenOptions {
            accelerator,
            ..OpenOptions::default()
        };
        let engine = Engine::open(&args[1], &options).expect("open the index");
        if !accelerator {
            engine.build_samples();
        }
        std::thread::sleep(Duration::from_millis(200));
        let path = if accelerator { "accel" } else { "plain" };
        let mut kinds: Vec<&str> = queries.iter().map(|q| q.0.as_str()).collect();
        kinds.dedup();
        for kind in kinds {
            let these: Vec<_> = queries.iter().filter(|q| q.0 == kind).collect();
            let answer = |(_, ids, token): &&(String, Vec<u32>, u32)| -> u64 {
                match kind {
                    "count" => engine.count(ids),
                    "prob" => engine.prob(ids, *token).map(|r| r.cont_count),
                    "infgram_prob" => engine.infgram_prob(ids, *token).map(|r| r.cont_count),
                    other => panic!("unknown kind {other}"),
                }
                .expect("query failed")
            };
            let mut checksum = these.iter().map(answer).fold(0u64, u64::wrapping_add);
            let mut best = f64::INFINITY;
            for _ in 0..rounds {
                let start = Instant::now();
                for q in &these {
                    checksum = checksum.wrapping_add(answer(q));
                }
                best = best.min(start.elapsed().as_secs_f64() * 1e6 / these.len() as f64);
            }
            out.push(format!(
                "\"{kind}/{path}\": {{\"us\": {best:.3}, \"checksum\": {checksum}}}"
            ));
        }
    }
    println!("{{{}}}", out.join(", "));
}
