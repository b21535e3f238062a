//! The write side of the object backend: a finished local file uploaded to a
//! URL ([`upload_file`]), and a finished index directory published there
//! ([`publish_dir`]): every file first, the manifest last. Readers take an
//! index without `anygram.json` as absent, so an index whose upload was cut
//! off is never opened; running the publish again completes it.
//!
//! Large files go up as multipart uploads of [`PART_BYTES`] parts, at most
//! [`PARTS_IN_FLIGHT`] at once (memory stays at a few parts whatever the file's
//! size); every request is retried as the read side configures it (the store
//! is the read side's, see `remote::endpoint`).
//!
//! Resumable: each upload can be recorded in a local directory (a build's work
//! directory), one small JSON file per uploaded file. A file whose record says
//! it went to the same URL, and whose object still has the recorded size and
//! entity tag, is not uploaded again.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, PutResult, WriteMultipart};
use serde::{Deserialize, Serialize};
use url::Url;

use super::remote::{bad_url, endpoint, forget_dir, io_error, object_path};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, MANIFEST_FILE};

/// Bytes per part of a multipart upload (a file at most this big is one PUT).
pub const PART_BYTES: usize = 32 << 20;
/// Parts of one file uploading at once.
pub const PARTS_IN_FLIGHT: usize = 4;

/// What an upload left in object storage, as recorded for a resumed publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRecord {
    /// Where the file went.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// The object's entity tag as the store answered the upload.
    pub e_tag: Option<String>,
}

