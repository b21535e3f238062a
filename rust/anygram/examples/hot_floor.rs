//! The Rust floor of the query benchmark (`bench/bench_hot.py`): the same queries
//! answered by the core with no Python in between, one thread in a loop and all
//! cores of the pool, so that the bindings' per-query cost shows as a ratio.
//!
//! Usage: `hot_floor INDEX QUERIES` where QUERIES has one query a line,
//! `KIND<TAB>ids<TAB>token` (ids space-separated; token only for prob kinds).
//! Prints one JSON object: per kind, µs per query on one thread and on the pool.

use std::time::{Duration, Instant};

use anygram::{Engine, OpenOptions};
use rayon::prelude::*;

struct Query {
    kind: String,
    ids: Vec<u32>,
    token: u32,
}

fn answer(engine: &Engine, q: &Query) -> u64 {
    let result = match q.kind.as_str() {
        "count" => engine.count(&q.ids),
        "prob" => engine
            .ngram_prob(&q.ids, q.token, Some(q.ids.len() + 1))
            .map(|r| r.cont_count),
        "ntd" => engine
            .ngram_ntd(&q.ids, Some(q.ids.len() + 1), 1000)
            .map(|r| r.prompt_count),
        "infgram_prob" => engine.infgram_prob(&q.ids, q.token).map(|r| r.cont_count),
        "infgram_ntd" => engine.infgram_ntd(&q.ids, 1000).map(|r| r.prompt_count),
        other => panic!("unknown query kind {other}"),
    };
    result.expect("query failed")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, index, queries] = args.as_slice() else {
        eprintln!("usage: hot_floor INDEX QUERIES");
        std::process::exit(2);
    };
    let options = OpenOptions {
        accelerator: false,
        ..OpenOptions::default()
    };
    let engine = Engine::open(index, &options).expect("open the index");
    // The sampled keys are built in the background after open, as in Python.
    std::thread::sleep(Duration::from_secs(4));
    let text = std::fs::read_to_string(queries).expect("read the queries");
    let queries: Vec<Query> = text
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
            Query { kind, ids, token }
        })
        .collect();
    let mut kinds: Vec<&str> = queries.iter().map(|q| q.kind.as_str()).collect();
    kinds.dedup();
    let mut out = Vec::new();
    for kind in kinds {
        let these: Vec<&Query> = queries.iter().filter(|q| q.kind == kind).collect();
        let mut checksum = 0u64;
        for q in &these {
            checksum = checksum.wrapping_add(answer(&engine, q)); // warm the page cache
        }
        let start = Instant::now();
        for q in &these {
            checksum = checksum.wrapping_add(answer(&engine, q));
        }
        let single = start.elapsed().as_secs_f64() * 1e6 / these.len() as f64;
        let start = Instant::now();
        let pooled: u64 =
            anygram::pool::install(|| these.par_iter().map(|q| answer(&engine, q)).sum());
        let pool = start.elapsed().as_secs_f64() * 1e6 / these.len() as f64;
        out.push(format!(
            "\"{kind}\": {{\"one_thread_us\": {single:.4}, \"pool_us\": {pool:.4}, \"queries\": {}, \"checksum\": {}}}",
            these.len(),
            checksum.wrapping_add(pooled)
        ));
        if kind == "count" {
            // The interleaved searches of count_batch, with no Python in between.
            let ids: Vec<&[u32]> = these.iter().map(|q| q.ids.as_slice()).collect();
            let total = |counts: Vec<anygram::Result<u64>>| -> u64 {
                counts.into_iter().map(|c| c.expect("query failed")).sum()
            };
            let start = Instant::now();
            let single_sum = total(anygram::interleave::count_many(&engine, &ids));
            let single = start.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
            let start = Instant::now();
            let pooled: u64 = anygram::pool::install(|| {
                ids.par_chunks(4 * anygram::interleave::GROUP)
                    .map(|group| total(anygram::interleave::count_many(&engine, group)))
                    .sum()
            });
            let pool = start.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
            out.push(format!(
                "\"count interleaved\": {{\"one_thread_us\": {single:.4}, \"pool_us\": {pool:.4}, \"queries\": {}, \"checksum\": {}}}",
                ids.len(),
                single_sum.wrapping_add(pooled)
            ));
        }
    }
    println!("{{{}}}", out.join(", "));
}
