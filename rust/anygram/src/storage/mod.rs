//! The storage layer: every index file is read through [`IndexFile`], whose
//! backend is a local memory-mapped file ([`MappedFile`], zero-copy: `read_at`
//! borrows from the map) or an object in S3, GCS, Azure or behind plain
//! HTTP(S) ([`remote::RemoteFile`], read in aligned blocks through a bounded
//! RAM and disk cache). An index "path" is a local path or a URL (`s3://…`,
//! `gs://…`, `az://…`, `http(s)://…`); joining file names onto a URL-shaped
//! `PathBuf` keeps it a URL, so the engine passes paths around unchanged and
//! nothing else knows which backend it reads.
//!
//! Batches: [`IndexFile::prefetch`] starts every read of one search round
//! together (`madvise(WILLNEED)` locally, one concurrent batch of ranged GETs
//! remotely), so a round costs one round trip.

pub mod cache;
pub mod remote;
pub mod write;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::{Error, Result};
use crate::mmap::MappedFile;

pub use remote::{
    add_thread_round_trips, batch_count as remote_batch_count, get_count as remote_get_count,
    thread_round_trips,
};

/// The object backend's cache and retry settings (process-wide; see [`configure`]).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Bytes per ranged GET (reads are aligned to it).
    pub block_bytes: u64,
    /// RAM for cached blocks.
    pub cache_ram_bytes: u64,
    /// A directory for cached blocks on disk, or none.
    pub cache_dir: Option<PathBuf>,
    /// Disk for cached blocks (least recently used evicted beyond it).
    pub cache_disk_bytes: u64,
    /// Retries of a failed request (5xx, timeouts, dropped connections).
    pub retries: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            block_bytes: 64 << 10,
            cache_ram_bytes: 256 << 20,
            cache_dir: None,
            cache_disk_bytes: 0,
            retries: 3,
        }
    }
}

/// Environment variables that set [`StorageOptions`] (for the CLI and the server).
pub const ENV_BLOCK_BYTES: &str = "ANYGRAM_STORAGE_BLOCK_BYTES";
/// RAM for cached blocks, bytes.
pub const ENV_CACHE_RAM_BYTES: &str = "ANYGRAM_CACHE_RAM_BYTES";
/// A directory for cached blocks on disk.
pub const ENV_CACHE_DIR: &str = "ANYGRAM_CACHE_DIR";
/// Disk for cached blocks, bytes (default 10 GiB when a directory is given).
pub const ENV_CACHE_DISK_BYTES: &str = "ANYGRAM_CACHE_DISK_BYTES";
/// Retries of a failed request.
pub const ENV_RETRIES: &str = "ANYGRAM_STORAGE_RETRIES";

impl StorageOptions {
    /// The defaults, with what the `ANYGRAM_*` variables above set; a value
    /// that is not a whole number in range is an error naming the variable.
    pub fn from_env() -> Result<StorageOptions> {
        let number = |name: &str, max: u64| -> Result<Option<u64>> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(text) => text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&v| v <= max)
                    .map(Some)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{name}={text:?} must be a whole number in [0, {max}]"
                        ))
                    }),
            }
        };
        let defaults = StorageOptions::default();
        let cache_dir = std::env::var_os(ENV_CACHE_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let block_bytes = number(ENV_BLOCK_BYTES, 64 << 20)?.unwrap_or(defaults.block_bytes);
        if block_bytes == 0 {
            return Err(Error::InvalidArgument(format!(
                "{ENV_BLOCK_BYTES} must be at least 1"
            )));
        }
        Ok(StorageOptions {
            block_bytes,
            cache_ram_bytes: number(ENV_CACHE_RAM_BYTES, u64::MAX)?
                .unwrap_or(defaults.cache_ram_bytes),
            cache_disk_bytes: number(ENV_CACHE_DISK_BYTES, u64::MAX)?
                .unwrap_or(if cache_dir.is_some() { 10 << 30 } else { 0 }),
            cache_dir,
            retries: number(ENV_RETRIES, 100)?.map_or(defaults.retries, |r| r as usize),
        })
    }
}

/// Sets the object backend's options for files opened from now on (the cache is replaced).
pub fn configure(options: StorageOptions) -> Result<()> {
    remote::configure(options)
}

