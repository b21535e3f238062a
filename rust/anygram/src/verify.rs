//! Full structural checks of an opened index, on demand (`anygram verify`):
//! what [`crate::Engine::open`] does not do because it would read whole files.

use rayon::prelude::*;

use crate::engine::Engine;
use crate::format::read_u64_at;
use crate::manifest::checksum_file;
use crate::shard::Shard;

/// How many adjacent suffix pairs per shard are checked for order.
const SORTED_SAMPLE: u64 = 100_000;
/// Bytes compared per sampled pair (longer equal prefixes are taken as ordered).
const COMPARE_BYTES: usize = 4096;

/// What `verify` found: an empty `problems` means the index is sound.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// One line per problem, naming the file.
    pub problems: Vec<String>,
    /// Files whose checksum was compared with the manifest.
    pub checksums_checked: usize,
    /// Suffix-array entries checked (range, alignment, uniqueness).
    pub pointers_checked: u64,
    /// Adjacent suffix pairs whose order was checked.
    pub pairs_checked: u64,
}

/// Checks checksums (when the index has a manifest), every pointer of every
/// suffix array (in range, on the token grid, each position exactly once),
/// suffix order on an evenly spread sample, and the document offsets.
pub fn verify(engine: &Engine) -> VerifyReport {
    let mut report = VerifyReport::default();
    // Verify reads every byte: it works on local files only (the checks below
    // then have whole slices).
    if let Err(e) = crate::storage::require_local(engine.dir(), "verify") {
        report.problems.push(e.to_string());
        return report;
    }
    if let Some(manifest) = engine.manifest() {
        let results: Vec<(String, Option<String>)> = manifest
            .files
            .par_iter()
            .map(|(name, meta)| {
                let path = engine.dir().join(name);
                match checksum_file(&path) {
                    Ok(sum) if sum == meta.xxh3_64 => (name.clone(), None),
                    Ok(sum) => (
                        name.clone(),
                        Some(format!("{}: checksum {sum} differs from the manifest's {} (the file changed since the build)", path.display(), meta.xxh3_64)),
                    ),
                    Err(e) => (name.clone(), Some(e.to_string())),
                }
            })
            .collect();
        report.checksums_checked = results.len();
        report
            .problems
            .extend(results.into_iter().filter_map(|(_, p)| p));
    }
    for shard in engine.shards() {
        for file in shard.files() {
            file.advise_sequential();
        }
        check_pointers(shard, engine, &mut report);
        check_order(shard, &mut report);
        check_offsets(shard, engine, &mut report);
        report
            .problems
            .extend(crate::accel::verify_shard(engine.dir(), shard));
    }
    report
}

fn check_pointers(shard: &Shard, engine: &Engine, report: &mut VerifyReport) {
    let n = shard.num_tokens();
    let ps = shard.ptr_size();
    let w = engine.token_width().bytes() as u64;
    let Ok(table) = shard.table() else { return };
    let mut seen = vec![0u64; (n as usize).div_ceil(64)];
    let mut bad = 0u64;
    let mut first_bad = None;
    for (rank, entry) in table.chunks_exact(ps).enumerate() {
        let ptr = crate::format::read_uint_le(entry);
        let position = ptr / w;
        if !ptr.is_multiple_of(w)
            || position >= n
            || seen[(position / 64) as usize] & (1 << (position % 64)) != 0
        {
            bad += 1;
            first_bad.get_or_insert((rank, ptr));
            continue;
        }
        seen[(position / 64) as usize] |= 1 << (position % 64);
    }
    report.pointers_checked += n;
    if let Some((rank, ptr)) = first_bad {
        report.problems.push(format!(
            "table.{}: {bad} of {n} entries are out of range, off the token grid or repeated (first: entry {rank} = {ptr})",
            shard.number
        ));
    }
}

fn check_order(shard: &Shard, report: &mut VerifyReport) {
    let n = shard.num_tokens();
    if n < 2 {
        return;
    }
    let pairs = (n - 1).min(SORTED_SAMPLE);
    let step = (n - 1) / pairs;
    let Ok(text) = shard.tokenized() else { return };
    let unsorted: Vec<u64> = (0..pairs)
        .into_par_iter()
        .filter_map(|i| {
            let rank = i * step;
            let (Ok(a), Ok(b)) = (shard.ptr_at(rank), shard.ptr_at(rank + 1)) else {
                return None; // already reported by the pointer check
            };
            let cut = |p: u64| &text[p as usize..text.len().min(p as usize + COMPARE_BYTES)];
            (cut(a) > cut(b)).then_some(rank)
        })
        .collect();
    report.pairs_checked += pairs;
    if let Some(first) = unsorted.first() {
        report.problems.push(format!(
            "table.{}: {} of {pairs} sampled adjacent suffixes are out of order (first at entry {first})",
            shard.number,
            unsorted.len()
        ));
    }
}

/// Every document offset: strictly increasing, on the token grid, inside the
/// tokens, each at a separator token (all of its bytes); and exactly as many
/// separators in the tokens as offsets, so the offsets are all of them. Then
/// every metadata offset: increasing and inside the metadata.
fn check_offsets(shard: &Shard, engine: &Engine, report: &mut VerifyReport) {
    let width = engine.token_width();
    let w = width.bytes() as u64;
    let Ok(text) = shard.tokenized() else { return };
    let Ok(offsets) = shard.offsets() else { return };
    let docs = shard.num_documents();
    let is_separator_at = |offset: u64| -> bool {
        usize::try_from(offset)
            .ok()
            .and_then(|o| text.get(o..o.checked_add(w as usize)?))
            .is_some_and(|token| width.read_token(token) == width.separator())
    };
    let mut previous: Option<u64> = None;
    for d in 0..docs {
        let offset = read_u64_at(offsets, d as usize);
        let problem = if offset >= text.len() as u64 {
            Some(format!(
                "is past the end of the {} bytes of tokens",
                text.len()
            ))
        } else if !offset.is_multiple_of(w) {
            Some(format!("is not a multiple of the token width {w}"))
        } else if previous.is_some_and(|p| offset <= p) {
            Some("is not after the previous document's".to_string())
        } else if d == 0 && offset != 0 {
            Some("is not 0 (the first document starts the tokens)".to_string())
        } else if !is_separator_at(offset) {
            Some("does not point at a document separator".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            report.problems.push(format!(
                "offset.{}: entry {d} (document {d} starts at byte {offset}) {problem}",
                shard.number
            ));
            return;
        }
        previous = Some(offset);
    }
    let separators: u64 = text
        .par_chunks(w as usize * 65536)
        .map(|chunk| {
            chunk
                .chunks_exact(w as usize)
                .filter(|token| width.read_token(token) == width.separator())
                .count() as u64
        })
        .sum();
    if separators != docs {
        report.problems.push(format!(
            "offset.{}: holds {docs} document offsets but tokenized.{} has {separators} document separators",
            shard.number, shard.number
        ));
    }
    if let Ok(Some((meta, metaoff))) = shard.metadata() {
        let mut previous = 0;
        for d in 0..docs {
            let offset = read_u64_at(metaoff, d as usize);
            if offset < previous || offset > meta.len() as u64 {
                report.problems.push(format!(
                    "metaoff.{}: entry {d} (the metadata of document {d} starts at byte {offset}) is before the previous entry or past the end of the {} bytes of metadata",
                    shard.number,
                    meta.len()
                ));
                return;
            }
            previous = offset;
        }
    }
}
