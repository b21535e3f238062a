//! The one place that maps index files into memory, and that opens them.
//!
//! # Safety contract
//! Index files are immutable once published (a build writes a temporary
//! directory and renames it into place). Mapping is sound as long as nobody
//! truncates or rewrites a file while an engine has it open: if that happens the
//! process gets SIGBUS on the next access, which no check here can prevent.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap};

use crate::error::{Error, Result};

/// Opens `path` for reading, refusing anything but a regular file (a FIFO,
/// a device, a directory) with an error instead of blocking on it: the file is
/// opened non-blocking (opening a FIFO would otherwise wait for a writer) and
/// its type checked on the open descriptor, so a swap in between is caught too.
/// `what` says what the file is for, for the error message.
pub fn open_regular_file(path: &Path, what: &str) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
                what: what.to_string(),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    let file_type = file.metadata().map_err(|e| Error::io(path, e))?.file_type();
    if !file_type.is_file() {
        return Err(Error::corrupt(
            path,
            format!("{what} is not a regular file (a {})", describe(file_type)),
        ));
    }
    Ok(file)
}

fn describe(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "device";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// A read-only file mapped into memory (or an empty slice for an empty file,
/// which cannot be mapped).
pub struct MappedFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl MappedFile {
    /// Maps `path` read-only. `what` says what the file is for, for the error
    /// message. Only regular files are mapped (see [`open_regular_file`]).
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let file = open_regular_file(path, what)?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: see the module's contract: index files are never modified
            // while mapped, so the slice we hand out stays valid and unchanged.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            // Queries jump around the suffix array: read-ahead only wastes page cache.
            // A hint, so failure is harmless.
            let _ = map.advise(Advice::Random);
            Some(map)
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file's length in bytes.
    #[inline]
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks the kernel to start reading bytes `[start, start + len)` now, so that
    /// many scattered reads issued together cost one round trip, not one each.
    /// A hint: out-of-range parts are clipped and failure is harmless.
    pub fn will_need(&self, start: u64, len: u64) {
        if let Some(map) = &self.map {
            let size = map.len() as u64;
            if start < size {
                let len = len.min(size - start);
                let _ = map.advise_range(Advice::WillNeed, start as usize, len as usize);
            }
        }
    }

    /// Hints that the whole file will be read in order (for scans such as verify).
    pub fn advise_sequential(&self) {
        if let Some(map) = &self.map {
            let _ = map.advise(Advice::Sequential);
        }
    }
}

/// The machine's physical memory in bytes (`None` where the system does not
/// say): how much of an index can stay in the page cache at best.
pub fn physical_memory_bytes() -> Option<u64> {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = u64::try_from(pages).ok().filter(|&p| p > 0)?;
    let page = u64::try_from(page).ok().filter(|&p| p > 0)?;
    Some(pages * page)
}
