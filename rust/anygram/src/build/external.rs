//! External-memory suffix sorting: a shard whose suffix array does not fit in
//! the memory budget is sorted in parts and merged on disk.
//!
//! 1. **Parts.** The suffixes are split by start position into parts of
//!    `part_tokens`. Part `i` is sorted with libsais over its own tokens plus the
//!    `overlap_tokens` (T) that follow it, and the suffixes that start in the
//!    overlap are dropped.
//! 2. **Exact.** Two suffixes of a part whose first T tokens differ are in the
//!    right order already (both windows hold at least T tokens). Suffixes equal in
//!    their first T tokens are contiguous in the part's order: each such run is
//!    re-sorted comparing the full text after the first T tokens (`memcmp` of the
//!    mapped token file, the order infini-gram uses).
//! 3. **Merge.** The sorted parts are written to disk as packed pointers and
//!    k-way merged with a heap that compares suffixes on the mapped text (an
//!    8-byte big-endian key per head decides most comparisons without touching
//!    the text). The merge is split by splitter suffixes into ranges that run in
//!    parallel, each writing its own slice of the table.
//!
//! Every part file is written under a temporary name and renamed when complete,
//! next to a `plan.json` that fixes the part layout: a killed build resumes with
//! the finished parts. Time grows with repeats longer than T tokens (their
//! comparisons read the whole repeat); memory does not.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::memory::{max_in_memory_tokens, RssGuard, LARGE_TEXT};
use super::sorter::{read_window, SuffixArray};
use super::{Phase, Progress};
use crate::atomic;
use crate::error::{Error, Result};
use crate::format::{ptr_size_for, read_uint_le, TokenWidth};

/// Default overlap: repeats shorter than this cost nothing extra.
pub const DEFAULT_OVERLAP_TOKENS: u64 = 4096;

/// The smallest part of an external sort: smaller parts make the merge wide and
/// slow for nothing.
pub const MIN_PART_TOKENS: u64 = 1 << 16;

/// Bytes of sort buffers the smallest external sort of `width` tokens needs
/// (one part of [`MIN_PART_TOKENS`] and its overlap).
pub fn min_sort_bytes(width: TokenWidth) -> u64 {
    super::memory::in_memory_sort_bytes(DEFAULT_OVERLAP_TOKENS + MIN_PART_TOKENS, width)
}
/// Pointers read per part per refill during the merge.
const MERGE_READ_ENTRIES: usize = 1 << 16;
/// Bytes of table buffered before each write during the merge.
const MERGE_WRITE_BYTES: usize = 4 << 20;
/// Merge outputs between two checks of the resident set.
const GUARD_EVERY: u64 = 1 << 12;

/// How a shard is cut into parts. Fixed when the external build starts and
/// stored beside the parts, so that a resumed build uses the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPlan {
    /// Tokens in the shard.
    pub num_tokens: u64,
    /// Token width in bytes.
    pub token_width: usize,
    /// Suffixes per part (the last part may have fewer).
    pub part_tokens: u64,
    /// Tokens read past the end of each part (T).
    pub overlap_tokens: u64,
}

impl PartPlan {
    /// The plan whose part windows sort within `bytes` each.
    pub fn for_budget(num_tokens: u64, width: TokenWidth, bytes: u64) -> Result<PartPlan> {
        let window = max_in_memory_tokens(bytes, width);
        let overlap = DEFAULT_OVERLAP_TOKENS;
        if window < overlap + MIN_PART_TOKENS {
            return Err(Error::InvalidArgument(format!(
                "the memory budget leaves {} MiB for sorting, too little for an external \
                 suffix sort (it needs at least {} MiB beyond what the process already uses): \
                 raise the memory budget",
                bytes >> 20,
                min_sort_bytes(width).div_ceil(1 << 20)
            )));
        }
        Self::with_sizes(num_tokens, width, window - overlap, overlap)
    }

