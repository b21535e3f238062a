//! The one way the core writes a file whole or not at all: into `PATH.partial`,
//! fsync, rename over `PATH`, fsync of the directory (so the rename is durable).
//! A reader never sees a half-written file; a killed writer leaves at most a
//! `.partial`, which the next run of the same step overwrites.
//!
//! `sync = false` (a build's `no_sync`, for tests and scratch builds) skips both
//! fsyncs but keeps the rename: atomic against readers, not against a power cut.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `PATH` → `PATH.partial`, the name a file has until it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, true, |file, tmp| {
        let mut file = file;
        file.write_all(bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// Writes `path` atomically through `fill`, which gets the open `PATH.partial`
/// (and its path, for errors). On any error the partial file is removed.
pub fn write_with<F>(path: &Path, sync: bool, fill: F) -> Result<()>
where
    F: FnOnce(&File, &Path) -> Result<()>,
{
    write_via(&partial_path(path), path, sync, fill)
}

/// [`write_with`] through a temporary name of the caller's choosing (one per
/// process where several may write the same file at once).
pub fn write_via<F>(tmp: &Path, path: &Path, sync: bool, fill: F) -> Result<()>
where
    F: FnOnce(&File, &Path) -> Result<()>,
{
    let written = (|| {
        // Readable too: some writers read back what they wrote (a checksum).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(|e| Error::io(tmp, e))?;
        fill(&file, tmp)?;
        if sync {
            file.sync_all().map_err(|e| Error::io(tmp, e))?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
        return written;
    }
    publish(tmp, path, sync)
}

/// Renames the finished file `tmp` (already synced by its writer when `sync`)
/// over `path`, then makes the rename durable.
pub fn publish(tmp: &Path, path: &Path, sync: bool) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    if sync {
        sync_directory(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// fsync of a directory (its entries: a rename in it is durable).
pub fn sync_directory(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, b"old").unwrap();
        write_file(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert!(!partial_path(&path).exists());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.0");
        std::fs::write(&path, b"old").unwrap();
        let failed = write_with(&path, true, |mut file, tmp| {
            file.write_all(b"half").map_err(|e| Error::io(tmp, e))?;
            Err(Error::InvalidArgument("stopped midway".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!partial_path(&path).exists());
    }
}
