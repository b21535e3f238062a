//! The index writer: documents (token arrays, optional metadata lines) → an
//! index directory in infini-gram's layout with anygram's manifest.
//!
//! The steps are separate so that a resumable build (Python's `builder.py`,
//! which journals each one) can run them one at a time:
//!
//! 1. [`StreamWriter`]: documents appended to one token stream and one
//!    metadata stream, with their start offsets ([`Streams`]).
//! 2. [`split_shards`]: the streams cut into shards at document boundaries
//!    (about equal bytes each): `tokenized`, `offset`, `metadata`, `metaoff`.
//! 3. the suffix array of each shard ([`super::build_suffix_array_with`]).
//! 4. [`finish_index`]: accelerators, the stored tokenizer, the marker file,
//!    checksums and the typed manifest, all synced.
//! 5. [`publish_index`]: one rename puts the index in place (an old one aside first).
//!
//! [`IndexWriter`] runs them all (a Rust user, a Ray task).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::{self, sync_directory};
use crate::error::{Error, Result};
use crate::format::{ptr_size_for, shard_file, TokenWidth};
use crate::manifest::{
    marker_contents, BuildRecord, FileMeta, Manifest, ShardMeta, TokenizerMeta, MANIFEST_FILE,
    MARKER_FILE, TOKENIZER_FILE,
};

/// The one-shard token stream, in the index directory until it is split.
pub const TOKEN_STREAM: &str = "tokenized.all";
/// The one-shard metadata stream.
pub const METADATA_STREAM: &str = "metadata.all";
/// Start offset of every document in [`TOKEN_STREAM`] (u64, little-endian).
pub const DOC_STARTS: &str = "doc_starts.u64";
/// Start offset of every line in [`METADATA_STREAM`] (u64, little-endian).
pub const META_STARTS: &str = "meta_starts.u64";

/// What [`StreamWriter::finish`] wrote (kept by a resumable build in its journal).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Streams {
    /// Documents written.
    pub num_documents: u64,
    /// Token positions, separators included.
    pub num_tokens: u64,
    /// Bytes of the token stream.
    pub bytes: u64,
    /// Bytes of the metadata stream, `None` without metadata.
    pub meta_bytes: Option<u64>,
}

/// Appends documents to the streams of an index directory.
pub struct StreamWriter {
    width: TokenWidth,
    vocab_size: u64,
    dir: PathBuf,
    tokens: BufWriter<File>,
    meta: Option<BufWriter<File>>,
    doc_starts: Vec<u64>,
    meta_starts: Vec<u64>,
    position: u64,
    meta_position: u64,
    num_tokens: u64,
    encoded: Vec<u8>,
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 22,
        File::create(path).map_err(|e| Error::io(path, e))?,
    ))
}

impl StreamWriter {
    /// Starts the streams in `dir` (replacing unfinished ones). Token ids must
    /// be below `vocab_size`; `metadata`: every document comes with a line.
    pub fn create(dir: &Path, width: TokenWidth, vocab_size: u64, metadata: bool) -> Result<Self> {
        crate::format::check_token_parameters(width, Some(vocab_size), None)?;
        Ok(StreamWriter {
            width,
            vocab_size,
            dir: dir.to_path_buf(),
            tokens: create(&dir.join(TOKEN_STREAM))?,
            meta: metadata
                .then(|| create(&dir.join(METADATA_STREAM)))
                .transpose()?,
            doc_starts: Vec::new(),
            meta_starts: Vec::new(),
            position: 0,
            meta_position: 0,
            num_tokens: 0,
            encoded: Vec::new(),
        })
    }