/// Whether `name` is one that an index directory holds (the manifest, the
/// marker, the stored tokenizer, a shard's files): what a publish with
/// `replace` may delete.
pub fn is_index_file_name(name: &str) -> bool {
    if matches!(
        name,
        MANIFEST_FILE | crate::manifest::MARKER_FILE | crate::manifest::TOKENIZER_FILE
    ) {
        return true;
    }
    match name.split_once('.') {
        Some((kind, shard)) => {
            matches!(
                kind,
                "tokenized" | "table" | "offset" | "metadata" | "metaoff" | "accel"
            ) && !shard.is_empty()
                && shard.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Uploads `local` to the object at `path` of `store`: one PUT when it is at
/// most `part_bytes`, else a multipart upload of `part_bytes` parts with at
/// most `in_flight` of them uploading (aborted if anything fails). `display`
/// names the destination in errors.
pub(crate) async fn upload_to_store(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    local: &Path,
    display: &str,
    part_bytes: usize,
    in_flight: usize,
) -> Result<PutResult> {
    let mut file = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
    let size = file.metadata().map_err(|e| Error::io(local, e))?.len();
    let read_part = |file: &mut std::fs::File, len: usize| -> Result<Bytes> {
        let mut buffer = vec![0u8; len];
        file.read_exact(&mut buffer)
            .map_err(|e| Error::io(local, e))?;
        Ok(Bytes::from(buffer))
    };
    if size <= part_bytes as u64 {
        let bytes = read_part(&mut file, size as usize)?;
        return store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| io_error(display, e));
    }
    let upload = store
        .put_multipart(path)
        .await
        .map_err(|e| io_error(display, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_bytes);
    let mut left = size;
    while left > 0 {
        let step = async {
            // Back pressure: the next part is read only once fewer than
            // `in_flight` are uploading, so memory stays bounded.
            writer
                .wait_for_capacity(in_flight)
                .await
                .map_err(|e| io_error(display, e))?;
            read_part(&mut file, left.min(part_bytes as u64) as usize)
        }
        .await;
        match step {
            Ok(part) => {
                left -= part.len() as u64;
                writer.put(part);
            }
            Err(e) => {
                // Leave no unfinished upload (its parts cost storage) behind.
                let _ = writer.abort().await;
                return Err(e);
            }
        }
    }
    writer.finish().await.map_err(|e| io_error(display, e))
}

/// The record of `name`'s upload in `record_dir`, when there is one.
fn read_record(record_dir: &Path, name: &str) -> Option<UploadRecord> {
    let text = std::fs::read(record_dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_record(record_dir: &Path, name: &str, record: &UploadRecord) -> Result<()> {
    std::fs::create_dir_all(record_dir).map_err(|e| Error::io(record_dir, e))?;
    let json = serde_json::to_vec(record).expect("a record serializes");
    crate::atomic::write_file(&record_dir.join(format!("{name}.json")), &json)
}

/// Whether the object described by `found` (size, entity tag) is the upload
/// `record` made of a local file of `size` bytes to `url`.
fn already_uploaded(
    record: Option<&UploadRecord>,
    url: &Url,
    size: u64,
    found: Option<&(u64, Option<String>)>,
) -> bool {
    match (record, found) {
        (Some(record), Some((found_size, found_tag))) => {
            record.url == url.as_str()
                && record.size == size
                && *found_size == size
                && (record.e_tag.is_none() || found_tag.is_none() || record.e_tag == *found_tag)
        }
        _ => false,
    }
}

/// Uploads the local file `local` to `url` (see the module's notes). With
/// `record_dir`, an upload recorded there whose object is still the same is
/// skipped, and a new one is recorded. Returns whether it uploaded.
pub fn upload_file(local: &Path, url: &Url, record_dir: Option<&Path>) -> Result<bool> {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidArgument(format!("{} names no file", local.display())))?;
    let size = std::fs::metadata(local)
        .map_err(|e| Error::io(local, e))?
        .len();
    let (runtime, store) = endpoint(url)?;
    let path = object_path(url)?;
    let record = record_dir.and_then(|d| read_record(d, &name));
    if record.is_some() {
        let found = match runtime.block_on(store.head(&path)) {
            Ok(meta) => Some((meta.size, meta.e_tag)),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(destination_error(url, e)),
        };
        if already_uploaded(record.as_ref(), url, size, found.as_ref()) {
            return Ok(false);
        }
    }
    let put = runtime.block_on(upload_to_store(
        store.as_ref(),
        &path,
        local,
        url.as_str(),
        PART_BYTES,
        PARTS_IN_FLIGHT,
    ))?;
    if let Some(dir) = record_dir {
        write_record(
            dir,
            &name,
            &UploadRecord {
                url: url.to_string(),
                size,
                e_tag: put.e_tag,
            },
        )?;
    }
    Ok(true)
}

/// An error of the first request to a destination: its URL, and what usually causes it.
fn destination_error(url: &Url, e: object_store::Error) -> Error {
    // S3-compatible stores answer a missing bucket or refused credentials with a
    // status and code that object_store passes on only inside its message.
    let text = e.to_string();
    let says = |codes: &[&str]| codes.iter().any(|code| text.contains(code));
    let hint = if text.contains("169.254.169.254") {
        // No credentials in the environment: the client asked the instance metadata service.
        "no credentials were found (none in the environment, and no instance metadata service gave any): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the store's own variables)"
    } else if matches!(e, object_store::Error::NotFound { .. })
        || says(&["NoSuchBucket", "ContainerNotFound", "BucketNotFound"])
    {
        "the bucket does not exist (create it first)"
    } else if matches!(
        e,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) || says(&[
        "403 Forbidden",
        "401 Unauthorized",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AuthenticationFailed",
    ]) {
        "the credentials were refused: check them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the store's own variables) and their rights on the bucket"
    } else {
        "the store did not answer as expected (does the bucket exist, and do the credentials allow writing to it?)"
    };
    Error::io(
        PathBuf::from(url.as_str()),
        std::io::Error::other(format!("cannot write an index there: {hint}: {text}")),
    )
}

/// The objects directly under the directory `dir` (size and entity tag by
/// name), listed now (never a listing cached for reads).
fn list_now(dir: &Url) -> Result<BTreeMap<String, (u64, Option<String>)>> {
    let dir = &super::as_dir(dir);
    let (runtime, store) = endpoint(dir)?;
    let prefix = object_path(dir)?;
    let listed = runtime
        .block_on(store.list_with_delimiter(Some(&prefix)))
        .map_err(|e| destination_error(dir, e))?;
    Ok(listed
        .objects
        .into_iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?.to_string();
            Some((name, (meta.size, meta.e_tag)))
        })
        .collect())
}

/// Checks that an index may be published at the directory URL `dir`, listed
/// now: a URL that cannot be listed (a bucket that does not exist, credentials
/// that do not allow it) is an error naming it; so is an index there (its
/// manifest) unless `replace`, and any object there that is not an index file
/// (a publish deletes index files only). Returns the listing.
pub fn check_destination(
    dir: &Url,
    replace: bool,
) -> Result<BTreeMap<String, (u64, Option<String>)>> {
    let existing = list_now(dir)?;
    if let Some(other) = existing.keys().find(|name| !is_index_file_name(name)) {
        return Err(Error::InvalidArgument(format!(
            "{dir} holds {other}, which is not an index file: an index is published only into an empty prefix or over an index; choose another URL"
        )));
    }
    if existing.contains_key(MANIFEST_FILE) && !replace {
        return Err(Error::IndexExists {
            location: dir.to_string(),
        });
    }
    Ok(existing)
}

/// Publishes the finished local index `local_dir` (its manifest lists its
/// files) at the directory URL `dir`: every file uploaded (or found uploaded,
/// see [`upload_file`]'s `record_dir`), then the manifest. An index already
/// there is refused unless `replace`: then its manifest is deleted first (the
/// index is absent until the new manifest is up) and its files that the new
/// index lacks are deleted before that manifest goes up. Objects there that
/// are not index files are never touched: they refuse the publish.
pub fn publish_dir(
    local_dir: &Path,
    dir: &Url,
    replace: bool,
    record_dir: Option<&Path>,
) -> Result<()> {
    let dir = &super::as_dir(dir);
    let manifest = Manifest::read(local_dir)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}: not a finished index (no {MANIFEST_FILE}); nothing is published",
            local_dir.display()
        ))
    })?;
    let existing = check_destination(dir, replace)?;
    let (runtime, store) = endpoint(dir)?;
    let delete = |name: &str| -> Result<()> {
        let url = dir.join(name).map_err(|e| bad_url(dir, e))?;
        match runtime.block_on(store.delete(&object_path(&url)?)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(url.as_str(), e)),
        }
    };
    if existing.contains_key(MANIFEST_FILE) {
        delete(MANIFEST_FILE)?;
    }
    forget_dir(dir);
    // Whatever the new index does not have: a replaced index's extra shards, a
    // cut-off publish's leftovers. The manifest is not up, so nobody reads them.
    for name in existing.keys() {
        if name != MANIFEST_FILE && !manifest.files.contains_key(name) {
            delete(name)?;
        }
    }
    let by_name: HashMap<&str, &(u64, Option<String>)> =
        existing.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (name, meta) in &manifest.files {
        let local = local_dir.join(name);
        let url = dir.join(name).map_err(|e| bad_url(dir, e))?;
        let record = record_dir.and_then(|d| read_record(d, name));
        if already_uploaded(
            record.as_ref(),
            &url,
            meta.size,
            by_name.get(name.as_str()).copied(),
        ) {
            continue;
        }
        let put = runtime.block_on(upload_to_store(
            store.as_ref(),
            &object_path(&url)?,
            &local,
            url.as_str(),
            PART_BYTES,
            PARTS_IN_FLIGHT,
        ))?;
        if let Some(record_dir) = record_dir {
            write_record(
                record_dir,
                name,
                &UploadRecord {
                    url: url.to_string(),
                    size: meta.size,
                    e_tag: put.e_tag,
                },
            )?;
        }
    }
    // Last: with it the index exists.
    let url = dir.join(MANIFEST_FILE).map_err(|e| bad_url(dir, e))?;
    runtime.block_on(upload_to_store(
        store.as_ref(),
        &object_path(&url)?,
        &local_dir.join(MANIFEST_FILE),
        url.as_str(),
        PART_BYTES,
        PARTS_IN_FLIGHT,
    ))?;
    // Listings and sizes read before the publish are stale now.
    forget_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Uploads `size` bytes through parts of `part` bytes; reads them back.
    fn round_trip(size: usize, part: usize) {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("file");
        let content: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&local, &content).unwrap();
        let store = InMemory::new();
        let path = ObjectPath::from("bucket/index/file");
        let rt = runtime();
        rt.block_on(upload_to_store(
            &store,
            &path,
            &local,
            "mem://file",
            part,
            2,
        ))
        .unwrap();
        let got = rt
            .block_on(async { store.get(&path).await.unwrap().bytes().await })
            .unwrap();
        assert_eq!(got.len(), size, "size {size}, part {part}");
        assert!(got[..] == content[..], "size {size}, part {part}");
    }

    #[test]
    fn upload_part_boundaries() {
        // Empty; one byte; exactly one part (one PUT); a part and one byte
        // (multipart, a last part of one byte); exactly three parts; more
        // parts than are in flight at once.
        for (size, part) in [
            (0, 16),
            (1, 16),
            (16, 16),
            (17, 16),
            (48, 16),
            (16 * 9 + 5, 16),
        ] {
            round_trip(size, part);
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let store = InMemory::new();
        let rt = runtime();
        let missing = Path::new("/nonexistent/anygram-upload");
        let err = rt
            .block_on(upload_to_store(
                &store,
                &ObjectPath::from("x"),
                missing,
                "mem://x",
                16,
                2,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("anygram-upload"), "{err}");
    }

    #[cfg(feature = "build")]
    #[test]
    fn the_index_writer_refuses_a_url_without_writing_locally() {
        use crate::build::writer::{IndexWriter, IndexWriterOptions};
        let options = IndexWriterOptions {
            width: crate::format::TokenWidth::U16,
            vocab_size: None,
            eos_token_id: None,
            num_shards: 1,
            metadata: false,
            suffix_array: Default::default(),
            accelerator: false,
            tokenizer: None,
        };
        // Its work directory would be a relative path shaped like the URL, under the cwd.
        let err = IndexWriter::create(Path::new("s3://bucket/index"), options)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("local directory"), "{err}");
        assert!(!Path::new("s3:").exists());
    }

    #[test]
    fn index_file_names() {
        for name in [
            "anygram.json",
            "table.0",
            "tokenized.12",
            "accel.3",
            "tokenizer.json",
        ] {
            assert!(is_index_file_name(name), "{name}");
        }
        for name in ["table.", "table.x", "notes.txt", "table", "foo.1"] {
            assert!(!is_index_file_name(name), "{name}");
        }
    }

    #[test]
    fn a_record_skips_only_the_same_object() {
        let url = Url::parse("s3://b/i/table.0").unwrap();
        let record = UploadRecord {
            url: url.to_string(),
            size: 10,
            e_tag: Some("\"a\"".into()),
        };
        let same = (10, Some("\"a\"".to_string()));
        assert!(already_uploaded(Some(&record), &url, 10, Some(&same)));
        assert!(!already_uploaded(None, &url, 10, Some(&same)));
        assert!(!already_uploaded(Some(&record), &url, 10, None));
        assert!(!already_uploaded(
            Some(&record),
            &url,
            10,
            Some(&(10, Some("\"b\"".into())))
        ));
        assert!(!already_uploaded(
            Some(&record),
            &url,
            11,
            Some(&(11, Some("\"a\"".into())))
        ));
        let elsewhere = Url::parse("s3://b/j/table.0").unwrap();
        assert!(!already_uploaded(
            Some(&record),
            &elsewhere,
            10,
            Some(&same)
        ));
    }
}
