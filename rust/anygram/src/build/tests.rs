//! The external build against the in-memory one and against a brute-force sort:
//! tiny parts and tiny overlaps force many parts, runs and merge ties.

use super::*;
use proptest::prelude::*;

/// Token values whose byte order differs from their numeric order, and the separator.
fn tricky_tokens(width: TokenWidth) -> Vec<u32> {
    match width {
        TokenWidth::U8 => vec![0, 1, 2, 0x7f, 0xff],
        TokenWidth::U16 => vec![0, 1, 0x00ff, 0x0100, 0x0101, 0xff00, 0xffff],
        TokenWidth::U32 => vec![0, 1, 0xff, 0x100, 0x0001_0000, 0x0100_0000, 0xffff_ffff],
    }
}

fn brute_force_table(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut positions: Vec<usize> = (0..n).collect();
    positions.sort_by(|&a, &b| bytes[a * width..].cmp(&bytes[b * width..]));
    let ptr_size = ptr_size_for(bytes.len() as u64);
    let mut table = Vec::new();
    for p in positions {
        table.extend_from_slice(&((p * width) as u64).to_le_bytes()[..ptr_size]);
    }
    table
}

fn build(
    bytes: &[u8],
    width: TokenWidth,
    options: &SuffixArrayOptions,
) -> (Vec<u8>, SuffixArrayReport) {
    let dir = tempfile::tempdir().unwrap();
    let tokenized = dir.path().join("tokenized.0");
    let table = dir.path().join("table.0");
    std::fs::write(&tokenized, bytes).unwrap();
    let options = SuffixArrayOptions {
        no_sync: true,
        ..options.clone()
    };
    let report =
        build_suffix_array_with(&tokenized, &table, width, &options, &mut |_| Ok(())).unwrap();
    assert!(!crate::atomic::partial_path(&table).exists());
    (std::fs::read(&table).unwrap(), report)
}

/// Texts of a few distinct tokens, often periodic: long repeats and long runs.
fn text_strategy() -> impl Strategy<Value = (TokenWidth, Vec<u8>)> {
    (0usize..3, 1usize..4, 0usize..400, 1usize..6, any::<u64>()).prop_map(
        |(w, alphabet, len, period, seed)| {
            let width = [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32][w];
            let tokens = tricky_tokens(width);
            let mut state = seed | 1;
            let mut pattern = Vec::new();
            for _ in 0..period {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                pattern.push(
                    tokens[(state as usize) % alphabet.min(tokens.len()).max(1)
                        + (seed as usize % 2)],
                );
            }
            let mut text = Vec::new();
            for i in 0..len {
                // Mostly periodic, with a rare mutation.
                let t = if (seed >> (i % 64)) & 0xff == 0x5a {
                    tokens[tokens.len() - 1]
                } else {
                    pattern[i % period]
                };
                text.extend_from_slice(&t.to_le_bytes()[..width.bytes()]);
            }
            (width, text)
        },
    )
}

proptest! {
    // Unoptimised builds (overflow checks on) run a quarter of the cases.
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 64 } else { 256 }))]

    #[test]
    fn external_equals_in_memory_and_brute_force(
        (width, bytes) in text_strategy(),
        part in 1u64..50,
        overlap in 1u64..6,
    ) {
        let expected = brute_force_table(&bytes, width.bytes());
        let (in_memory, _) = build(&bytes, width, &SuffixArrayOptions::default());
        prop_assert_eq!(&in_memory, &expected);
        let options = SuffixArrayOptions { part_tokens: Some(part), overlap_tokens: Some(overlap), ..Default::default() };
        let (external, report) = build(&bytes, width, &options);
        prop_assert_eq!(&external, &expected);
        prop_assert_eq!(report.plan.unwrap().num_parts(), (bytes.len() as u64 / width.bytes() as u64).div_ceil(part).max(1) as usize);
    }
}

#[test]
fn all_equal_tokens_make_one_long_run_per_part() {
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let bytes = vec![7u8; 600 * width.bytes()];
        let options = SuffixArrayOptions {
            part_tokens: Some(64),
            overlap_tokens: Some(3),
            ..Default::default()
        };
        let (external, report) = build(&bytes, width, &options);
        assert_eq!(external, brute_force_table(&bytes, width.bytes()));
        assert!(report.external.runs_resorted > 0, "{report:?}");
    }
}

