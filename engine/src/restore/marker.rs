//! The `RESTORING` marker: present (and durable) from before a restore
//! writes anything until after it has finished, so a store left by a
//! crashed or cancelled restore is never opened as if it were complete.
//!
//! [`Db::open`](crate::Db::open) looks only at its presence. A restore
//! reads its contents ([`Marker`]): the source the restore is from and the
//! names of the files the restore makes before its store exists, so that a
//! restore run again removes only those (`docs/format/restore-marker.md`).

use std::path::Path;

use varve_changelog::fs::{EntryKind, FileSystem, write_file_atomic};

use crate::error::{Error, Result};

/// The marker's file name in the store directory. While it exists,
/// [`Db::open`](crate::Db::open) refuses the store with
/// [`Error::RestoreIncomplete`].
///
/// # Examples
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// std::fs::write(tmp.path().join(varve_db::restore::MARKER_FILE), b"")?;
/// let err = varve_db::Db::open(tmp.path(), varve_db::Options::default()).unwrap_err();
/// assert!(matches!(err, varve_db::Error::RestoreIncomplete { .. }));
/// # Ok(()) }
/// ```
pub const MARKER_FILE: &str = "RESTORING";
/// The temporary file the marker is written through (and renamed from).
pub(crate) const MARKER_TEMP_FILE: &str = "RESTORING.tmp";

/// The marker's first eight bytes.
const MAGIC: [u8; 8] = *b"VRVRSTR\x01";
/// The marker format version this build writes and reads.
const VERSION: u16 = 1;
/// Longest source name, in bytes.
pub(crate) const SOURCE_MAX_BYTES: usize = 4096;
/// Longest file name, in bytes.
const NAME_MAX_BYTES: usize = 255;
/// Largest marker file read: anything bigger is not one this build wrote.
const MARKER_MAX_BYTES: u64 = 16 << 20;
/// Magic, version, reserved, source length, name count, checksum.
const FIXED_BYTES: usize = 8 + 2 + 2 + 4 + 4 + 4;

/// What a marker records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The source's name ([`RestoreOptions::source_name`](super::RestoreOptions::source_name)).
    pub(crate) source: String,
    /// The names (in the store directory) of every file the restore makes
    /// before `CURRENT` exists; only these are removed to start over.
    pub(crate) names: Vec<String>,
}

impl Marker {
    /// The marker's bytes (`docs/format/restore-marker.md`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a source name or file name over its
    /// limit.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        if self.source.len() > SOURCE_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a restore's source name is at most {SOURCE_MAX_BYTES} bytes, not {}",
                self.source.len()
            )));
        }
        let mut buf = Vec::with_capacity(FIXED_BYTES + self.source.len());
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        push_len_u32(&mut buf, self.source.len())?;
        buf.extend_from_slice(self.source.as_bytes());
        push_len_u32(&mut buf, self.names.len())?;
        for name in &self.names {
            assert!(
                valid_name(name),
                "bad file name {name:?} in a restore marker"
            );
            let len = u16::try_from(name.len()).map_err(|_| too_long(name))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(name.as_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }

    /// Decodes a marker read from `path`.
    ///
    /// # Errors
    /// [`Error::NotOwned`] naming `path` for bytes that are not a marker
    /// this build wrote (empty, another magic, damaged, a later version).
    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Marker> {
        let refuse = |reason: String| Error::NotOwned {
            path: path.to_owned(),
            reason,
        };
        if bytes.is_empty() {
            return Err(refuse(
                "an empty RESTORING file is not a marker this build wrote (an older build's or another program's)".into(),
            ));
        }
        if bytes.len() < FIXED_BYTES || bytes[..8] != MAGIC {
            return Err(refuse(format!(
                "its {} bytes do not start like a restore marker",
                bytes.len()
            )));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(refuse(
                "the restore marker's checksum does not match".into(),
            ));
        }
        let mut r = Reader { body, at: 8 };
        let version = r.u16().map_err(refuse)?;
        if version != VERSION || r.u16().map_err(refuse)? != 0 {
            return Err(refuse(format!(
                "restore marker version {version}; this build reads version {VERSION}"
            )));
        }
        let source_len = r.u32().map_err(refuse)?;
        let source = r.text(source_len, SOURCE_MAX_BYTES).map_err(refuse)?;
        let count = r.u32().map_err(refuse)?;
        let mut names = Vec::new();
        for _ in 0..count {
            let len = r.u16().map_err(refuse)?;
            let name = r.text(u32::from(len), NAME_MAX_BYTES).map_err(refuse)?;
            if !valid_name(&name) {
                return Err(refuse(format!("the marker names a bad file {name:?}")));
            }
            names.push(name);
        }
        if r.at != body.len() {
            return Err(refuse(format!(
                "{} bytes follow the restore marker's last name",
                body.len() - r.at
            )));
        }
        Ok(Marker { source, names })
    }
}

