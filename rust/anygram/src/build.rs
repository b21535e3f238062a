//! Suffix-array construction for one shard, with libsais on all cores.
//!
//! infini-gram orders suffixes by `memcmp` of their little-endian bytes. For
//! whole-token suffixes that is the order of the token sequences when each token
//! is read *big-endian* (its first stored byte most significant), so we sort the
//! byte-swapped tokens with the sorter of the matching alphabet:
//!
//! | width | sorter |
//! | --- | --- |
//! | u8 | `libsais` (bytes as they are) |
//! | u16 | `libsais16` over the byte-swapped tokens |
//! | u32 | `libsais_int` over the ranks of the byte-swapped tokens |
//!
//! Shards of 2^31 tokens or more use the 64-bit variants. A suffix that is a
//! prefix of another sorts first in both orders, so the arrays are identical.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use libsais_sys::{libsais, libsais16, libsais16x64, libsais64};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{ptr_size_for, TokenWidth};

/// Builds the suffix array of the token stream in `tokenized` and writes it to
/// `table` with pointers of `ptr_size_for(size)` bytes. `threads == 0` uses all cores.
///
/// Memory: the token stream, plus 4 bytes per token for the array (8 past 2^31
/// tokens), plus a sorting copy of the tokens for u16/u32.
pub fn build_suffix_array(
    tokenized: &Path,
    table: &Path,
    width: TokenWidth,
    threads: usize,
) -> Result<()> {
    let text = read_tokens(tokenized, width)?;
    let threads = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    let tokenized_bytes = (text.len() * width.bytes()) as u64;
    let ranks = text.sort(threads).map_err(|detail| Error::Build {
        path: tokenized.to_path_buf(),
        detail,
    })?;
    write_table(
        &ranks,
        width.bytes() as u64,
        ptr_size_for(tokenized_bytes),
        table,
    )
}

/// A shard's tokens in memory, already in the form its sorter wants.
enum SortInput {
    Bytes(Vec<u8>),
    /// u16 tokens byte-swapped: numeric order is `memcmp` order.
    Swapped16(Vec<u16>),
    /// u32 tokens byte-swapped.
    Swapped32(Vec<u32>),
}

impl SortInput {
    fn len(&self) -> usize {
        match self {
            SortInput::Bytes(v) => v.len(),
            SortInput::Swapped16(v) => v.len(),
            SortInput::Swapped32(v) => v.len(),
        }
    }

    fn sort(self, threads: usize) -> Result<SuffixArray, String> {
        match self {
            SortInput::Bytes(text) => sort_bytes(&text, threads),
            SortInput::Swapped16(tokens) => sort_u16(&tokens, threads),
            SortInput::Swapped32(tokens) => sort_u32(tokens, threads),
        }
    }
}

/// Reads `tokenized` straight into the sorter's form: no second copy of the
/// token stream is ever held.
fn read_tokens(tokenized: &Path, width: TokenWidth) -> Result<SortInput> {
    let mut file = File::open(tokenized).map_err(|e| Error::io(tokenized, e))?;
    let size = file.metadata().map_err(|e| Error::io(tokenized, e))?.len() as usize;
    let w = width.bytes();
    if !size.is_multiple_of(w) {
        return Err(Error::corrupt(
            tokenized,
            format!("size {size} is not a multiple of the token width {w}"),
        ));
    }
    let mut buf = vec![0u8; size];
    file.read_exact(&mut buf)
        .map_err(|e| Error::io(tokenized, e))?;
    Ok(match width {
        TokenWidth::U8 => SortInput::Bytes(buf),
        TokenWidth::U16 => {
            let mut tokens = vec![0u16; size / 2];
            tokens
                .par_iter_mut()
                .zip(buf.par_chunks_exact(2))
                .for_each(|(t, c)| *t = u16::from_be_bytes([c[0], c[1]]));
            SortInput::Swapped16(tokens)
        }
        TokenWidth::U32 => {
            let mut tokens = vec![0u32; size / 4];
            tokens
                .par_iter_mut()
                .zip(buf.par_chunks_exact(4))
                .for_each(|(t, c)| *t = u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            SortInput::Swapped32(tokens)
        }
    })
}

/// Token positions in suffix order: either 32-bit or 64-bit, as the sorter gave them.
pub enum SuffixArray {
    /// Shards under 2^31 tokens.
    Small(Vec<i32>),
    /// Larger shards.
    Large(Vec<i64>),
}

impl SuffixArray {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            SuffixArray::Small(v) => v.len(),
            SuffixArray::Large(v) => v.len(),
        }
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entry `i` as a token position.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        match self {
            SuffixArray::Small(v) => v[i] as u64,
            SuffixArray::Large(v) => v[i] as u64,
        }
    }
}

/// The suffix array (token positions in `memcmp` order of their bytes) of a
/// token stream of `width`-byte little-endian tokens.
pub fn suffix_array(text: &[u8], width: TokenWidth, threads: usize) -> Result<SuffixArray, String> {
    let input = match width {
        TokenWidth::U8 => SortInput::Bytes(text.to_vec()),
        TokenWidth::U16 => SortInput::Swapped16(
            text.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        TokenWidth::U32 => SortInput::Swapped32(
            text.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    };
    debug_assert_eq!(input.len(), text.len() / width.bytes());
    input.sort(threads.max(1))
}

fn check(code: i64) -> Result<(), String> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!("libsais returned {code}"))
    }
}

