//! The on-disk layout shared with infini-gram (its "v4" shard layout) and the
//! little-endian decoding helpers. All byte decoding of index files lives here.
//!
//! A shard `s` of an index directory is:
//!
//! | file | content |
//! | --- | --- |
//! | `tokenized.{s}` | every document as a separator then its tokens, `width` bytes each, little-endian; the separator is all ones |
//! | `table.{s}` | the suffix array: the byte offset into `tokenized.{s}` of every token position, `ptr_size` bytes each, little-endian, ordered by `memcmp` of the suffixes' bytes |
//! | `offset.{s}` | u64 byte offset of each document's separator |
//! | `metadata.{s}`, `metaoff.{s}` | optional: one JSON line per document, and the u64 offset of each line |

use crate::error::{Error, Result};

/// Bytes per token in `tokenized.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenWidth {
    /// 1 byte (UTF-8 bytes, vocabularies up to 255 tokens).
    U8 = 1,
    /// 2 bytes (vocabularies up to 65,535 tokens).
    U16 = 2,
    /// 4 bytes (vocabularies up to 4,294,967,295 tokens).
    U32 = 4,
}

impl TokenWidth {
    /// The width for a byte count, if it is one of 1, 2, 4.
    pub fn from_bytes(bytes: usize) -> Result<Self> {
        match bytes {
            1 => Ok(TokenWidth::U8),
            2 => Ok(TokenWidth::U16),
            4 => Ok(TokenWidth::U32),
            other => Err(Error::InvalidArgument(format!(
                "token width must be 1, 2 or 4 bytes, got {other}"
            ))),
        }
    }

    /// Number of bytes of one token.
    #[inline]
    pub fn bytes(self) -> usize {
        self as usize
    }

    /// The document separator, which is also the largest value of the width:
    /// no vocabulary token may take it.
    #[inline]
    pub fn separator(self) -> u32 {
        match self {
            TokenWidth::U8 => 0xFF,
            TokenWidth::U16 => 0xFFFF,
            TokenWidth::U32 => 0xFFFF_FFFF,
        }
    }

    /// Largest possible vocabulary: every value but the separator.
    #[inline]
    pub fn max_vocab_size(self) -> u64 {
        self.separator() as u64
    }

    /// Reads one token at the start of `bytes` (which holds at least `self.bytes()` bytes).
    #[inline]
    pub fn read_token(self, bytes: &[u8]) -> u32 {
        match self {
            TokenWidth::U8 => bytes[0] as u32,
            TokenWidth::U16 => u16::from_le_bytes([bytes[0], bytes[1]]) as u32,
            TokenWidth::U32 => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        }
    }

    /// Appends the little-endian encoding of `tokens` to `out`.
    pub fn encode_into(self, tokens: &[u32], out: &mut Vec<u8>) {
        out.reserve(tokens.len() * self.bytes());
        for &t in tokens {
            out.extend_from_slice(&t.to_le_bytes()[..self.bytes()]);
        }
    }
}

/// Bytes per suffix-array pointer for a `tokenized` file of `tokenized_bytes` bytes:
/// the fewest bytes that can hold every offset, as infini-gram computes it
/// (`ceil(log2(size) / 8)`), but never zero.
pub fn ptr_size_for(tokenized_bytes: u64) -> usize {
    let mut size = 1usize;
    while size < 8 && (1u128 << (8 * size)) < tokenized_bytes as u128 {
        size += 1;
    }
    size
}

/// The vocabulary size and end-of-document token of an index of `width`-byte
/// tokens, with their defaults (`None`: every value but the separator; the
/// separator itself), checked: ids are in `[0, vocab_size)`, the separator is
/// never one of them, and the end-of-document token is an id or the separator.
/// The one place these rules are written (builds and the bindings use it).
pub fn check_token_parameters(
    width: TokenWidth,
    vocab_size: Option<u64>,
    eos_token_id: Option<u64>,
) -> Result<(u64, u64)> {
    let separator = width.separator() as u64;
    let vocab = vocab_size.unwrap_or(separator);
    if vocab == 0 || vocab > separator {
        return Err(Error::InvalidArgument(format!(
            "vocab_size {vocab} does not fit {}-byte tokens (at most {separator}; {separator} is the document separator)",
            width.bytes()
        )));
    }
    let eos = eos_token_id.unwrap_or(separator);
    if eos >= vocab && eos != separator {
        return Err(Error::InvalidArgument(format!(
            "eos_token_id {eos} is outside the vocabulary [0, {vocab})"
        )));
    }
    Ok((vocab, eos))
}

