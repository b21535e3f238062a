//! The object backend: files in S3, GCS, Azure or behind plain HTTP(S), read by
//! ranged GETs in aligned blocks through the [`BlockCache`]. object_store's API is
//! async; a small tokio runtime owned here runs it, made lazily and again in a
//! forked child (a runtime made in the parent has no threads there), like
//! [`crate::pool`]. The store's HTTP client is remade with it for the same reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::cache::{BlockCache, CacheLimits};
use super::StorageOptions;
use crate::error::{Error, Result};

/// GET requests sent by the object backend in this process (all stores).
static GETS: AtomicU64 = AtomicU64::new(0);

/// GET requests (ranged reads) the object backend has sent in this process.
pub fn get_count() -> u64 {
    GETS.load(Ordering::Relaxed)
}

/// Batches of concurrent GETs (round trips) sent in this process.
static BATCHES: AtomicU64 = AtomicU64::new(0);

/// Round trips (batches of concurrent GETs) the object backend has made in this process.
pub fn batch_count() -> u64 {
    BATCHES.load(Ordering::Relaxed)
}

thread_local! {
    /// Round trips on this thread's critical path: its own batches, plus, for
    /// work it fanned out to threads and waited on, the most any of them made.
    static TRIPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Round trips on the calling thread's critical path so far: what a query's
/// latency is made of (batches of concurrent shards overlap and count once).
pub fn thread_round_trips() -> u64 {
    TRIPS.with(|t| t.get())
}

/// Adds `n` round trips to the calling thread's critical path (the most that
/// any of the threads it waited on made).
pub fn add_thread_round_trips(n: u64) {
    TRIPS.with(|t| t.set(t.get() + n));
}

/// One more batch of requests, on this thread.
fn count_round_trip() {
    BATCHES.fetch_add(1, Ordering::Relaxed);
    add_thread_round_trips(1);
}

/// One bucket (or HTTP origin): its client and runtime, remade after a fork.
struct Endpoint {
    made_in: u32,
    runtime: Arc<tokio::runtime::Runtime>,
    store: Arc<dyn ObjectStore>,
}

/// The options in force: from the environment until [`configure`] sets them
/// (a bad variable is reported by every open until then).
fn options() -> &'static Mutex<Result<StorageOptions, String>> {
    static OPTIONS: OnceLock<Mutex<Result<StorageOptions, String>>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        Mutex::new(StorageOptions::from_env().map_err(|e| match e {
            Error::InvalidArgument(message) => message,
            other => other.to_string(),
        }))
    })
}

fn current_options() -> Result<StorageOptions> {
    options()
        .lock()
        .unwrap()
        .clone()
        .map_err(Error::InvalidArgument)
}

fn cache() -> &'static Mutex<Option<Arc<BlockCache>>> {
    static CACHE: OnceLock<Mutex<Option<Arc<BlockCache>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(None))
}

/// Sets the object backend's cache and retry options for files opened from now on.
pub fn configure(new: StorageOptions) -> Result<()> {
    if new.block_bytes == 0 || new.block_bytes > (64 << 20) {
        return Err(Error::InvalidArgument(format!(
            "storage block size {} must be in [1, 64 MiB]",
            new.block_bytes
        )));
    }
    let made = BlockCache::new(&CacheLimits {
        ram_bytes: new.cache_ram_bytes,
        disk_dir: new.cache_dir.clone(),
        disk_bytes: new.cache_disk_bytes,
    })
    .map_err(|e| Error::io(new.cache_dir.clone().unwrap_or_default(), e))?;
    *cache().lock().unwrap() = Some(Arc::new(made));
    *options().lock().unwrap() = Ok(new);
    Ok(())
}

fn current_cache() -> Result<Arc<BlockCache>> {
    let o = current_options()?;
    let mut slot = cache().lock().unwrap();
    if let Some(c) = &*slot {
        return Ok(c.clone());
    }
    let made = Arc::new(
        BlockCache::new(&CacheLimits {
            ram_bytes: o.cache_ram_bytes,
            disk_dir: o.cache_dir.clone(),
            disk_bytes: o.cache_disk_bytes,
        })
        .map_err(|e| Error::io(o.cache_dir.clone().unwrap_or_default(), e))?,
    );
    *slot = Some(made.clone());
    Ok(made)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

fn build_store(url: &Url, retries: usize) -> Result<Arc<dyn ObjectStore>> {
    let (scheme, _) = ObjectStoreScheme::parse(url).map_err(|e| bad_url(url, e))?;
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: retries,
        retry_timeout: Duration::from_secs(30),
    };
    let client = ClientOptions::new()
        .with_allow_http(env_flag("AWS_ALLOW_HTTP") || url.scheme() == "http")
        .with_timeout(Duration::from_secs(30))
        .with_connect_timeout(Duration::from_secs(5));
    let base = url.as_str();
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(base)
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(|e| bad_url(url, e))?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(base)
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(|e| bad_url(url, e))?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(base)
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(|e| bad_url(url, e))?,
        ),
        ObjectStoreScheme::Http => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(&url[..url::Position::BeforePath])
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(|e| bad_url(url, e))?,
        ),
        other => {
            return Err(Error::InvalidArgument(format!(
                "{url}: {other:?} URLs are not an object store anygram reads (use s3://, gs://, az://, http:// or https://)"
            )))
        }
    };
    Ok(store)
}