    /// Appends one document: its tokens, and its metadata line (one line of
    /// JSON, newline-terminated, when the streams have metadata; none otherwise).
    pub fn add(&mut self, tokens: &[u32], metadata_line: Option<&[u8]>) -> Result<()> {
        if let Some((position, token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as u64 >= self.vocab_size)
        {
            return Err(Error::InvalidArgument(format!(
                "document {}: token id {token} at position {position} is outside the vocabulary [0, {})",
                self.doc_starts.len(),
                self.vocab_size
            )));
        }
        match (&self.meta, metadata_line) {
            (Some(_), Some(line)) => {
                if line.last() != Some(&b'\n') || line[..line.len() - 1].contains(&b'\n') {
                    return Err(Error::InvalidArgument(format!(
                        "document {}: a metadata line must end with its only newline",
                        self.doc_starts.len()
                    )));
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::InvalidArgument(format!(
                    "document {}: the index has metadata, but none was given",
                    self.doc_starts.len()
                )))
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "document {}: metadata given for an index without metadata",
                    self.doc_starts.len()
                )))
            }
        }
        self.encoded.clear();
        self.width
            .encode_into(&[self.width.separator()], &mut self.encoded);
        self.width.encode_into(tokens, &mut self.encoded);
        let path = self.dir.join(TOKEN_STREAM);
        self.tokens
            .write_all(&self.encoded)
            .map_err(|e| Error::io(&path, e))?;
        self.doc_starts.push(self.position);
        self.position += self.encoded.len() as u64;
        self.num_tokens += tokens.len() as u64 + 1;
        if let (Some(meta), Some(line)) = (&mut self.meta, metadata_line) {
            let path = self.dir.join(METADATA_STREAM);
            meta.write_all(line).map_err(|e| Error::io(&path, e))?;
            self.meta_starts.push(self.meta_position);
            self.meta_position += line.len() as u64;
        }
        Ok(())
    }

    /// Documents added so far.
    pub fn num_documents(&self) -> u64 {
        self.doc_starts.len() as u64
    }

    /// Token positions so far, separators included.
    pub fn num_tokens(&self) -> u64 {
        self.num_tokens
    }

    /// Syncs the streams and writes the start offsets into `starts_dir`.
    pub fn finish(self, starts_dir: &Path) -> Result<Streams> {
        let sync = |writer: BufWriter<File>, path: PathBuf| -> Result<()> {
            let file = writer
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&path, e))
        };
        let has_meta = self.meta.is_some();
        sync(self.tokens, self.dir.join(TOKEN_STREAM))?;
        if let Some(meta) = self.meta {
            sync(meta, self.dir.join(METADATA_STREAM))?;
        }
        atomic::write_file(
            &starts_dir.join(DOC_STARTS),
            bytemuck::cast_slice(&le(&self.doc_starts)),
        )?;
        atomic::write_file(
            &starts_dir.join(META_STARTS),
            bytemuck::cast_slice(&le(&self.meta_starts)),
        )?;
        Ok(Streams {
            num_documents: self.doc_starts.len() as u64,
            num_tokens: self.num_tokens,
            bytes: self.position,
            meta_bytes: has_meta.then_some(self.meta_position),
        })
    }
}

fn le(values: &[u64]) -> Vec<u64> {
    values.iter().map(|v| v.to_le()).collect()
}