/// The URL a path stands for, when it is one (`scheme://…` with a scheme the
/// object backend reads); `None` for a local path.
pub fn url_of(path: &Path) -> Result<Option<Url>> {
    let Some(text) = path.to_str() else {
        return Ok(None);
    };
    let Some((scheme, _)) = text.split_once("://") else {
        return Ok(None);
    };
    if !matches!(
        scheme,
        "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss" | "http" | "https"
    ) {
        return Err(Error::InvalidArgument(format!(
            "{text}: unknown URL scheme {scheme:?} (anygram reads s3://, gs://, az://, abfs://, http:// and https://)"
        )));
    }
    // `Path::join` may have collapsed "//" in "s3://"; a URL-shaped path keeps it.
    Url::parse(text)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("{text}: not a valid URL: {e}")))
}

/// Whether `path` is a URL (an index in object storage).
pub fn is_remote(path: &Path) -> bool {
    matches!(url_of(path), Ok(Some(_)) | Err(_))
}

/// A URL-shaped directory with a trailing slash, so file names join under it.
fn as_dir(url: &Url) -> Url {
    let mut dir = url.clone();
    if !dir.path().ends_with('/') {
        dir.set_path(&format!("{}/", dir.path()));
    }
    dir
}

/// Whether the index directory `dir` exists (for a URL: holds any object).
pub fn dir_exists(dir: &Path) -> Result<bool> {
    match url_of(dir)? {
        Some(url) => remote::dir_exists(&as_dir(&url)),
        None => Ok(dir.is_dir()),
    }
}

/// Whether file `path` exists (a local entry of any type, or an object).
pub fn file_exists(path: &Path) -> Result<bool> {
    match url_of(path)? {
        Some(url) => remote::exists(&url),
        None => Ok(std::fs::symlink_metadata(path).is_ok()),
    }
}

/// The whole content of a small file (the manifest, the tokenizer), local or
/// remote; `what` names it for the errors.
pub fn read_whole(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>> {
    if let Some(url) = url_of(path)? {
        // One GET that also tells the size: no HEAD or LIST first.
        return remote::read_whole(&url, max_bytes)?.ok_or_else(|| Error::MissingFile {
            path: path.to_path_buf(),
            what: what.to_string(),
        });
    }
    let file = IndexFile::open(path, what)?;
    if file.len() > max_bytes {
        return Err(Error::corrupt(
            path,
            format!(
                "{what} is {} bytes, more than the {max_bytes} it may be",
                file.len()
            ),
        ));
    }
    Ok(file.read_at(0, file.len())?.into_owned())
}

/// Records the files of the index directory `dir` as its manifest lists them
/// (name, size, XXH3): in object storage, opening them then needs no LIST or
/// HEAD, and their blocks are cached under the recorded checksum. Nothing to
/// do for a local directory.
pub fn describe_dir<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, u64, &'a str)>,
) -> Result<()> {
    match url_of(dir)? {
        Some(url) => remote::describe_dir(&url, files),
        None => Ok(()),
    }
}

/// Starts the reads of many files together: each `(file, ranges)` as
/// [`IndexFile::prefetch`] would, but the remote ones all in one concurrent
/// batch of GETs (one round trip for an open's or a search round's reads of
/// every shard).
pub fn prefetch_all(requests: &[(&IndexFile, Vec<(u64, u64)>)]) -> Result<()> {
    let mut remote_requests = Vec::new();
    for (file, ranges) in requests {
        match file {
            IndexFile::Local(_) => file.prefetch(ranges)?,
            IndexFile::Remote(r) => remote_requests.push((r, ranges.as_slice())),
        }
    }
    remote::fetch_many(&remote_requests)
}

/// The URL `dest` stands for; a local path is an error (`what` names it).
fn destination_url(dest: &Path, what: &str) -> Result<Url> {
    url_of(dest)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}: {what} must be an object storage URL (s3://, gs://, az://, ...)",
            dest.display()
        ))
    })
}

/// Uploads the finished local file `local` to the URL `dest` (see
/// [`write::upload_file`]: multipart, bounded memory, skipped when `record_dir`
/// records it uploaded and the object is unchanged). Returns whether it uploaded.
pub fn upload_file(local: &Path, dest: &Path, record_dir: Option<&Path>) -> Result<bool> {
    write::upload_file(
        local,
        &destination_url(dest, "an upload's destination")?,
        record_dir,
    )
}