#[test]
fn merge_in_parallel_ranges_is_exact() {
    // Above the size where the merge splits into ranges (2^22 tokens).
    let n = (1usize << 22) + 12345;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = Vec::with_capacity(n);
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Repeats of a 1000-byte block every so often, random bytes of 4 values otherwise.
        bytes.push(if (i / 5000) % 3 == 0 {
            (i % 1000 % 4) as u8
        } else {
            (state % 4) as u8
        });
    }
    let (in_memory, _) = build(&bytes, TokenWidth::U8, &SuffixArrayOptions::default());
    let options = SuffixArrayOptions {
        part_tokens: Some(1 << 20),
        overlap_tokens: Some(16),
        ..Default::default()
    };
    let (external, report) = build(&bytes, TokenWidth::U8, &options);
    assert_eq!(report.plan.unwrap().num_parts(), 5);
    assert!(external == in_memory);
}

#[test]
fn finished_parts_are_reused_and_stale_plans_discarded() {
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 13) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let tokenized = dir.path().join("tokenized.0");
    let table = dir.path().join("table.0");
    std::fs::write(&tokenized, &bytes).unwrap();
    let work = dir.path().join("work");
    let options = SuffixArrayOptions {
        part_tokens: Some(1000),
        overlap_tokens: Some(4),
        work_dir: Some(work.clone()),
        ..Default::default()
    };
    // Stop after the second part, as a killed build would.
    let mut calls = 0;
    let stopped = build_suffix_array_with(&tokenized, &table, TokenWidth::U8, &options, &mut |p| {
        calls += 1;
        if p.phase == Phase::SortPart && p.part == 2 {
            Err(Error::InvalidArgument("stop".into()))
        } else {
            Ok(())
        }
    });
    assert!(stopped.is_err() && calls == 2 && !table.exists());
    assert!(work.join("part.0").exists() && work.join("part.1").exists());
    let report =
        build_suffix_array_with(
            &tokenized,
            &table,
            TokenWidth::U8,
            &options,
            &mut |_| Ok(()),
        )
        .unwrap();
    assert_eq!(report.external.parts_reused, 2);
    assert_eq!(std::fs::read(&table).unwrap(), brute_force_table(&bytes, 1));
    assert!(!work.exists());

    // A different plan does not reuse parts of another.
    std::fs::remove_file(&table).unwrap();
    let _ = build_suffix_array_with(&tokenized, &table, TokenWidth::U8, &options, &mut |p| {
        if p.part == 2 {
            Err(Error::InvalidArgument("stop".into()))
        } else {
            Ok(())
        }
    });
    let other = SuffixArrayOptions {
        part_tokens: Some(700),
        ..options.clone()
    };
    let report =
        build_suffix_array_with(&tokenized, &table, TokenWidth::U8, &other, &mut |_| Ok(()))
            .unwrap();
    assert_eq!(report.external.parts_reused, 0);
    assert_eq!(std::fs::read(&table).unwrap(), brute_force_table(&bytes, 1));
}

#[test]
fn budget_picks_in_memory_or_external_and_rejects_too_little() {
    let mib = 1u64 << 20;
    let held = 100 * mib;
    // 100M u16 tokens sort in memory in 600 MiB + workspace.
    let n = 100_000_000;
    let (plan, available) = plan_for_budget(n, TokenWidth::U16, 1024 * mib, held).unwrap();
    assert!(plan.is_none() && available == 1024 * mib - held - 64 * mib);
    assert!(memory::in_memory_sort_bytes(n, TokenWidth::U16) <= available);
    // With 512 MiB: external, each part window within what is left.
    let (plan, available) = plan_for_budget(n, TokenWidth::U16, 512 * mib, held).unwrap();
    let plan = plan.unwrap();
    assert!(plan.num_parts() >= 2);
    let window = plan.part_tokens + plan.overlap_tokens;
    assert!(memory::in_memory_sort_bytes(window, TokenWidth::U16) <= available);
    assert!(memory::in_memory_sort_bytes(window + 10, TokenWidth::U16) > available);
    // Too little: a clear error.
    for mem in [120 * mib, 148 * mib] {
        let err = plan_for_budget(n, TokenWidth::U16, mem, held).unwrap_err();
        assert!(err.to_string().contains("raise the memory budget"), "{err}");
    }
}

