//! Suffix-array construction for one shard, within a memory budget.
//!
//! A shard's table is its suffix array: the byte offset of every token, sorted by
//! `memcmp` of the bytes that follow (infini-gram's order), packed into
//! `ptr_size_for(file size)` bytes each.
//!
//! * **In memory** ([`sorter`]): the whole token stream is read into the form
//!   libsais wants and sorted on all cores. Peak: [`memory::in_memory_sort_bytes`]
//!   (6 bytes a token for u16 tokens, plus libsais's workspace).
//! * **External** ([`external`]): when that does not fit the budget, the suffixes
//!   are sorted in parts that fit, made exact, written to disk and merged.
//!   Peak: one part's window, the merge's bounded buffers, and the pages of the
//!   mapped token file that the process touches, which a guard hands back to the
//!   page cache whenever the resident set nears the budget.
//!
//! Both write byte-identical tables (property-tested against each other and
//! against a brute-force sort, for every token width).

mod external;
pub mod memory;
mod sorter;
pub mod writer;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use external::{
    min_sort_bytes, ExternalStats, PartPlan, DEFAULT_OVERLAP_TOKENS, MIN_PART_TOKENS,
};
pub use sorter::{suffix_array, SuffixArray};

use crate::error::{Error, Result};
use crate::format::{ptr_size_for, TokenWidth};

/// Bytes kept free beyond the sort buffers for the merge's buffers and the
/// mapped pages that comparisons touch (at least this, or 1/16 of the budget).
const RESERVE_BYTES: u64 = 48 << 20;

/// How to build a suffix array.
#[derive(Debug, Clone, Default)]
pub struct SuffixArrayOptions {
    /// Sorting threads; 0 uses every core.
    pub threads: usize,
    /// Peak resident memory of the whole process allowed during the build, in
    /// bytes (`None`: no limit, always in memory). What the process already
    /// holds when the build starts counts against it.
    pub mem_bytes: Option<u64>,
    /// Where an external build keeps its parts (default: `<table>.parts`).
    /// Finished parts found there with the same plan are reused.
    pub work_dir: Option<PathBuf>,
    /// Forces an external build with parts of this many suffixes (tests).
    pub part_tokens: Option<u64>,
    /// The overlap T read past each part (default [`DEFAULT_OVERLAP_TOKENS`]).
    pub overlap_tokens: Option<u64>,
    /// Skips `fsync` of the table and the parts (tests; a resumable build needs it).
    pub no_sync: bool,
}

/// Which step a [`Progress`] report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The in-memory sort of the whole shard (reported when done).
    SortAll,
    /// Sorting part `part` of `num_parts`.
    SortPart,
    /// Merging the parts.
    Merge,
}

/// A progress report: `done` of `total` tokens of the current phase.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// 1-based part just finished (external sort).
    pub part: usize,
    /// Number of parts (1 in memory).
    pub num_parts: usize,
    /// Tokens done.
    pub done: u64,
    /// Tokens in all.
    pub total: u64,
}

/// What a suffix-array build did.
#[derive(Debug, Clone)]
pub struct SuffixArrayReport {
    /// Tokens (= entries) sorted.
    pub num_tokens: u64,
    /// The plan, when it was built externally.
    pub plan: Option<PartPlan>,
    /// Peak bytes the sort was planned to need beyond what the process held.
    pub planned_bytes: u64,
    /// Details of the external build.
    pub external: ExternalStats,
}

/// Builds the suffix array of `tokenized` into `table`, in memory, with all cores.
pub fn build_suffix_array(
    tokenized: &Path,
    table: &Path,
    width: TokenWidth,
    threads: usize,
) -> Result<()> {
    let options = SuffixArrayOptions {
        threads,
        ..Default::default()
    };
    build_suffix_array_with(tokenized, table, width, &options, &mut |_| Ok(())).map(|_| ())
}

/// Builds the suffix array of the token file `tokenized` into `table` (written
/// under a temporary name and renamed when complete), in memory when it fits
/// `options.mem_bytes`, otherwise externally. `progress` is called after each
/// part and a few times a second during the merge; an error it returns stops
/// the build (finished parts stay on disk for a resumed build).
pub fn build_suffix_array_with(
    tokenized: &Path,
    table: &Path,
    width: TokenWidth,
    options: &SuffixArrayOptions,
    progress: &mut dyn FnMut(&Progress) -> Result<()>,
) -> Result<SuffixArrayReport> {
    let size = std::fs::metadata(tokenized)
        .map_err(|e| Error::io(tokenized, e))?
        .len();
    let w = width.bytes() as u64;
    if size % w != 0 {
        return Err(Error::corrupt(
            tokenized,
            format!("size {size} is not a multiple of the token width {w}"),
        ));
    }
    let num_tokens = size / w;
    let threads = match options.threads {
        0 => rayon::current_num_threads(),
        t => t,
    };
    let work_dir = options.work_dir.clone().unwrap_or_else(|| {
        let mut name = table.file_name().unwrap_or_default().to_os_string();
        name.push(".parts");
        table.with_file_name(name)
    });
    let in_memory = memory::in_memory_sort_bytes(num_tokens, width);
    let (plan, available, rss_limit) = match (options.part_tokens, options.mem_bytes) {
        (Some(part), mem) => {
            let overlap = options.overlap_tokens.unwrap_or(DEFAULT_OVERLAP_TOKENS);
            let plan = PartPlan::with_sizes(num_tokens, width, part, overlap)?;
            (Some(plan), in_memory, mem.unwrap_or(u64::MAX))
        }
        (None, None) => (None, in_memory, u64::MAX),
        (None, Some(mem)) => {
            let held = memory::resident_bytes().unwrap_or(0);
            let (plan, available) = plan_for_budget(num_tokens, width, mem, held)?;
            (plan, available, mem.saturating_sub(reserve_bytes(mem) / 2))
        }
    };
    let mut report = SuffixArrayReport {
        num_tokens,
        plan,
        planned_bytes: in_memory.min(available),
        external: ExternalStats::default(),
    };
    match plan {
        Some(plan) => {
            report.planned_bytes = memory::in_memory_sort_bytes(
                (plan.part_tokens + plan.overlap_tokens).min(num_tokens),
                width,
            );
            report.external = external::build_external(
                tokenized,
                table,
                width,
                plan,
                &work_dir,
                threads,
                rss_limit,
                !options.no_sync,
                progress,
            )?;
        }
        None => {
            let file = File::open(tokenized).map_err(|e| Error::io(tokenized, e))?;
            let input = sorter::read_window(&file, tokenized, 0, num_tokens as usize, width)?;
            let sa = input.sort(threads).map_err(|detail| Error::Build {
                path: tokenized.to_path_buf(),
                detail,
            })?;
            crate::atomic::write_with(table, !options.no_sync, |file, tmp| {
                write_table(&sa, w, ptr_size_for(size), file, tmp)
            })?;
            drop(sa);
            progress(&Progress {
                phase: Phase::SortAll,
                part: 1,
                num_parts: 1,
                done: num_tokens,
                total: num_tokens,
            })?;
        }
    }
    Ok(report)
}