pub(super) fn bad_url(url: &Url, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{url}: cannot open this object store URL: {e}"))
}

/// An object store's error on `what` as the core's I/O error naming the URL.
pub(super) fn io_error(what: &str, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    Error::io(
        PathBuf::from(what),
        std::io::Error::new(kind, e.to_string()),
    )
}

/// The runtime and store for `url`'s bucket, made (again) in this process.
pub(super) fn endpoint(url: &Url) -> Result<(Arc<tokio::runtime::Runtime>, Arc<dyn ObjectStore>)> {
    static ENDPOINTS: OnceLock<Mutex<HashMap<String, Endpoint>>> = OnceLock::new();
    let key = format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    );
    let pid = std::process::id();
    let mut map = ENDPOINTS.get_or_init(Default::default).lock().unwrap();
    if let Some(e) = map.get(&key) {
        if e.made_in == pid {
            return Ok((e.runtime.clone(), e.store.clone()));
        }
        // Made before a fork: its runtime's threads do not exist here. Forget it
        // without dropping (dropping would wait on threads that are gone).
        let stale = map.remove(&key).unwrap();
        std::mem::forget(stale);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("anygram-storage")
            .enable_all()
            .build()
            .map_err(|e| Error::io(PathBuf::from(url.as_str()), e))?,
    );
    let retries = current_options()?.retries;
    let store = build_store(url, retries)?;
    map.insert(
        key,
        Endpoint {
            made_in: pid,
            runtime: runtime.clone(),
            store: store.clone(),
        },
    );
    Ok((runtime, store))
}

/// What a listing or HEAD said about one object.
#[derive(Clone)]
struct ObjectInfo {
    size: u64,
    identity: u64,
}

/// One remote file: its URL, size and identity, read in cached blocks.
pub struct RemoteFile {
    url: Url,
    path: ObjectPath,
    display: PathBuf,
    len: u64,
    identity: u64,
    block: u64,
    cache: Arc<BlockCache>,
}

fn identity_of(url: &Url, meta: &object_store::ObjectMeta) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(url.as_str().as_bytes());
    h.update(&meta.size.to_le_bytes());
    h.update(meta.e_tag.as_deref().unwrap_or("").as_bytes());
    h.digest()
}

/// The objects of one directory, by name.
type Listing = Arc<HashMap<String, ObjectInfo>>;

/// Directory listings known in this process, by directory URL: made by one
/// LIST, or taken from an index manifest ([`describe_dir`]); `None` where the
/// store cannot list (plain HTTP) and no manifest described the directory.
fn listings() -> &'static Mutex<HashMap<String, Option<Listing>>> {
    static LISTINGS: OnceLock<Mutex<HashMap<String, Option<Listing>>>> = OnceLock::new();
    LISTINGS.get_or_init(Default::default)
}

/// Objects whose size and identity a whole-object GET told (the manifest
/// itself, read before anything says how big it is), by URL.
fn whole_objects() -> &'static Mutex<HashMap<String, ObjectInfo>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, ObjectInfo>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Records that directory `dir` holds exactly `files` (name, size, checksum),
/// as an index manifest says: opening them then costs no LIST or HEAD. The
/// identity of each block comes from the recorded checksum, so a cache never
/// serves blocks of another version of a file; a file that is not what the
/// manifest says fails at its first read (a short or refused range), never
/// silently.
pub fn describe_dir<'a>(
    dir: &Url,
    files: impl IntoIterator<Item = (&'a str, u64, &'a str)>,
) -> Result<()> {
    let dir = super::as_dir(dir);
    let mut described = HashMap::new();
    for (name, size, checksum) in files {
        let url = dir.join(name).map_err(|e| bad_url(&dir, e))?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(url.as_str().as_bytes());
        h.update(&size.to_le_bytes());
        h.update(b"manifest xxh3 ");
        h.update(checksum.as_bytes());
        described.insert(
            name.to_string(),
            ObjectInfo {
                size,
                identity: h.digest(),
            },
        );
    }
    listings()
        .lock()
        .unwrap()
        .insert(dir.as_str().to_string(), Some(Arc::new(described)));
    Ok(())
}