    /// A plan with explicit sizes (tests force many tiny parts with it).
    pub fn with_sizes(
        num_tokens: u64,
        width: TokenWidth,
        part_tokens: u64,
        overlap_tokens: u64,
    ) -> Result<PartPlan> {
        if part_tokens == 0 || overlap_tokens == 0 {
            return Err(Error::InvalidArgument(format!(
                "part_tokens ({part_tokens}) and overlap_tokens ({overlap_tokens}) must be positive"
            )));
        }
        // Windows must stay within the 32-bit sorters.
        let part_tokens = part_tokens.min(LARGE_TEXT - 1 - overlap_tokens.min(LARGE_TEXT / 2));
        Ok(PartPlan {
            num_tokens,
            token_width: width.bytes(),
            part_tokens,
            overlap_tokens: overlap_tokens.min(LARGE_TEXT / 2),
        })
    }

    /// Number of parts.
    pub fn num_parts(&self) -> usize {
        self.num_tokens.div_ceil(self.part_tokens).max(1) as usize
    }

    /// Token positions `[start, end)` whose suffixes part `i` sorts.
    pub fn part(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.part_tokens;
        (start, (start + self.part_tokens).min(self.num_tokens))
    }
}

/// What the external build did.
#[derive(Debug, Default, Clone)]
pub struct ExternalStats {
    /// Parts found finished on disk (a resumed build).
    pub parts_reused: usize,
    /// Runs of suffixes equal in their first T tokens that were re-sorted.
    pub runs_resorted: u64,
    /// Suffixes in those runs.
    pub suffixes_in_runs: u64,
}

/// Everything the steps share: the mapped text and its parameters.
struct Text<'a> {
    bytes: &'a [u8],
    width: u64,
    num_tokens: u64,
}

impl Text<'_> {
    /// The suffix at token `position`, as bytes.
    #[inline]
    fn suffix(&self, position: u64) -> &[u8] {
        &self.bytes[(position * self.width) as usize..]
    }
}

/// Sorts the suffixes of `tokenized` in parts under `work_dir` and merges them
/// into `table` (written whole or not at all).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_external(
    tokenized: &Path,
    table: &Path,
    width: TokenWidth,
    plan: PartPlan,
    work_dir: &Path,
    threads: usize,
    rss_limit: u64,
    sync: bool,
    progress: &mut dyn FnMut(&Progress) -> Result<()>,
) -> Result<ExternalStats> {
    let file = File::open(tokenized).map_err(|e| Error::io(tokenized, e))?;
    let size = file.metadata().map_err(|e| Error::io(tokenized, e))?.len();
    let ptr_size = ptr_size_for(size);
    let map = if size == 0 {
        None
    } else {
        // SAFETY: the token file is written before this step and never modified
        // while the build runs (the build owns its working directory).
        Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(tokenized, e))?)
    };
    let text = Text {
        bytes: map.as_deref().unwrap_or(&[]),
        width: width.bytes() as u64,
        num_tokens: size / width.bytes() as u64,
    };
    let guard = map.as_ref().map(|m| RssGuard::new(m, rss_limit));
    let mut stats = ExternalStats::default();
    prepare_work_dir(work_dir, &plan, sync)?;

    let num_parts = plan.num_parts();
    let mut parts = Vec::with_capacity(num_parts);
    for i in 0..num_parts {
        let (start, end) = plan.part(i);
        let path = work_dir.join(format!("part.{i}"));
        let expected = (end - start) * ptr_size as u64;
        let finished = fs::metadata(&path).is_ok_and(|m| m.len() == expected);
        if finished {
            stats.parts_reused += 1;
        } else {
            sort_part(
                &file,
                tokenized,
                &text,
                &plan,
                i,
                threads,
                ptr_size,
                &path,
                guard.as_ref(),
                sync,
                &mut stats,
            )?;
        }
        if let Some(g) = &guard {
            g.release();
        }
        parts.push((path, end - start));
        progress(&Progress {
            phase: Phase::SortPart,
            part: i + 1,
            num_parts,
            done: end,
            total: text.num_tokens,
        })?;
    }

    let tmp = atomic::partial_path(table);
    if num_parts == 1 {
        fs::rename(&parts[0].0, &tmp).map_err(|e| Error::io(&parts[0].0, e))?;
    } else {
        merge_parts(
            &text,
            &parts,
            ptr_size,
            &tmp,
            guard.as_ref(),
            sync,
            progress,
        )?;
    }
    atomic::publish(&tmp, table, sync)?;
    let _ = fs::remove_dir_all(work_dir);
    Ok(stats)
}