/// Bytes of a budget `mem` kept free of the sort buffers (the memory model's reserve).
pub fn reserve_bytes(mem: u64) -> u64 {
    RESERVE_BYTES.max(mem / 16)
}

/// Checks, before a build reads its inputs, that a budget of `mem` bytes can
/// build a shard of any token width when the process already holds `held`: the
/// reserve plus the smallest external sort of the widest tokens.
pub fn check_budget(mem: u64, held: u64) -> Result<()> {
    let more = reserve_bytes(mem).saturating_add(min_sort_bytes(TokenWidth::U32));
    if mem < held.saturating_add(more) {
        return Err(Error::InvalidArgument(format!(
            "a memory budget of {} MiB is too small: the process already holds {} MiB \
             and a build needs about {} MiB more at least; raise the memory budget",
            mem >> 20,
            held >> 20,
            more >> 20
        )));
    }
    Ok(())
}

/// The fewest shards of `num_tokens` tokens (in all) whose suffix arrays each
/// sort in memory within a budget of `mem` bytes when the process holds `held`.
/// Shards are cut at document starts and the resident set moves a little, so
/// each aims at 90% of what fits.
pub fn shards_for_budget(num_tokens: u64, width: TokenWidth, mem: u64, held: u64) -> Result<u64> {
    let available = mem.saturating_sub(held.saturating_add(reserve_bytes(mem)));
    let per_shard = memory::max_in_memory_tokens(available, width);
    if per_shard < MIN_PART_TOKENS {
        return Err(Error::InvalidArgument(format!(
            "a memory budget of {} MiB leaves {} MiB for sorting (the process holds {} MiB), \
             too little to choose the number of shards: raise the memory budget",
            mem >> 20,
            available >> 20,
            held >> 20
        )));
    }
    let shards = (num_tokens as f64 / (per_shard as f64 * 0.9)).ceil() as u64;
    Ok(shards.max(1))
}

/// How a shard of `num_tokens` is sorted within `mem` bytes when the process
/// already holds `held`: in memory (`None`) or with a part plan, and the bytes
/// available to the sort buffers.
pub fn plan_for_budget(
    num_tokens: u64,
    width: TokenWidth,
    mem: u64,
    held: u64,
) -> Result<(Option<PartPlan>, u64)> {
    let reserve = reserve_bytes(mem);
    let available = mem.checked_sub(held + reserve).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "a memory budget of {} MiB is below what the process already holds ({} MiB) \
             plus a reserve of {} MiB: raise the memory budget",
            mem >> 20,
            held >> 20,
            reserve >> 20
        ))
    })?;
    if memory::in_memory_sort_bytes(num_tokens, width) <= available {
        Ok((None, available))
    } else {
        Ok((
            Some(PartPlan::for_budget(num_tokens, width, available)?),
            available,
        ))
    }
}

/// Writes byte offsets (`position * width`) of `sa` as `ptr_size`-byte
/// little-endian integers to `file` (named `table` in errors), packing chunks in
/// parallel.
fn write_table(
    sa: &SuffixArray,
    width: u64,
    ptr_size: usize,
    file: &File,
    table: &Path,
) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut out = BufWriter::with_capacity(1 << 22, file);
    let n = sa.len();
    let mut start = 0;
    while start < n {
        // A batch of chunks per round keeps every core busy with a bounded buffer.
        let end = (start + CHUNK * rayon::current_num_threads().max(1) * 2).min(n);
        let packed: Vec<Vec<u8>> = (start..end)
            .into_par_iter()
            .step_by(CHUNK)
            .map(|chunk_start| {
                let chunk_end = (chunk_start + CHUNK).min(end);
                let mut buf = Vec::with_capacity((chunk_end - chunk_start) * ptr_size);
                for i in chunk_start..chunk_end {
                    buf.extend_from_slice(&(sa.get(i) * width).to_le_bytes()[..ptr_size]);
                }
                buf
            })
            .collect();
        for buf in packed {
            out.write_all(&buf).map_err(|e| Error::io(table, e))?;
        }
        start = end;
    }
    out.flush().map_err(|e| Error::io(table, e))
}

#[cfg(test)]
mod tests;