/// Forgets what this process knows of the objects under directory `dir` (its
/// listing, whole objects read): after a publish there, they are stale.
pub(super) fn forget_dir(dir: &Url) {
    let dir = super::as_dir(dir);
    listings().lock().unwrap().remove(dir.as_str());
    whole_objects()
        .lock()
        .unwrap()
        .retain(|url, _| !url.starts_with(dir.as_str()));
}

/// The whole object at `url` (at most `max_bytes`), in one GET that also tells
/// its size: the way to read a file nothing has described yet (the manifest).
/// `Ok(None)` when there is no such object. Later reads of it in this process
/// come from the cache.
pub fn read_whole(url: &Url, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    let known = whole_objects().lock().unwrap().get(url.as_str()).cloned();
    let described = match known {
        Some(info) => Some(info),
        None => described_info(url)?,
    };
    if let Some(info) = described {
        check_small(url, info.size, max_bytes)?;
        let file = RemoteFile::with_info(url, info)?;
        return file.read_at(0, file.len()).map(Some);
    }
    let (runtime, store) = endpoint(url)?;
    let path = object_path(url)?;
    GETS.fetch_add(1, Ordering::Relaxed);
    count_round_trip();
    let got = runtime.block_on(async {
        let result = store.get(&path).await?;
        let meta = result.meta.clone();
        if meta.size > max_bytes {
            return Ok(Err(meta.size));
        }
        result.bytes().await.map(|bytes| Ok((meta, bytes)))
    });
    let (meta, bytes) = match got {
        Ok(Ok(found)) => found,
        Ok(Err(size)) => return check_small(url, size, max_bytes).map(|_| None),
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(io_error(url.as_str(), e)),
    };
    if bytes.len() as u64 != meta.size {
        return Err(Error::io(
            PathBuf::from(url.as_str()),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the object is {} bytes but {} came back",
                    meta.size,
                    bytes.len()
                ),
            ),
        ));
    }
    let info = ObjectInfo {
        size: meta.size,
        identity: identity_of(url, &meta),
    };
    let file = RemoteFile::with_info(url, info.clone())?;
    for block in 0..meta.size.div_ceil(file.block) {
        let from = block * file.block;
        let to = meta.size.min(from + file.block);
        file.cache.put(
            (info.identity, block),
            bytes.slice(from as usize..to as usize),
        );
    }
    whole_objects()
        .lock()
        .unwrap()
        .insert(url.as_str().to_string(), info);
    Ok(Some(bytes.to_vec()))
}

fn check_small(url: &Url, size: u64, max_bytes: u64) -> Result<()> {
    if size > max_bytes {
        return Err(Error::corrupt(
            PathBuf::from(url.as_str()),
            format!("{size} bytes, more than the {max_bytes} this file may be"),
        ));
    }
    Ok(())
}

/// What a listing already known in this process says of `url` (no request).
fn described_info(url: &Url) -> Result<Option<ObjectInfo>> {
    let dir = dir_of(url)?;
    let listing = listings().lock().unwrap().get(dir.as_str()).cloned();
    Ok(match listing {
        Some(Some(files)) => files.get(file_name_of(url)).cloned(),
        _ => None,
    })
}

fn file_name_of(url: &Url) -> &str {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
}

/// The listing of remote directory `dir`, made once (one LIST for all the
/// files of an index) unless a manifest described it; `None` where the store
/// cannot list (plain HTTP).
fn listing(dir: &Url) -> Result<Option<Listing>> {
    let key = dir.as_str().to_string();
    if let Some(found) = listings().lock().unwrap().get(&key) {
        return Ok(found.clone());
    }
    if matches!(dir.scheme(), "http" | "https") && !is_cloud_https(dir) {
        return Ok(None);
    }
    let (runtime, store) = endpoint(dir)?;
    let (_, prefix) = ObjectStoreScheme::parse(dir).map_err(|e| bad_url(dir, e))?;
    let prefix = ObjectPath::parse(prefix).map_err(|e| bad_url(dir, e))?;
    count_round_trip();
    let listed = runtime
        .block_on(store.list_with_delimiter(Some(&prefix)))
        .map_err(|e| io_error(dir.as_str(), e))?;
    let mut files = HashMap::new();
    for meta in listed.objects {
        if let Some(name) = meta.location.filename() {
            let url = dir.join(name).map_err(|e| bad_url(dir, e))?;
            files.insert(
                name.to_string(),
                ObjectInfo {
                    size: meta.size,
                    identity: identity_of(&url, &meta),
                },
            );
        }
    }
    let files = Some(Arc::new(files));
    listings().lock().unwrap().insert(key, files.clone());
    Ok(files)
}