/// Keeps finished parts of the same plan; anything else in `work_dir` is stale.
fn prepare_work_dir(work_dir: &Path, plan: &PartPlan, sync: bool) -> Result<()> {
    let plan_path = work_dir.join("plan.json");
    let same_plan = fs::read(&plan_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<PartPlan>(&b).ok())
        .is_some_and(|p| p == *plan);
    if same_plan {
        return Ok(());
    }
    if work_dir.exists() {
        fs::remove_dir_all(work_dir).map_err(|e| Error::io(work_dir, e))?;
    }
    fs::create_dir_all(work_dir).map_err(|e| Error::io(work_dir, e))?;
    let json = serde_json::to_vec(plan).expect("a plan serializes");
    atomic::write_with(&plan_path, sync, |mut file, tmp| {
        file.write_all(&json).map_err(|e| Error::io(tmp, e))
    })
}

/// Sorts part `i` exactly and writes it to `path` as packed byte offsets.
#[allow(clippy::too_many_arguments)]
fn sort_part(
    file: &File,
    tokenized: &Path,
    text: &Text,
    plan: &PartPlan,
    i: usize,
    threads: usize,
    ptr_size: usize,
    path: &Path,
    guard: Option<&RssGuard>,
    sync: bool,
    stats: &mut ExternalStats,
) -> Result<()> {
    let (start, end) = plan.part(i);
    let window_end = (end + plan.overlap_tokens).min(text.num_tokens);
    let width = TokenWidth::from_bytes(text.width as usize)?;
    let input = read_window(file, tokenized, start, (window_end - start) as usize, width)?;
    let mut sa = match input.sort(threads).map_err(|detail| Error::Build {
        path: tokenized.to_path_buf(),
        detail,
    })? {
        SuffixArray::Small(sa) => sa,
        SuffixArray::Large(_) => unreachable!("part windows are planned below 2^31 tokens"),
    };
    let len = (end - start) as i32;
    sa.retain(|&x| x < len);
    sa.shrink_to_fit();

    // A window that reaches the end of the text holds the true suffixes: exact.
    if window_end < text.num_tokens {
        let (runs, members) = resort_runs(text, plan.overlap_tokens, start, &mut sa, guard);
        stats.runs_resorted += runs;
        stats.suffixes_in_runs += members;
    }

    atomic::write_with(path, sync, |out, tmp| {
        let mut writer = std::io::BufWriter::with_capacity(1 << 22, out);
        for &x in &sa {
            let offset = (start + x as u64) * text.width;
            writer
                .write_all(&offset.to_le_bytes()[..ptr_size])
                .map_err(|e| Error::io(tmp, e))?;
        }
        writer.flush().map_err(|e| Error::io(tmp, e))
    })
}

/// Re-sorts, comparing the full text, every run of adjacent suffixes (part-local
/// positions `sa`, the part starting at token `start`) equal in their first
/// `overlap` tokens. Returns the number of runs and of their members.
fn resort_runs(
    text: &Text,
    overlap: u64,
    start: u64,
    sa: &mut [i32],
    guard: Option<&RssGuard>,
) -> (u64, u64) {
    let prefix_bytes = (overlap * text.width) as usize;
    let tied = |x: i32, y: i32| {
        let (p, q) = (start + x as u64, start + y as u64);
        text.num_tokens - p >= overlap
            && text.num_tokens - q >= overlap
            && text.suffix(p)[..prefix_bytes] == text.suffix(q)[..prefix_bytes]
    };
    let runs = AtomicU64::new(0);
    let members = AtomicU64::new(0);
    sa.par_chunk_by_mut(|x, y| tied(*x, *y)).for_each(|run| {
        if run.len() > 1 {
            run.sort_unstable_by(|x, y| {
                let (p, q) = (start + *x as u64 + overlap, start + *y as u64 + overlap);
                text.suffix(p).cmp(text.suffix(q))
            });
            // Long runs read far into the text: keep its mapped pages in check.
            if runs.fetch_add(1, AtomicOrdering::Relaxed) % 1024 == 1023 {
                if let Some(g) = guard {
                    g.check();
                }
            }
            members.fetch_add(run.len() as u64, AtomicOrdering::Relaxed);
        }
    });
    (runs.into_inner(), members.into_inner())
}

