//! The memory model of suffix-array construction, and the resident-set guard
//! that keeps mapped text pages inside the budget.
//!
//! Costs per token of a text sorted in memory, measured with
//! `bench/bench_build.py --calibrate` (30M random tokens per width, peak resident
//! set minus the resident set before the sort):
//!
//! | width | tokens | suffix array | measured | model |
//! | --- | --- | --- | --- | --- |
//! | u8  | 1 | 4 | 5.02 | 5 |
//! | u16 | 2 | 4 | 6.02 | 6 |
//! | u32 | 4 | 4 | 9.24 | 10 (libsais_int's own buffers for a large alphabet) |
//!
//! Past 2^31 tokens the array takes 8 bytes a token (u32: 8-byte symbols too).
//! [`SORT_WORKSPACE`] covers the fixed part (per-thread bucket tables, buffers).

use memmap2::{Mmap, UncheckedAdvice};

use crate::format::TokenWidth;

/// What libsais allocates beyond the text and the array (per-thread bucket
/// tables; the 16-bit and integer sorters have the largest).
pub const SORT_WORKSPACE: u64 = 32 << 20;

/// Texts of this many tokens or more need the 64-bit sorters.
pub const LARGE_TEXT: u64 = i32::MAX as u64;

/// Bytes a token of a text sorted in memory takes (see the table above).
pub fn bytes_per_token(width: TokenWidth, large: bool) -> u64 {
    match (width, large) {
        (TokenWidth::U32, false) => 10,
        (TokenWidth::U32, true) => 20,
        (w, false) => w.bytes() as u64 + 4,
        (w, true) => w.bytes() as u64 + 8,
    }
}

/// Peak bytes of sorting `tokens` tokens of `width` in memory, workspace included.
pub fn in_memory_sort_bytes(tokens: u64, width: TokenWidth) -> u64 {
    tokens * bytes_per_token(width, tokens >= LARGE_TEXT) + SORT_WORKSPACE
}

/// The largest text (in tokens, below the 64-bit threshold) whose in-memory
/// sort fits in `bytes`.
pub fn max_in_memory_tokens(bytes: u64, width: TokenWidth) -> u64 {
    (bytes.saturating_sub(SORT_WORKSPACE) / bytes_per_token(width, false)).min(LARGE_TEXT - 1)
}

/// Held by tests that read or move the resident set by much, so that their
/// readings are not another test's allocations.
#[cfg(test)]
pub(crate) static RSS_TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The resident set size of this process in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

/// The kernel's page size: statm counts pages, and they are 16 or 64 KiB on
/// some kernels (arm64, ppc64), not always 4 KiB.
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Pages of a mapped file that the process touched count in its resident set
/// (the kernel keeps them in page cache either way). The guard drops them from
/// the process's mapping whenever the resident set nears the limit: the next
/// access faults them back in from page cache, cheaply.
pub struct RssGuard<'a> {
    map: &'a Mmap,
    limit: u64,
}

impl<'a> RssGuard<'a> {
    /// A guard over `map` that keeps the resident set under `limit` bytes.
    pub fn new(map: &'a Mmap, limit: u64) -> Self {
        RssGuard { map, limit }
    }

    /// Drops the mapping's resident pages if the resident set is over the limit.
    /// Cheap (one read of `/proc/self/statm`): call it every few thousand accesses.
    pub fn check(&self) {
        if resident_bytes().is_some_and(|rss| rss > self.limit) {
            self.release();
        }
    }

    /// Drops the mapping's resident pages now.
    pub fn release(&self) {
        // SAFETY: the map is a read-only, private mapping of a file that is not
        // modified while mapped; MADV_DONTNEED on it only discards the process's
        // page-table entries, and later reads fault the same bytes back in.
        let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_monotone_and_inverts() {
        for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
            let budget = 1u64 << 30;
            let n = max_in_memory_tokens(budget, width);
            assert!(in_memory_sort_bytes(n, width) <= budget);
            assert!(in_memory_sort_bytes(n + 1, width) > budget - bytes_per_token(width, false));
        }
        assert_eq!(max_in_memory_tokens(1 << 20, TokenWidth::U16), 0);
    }

    #[test]
    fn resident_set_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 0);
        }
    }

    /// VmRSS in /proc/self/status is in kB, independent of the page size: the
    /// statm reading must agree with it (a fixed 4 KiB page is 4 or 16 times
    /// off on 16 KiB / 64 KiB-page kernels).
    #[cfg(target_os = "linux")]
    #[test]
    fn resident_set_agrees_with_the_kernels_kilobytes() {
        let vm_rss = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
                * 1024
        };
        let _alone = RSS_TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // 64 MiB touched: a wrong page size would be off by 48 MiB or more.
        let held = vec![1u8; 64 << 20];
        // Other tests allocate meanwhile: bracket the reading and allow for them.
        let before = vm_rss();
        let ours = resident_bytes().unwrap();
        let after = vm_rss();
        let (low, high) = (before.min(after), before.max(after));
        let slack = 16 << 20;
        assert!(
            ours + slack >= low && ours <= high + slack,
            "statm says {ours} bytes, VmRSS {before}..{after}"
        );
        assert!(held.iter().step_by(4096).all(|&b| b == 1));
        let page = page_size();
        assert!(page.is_power_of_two() && page >= 4096, "page size {page}");
    }
}