#[test]
fn the_budget_check_and_auto_shards_follow_the_memory_model() {
    let mib = 1u64 << 20;
    let held = 100 * mib;
    // The floor: the reserve plus the smallest external sort of u32 tokens, whose plan it admits.
    // (Below 768 MiB the reserve is its fixed 48 MiB.)
    let floor = held + 48 * mib + min_sort_bytes(TokenWidth::U32);
    assert_eq!(reserve_bytes(floor), 48 * mib);
    check_budget(floor, held).unwrap();
    let at_floor = PartPlan::for_budget(1 << 30, TokenWidth::U32, floor - held - 48 * mib);
    assert!(
        at_floor.is_ok(),
        "the floor admits the smallest external sort"
    );
    let err = check_budget(floor - 1, held).unwrap_err();
    assert!(err.to_string().contains("raise the memory budget"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
    let mem = 1024 * mib;
    check_budget(mem, held).unwrap();
    let available = mem - held - reserve_bytes(mem);
    assert!(PartPlan::for_budget(1 << 30, TokenWidth::U32, available - 1).is_ok());
    // Auto shards: each shard's tokens sort in memory within what is left, with 10% slack.
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let per_shard = memory::max_in_memory_tokens(available, width);
        for num_tokens in [1, per_shard / 2, per_shard, 3 * per_shard + 17] {
            let shards = shards_for_budget(num_tokens, width, mem, held).unwrap();
            assert!(num_tokens.div_ceil(shards) as f64 <= per_shard as f64 * 0.9 + 1.0);
            if shards > 1 {
                assert!(num_tokens as f64 / (shards - 1) as f64 > per_shard as f64 * 0.9 - 1.0);
            }
        }
    }
    let err = shards_for_budget(1 << 30, TokenWidth::U16, 150 * mib, held).unwrap_err();
    assert!(err.to_string().contains("raise the memory budget"), "{err}");
}

#[test]
fn a_real_budget_builds_externally_and_exactly() {
    // The budget is read against the process's resident set: no other test may
    // allocate much meanwhile.
    let _alone = memory::RSS_TEST_LOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Smaller in unoptimised builds (the merge is Rust); the budget scales with it.
    let n: u64 = if cfg!(debug_assertions) {
        4 << 20
    } else {
        8 << 20
    };
    // Pseudo-random bytes: short repeats (a quasi-periodic text would tie most
    // suffixes on the whole overlap and test the re-sort, slowly, instead).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 59) as u8
        })
        .collect();
    let (expected, in_memory) = build(&bytes, TokenWidth::U8, &SuffixArrayOptions::default());
    assert!(in_memory.plan.is_none());
    // Leave the sort half-way between the smallest external window and the
    // whole text: the build must go external, with room either side for the
    // resident set to move by a few tens of MiB.
    let smallest = memory::in_memory_sort_bytes(DEFAULT_OVERLAP_TOKENS + (1 << 16), TokenWidth::U8);
    let whole = memory::in_memory_sort_bytes(n, TokenWidth::U8);
    let available = (smallest + whole) / 2;
    let held = memory::resident_bytes().expect("the resident set is readable (Linux)");
    let mem = held + available + RESERVE_BYTES;
    assert_eq!(reserve_bytes(mem), RESERVE_BYTES);
    let options = SuffixArrayOptions {
        mem_bytes: Some(mem),
        no_sync: true,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (tokenized, table_path) = (dir.path().join("tokenized.0"), dir.path().join("table.0"));
    std::fs::write(&tokenized, &bytes).unwrap();
    let mut phases = Vec::new();
    let report = build_suffix_array_with(
        &tokenized,
        &table_path,
        TokenWidth::U8,
        &options,
        &mut |p| {
            phases.push(p.phase);
            Ok(())
        },
    )
    .unwrap();
    let plan = report
        .plan
        .expect("a budget below the whole sort builds externally");
    assert!(plan.num_parts() >= 2, "{plan:?}");
    let parts_sorted = phases.iter().filter(|&&p| p == Phase::SortPart).count();
    assert_eq!(parts_sorted, plan.num_parts(), "{phases:?}");
    assert!(phases.contains(&Phase::Merge) && !phases.contains(&Phase::SortAll));
    let table = std::fs::read(&table_path).unwrap();
    assert!(
        table == expected,
        "the external table differs from the in-memory one"
    );
}