/// The first 8 bytes of the suffix at byte `offset`, big-endian, zero-padded:
/// keys in integer order are suffixes in `memcmp` order, and equal keys need a
/// full comparison.
#[inline]
fn key_at(text: &[u8], offset: u64) -> u64 {
    let s = &text[offset as usize..];
    if s.len() >= 8 {
        u64::from_be_bytes(s[..8].try_into().expect("8 bytes"))
    } else {
        let mut padded = [0u8; 8];
        padded[..s.len()].copy_from_slice(s);
        u64::from_be_bytes(padded)
    }
}

/// One part's next suffix in the merge, ordered so that `BinaryHeap` (a max-heap)
/// pops the smallest suffix first.
struct Head<'t> {
    text: &'t [u8],
    key: u64,
    offset: u64,
    part: usize,
}

impl Ord for Head<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_suffix = self.key.cmp(&other.key).then_with(|| {
            self.text[self.offset as usize..].cmp(&other.text[other.offset as usize..])
        });
        by_suffix.reverse()
    }
}
impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head<'_> {}

/// Reads a range of one part's packed pointers in bounded blocks.
struct PartReader {
    file: File,
    path: PathBuf,
    ptr_size: usize,
    next: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl PartReader {
    fn next_offset(&mut self) -> Result<Option<u64>> {
        if self.pos == self.buf.len() {
            if self.next == self.end {
                return Ok(None);
            }
            let count = (self.end - self.next).min(MERGE_READ_ENTRIES as u64);
            self.buf.resize(count as usize * self.ptr_size, 0);
            self.file
                .read_exact_at(&mut self.buf, self.next * self.ptr_size as u64)
                .map_err(|e| Error::io(&self.path, e))?;
            self.next += count;
            self.pos = 0;
        }
        let value = read_uint_le(&self.buf[self.pos..self.pos + self.ptr_size]);
        self.pos += self.ptr_size;
        Ok(Some(value))
    }
}

fn read_ptr(file: &File, path: &Path, ptr_size: usize, index: u64) -> Result<u64> {
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf[..ptr_size], index * ptr_size as u64)
        .map_err(|e| Error::io(path, e))?;
    Ok(read_uint_le(&buf[..ptr_size]))
}

/// Number of entries of a sorted part that are smaller than the suffix at byte `offset`.
fn lower_bound(
    text: &[u8],
    part: &(File, PathBuf, u64),
    ptr_size: usize,
    offset: u64,
) -> Result<u64> {
    let (file, path, len) = part;
    let target = &text[offset as usize..];
    let (mut lo, mut hi) = (0u64, *len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = read_ptr(file, path, ptr_size, mid)?;
        if &text[at as usize..] < target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// k-way merges the sorted parts into `out`, in parallel ranges.
fn merge_parts(
    text: &Text,
    parts: &[(PathBuf, u64)],
    ptr_size: usize,
    out: &Path,
    guard: Option<&RssGuard>,
    sync: bool,
    progress: &mut dyn FnMut(&Progress) -> Result<()>,
) -> Result<()> {
    let open = |(path, len): &(PathBuf, u64)| -> Result<(File, PathBuf, u64)> {
        Ok((
            File::open(path).map_err(|e| Error::io(path, e))?,
            path.clone(),
            *len,
        ))
    };
    let files = parts.iter().map(open).collect::<Result<Vec<_>>>()?;
    let total = text.num_tokens;

    // Splitters: evenly spaced samples of every part, sorted, every k-th kept.
    let threads = rayon::current_num_threads().max(1);
    let num_ranges = if total < (1 << 22) { 1 } else { threads * 4 };
    let mut samples = Vec::new();
    for (file, path, len) in &files {
        for j in 1..num_ranges as u64 {
            samples.push(read_ptr(file, path, ptr_size, j * len / num_ranges as u64)?);
        }
    }
    samples.sort_unstable_by(|a, b| text.bytes[*a as usize..].cmp(&text.bytes[*b as usize..]));
    let splitters: Vec<u64> = (1..num_ranges)
        .map(|j| samples[(j * files.len()).saturating_sub(1).min(samples.len() - 1)])
        .collect();
    // bounds[r][p]: first entry of part p in range r.
    let mut bounds = vec![vec![0u64; files.len()]];
    for &s in &splitters {
        let row = files
            .iter()
            .map(|part| lower_bound(text.bytes, part, ptr_size, s))
            .collect::<Result<Vec<_>>>()?;
        bounds.push(row);
    }
    bounds.push(files.iter().map(|f| f.2).collect());

    let out_file = File::create(out).map_err(|e| Error::io(out, e))?;
    out_file
        .set_len(total * ptr_size as u64)
        .map_err(|e| Error::io(out, e))?;
    let done = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    let ranges: Vec<usize> = (0..bounds.len() - 1).collect();
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            ranges
                .par_iter()
                .map(|&r| {
                    merge_range(
                        text,
                        &files,
                        ptr_size,
                        &bounds[r],
                        &bounds[r + 1],
                        &out_file,
                        out,
                        guard,
                        &done,
                        &abort,
                    )
                })
                .collect::<Result<Vec<()>>>()
        });
        let mut reported = Ok(());
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if reported.is_ok() {
                reported = progress(&Progress {
                    phase: Phase::Merge,
                    part: parts.len(),
                    num_parts: parts.len(),
                    done: done.load(AtomicOrdering::Relaxed),
                    total,
                });
                if reported.is_err() {
                    abort.store(true, AtomicOrdering::Relaxed);
                }
            }
        }
        let merged = worker.join().expect("merge worker panicked");
        reported.and(merged.map(|_| ()))
    });
    result?;
    if sync {
        out_file.sync_all().map_err(|e| Error::io(out, e))?;
    }
    progress(&Progress {
        phase: Phase::Merge,
        part: parts.len(),
        num_parts: parts.len(),
        done: total,
        total,
    })
}