/// Publishes the finished local index `local_dir` at the directory URL `dest`:
/// its files first, the manifest last (see [`write::publish_dir`]).
pub fn publish_dir(
    local_dir: &Path,
    dest: &Path,
    replace: bool,
    record_dir: Option<&Path>,
) -> Result<()> {
    write::publish_dir(
        local_dir,
        &destination_url(dest, "an index's destination")?,
        replace,
        record_dir,
    )
}

/// Checks that an index may be published at the directory URL `dest` (see
/// [`write::check_destination`]): listed now, no index there unless `replace`,
/// nothing there but index files.
pub fn check_destination(dest: &Path, replace: bool) -> Result<()> {
    write::check_destination(&destination_url(dest, "an index's destination")?, replace).map(|_| ())
}

/// A message for operations that need the index on local disk.
pub fn require_local(path: &Path, operation: &str) -> Result<()> {
    if is_remote(path) {
        return Err(Error::InvalidArgument(format!(
            "{}: {operation} needs the index on local disk (queries work on indexes in object storage; builds, scans, dedup, verify and accelerator builds do not): copy it locally first",
            path.display()
        )));
    }
    Ok(())
}

/// One index file, on local disk or in object storage.
pub enum IndexFile {
    /// A memory-mapped local file.
    Local(MappedFile),
    /// An object read in cached blocks.
    Remote(remote::RemoteFile),
}

impl IndexFile {
    /// Opens `path` (a local path or a URL); `what` says what the file is for.
    pub fn open(path: &Path, what: &str) -> Result<IndexFile> {
        match url_of(path)? {
            Some(url) => Ok(IndexFile::Remote(remote::RemoteFile::open(&url, what)?)),
            None => Ok(IndexFile::Local(MappedFile::open(path, what)?)),
        }
    }

    /// The file's length in bytes.
    #[inline]
    pub fn len(&self) -> u64 {
        match self {
            IndexFile::Local(m) => m.len(),
            IndexFile::Remote(r) => r.len(),
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path or URL the file was opened from.
    pub fn path(&self) -> &Path {
        match self {
            IndexFile::Local(m) => m.path(),
            IndexFile::Remote(r) => r.path(),
        }
    }

    /// Bytes `[start, start + len)`: borrowed from the map locally, from the
    /// cache remotely. A range outside the file is an error naming it.
    #[inline]
    pub fn read_at(&self, start: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| {
                Error::corrupt(
                    self.path(),
                    format!(
                        "bytes {start}..{} are outside the file's {} bytes",
                        start.saturating_add(len),
                        self.len()
                    ),
                )
            })?;
        match self {
            IndexFile::Local(m) => Ok(Cow::Borrowed(&m.bytes()[start as usize..end as usize])),
            IndexFile::Remote(r) => Ok(Cow::Owned(r.read_at(start, len)?)),
        }
    }

    /// Bytes `[start, min(start + len, file end))` (empty past the end).
    #[inline]
    pub fn read_clipped(&self, start: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        let start = start.min(self.len());
        self.read_at(start, len.min(self.len() - start))
    }

    /// Starts all of `ranges` (`(start, len)`, clipped to the file) at once: a
    /// hint locally, one concurrent batch of GETs remotely (an error there is
    /// the read's error).
    pub fn prefetch(&self, ranges: &[(u64, u64)]) -> Result<()> {
        match self {
            IndexFile::Local(m) => {
                for &(start, len) in ranges {
                    m.will_need(start, len);
                }
                Ok(())
            }
            IndexFile::Remote(r) => r.fetch(ranges),
        }
    }

    /// The whole file as one slice, for work that reads everything (verify,
    /// scans, accelerator builds): local files only.
    pub fn local_bytes(&self) -> Result<&[u8]> {
        match self {
            IndexFile::Local(m) => Ok(m.bytes()),
            IndexFile::Remote(r) => {
                require_local(r.path(), "this operation")?;
                unreachable!("a remote file's path is a URL")
            }
        }
    }

    /// Hints that the whole file will be read in order (local files).
    pub fn advise_sequential(&self) {
        if let IndexFile::Local(m) = self {
            m.advise_sequential();
        }
    }
}