fn fits_32_bits(n: usize) -> bool {
    n < i32::MAX as usize
}

fn sort_bytes(text: &[u8], threads: usize) -> Result<SuffixArray, String> {
    let n = text.len();
    if n == 0 {
        return Ok(SuffixArray::Small(Vec::new()));
    }
    if fits_32_bits(n) {
        let mut sa = vec![0i32; n];
        // SAFETY: `text` holds n bytes and `sa` n entries, as libsais requires.
        let code = unsafe {
            libsais::libsais_omp(
                text.as_ptr(),
                sa.as_mut_ptr(),
                n as i32,
                0,
                std::ptr::null_mut(),
                threads as i32,
            )
        };
        check(code as i64).map(|_| SuffixArray::Small(sa))
    } else {
        let mut sa = vec![0i64; n];
        // SAFETY: as above, with 64-bit lengths.
        let code = unsafe {
            libsais64::libsais64_omp(
                text.as_ptr(),
                sa.as_mut_ptr(),
                n as i64,
                0,
                std::ptr::null_mut(),
                threads as i64,
            )
        };
        check(code).map(|_| SuffixArray::Large(sa))
    }
}

fn sort_u16(tokens: &[u16], threads: usize) -> Result<SuffixArray, String> {
    let n = tokens.len();
    if n == 0 {
        return Ok(SuffixArray::Small(Vec::new()));
    }
    if fits_32_bits(n) {
        let mut sa = vec![0i32; n];
        // SAFETY: `tokens` holds n symbols and `sa` n entries.
        let code = unsafe {
            libsais16::libsais16_omp(
                tokens.as_ptr(),
                sa.as_mut_ptr(),
                n as i32,
                0,
                std::ptr::null_mut(),
                threads as i32,
            )
        };
        check(code as i64).map(|_| SuffixArray::Small(sa))
    } else {
        let mut sa = vec![0i64; n];
        // SAFETY: as above, with 64-bit lengths.
        let code = unsafe {
            libsais16x64::libsais16x64_omp(
                tokens.as_ptr(),
                sa.as_mut_ptr(),
                n as i64,
                0,
                std::ptr::null_mut(),
                threads as i64,
            )
        };
        check(code).map(|_| SuffixArray::Large(sa))
    }
}

/// libsais_int wants a dense alphabet [0, k): each token is replaced, in place, by
/// its rank among the distinct tokens, which keeps the order.
fn sort_u32(mut tokens: Vec<u32>, threads: usize) -> Result<SuffixArray, String> {
    let n = tokens.len();
    if n == 0 {
        return Ok(SuffixArray::Small(Vec::new()));
    }
    let mut alphabet = tokens.clone();
    alphabet.par_sort_unstable();
    alphabet.dedup();
    let k = alphabet.len();
    tokens.par_iter_mut().for_each(|t| {
        *t = alphabet.binary_search(t).expect("token is in the alphabet") as u32;
    });
    drop(alphabet);
    if fits_32_bits(n) {
        // Ranks are < n < 2^31: the same bits read as i32.
        let mut dense: Vec<i32> = tokens.into_iter().map(|t| t as i32).collect();
        let mut sa = vec![0i32; n];
        // SAFETY: `dense` holds n symbols in [0, k) and `sa` n entries; libsais_int may overwrite `dense`.
        let code = unsafe {
            libsais::libsais_int_omp(
                dense.as_mut_ptr(),
                sa.as_mut_ptr(),
                n as i32,
                k as i32,
                0,
                threads as i32,
            )
        };
        check(code as i64).map(|_| SuffixArray::Small(sa))
    } else {
        let mut dense: Vec<i64> = tokens.into_iter().map(|t| t as i64).collect();
        let mut sa = vec![0i64; n];
        // SAFETY: as above, with 64-bit lengths.
        let code = unsafe {
            libsais64::libsais64_long_omp(
                dense.as_mut_ptr(),
                sa.as_mut_ptr(),
                n as i64,
                k as i64,
                0,
                threads as i64,
            )
        };
        check(code).map(|_| SuffixArray::Large(sa))
    }
}

/// Writes byte offsets (`position * width`) of `sa` as `ptr_size`-byte
/// little-endian integers, packing chunks in parallel.
fn write_table(sa: &SuffixArray, width: u64, ptr_size: usize, table: &Path) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let file = File::create(table).map_err(|e| Error::io(table, e))?;
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
    out.flush().map_err(|e| Error::io(table, e))?;
    out.into_inner()
        .map_err(|e| Error::io(table, e.into_error()))?
        .sync_all()
        .map_err(|e| Error::io(table, e))
}

/// XXH3-64 of a file's contents as 16 hex digits, read in 8 MiB blocks.
pub fn checksum_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let read = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
    }
    Ok(format!("{:016x}", hasher.digest()))
}