/// A bounds-checked cursor over a marker's checksummed bytes; an error
/// says what is malformed.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.body.len());
        let Some(end) = end else {
            return Err(format!(
                "the restore marker ends inside a field at byte {}",
                self.at
            ));
        };
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self, len: u32, max: usize) -> Result<String, String> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("a restore marker field of {len} bytes (at most {max})"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| "a restore marker field is not UTF-8".to_owned())
    }
}

fn push_len_u32(buf: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| Error::InvalidArgument(format!("{len} entries in a restore marker")))?;
    buf.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn too_long(name: &str) -> Error {
    Error::InvalidArgument(format!(
        "file name {name:?} is too long for a restore marker"
    ))
}

/// A plain file name: no separator, not `.` or `..`, 1 to 255 bytes.
fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX_BYTES).contains(&name.len())
        && !name.contains('/')
        && !name.contains('\0')
        && name != "."
        && name != ".."
}

/// Whether `dir` holds a restore marker (of any kind or content).
///
/// # Errors
/// [`Error::Io`] if the file system cannot tell.
pub(crate) fn is_restoring(fs: &dyn FileSystem, dir: &Path) -> Result<bool> {
    let path = dir.join(MARKER_FILE);
    let kind = fs
        .entry_kind(&path)
        .map_err(|e| Error::io("stat", &path, e))?;
    Ok(kind.is_some())
}

/// Reads and decodes the marker in `dir`.
///
/// # Errors
/// [`Error::NotOwned`] if it is not a regular file holding a marker this
/// build wrote; I/O errors.
pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Marker> {
    let path = dir.join(MARKER_FILE);
    let refuse = |reason: &str| Error::NotOwned {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    match fs
        .entry_kind(&path)
        .map_err(|e| Error::io("stat", &path, e))?
    {
        Some(EntryKind::File) => {}
        Some(EntryKind::Symlink) => return Err(refuse("the restore marker is a symbolic link")),
        Some(EntryKind::Dir) => return Err(refuse("the restore marker is a directory")),
        _ => return Err(refuse("the restore marker is not a regular file")),
    }
    let file = fs
        .open_file(&path, varve_changelog::fs::OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
    if len > MARKER_MAX_BYTES {
        return Err(refuse("the file is too large to be a restore marker"));
    }
    let len = usize::try_from(len).map_err(|_| refuse("the file is too large"))?;
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    Marker::decode(&bytes, &path)
}

/// Writes `marker` into `dir` (created if missing) atomically and
/// durably: the file, its directory entry, and `dir`'s own entry in its
/// parent.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, marker: &Marker) -> Result<()> {
    let bytes = marker.encode()?;
    // Durably: the target's own entry survives power loss with its marker.
    varve_changelog::fs::create_dir_all_durably(fs, dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(MARKER_FILE);
    write_file_atomic(fs, &path, &bytes).map_err(|e| Error::io("write", &path, e))
}

/// Removes the marker and syncs the directory: the last step of a restore.
pub(crate) fn remove(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    remove_if_present(fs, &dir.join(MARKER_FILE))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))
}

/// Removes `path`; a file already gone is not an error.
pub(crate) fn remove_if_present(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Marker {
        Marker {
            source: "/data/changelog".into(),
            names: vec!["LOCK".into(), "000007.sst".into()],
        }
    }

    fn decode(bytes: &[u8]) -> Result<Marker> {
        Marker::decode(bytes, Path::new("/t/RESTORING"))
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode().unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
        let empty = Marker {
            source: String::new(),
            names: Vec::new(),
        };
        assert_eq!(empty.encode().unwrap().len(), FIXED_BYTES);
        assert_eq!(decode(&empty.encode().unwrap()).unwrap(), empty);
    }

    #[test]
    fn refuses_empty_foreign_and_damaged_markers() {
        let good = sample().encode().unwrap();
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        let mut later = good[..good.len() - 4].to_vec();
        later[8] = 2;
        let crc = crc32fast::hash(&later);
        later.extend_from_slice(&crc.to_le_bytes());
        for bad in [
            &b""[..],
            b"someone else's file",
            &good[..good.len() - 1],
            &flipped,
            &later,
        ] {
            match decode(bad) {
                Err(Error::NotOwned { path, .. }) => assert_eq!(path, Path::new("/t/RESTORING")),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_with_a_fixed_checksum_is_an_error() {
        let good = sample().encode().unwrap();
        for cut in FIXED_BYTES - 4..good.len() - 4 {
            let mut bytes = good[..cut].to_vec();
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            assert!(decode(&bytes).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn refuses_names_that_leave_the_directory() {
        for name in ["..", "a/b", ".", ""] {
            let mut m = sample();
            m.names = vec!["x".into()];
            let mut bytes = m.encode().unwrap();
            bytes.truncate(bytes.len() - 4 - 3);
            let len = u16::try_from(name.len()).unwrap();
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            assert!(decode(&bytes).is_err(), "{name:?} accepted");
        }
    }
}
