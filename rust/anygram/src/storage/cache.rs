//! The object backend's block cache: fixed-size blocks of remote files kept in
//! RAM (an LRU bounded in bytes) and, optionally, in a disk directory (an LRU
//! bounded in bytes, evicted files deleted). A block missing from RAM but on
//! disk is read back and promoted.
//!
//! Blocks are keyed by the object's identity (URL, size and ETag, so a replaced
//! object never serves old bytes) and the block's number.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

/// Identifies one block: a hash of the object's identity, and the block number.
pub type BlockKey = (u64, u64);

/// Limits of a [`BlockCache`].
#[derive(Debug, Clone)]
pub struct CacheLimits {
    /// Bytes of blocks kept in RAM.
    pub ram_bytes: u64,
    /// A directory for blocks on disk (created if missing), or none.
    pub disk_dir: Option<PathBuf>,
    /// Bytes of blocks kept in `disk_dir`.
    pub disk_bytes: u64,
}

struct Tier<V> {
    entries: LruCache<BlockKey, V>,
    bytes: u64,
    limit: u64,
}

impl<V> Tier<V> {
    fn new(limit: u64) -> Self {
        Tier {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// Inserts and returns what had to be evicted to stay within the limit.
    fn insert(
        &mut self,
        key: BlockKey,
        value: V,
        size: u64,
        size_of: impl Fn(&V) -> u64,
    ) -> Vec<(BlockKey, V)> {
        if let Some(old) = self.entries.put(key, value) {
            self.bytes -= size_of(&old);
        }
        self.bytes += size;
        let mut evicted = Vec::new();
        while self.bytes > self.limit {
            match self.entries.pop_lru() {
                Some((k, v)) => {
                    self.bytes -= size_of(&v);
                    evicted.push((k, v));
                }
                None => break,
            }
        }
        evicted
    }
}

/// RAM and disk tiers of cached blocks; safe to share between threads.
pub struct BlockCache {
    ram: Mutex<Tier<Bytes>>,
    /// Disk tier: the size of each block file present.
    disk: Option<(PathBuf, Mutex<Tier<u64>>)>,
}

impl BlockCache {
    /// A cache within `limits`; the disk directory is created when given.
    pub fn new(limits: &CacheLimits) -> std::io::Result<BlockCache> {
        let disk = match &limits.disk_dir {
            Some(dir) if limits.disk_bytes > 0 => {
                std::fs::create_dir_all(dir)?;
                Some((dir.clone(), Mutex::new(Tier::new(limits.disk_bytes))))
            }
            _ => None,
        };
        Ok(BlockCache {
            ram: Mutex::new(Tier::new(limits.ram_bytes)),
            disk,
        })
    }

    fn block_path(dir: &Path, key: BlockKey) -> PathBuf {
        dir.join(format!("{:016x}-{}.blk", key.0, key.1))
    }

    /// The block, from RAM or disk (then kept in RAM too).
    pub fn get(&self, key: BlockKey) -> Option<Bytes> {
        if let Some(bytes) = self.ram.lock().unwrap().entries.get(&key) {
            return Some(bytes.clone());
        }
        let (dir, tier) = self.disk.as_ref()?;
        tier.lock().unwrap().entries.get(&key)?;
        // A file deleted behind our back is just a miss.
        let bytes = Bytes::from(std::fs::read(Self::block_path(dir, key)).ok()?);
        self.put_ram(key, bytes.clone());
        Some(bytes)
    }

    fn put_ram(&self, key: BlockKey, bytes: Bytes) {
        let size = bytes.len() as u64;
        self.ram
            .lock()
            .unwrap()
            .insert(key, bytes, size, |b| b.len() as u64);
    }

    /// Keeps `bytes` as block `key`, evicting the least recently used blocks
    /// beyond each tier's limit (evicted disk blocks are deleted). A block that
    /// cannot be written to disk stays in RAM only: the cache is an optimisation.
    pub fn put(&self, key: BlockKey, bytes: Bytes) {
        if let Some((dir, tier)) = &self.disk {
            let path = Self::block_path(dir, key);
            let partial = path.with_extension(format!("partial{}", std::process::id()));
            let written =
                std::fs::write(&partial, &bytes).and_then(|_| std::fs::rename(&partial, &path));
            if written.is_ok() {
                let evicted = tier.lock().unwrap().insert(
                    key,
                    bytes.len() as u64,
                    bytes.len() as u64,
                    |&n| n,
                );
                for (old, _) in evicted {
                    let _ = std::fs::remove_file(Self::block_path(dir, old));
                }
            } else {
                let _ = std::fs::remove_file(&partial);
            }
        }
        self.put_ram(key, bytes);
    }

    /// Bytes held in RAM and on disk.
    pub fn usage(&self) -> (u64, u64) {
        let ram = self.ram.lock().unwrap().bytes;
        let disk = self
            .disk
            .as_ref()
            .map_or(0, |(_, t)| t.lock().unwrap().bytes);
        (ram, disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u8, len: usize) -> Bytes {
        Bytes::from(vec![n; len])
    }

    #[test]
    fn ram_tier_evicts_least_recently_used_within_its_limit() {
        let cache = BlockCache::new(&CacheLimits {
            ram_bytes: 300,
            disk_dir: None,
            disk_bytes: 0,
        })
        .unwrap();
        cache.put((1, 0), block(0, 100));
        cache.put((1, 1), block(1, 100));
        cache.put((1, 2), block(2, 100));
        assert!(cache.get((1, 0)).is_some()); // now most recent
        cache.put((1, 3), block(3, 100)); // evicts block 1, the least recent
        assert_eq!(cache.get((1, 1)), None);
        assert_eq!(cache.get((1, 0)), Some(block(0, 100)));
        assert_eq!(cache.get((1, 3)), Some(block(3, 100)));
        assert_eq!(cache.usage().0, 300);
        // A block larger than the whole limit is not kept.
        cache.put((2, 0), block(9, 400));
        assert_eq!(cache.get((2, 0)), None);
        assert!(cache.usage().0 <= 300);
    }

    #[test]
    fn disk_tier_keeps_files_within_its_limit_and_serves_after_ram_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            ram_bytes: 100,
            disk_dir: Some(dir.path().join("blocks")),
            disk_bytes: 250,
        };
        let cache = BlockCache::new(&limits).unwrap();
        cache.put((7, 0), block(0, 100));
        cache.put((7, 1), block(1, 100)); // RAM holds only this one now
        assert_eq!(cache.usage(), (100, 200));
        // Block 0 left RAM but comes back from disk, unchanged.
        assert_eq!(cache.get((7, 0)), Some(block(0, 100)));
        cache.put((7, 2), block(2, 100)); // disk over 250: block 1 (least recent there) goes
        let files = std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .count();
        assert_eq!(files, 2);
        assert_eq!(cache.usage().1, 200);
        assert!(!BlockCache::block_path(&dir.path().join("blocks"), (7, 1)).exists());
        assert_eq!(cache.get((7, 1)), None);
        assert_eq!(cache.get((7, 0)), Some(block(0, 100)));
    }

    #[test]
    fn a_deleted_disk_block_is_a_miss_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            ram_bytes: 0,
            disk_dir: Some(dir.path().to_path_buf()),
            disk_bytes: 1000,
        };
        let cache = BlockCache::new(&limits).unwrap();
        cache.put((3, 4), block(5, 10));
        assert_eq!(cache.get((3, 4)), Some(block(5, 10)));
        std::fs::remove_file(BlockCache::block_path(dir.path(), (3, 4))).unwrap();
        assert_eq!(cache.get((3, 4)), None);
    }
}
