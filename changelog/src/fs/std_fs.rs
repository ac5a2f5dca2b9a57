//! [`StdFs`]: the real file system, through `std::fs`.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{DirLock, EntryKind, File, FileSystem, OpenMode, PathKind};

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(fs::File);

impl File for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len_bytes: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len_bytes)) else {
            return Ok(());
        };
        // SAFETY: `sync_file_range` reads and writes no memory of ours,
        // and the descriptor stays open for the call: `self.0` owns it.
        let rc = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.0.set_len(len_bytes)
    }

    #[cfg(target_os = "linux")]
    fn allocate(&self, offset: u64, len_bytes: u64) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len_bytes)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "allocation past the largest file offset",
            ));
        };
        if len == 0 {
            return Ok(true);
        }
        // SAFETY: `fallocate` reads and writes no memory of ours, and the
        // descriptor stays open for the call: `self.0` owns it.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // The file system cannot reserve without writing.
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(false),
            _ => Err(err),
        }
    }
}

#[derive(Debug)]
struct StdLock(fs::File);

impl DirLock for StdLock {}

impl Drop for StdLock {
    /// Unlocks explicitly before the file closes. A lock belongs to the open
    /// file description, which a child process started meanwhile by any
    /// thread shares until it execs: closing this handle alone would leave
    /// the lock held for that moment, and a reopen right after a close
    /// would see `Locked`.
    fn drop(&mut self) {
        if let Err(e) = self.0.unlock() {
            tracing::warn!(error = %e, "could not unlock a directory lock");
        }
    }
}

impl FileSystem for StdFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let mut opts = fs::OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                opts.write(true);
            }
            OpenMode::CreateNew => {
                opts.write(true).create_new(true);
            }
            OpenMode::CreateOrOpen => {
                opts.write(true).create(true);
            }
        }
        Ok(Arc::new(StdFile(opts.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // `Path::parent` of a bare relative name is the empty path.
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        fs::File::open(path)?.sync_all()
    }

    fn kind(&self, path: &Path) -> io::Result<Option<PathKind>> {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Some(PathKind::Dir)),
            Ok(_) => Ok(Some(PathKind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock(file))),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock is held by another handle",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                let kind = meta.file_type();
                Ok(Some(if kind.is_symlink() {
                    EntryKind::Symlink
                } else if kind.is_dir() {
                    EntryKind::Dir
                } else if kind.is_file() {
                    EntryKind::File
                } else {
                    EntryKind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn resolve_links(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        fs::canonicalize(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writeback_hints_leave_the_bytes_and_length_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = StdFs.open_file(&path, OpenMode::CreateNew).unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&data, 0).unwrap();
        // The written range, a range past the end, and an empty range.
        file.start_writeback(0, data.len() as u64).unwrap();
        file.start_writeback(1 << 20, 4096).unwrap();
        file.start_writeback(5, 0).unwrap();
        file.sync_data().unwrap();
        assert_eq!(file.len().unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Offsets no file can have are ignored, not an error.
        file.start_writeback(u64::MAX, 1).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn allocation_grows_the_file_with_zeros_and_writes_keep_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = StdFs.open_file(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        assert!(
            file.allocate(2, 1 << 20).unwrap(),
            "ext4, xfs and tmpfs reserve"
        );
        assert_eq!(file.len().unwrap(), 2 + (1 << 20));
        file.write_all_at(b"body", 4096).unwrap();
        assert_eq!(
            file.len().unwrap(),
            2 + (1 << 20),
            "a write inside keeps the length"
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[4096..4100], b"body");
        assert!(bytes[4..4096].iter().chain(&bytes[4100..]).all(|&b| b == 0));
        // Inside the file already, nothing changes; past any offset, an error.
        assert!(file.allocate(0, 16).unwrap());
        assert_eq!(file.len().unwrap(), 2 + (1 << 20));
        assert!(file.allocate(u64::MAX, 1).is_err());
    }
}