/// https URLs that object_store maps to a cloud store (S3, Azure, R2) rather than plain HTTP.
fn is_cloud_https(url: &Url) -> bool {
    !matches!(
        ObjectStoreScheme::parse(url),
        Ok((ObjectStoreScheme::Http, _))
    )
}

/// Splits a file URL into its directory (ending in '/') and name.
fn dir_of(url: &Url) -> Result<Url> {
    url.join("./").map_err(|e| bad_url(url, e))
}

/// Size and identity of the object at `url`, or `None` when there is none.
fn info(url: &Url) -> Result<Option<ObjectInfo>> {
    if let Some(known) = whole_objects().lock().unwrap().get(url.as_str()) {
        return Ok(Some(known.clone()));
    }
    if let Some(files) = listing(&dir_of(url)?)? {
        return Ok(files.get(file_name_of(url)).cloned());
    }
    let (runtime, store) = endpoint(url)?;
    let path = object_path(url)?;
    count_round_trip();
    match runtime.block_on(store.head(&path)) {
        Ok(meta) => Ok(Some(ObjectInfo {
            size: meta.size,
            identity: identity_of(url, &meta),
        })),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io_error(url.as_str(), e)),
    }
}

pub(super) fn object_path(url: &Url) -> Result<ObjectPath> {
    let (_, path) = ObjectStoreScheme::parse(url).map_err(|e| bad_url(url, e))?;
    ObjectPath::parse(path).map_err(|e| bad_url(url, e))
}

/// Whether an object exists at `url`.
pub fn exists(url: &Url) -> Result<bool> {
    Ok(info(url)?.is_some())
}

/// Whether `url` names a directory holding at least one object (always true
/// where the store cannot list: opening its files will tell).
pub fn dir_exists(dir: &Url) -> Result<bool> {
    Ok(listing(dir)?.is_none_or(|files| !files.is_empty()))
}

impl RemoteFile {
    /// Opens the object at `url`; a missing one is [`Error::MissingFile`].
    pub fn open(url: &Url, what: &str) -> Result<RemoteFile> {
        let display = PathBuf::from(url.as_str());
        let info = info(url)?.ok_or_else(|| Error::MissingFile {
            path: display,
            what: what.to_string(),
        })?;
        RemoteFile::with_info(url, info)
    }