fn read_starts(path: &Path, count: u64) -> Result<Vec<u64>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 != count * 8 {
        return Err(Error::corrupt(
            path,
            format!("{} bytes, expected {} start offsets", bytes.len(), count),
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The first document of each of `num_shards` shards (and `num_documents` at
/// the end): the document whose start is nearest at or above each cut of
/// `total` bytes into equal parts, at least one document a shard.
pub fn shard_cuts(starts: &[u64], total: u64, num_shards: usize) -> Result<Vec<usize>> {
    let num_docs = starts.len();
    if num_shards == 0 || num_shards > num_docs {
        return Err(Error::InvalidArgument(format!(
            "{num_shards} shards for {num_docs} documents: use between 1 and {num_docs}"
        )));
    }
    let mut cuts = vec![0usize];
    for s in 1..num_shards {
        let target = (total as u128 * s as u128 / num_shards as u128) as u64;
        let d = starts.partition_point(|&start| start < target);
        let last = *cuts.last().expect("cuts starts with 0");
        cuts.push(d.max(last + 1).min(num_docs - (num_shards - s)));
    }
    cuts.push(num_docs);
    Ok(cuts)
}

/// Cuts the streams of `index_dir` (start offsets in `starts_dir`) into
/// `num_shards` shards and writes each one's files (complete or absent: temp
/// + rename); returns their counts. Run again after a crash, it finishes.
pub fn split_shards(
    index_dir: &Path,
    starts_dir: &Path,
    streams: &Streams,
    num_shards: usize,
    width: TokenWidth,
) -> Result<Vec<ShardMeta>> {
    let starts = read_starts(&starts_dir.join(DOC_STARTS), streams.num_documents)?;
    let cuts = shard_cuts(&starts, streams.bytes, num_shards)?;
    let meta_starts = match streams.meta_bytes {
        Some(_) => Some(read_starts(
            &starts_dir.join(META_STARTS),
            streams.num_documents,
        )?),
        None => None,
    };
    let whole = num_shards == 1;
    let mut out = Vec::with_capacity(num_shards);
    for s in 0..num_shards {
        let (first, last) = (cuts[s], cuts[s + 1]);
        let begin = starts[first];
        let end = starts.get(last).copied().unwrap_or(streams.bytes);
        let tokenized = index_dir.join(shard_file("tokenized", s));
        copy_range(&index_dir.join(TOKEN_STREAM), &tokenized, begin, end, whole)?;
        write_offsets(
            &starts[first..last],
            begin,
            &index_dir.join(shard_file("offset", s)),
        )?;
        if let (Some(meta_starts), Some(meta_bytes)) = (&meta_starts, streams.meta_bytes) {
            let mbegin = meta_starts[first];
            let mend = meta_starts.get(last).copied().unwrap_or(meta_bytes);
            let metadata = index_dir.join(shard_file("metadata", s));
            copy_range(
                &index_dir.join(METADATA_STREAM),
                &metadata,
                mbegin,
                mend,
                whole,
            )?;
            write_offsets(
                &meta_starts[first..last],
                mbegin,
                &index_dir.join(shard_file("metaoff", s)),
            )?;
        }
        out.push(ShardMeta {
            num_tokens: (end - begin) / width.bytes() as u64,
            num_documents: (last - first) as u64,
            ptr_size: ptr_size_for(end - begin) as u32,
        });
    }
    Ok(out)
}

/// Removes the streams and start offsets once the shards are written.
pub fn remove_streams(index_dir: &Path, starts_dir: &Path) -> Result<()> {
    for path in [
        index_dir.join(TOKEN_STREAM),
        index_dir.join(METADATA_STREAM),
        starts_dir.join(DOC_STARTS),
        starts_dir.join(META_STARTS),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

fn write_offsets(starts: &[u64], base: u64, path: &Path) -> Result<()> {
    let bytes: Vec<u8> = starts
        .iter()
        .flat_map(|&start| (start - base).to_le_bytes())
        .collect();
    atomic::write_file(path, &bytes)
}

/// Writes bytes `[begin, end)` of `src` to `dst` (temp + rename). `whole`:
/// `src` is all of it and is renamed instead (a rerun finds it moved).
fn copy_range(src: &Path, dst: &Path, begin: u64, end: u64, whole: bool) -> Result<()> {
    if whole {
        if !src.exists() && dst.exists() {
            return Ok(());
        }
        return std::fs::rename(src, dst).map_err(|e| Error::io(dst, e));
    }
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    input
        .seek(SeekFrom::Start(begin))
        .map_err(|e| Error::io(src, e))?;
    atomic::write_with(dst, true, |mut output, tmp| {
        // std::io::copy uses copy_file_range between files where the kernel has it.
        let copied = std::io::copy(&mut input.take(end - begin), &mut output)
            .map_err(|e| Error::io(tmp, e))?;
        if copied != end - begin {
            return Err(Error::corrupt(
                src,
                format!("ended early while writing {}", dst.display()),
            ));
        }
        Ok(())
    })
}

/// The tokenizer to store in an index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSource {
    /// The `tokenizer.json` to copy.
    pub path: PathBuf,
    /// A name for messages.
    pub name: Option<String>,
    /// Its SHA-256 (64 lowercase hex digits).
    pub sha256: String,
}

/// What [`finish_index`] records.
#[derive(Debug, Clone)]
pub struct FinishOptions {
    /// Bytes per token.
    pub width: TokenWidth,
    /// Token ids are below this.
    pub vocab_size: u64,
    /// The end-of-document token.
    pub eos_token_id: u64,
    /// The shards, as [`split_shards`] returned them.
    pub shards: Vec<ShardMeta>,
    /// The tokenizer, `None` for UTF-8 bytes or token ids.
    pub tokenizer: Option<TokenizerSource>,
    /// How it was built. Its `seconds` gains `checksum` (this step) and, when
    /// it has a `total`, this step is added to it.
    pub build: Option<BuildRecord>,
    /// Write each shard's search accelerator (`accel.{s}`).
    pub accelerator: bool,
}

/// Completes the index in `dir` whose shards and suffix arrays are written:
/// accelerators, the stored tokenizer, the marker file, the checksums of
/// every file, the manifest, all synced. Returns the manifest written.
pub fn finish_index(dir: &Path, options: &FinishOptions) -> Result<Manifest> {
    let started = std::time::Instant::now();
    let (vocab, eos) = crate::format::check_token_parameters(
        options.width,
        Some(options.vocab_size),
        Some(options.eos_token_id),
    )?;
    // A rerun after a crash starts from the shard files alone (the index must
    // open without a manifest to have its accelerators written).
    for name in [MANIFEST_FILE, MARKER_FILE, TOKENIZER_FILE] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    if options.accelerator {
        let open = crate::OpenOptions {
            token_width: Some(options.width.bytes()),
            vocab_size: Some(vocab),
            eos_token_id: Some(eos),
            sample_keys: false,
            accelerator: false,
            ..Default::default()
        };
        let engine = crate::Engine::open(dir, &open)?;
        crate::accel::write_all(&engine, &crate::accel::WriteOptions::default())?;
    }
    let mut manifest = Manifest::new(
        options.width.bytes() as u32,
        vocab,
        eos,
        options.shards.clone(),
    );
    if let Some(tokenizer) = &options.tokenizer {
        if !crate::manifest::is_sha256_hex(&tokenizer.sha256) {
            return Err(Error::InvalidArgument(format!(
                "tokenizer sha256 {:?} is not 64 lowercase hex digits",
                tokenizer.sha256
            )));
        }
        std::fs::copy(&tokenizer.path, dir.join(TOKENIZER_FILE))
            .map_err(|e| Error::io(&tokenizer.path, e))?;
        manifest.tokenizer = Some(TokenizerMeta {
            name: tokenizer.name.clone(),
            file: TOKENIZER_FILE.into(),
            sha256: Some(tokenizer.sha256.clone()),
        });
    }
    std::fs::write(dir.join(MARKER_FILE), marker_contents())
        .map_err(|e| Error::io(dir.join(MARKER_FILE), e))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| {
            entry
                .map_err(|e| Error::io(dir, e))
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .collect::<Result<_>>()?;
    names.retain(|name| name != MANIFEST_FILE);
    names.sort();
    // Checksums read every file once; syncing them here makes the index durable.
    let metas = names
        .par_iter()
        .map(|name| {
            let path = dir.join(name);
            let xxh3_64 = crate::manifest::checksum_file(&path)?;
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            Ok((name.clone(), FileMeta { size, xxh3_64 }))
        })
        .collect::<Result<Vec<_>>>()?;
    manifest.files = metas.into_iter().collect();
    if let Some(mut build) = options.build.clone() {
        let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        build.seconds.insert("checksum".into(), seconds);
        if let Some(total) = build.seconds.get_mut("total") {
            *total = ((*total + seconds) * 1000.0).round() / 1000.0;
        }
        manifest.build = Some(build);
    }
    manifest.write(dir)?;
    sync_directory(dir)?;
    Ok(manifest)
}

/// Puts the finished index `tmp` at `output` with one rename. An index already
/// at `output` is replaced only with `replace` (the caller has checked that it
/// holds index files only): it is renamed aside first and removed once the new one
/// is in place, so the path always holds one whole index. An `output` that is a
/// URL gets the files uploaded, the manifest last ([`publish_index_recorded`]).
pub fn publish_index(tmp: &Path, output: &Path, replace: bool) -> Result<()> {
    publish_index_recorded(tmp, output, replace, None)
}

/// [`publish_index`], where an upload to object storage records each file it
/// uploads in `upload_record` (a directory of the build's own) and skips those
/// recorded there whose objects are unchanged: a publish cut off midway resumes
/// (`crate::storage::publish_dir`). Unused for a local `output`.
pub fn publish_index_recorded(
    tmp: &Path,
    output: &Path,
    replace: bool,
    upload_record: Option<&Path>,
) -> Result<()> {
    if crate::storage::is_remote(output) {
        return crate::storage::publish_dir(tmp, output, replace, upload_record);
    }
    // A bare name's parent is "": the current directory.
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(output).is_ok() {
        if !replace {
            return Err(Error::InvalidArgument(format!(
                "{} already exists; the new index is not published",
                output.display()
            )));
        }
        let name = output.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} names no directory", output.display()))
        })?;
        let aside = parent.join(format!(
            ".{}.old-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(output, &aside).map_err(|e| Error::io(output, e))?;
        std::fs::rename(tmp, output).map_err(|e| Error::io(output, e))?;
        // The new index is in place: failing to remove the old one loses nothing.
        let _ = std::fs::remove_dir_all(&aside);
    } else {
        std::fs::rename(tmp, output).map_err(|e| Error::io(output, e))?;
    }
    sync_directory(parent)
}

/// How [`IndexWriter`] builds.
#[derive(Debug, Clone)]
pub struct IndexWriterOptions {
    /// Bytes per token.
    pub width: TokenWidth,
    /// Token ids are below this (`None`: every value but the separator).
    pub vocab_size: Option<u64>,
    /// End-of-document token (`None`: the separator).
    pub eos_token_id: Option<u64>,
    /// Shards (each at least one document).
    pub num_shards: usize,
    /// Every document comes with a metadata line.
    pub metadata: bool,
    /// Suffix-array options (memory budget, threads).
    pub suffix_array: super::SuffixArrayOptions,
    /// Write the search accelerators.
    pub accelerator: bool,
    /// The tokenizer to store.
    pub tokenizer: Option<TokenizerSource>,
}

/// All of a build in one object: add documents, then [`IndexWriter::finish`].
/// Works in `.NAME.write-PID` beside the output, removed when it is dropped
/// unfinished; nothing is at the output path until the final rename.
pub struct IndexWriter {
    output: PathBuf,
    work: PathBuf,
    options: IndexWriterOptions,
    vocab_size: u64,
    eos_token_id: u64,
    stream: Option<StreamWriter>,
}

impl IndexWriter {
    /// Starts an index at `output` (which must not exist).
    pub fn create(output: &Path, options: IndexWriterOptions) -> Result<Self> {
        let (vocab_size, eos_token_id) = crate::format::check_token_parameters(
            options.width,
            options.vocab_size,
            options.eos_token_id,
        )?;
        if crate::storage::is_remote(output) {
            // Its work directory would be a local path shaped like the URL.
            return Err(Error::InvalidArgument(format!(
                "{}: IndexWriter writes a local directory; write the index there, then publish it with publish_index",
                output.display()
            )));
        }
        if std::fs::symlink_metadata(output).is_ok() {
            return Err(Error::InvalidArgument(format!(
                "{} already exists",
                output.display()
            )));
        }
        let name = output.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} names no directory", output.display()))
        })?;
        let mut work_name = std::ffi::OsString::from(".");
        work_name.push(name);
        work_name.push(format!(".write-{}", std::process::id()));
        let work = output.with_file_name(work_name);
        let index = work.join("index");
        std::fs::create_dir_all(&index).map_err(|e| Error::io(&index, e))?;
        let stream = StreamWriter::create(&index, options.width, vocab_size, options.metadata)?;
        Ok(IndexWriter {
            output: output.to_path_buf(),
            work,
            options,
            vocab_size,
            eos_token_id,
            stream: Some(stream),
        })
    }

    /// Appends a document (see [`StreamWriter::add`]).
    pub fn add(&mut self, tokens: &[u32], metadata_line: Option<&[u8]>) -> Result<()> {
        self.stream
            .as_mut()
            .expect("the stream lives until finish")
            .add(tokens, metadata_line)
    }

    /// Splits, sorts, finishes and publishes the index; returns its manifest.
    pub fn finish(mut self, build: Option<BuildRecord>) -> Result<Manifest> {
        let index = self.work.join("index");
        let stream = self.stream.take().expect("the stream lives until finish");
        let streams = stream.finish(&self.work)?;
        let shards = split_shards(
            &index,
            &self.work,
            &streams,
            self.options.num_shards,
            self.options.width,
        )?;
        remove_streams(&index, &self.work)?;
        for s in 0..shards.len() {
            let mut sa = self.options.suffix_array.clone();
            sa.work_dir = Some(self.work.join(format!("parts.{s}")));
            super::build_suffix_array_with(
                &index.join(shard_file("tokenized", s)),
                &index.join(shard_file("table", s)),
                self.options.width,
                &sa,
                &mut |_| Ok(()),
            )?;
            let _ = std::fs::remove_dir_all(self.work.join(format!("parts.{s}")));
        }
        let manifest = finish_index(
            &index,
            &FinishOptions {
                width: self.options.width,
                vocab_size: self.vocab_size,
                eos_token_id: self.eos_token_id,
                shards,
                tokenizer: self.options.tokenizer.clone(),
                build,
                accelerator: self.options.accelerator,
            },
        )?;
        publish_index(&index, &self.output, false)?;
        Ok(manifest)
    }
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