#[allow(clippy::too_many_arguments)]
fn merge_range(
    text: &Text,
    files: &[(File, PathBuf, u64)],
    ptr_size: usize,
    from: &[u64],
    to: &[u64],
    out_file: &File,
    out: &Path,
    guard: Option<&RssGuard>,
    done: &AtomicU64,
    abort: &AtomicBool,
) -> Result<()> {
    let mut readers = Vec::new();
    let mut heap = BinaryHeap::with_capacity(files.len());
    let head = |offset: u64, part: usize| Head {
        text: text.bytes,
        key: key_at(text.bytes, offset),
        offset,
        part,
    };
    for (p, (file, path, _)) in files.iter().enumerate() {
        let mut reader = PartReader {
            file: file.try_clone().map_err(|e| Error::io(path, e))?,
            path: path.clone(),
            ptr_size,
            next: from[p],
            end: to[p],
            buf: Vec::new(),
            pos: 0,
        };
        if let Some(offset) = reader.next_offset()? {
            heap.push(head(offset, p));
        }
        readers.push(reader);
    }
    let mut position = from.iter().sum::<u64>() * ptr_size as u64;
    let mut buf = Vec::with_capacity(MERGE_WRITE_BYTES);
    let mut since_check = 0u64;
    while let Some(mut top) = heap.peek_mut() {
        buf.extend_from_slice(&top.offset.to_le_bytes()[..ptr_size]);
        match readers[top.part].next_offset()? {
            // Replacing the top in place sifts it down once, when `top` is dropped.
            Some(offset) => *top = head(offset, top.part),
            None => {
                PeekMut::pop(top);
            }
        }
        if buf.len() >= MERGE_WRITE_BYTES {
            out_file
                .write_all_at(&buf, position)
                .map_err(|e| Error::io(out, e))?;
            position += buf.len() as u64;
            done.fetch_add((buf.len() / ptr_size) as u64, AtomicOrdering::Relaxed);
            buf.clear();
        }
        since_check += 1;
        if since_check == GUARD_EVERY {
            since_check = 0;
            if let Some(g) = guard {
                g.check();
            }
            if abort.load(AtomicOrdering::Relaxed) {
                return Err(Error::InvalidArgument("the merge was interrupted".into()));
            }
        }
    }
    out_file
        .write_all_at(&buf, position)
        .map_err(|e| Error::io(out, e))?;
    done.fetch_add((buf.len() / ptr_size) as u64, AtomicOrdering::Relaxed);
    Ok(())
}