/// The token width of an index built with a tokenizer of `vocab_size` ids:
/// 2 bytes at least (as builds always chose, so that rebuilt indexes keep
/// their bytes), 4 from a vocabulary of 65,535 ids on.
pub fn width_for_tokenizer(vocab_size: u64) -> Result<TokenWidth> {
    if vocab_size < TokenWidth::U16.separator() as u64 {
        Ok(TokenWidth::U16)
    } else if vocab_size < TokenWidth::U32.separator() as u64 {
        Ok(TokenWidth::U32)
    } else {
        Err(Error::InvalidArgument(format!(
            "a vocabulary of {vocab_size} tokens is too large (at most {} with 4-byte tokens)",
            TokenWidth::U32.separator() - 1
        )))
    }
}

/// Reads a little-endian unsigned integer of `bytes.len()` (1..=8) bytes.
#[inline]
pub fn read_uint_le(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(buf)
}

/// Reads the little-endian unsigned integer of `len` (1..=8) bytes at `at` of
/// `bytes`, or `None` past the end. Where eight bytes are there it loads them
/// whole and masks: a copy of `len` bytes into a buffer is a call to `memcpy`
/// and a load that waits on its byte stores, the cost of a pointer read in
/// loops that read millions of them.
#[inline]
pub fn read_uint_le_at(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    debug_assert!((1..=8).contains(&len));
    match bytes.get(at..at.checked_add(8)?) {
        Some(eight) => {
            let whole = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
            Some(if len == 8 {
                whole
            } else {
                whole & ((1u64 << (8 * len)) - 1)
            })
        }
        None => bytes.get(at..at.checked_add(len)?).map(read_uint_le),
    }
}

/// Reads the `index`-th u64 of a little-endian u64 array.
#[inline]
pub fn read_u64_at(bytes: &[u8], index: usize) -> u64 {
    read_uint_le(&bytes[index * 8..index * 8 + 8])
}

/// File names of shard `shard` in the v4 layout.
pub fn shard_file(kind: &str, shard: usize) -> String {
    format!("{kind}.{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptr_size_matches_infini_gram_formula() {
        // ceil(log2(n) / 8), with 1 as the floor.
        for (size, expected) in [
            (1u64, 1usize),
            (2, 1),
            (255, 1),
            (256, 1),
            (257, 2),
            (65536, 2),
            (65537, 3),
            (1 << 24, 3),
            ((1 << 24) + 1, 4),
            (1 << 32, 4),
            ((1 << 32) + 1, 5),
        ] {
            assert_eq!(ptr_size_for(size), expected, "size {size}");
        }
    }

    #[test]
    fn uint_reads_at_every_offset_and_length_agree_with_the_bytes() {
        // Entries up to the very end, where fewer than eight bytes follow.
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
        for len in 1..=8 {
            for at in 0..bytes.len() + 2 {
                let want = bytes.get(at..at + len).map(read_uint_le);
                assert_eq!(read_uint_le_at(&bytes, at, len), want, "at {at}, len {len}");
            }
        }
        assert_eq!(read_uint_le_at(&bytes, usize::MAX - 3, 5), None);
    }

    #[test]
    fn tokens_round_trip_little_endian() {
        for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
            let max = width.separator();
            let tokens = [0, 1, max - 1, max];
            let mut bytes = Vec::new();
            width.encode_into(&tokens, &mut bytes);
            assert_eq!(bytes.len(), 4 * width.bytes());
            let back: Vec<u32> = bytes
                .chunks(width.bytes())
                .map(|c| width.read_token(c))
                .collect();
            assert_eq!(back, tokens);
        }
    }
}