    fn with_info(url: &Url, info: ObjectInfo) -> Result<RemoteFile> {
        Ok(RemoteFile {
            url: url.clone(),
            path: object_path(url)?,
            display: PathBuf::from(url.as_str()),
            len: info.size,
            identity: info.identity,
            block: current_options()?.block_bytes,
            cache: current_cache()?,
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The URL, as a path (for messages).
    pub fn path(&self) -> &std::path::Path {
        &self.display
    }

    /// Fetches every block of `ranges` that is not cached, all in one concurrent
    /// batch of ranged GETs (one round trip).
    pub fn fetch(&self, ranges: &[(u64, u64)]) -> Result<()> {
        fetch_many(&[(self, ranges)])
    }

    /// The blocks of `ranges` (clipped to the file) that are not cached.
    fn missing_blocks(&self, ranges: &[(u64, u64)]) -> Vec<u64> {
        let mut missing: Vec<u64> = Vec::new();
        for &(start, len) in ranges {
            if len == 0 || start >= self.len {
                continue;
            }
            let end = self.len.min(start.saturating_add(len));
            for block in start / self.block..=(end - 1) / self.block {
                if self.cache.get((self.identity, block)).is_none() {
                    missing.push(block);
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// Bytes `[start, start + len)`, which must lie inside the file.
    pub fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>> {
        let end = start + len;
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let first = start / self.block;
        let last = (end - 1) / self.block;
        for attempt in 0..2 {
            out.clear();
            let mut complete = true;
            for block in first..=last {
                // A block evicted between fetch and read (a small cache) is fetched again.
                let Some(bytes) = self.cache.get((self.identity, block)) else {
                    complete = false;
                    break;
                };
                let base = block * self.block;
                let from = start.max(base) - base;
                let to = end.min(base + bytes.len() as u64) - base;
                out.extend_from_slice(&bytes[from as usize..to as usize]);
            }
            if complete {
                return Ok(out);
            }
            if attempt == 0 {
                self.fetch(&[(start, len)])?;
            }
        }
        // The cache cannot even hold one read's blocks: read them uncached.
        let (runtime, store) = endpoint(&self.url)?;
        GETS.fetch_add(1, Ordering::Relaxed);
        count_round_trip();
        let bytes = runtime
            .block_on(store.get_range(&self.path, start..end))
            .map_err(|e| io_error(self.url.as_str(), e))?;
        Ok(bytes.to_vec())
    }
}

/// Fetches every block of every `(file, ranges)` that is not cached, all in one
/// concurrent batch of ranged GETs: one round trip for reads of many files
/// (an open's reads of every shard, a search round of every shard). A failed
/// GET (after the store's retries) is the batch's error, naming the file.
pub fn fetch_many(requests: &[(&RemoteFile, &[(u64, u64)])]) -> Result<()> {
    // Runs of consecutive missing blocks of one file go as one ranged GET
    // (a resident region of many blocks is one request, not hundreds).
    let mut runs: Vec<(&RemoteFile, u64, u64)> = Vec::new();
    for &(file, ranges) in requests {
        for block in file.missing_blocks(ranges) {
            match runs.last_mut() {
                Some((f, first, count))
                    if std::ptr::eq(*f, file)
                        && *first + *count == block
                        && (*count + 1) * file.block <= MAX_GET_BYTES =>
                {
                    *count += 1
                }
                _ => runs.push((file, block, 1)),
            }
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    // Every file of an index lives behind one endpoint; its runtime runs them all.
    let (runtime, _) = endpoint(&runs[0].0.url)?;
    let mut stores = Vec::with_capacity(runs.len());
    for &(file, _, _) in &runs {
        stores.push(endpoint(&file.url)?.1);
    }
    // One batch; on the critical path, one round trip per wave of GETs in flight.
    BATCHES.fetch_add(1, Ordering::Relaxed);
    add_thread_round_trips(runs.len().div_ceil(MAX_CONCURRENT_GETS) as u64);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_GETS));
    let fetched: Vec<(usize, Bytes)> = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (&(file, first, count), store)) in runs.iter().zip(stores).enumerate() {
            let path = file.path.clone();
            let range = first * file.block..file.len.min((first + count) * file.block);
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                GETS.fetch_add(1, Ordering::Relaxed);
                let options = object_store::GetOptions {
                    range: Some(range.clone().into()),
                    ..Default::default()
                };
                let got = match store.get_opts(&path, options).await {
                    Ok(result) => {
                        let object_size = result.meta.size;
                        result.bytes().await.map(|bytes| (object_size, bytes))
                    }
                    Err(e) => Err(e),
                };
                (i, range, got)
            });
        }
        let mut out = Vec::with_capacity(runs.len());
        while let Some(done) = tasks.join_next().await {
            let (i, range, got) =
                done.map_err(|e| Error::io(PathBuf::new(), std::io::Error::other(e.to_string())))?;
            let file = runs[i].0;
            let (object_size, bytes) = got.map_err(|e| io_error(file.url.as_str(), e))?;
            // The size the server reports (Content-Range) must be the one the
            // file was opened with (a listing's or the manifest's): else the
            // object was replaced or the manifest is stale.
            if object_size != file.len {
                return Err(Error::corrupt(
                    file.display.clone(),
                    format!(
                        "the object is {object_size} bytes, but {} were expected (from the index manifest or the listing): it was replaced or truncated",
                        file.len
                    ),
                ));
            }
            if bytes.len() as u64 != range.end - range.start {
                return Err(Error::io(
                    file.display.clone(),
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("bytes {}..{} came back as {} bytes (the object changed or the server is wrong)", range.start, range.end, bytes.len()),
                    ),
                ));
            }
            out.push((i, bytes));
        }
        Ok::<_, Error>(out)
    })?;
    for (i, bytes) in fetched {
        let (file, first, count) = runs[i];
        for k in 0..count {
            let from = (k * file.block) as usize;
            let to = bytes.len().min(((k + 1) * file.block) as usize);
            file.cache
                .put((file.identity, first + k), bytes.slice(from..to));
        }
    }
    Ok(())
}

/// Most bytes one ranged GET asks for (runs of blocks are cut there).
const MAX_GET_BYTES: u64 = 16 << 20;
/// Most GETs in flight at once, per batch (servers and proxies cap
/// connections; beyond this a batch goes in waves, each a round trip on the
/// critical path, which costs latency but never fails).
const MAX_CONCURRENT_GETS: usize = 64;
