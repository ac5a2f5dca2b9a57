//! [`MemFs`]: an in-memory file system that simulates power loss and I/O
//! faults, for crash and fault-injection tests.

use super::PathKind;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DirLock, File, FileSystem, OpenMode};
use crate::testing::rng::Rng;

/// The directories that always exist.
const ROOT_DIRS: [&str; 3] = ["", ".", "/"];

/// The largest file `MemFs` accepts: offsets and lengths past it fail with
/// [`io::ErrorKind::FileTooLarge`] instead of exhausting memory.
const MAX_FILE_BYTES: usize = 1 << 34;

/// What survives [`MemFs::crash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss with an adversarial disk, driven by the crash's seed:
    ///
    /// - every unsynced write is independently kept, dropped, or torn (only
    ///   a random prefix of its bytes reaches the disk), and every unsynced
    ///   length change is independently kept or dropped, applied in order
    ///   on top of the durable bytes;
    /// - every directory independently either keeps all its current entries
    ///   or reverts to its durable entries, subdirectories included: a
    ///   directory created since its parent's last sync vanishes, with
    ///   everything in it, when the parent reverts. (So an unsynced rename
    ///   between two directories may leave the file under both names, or
    ///   neither.)
    Random,
    /// Power loss where nothing unsynced reaches the disk: only durable
    /// bytes and durable directory entries survive.
    DropAll,
    /// A process kill: the operating system keeps its page cache, so every
    /// byte written and every name change survives.
    KeepAll,
}

/// How long an injected fault lasts; see [`MemFs::fail_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Only the chosen call fails.
    Once,
    /// The chosen call and every later one fail, until
    /// [`MemFs::clear_faults`] or [`MemFs::crash`].
    Persistent,
}

/// An in-memory file system for crash and fault tests.
///
/// Clones share the same state, so a test can keep a clone to crash or
/// inspect the file system it handed to the code under test.
///
/// # Model
///
/// It behaves like a POSIX file system with a page cache:
///
/// - **File data.** Every file is an inode with the bytes reads see
///   (*current*) and the bytes that survive power loss (*durable*), plus the
///   list of writes and length changes made since the last
///   [`File::sync_data`]. `sync_data` makes the current bytes durable.
/// - **Names.** Every directory holds its file entries twice: the current
///   entries (changed at once by create, rename, remove and hard link) and
///   the durable entries, which [`FileSystem::sync_dir`] replaces with the
///   current ones.
/// - **Directories themselves** are entries of their parent like files:
///   a directory made by [`FileSystem::create_dir_all`] survives power loss
///   only once its parent has been synced with [`FileSystem::sync_dir`]
///   (each directory of a `create_dir_all` chain needs its own parent
///   synced). Until then a crash that reverts the parent's entries removes
///   it and everything in it. Removing a directory is durable at once, and
///   so is renaming one (the moved directory keeps whether its own entry
///   is durable yet), to keep the model small.
/// - **Handles** refer to the inode, not the name: a removed or
///   renamed-over file stays readable and writable through a handle opened
///   before, as on Unix.
///
/// [`MemFs::crash`] simulates power loss (or, with [`CrashMode::KeepAll`], a
/// process kill); [`MemFs::fail_after`], [`MemFs::crash_at`] and
/// [`MemFs::fail_syncs`] inject I/O errors; [`MemFs::flip_bit`],
/// [`MemFs::write_all`] and [`MemFs::truncate`] damage files on "disk".
///
/// # Paths
///
/// Paths are taken literally, without resolving `..` or symbolic links; they
/// are only normalised the way [`Path::components`] does (repeated and
/// trailing separators and inner `.` components are ignored). The
/// directories `""`, `"."` and `"/"` always exist, so relative paths such as
/// `"db/wal"` work after `create_dir_all("db")`.
#[derive(Clone, Debug)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemFs {
    /// A new file system holding only the root directories `""`, `"."` and
    /// `"/"`.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    /// Simulates a crash. Afterwards every handle opened before fails every
    /// call, every lock is released, injected faults are cleared (see
    /// [`MemFs::clear_faults`]), and the files and names are those that
    /// survive according to `mode`; in [`CrashMode::Random`], `seed` decides
    /// what survives, and the same seed after the same history gives the
    /// same result. Everything that survives is durable.
    pub fn crash(&self, mode: CrashMode, seed: u64) {
        self.state.lock().crash(mode, seed);
    }

    /// Makes a future call fail with an [`io::ErrorKind::Other`] error
    /// ("injected fault at call N", N as counted by [`MemFs::op_count`]):
    /// the call `n` calls from now, so `n` calls succeed first and
    /// `fail_after(0, ..)` fails the very next call. With
    /// [`FaultKind::Persistent`] every later call fails too.
    ///
    /// Every method of [`FileSystem`] and [`File`] counts as one call
    /// (including reads, and each `read_at` that a default `read_exact_at`
    /// makes). A failed call has no effect. Replaces any earlier
    /// `fail_after` or `crash_at`.
    pub fn fail_after(&self, n: u64, kind: FaultKind) {
        self.state.lock().arm_fault(n, kind);
    }

    /// Arms a crash point: the call `n` calls from now and every later call
    /// fail, as with [`FaultKind::Persistent`], so the code under test stops
    /// there as if the machine died. The test then calls [`MemFs::crash`].
    pub fn crash_at(&self, n: u64) {
        self.fail_after(n, FaultKind::Persistent);
    }

    /// While `on`, every [`File::sync_data`] and [`FileSystem::sync_dir`]
    /// fails with an I/O error (like `EIO`) and has no effect.
    pub fn fail_syncs(&self, on: bool) {
        self.state.lock().fail_syncs = on;
    }

    /// Removes every injected fault: [`MemFs::fail_after`],
    /// [`MemFs::crash_at`] and [`MemFs::fail_syncs`].
    pub fn clear_faults(&self) {
        let mut state = self.state.lock();
        state.fault = None;
        state.fail_syncs = false;
    }

    /// How many [`FileSystem`] and [`File`] calls have been made since the
    /// file system was created (including failed ones). Run a workload once
    /// and take the difference to learn how many crash points it has.
    #[must_use]
    pub fn op_count(&self) -> u64 {
        self.state.lock().calls
    }

    /// Reads the whole current content of the file at `path`. Not counted
    /// as a call and never fails by injection.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if there is no such file.
    pub fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let id = state.file_at(path)?;
        Ok(state.inode(id)?.current.clone())
    }

    /// Replaces the content of the file at `path` with `data`, durably,
    /// creating the file (with a durable name) if it is missing. Models
    /// damage on disk: not counted as a call, never fails by injection, and
    /// forgets the file's unsynced writes.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if the parent directory is missing.
    pub fn write_all(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.file_at_or_create_durably(path)?;
        state.inode_mut(id)?.replace_durably(data);
        Ok(())
    }

    /// Creates the directory `path` and any missing parents durably, as if
    /// each parent had been synced: a directory that is already on disk
    /// when the test begins. Not counted as a call and never fails by
    /// injection.
    ///
    /// # Errors
    /// [`io::ErrorKind::AlreadyExists`] or [`io::ErrorKind::NotADirectory`]
    /// if a file is in the way.
    pub fn create_dir_durably(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.create_dir_all(path)?;
        let full = normalize(path);
        for ancestor in full.ancestors() {
            if let Some(dir) = state.dirs.get_mut(ancestor) {
                dir.entry_durable = true;
            }
        }
        Ok(())
    }

    /// Flips bit `bit` (0 = least significant) of byte `byte_offset` of the
    /// file at `path`, in both its current and its durable bytes (where
    /// they are long enough). Models damage on disk: not counted as a call
    /// and never fails by injection.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if there is no such file,
    /// [`io::ErrorKind::InvalidInput`] if `bit` is not below 8 or the byte
    /// is past the end of the file.
    pub fn flip_bit(&self, path: &Path, byte_offset: u64, bit: u8) -> io::Result<()> {
        if bit >= 8 {
            return Err(invalid_input("bit index must be below 8"));
        }
        let mut state = self.state.lock();
        let id = state.file_at(path)?;
        let offset = usize::try_from(byte_offset)
            .map_err(|_| invalid_input("byte offset is past the end of the file"))?;
        state.inode_mut(id)?.flip_bit(offset, bit)
    }

    /// Cuts the file at `path` to at most `len_bytes`, in both its current
    /// and its durable bytes. Models damage on disk: not counted as a call
    /// and never fails by injection.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if there is no such file.
    pub fn truncate(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.file_at(path)?;
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        state.inode_mut(id)?.truncate_durably(len);
        Ok(())
    }
}

impl FileSystem for MemFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        let id = state.open(path, mode)?;
        state.inode_mut(id)?.open_handles += 1;
        Ok(Arc::new(MemFile {
            fs: self.clone(),
            inode: id,
            generation: state.generation,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.remove_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        state.hard_link(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Sync)?;
        state.sync_dir(path)
    }

    fn kind(&self, path: &Path) -> io::Result<Option<PathKind>> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        Ok(state.lookup(path).map(|node| match node {
            Node::Dir => PathKind::Dir,
            _ => PathKind::File,
        }))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut state = self.state.lock();
        state.begin_call(CallKind::Plain)?;
        let path = normalize(path);
        if state.locks.contains_key(&path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("lock {} is held by another handle", path.display()),
            ));
        }
        state.open(&path, OpenMode::CreateOrOpen)?;
        let token = state.next_lock_token;
        state.next_lock_token += 1;
        state.locks.insert(path.clone(), token);
        Ok(Box::new(MemLock {
            fs: self.clone(),
            path,
            token,
        }))
    }
}

/// An open file of a [`MemFs`].
struct MemFile {
    fs: MemFs,
    inode: InodeId,
    /// The crash generation the handle was opened in; after a crash the
    /// handle is dead.
    generation: u64,
    writable: bool,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile")
            .field("inode", &self.inode)
            .field("generation", &self.generation)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

impl MemFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file was opened read-only",
            ))
        }
    }
}

impl File for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.fs.state.lock();
        let inode = state.handle_inode(self, CallKind::Plain)?;
        Ok(inode.read_at(buf, offset))
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        let inode = state.handle_inode(self, CallKind::Plain)?;
        self.check_writable()?;
        let start = checked_file_offset(offset, buf.len())?;
        inode.write(start, buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        state.handle_inode(self, CallKind::Sync)?.sync();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.fs.state.lock();
        let inode = state.handle_inode(self, CallKind::Plain)?;
        Ok(inode.current.len() as u64)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        let inode = state.handle_inode(self, CallKind::Plain)?;
        self.check_writable()?;
        let len = checked_file_offset(len_bytes, 0)?;
        inode.set_len(len);
        Ok(())
    }

    /// Reserves nothing: an in-memory file has no blocks to reserve, and
    /// growing it here would copy the reservation at every sync of the
    /// crash model. The log then preallocates with zeros or not at all
    /// (`LogOptions::preallocate_with_zeros`).
    fn allocate(&self, offset: u64, len_bytes: u64) -> io::Result<bool> {
        let _ = (offset, len_bytes);
        let mut state = self.fs.state.lock();
        state.handle_inode(self, CallKind::Plain)?;
        self.check_writable()?;
        Ok(false)
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut state = self.fs.state.lock();
        if state.generation != self.generation {
            return;
        }
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
        }
        state.forget_if_orphaned(self.inode);
    }
}

/// A held [`MemFs`] lock; dropping it releases the lock.
struct MemLock {
    fs: MemFs,
    path: PathBuf,
    /// Tells this holder apart from a later holder of the same path (after
    /// a crash released this one).
    token: u64,
}

impl fmt::Debug for MemLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemLock")
            .field("path", &self.path)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut state = self.fs.state.lock();
        if state.locks.get(&self.path) == Some(&self.token) {
            state.locks.remove(&self.path);
        }
    }
}

type InodeId = u64;

/// Everything a [`MemFs`] holds, behind one mutex.
#[derive(Debug)]
struct State {
    /// Every inode that a name (current or durable) or an open handle
    /// refers to. A `BTreeMap` so crashes visit inodes in a fixed order.
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Every directory, by normalised path.
    dirs: BTreeMap<PathBuf, Dir>,
    /// Held locks: path to the token of the holder.
    locks: BTreeMap<PathBuf, u64>,
    next_lock_token: u64,
    /// Bumped by every crash; handles from older generations are dead.
    generation: u64,
    /// Calls made so far; the number of the next call.
    calls: u64,
    fault: Option<Fault>,
    fail_syncs: bool,
}

/// The file entries of one directory. Subdirectories are not entries: they
/// are found from the paths in [`State::dirs`]; each records instead
/// whether its own entry in its parent is durable.
#[derive(Clone, Debug, Default)]
struct Dir {
    current: BTreeMap<String, InodeId>,
    durable: BTreeMap<String, InodeId>,
    /// Whether this directory's entry in its parent survives power loss:
    /// false from its creation until the parent is synced.
    entry_durable: bool,
}

/// A file's bytes, as reads see them and as they are on disk.
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first: what turns `durable` into
    /// `current`.
    pending: Vec<PendingOp>,
    open_handles: usize,
}

impl fmt::Debug for Inode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inode")
            .field("current_len", &self.current.len())
            .field("durable_len", &self.durable.len())
            .field("pending_ops", &self.pending.len())
            .field("open_handles", &self.open_handles)
            .finish()
    }
}

/// An unsynced change to a file.
#[derive(Debug)]
enum PendingOp {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen { len: usize },
}

#[derive(Clone, Copy, Debug)]
struct Fault {
    /// The number of the first call that fails.
    first_call: u64,
    kind: FaultKind,
}

impl Fault {
    fn fires_at(self, call: u64) -> bool {
        match self.kind {
            FaultKind::Once => call == self.first_call,
            FaultKind::Persistent => call >= self.first_call,
        }
    }
}

/// Whether a call is subject to [`MemFs::fail_syncs`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Plain,
    Sync,
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(InodeId),
}

/// A path split into its directory and its name within it.
struct Location {
    full: PathBuf,
    parent: PathBuf,
    name: String,
}

impl State {
    fn new() -> Self {
        let dirs = ROOT_DIRS
            .iter()
            .map(|root| {
                let dir = Dir {
                    entry_durable: true,
                    ..Dir::default()
                };
                (PathBuf::from(root), dir)
            })
            .collect();
        Self {
            inodes: BTreeMap::new(),
            next_inode: 0,
            dirs,
            locks: BTreeMap::new(),
            next_lock_token: 0,
            generation: 0,
            calls: 0,
            fault: None,
            fail_syncs: false,
        }
    }

    // --- Call accounting and fault injection ---

    fn arm_fault(&mut self, n: u64, kind: FaultKind) {
        self.fault = Some(Fault {
            first_call: self.calls.saturating_add(n),
            kind,
        });
    }

    /// Counts a call and fails it if a fault is armed for it.
    fn begin_call(&mut self, kind: CallKind) -> io::Result<()> {
        let call = self.calls;
        self.calls += 1;
        if self.fault.is_some_and(|fault| fault.fires_at(call)) {
            return Err(io::Error::other(format!("injected fault at call {call}")));
        }
        if kind == CallKind::Sync && self.fail_syncs {
            return Err(io::Error::other("injected I/O error (EIO) on sync"));
        }
        Ok(())
    }

    /// Counts a call on a file handle and returns the handle's inode.
    fn handle_inode(&mut self, handle: &MemFile, kind: CallKind) -> io::Result<&mut Inode> {
        self.begin_call(kind)?;
        if handle.generation != self.generation {
            return Err(io::Error::other(
                "file handle is dead: the file system crashed since it was opened",
            ));
        }
        self.inode_mut(handle.inode)
    }

    // --- Lookups ---

    fn inode(&self, id: InodeId) -> io::Result<&Inode> {
        self.inodes.get(&id).ok_or_else(missing_inode)
    }

    fn inode_mut(&mut self, id: InodeId) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&id).ok_or_else(missing_inode)
    }

    /// What `path` currently names, if anything.
    fn lookup(&self, path: &Path) -> Option<Node> {
        if self.dirs.contains_key(&normalize(path)) {
            return Some(Node::Dir);
        }
        let loc = locate(path).ok()?;
        let id = self.dirs.get(&loc.parent)?.current.get(&loc.name)?;
        Some(Node::File(*id))
    }

    /// The inode of the file currently at `path`.
    fn file_at(&self, path: &Path) -> io::Result<InodeId> {
        match self.lookup(path) {
            Some(Node::File(id)) => Ok(id),
            Some(Node::Dir) => Err(path_error(io::ErrorKind::IsADirectory, path)),
            None => Err(path_error(io::ErrorKind::NotFound, path)),
        }
    }

    /// The directory at `path`.
    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        match self.dirs.get(path) {
            Some(dir) => Ok(dir),
            None => Err(self.missing_dir_error(path)),
        }
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        let error = self.missing_dir_error(path);
        self.dirs.get_mut(path).ok_or(error)
    }

    fn missing_dir_error(&self, path: &Path) -> io::Error {
        match self.lookup(path) {
            Some(Node::File(_)) => path_error(io::ErrorKind::NotADirectory, path),
            _ => path_error(io::ErrorKind::NotFound, path),
        }
    }

    /// The names of the directories directly inside `path`.
    fn child_dir_names(&self, path: &Path) -> impl Iterator<Item = String> {
        self.dirs
            .keys()
            .filter(move |dir| !is_root(dir) && dir.parent() == Some(path))
            .filter_map(|dir| Some(dir.file_name()?.to_string_lossy().into_owned()))
    }

    // --- Files ---

    fn create_inode(&mut self) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::new());
        id
    }

    /// Resolves (or creates) the file at `path` for `mode`.
    fn open(&mut self, path: &Path, mode: OpenMode) -> io::Result<InodeId> {
        let loc = locate(path)?;
        if self.dirs.contains_key(&loc.full) {
            return Err(path_error(io::ErrorKind::IsADirectory, path));
        }
        let existing = self.dir(&loc.parent)?.current.get(&loc.name).copied();
        match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => Err(path_error(io::ErrorKind::AlreadyExists, path)),
            (Some(id), _) => Ok(id),
            (None, OpenMode::Read | OpenMode::ReadWrite) => {
                Err(path_error(io::ErrorKind::NotFound, path))
            }
            (None, OpenMode::CreateNew | OpenMode::CreateOrOpen) => {
                let id = self.create_inode();
                self.dir_mut(&loc.parent)?.current.insert(loc.name, id);
                Ok(id)
            }
        }
    }

    /// The file at `path`, created with a durable name if missing.
    fn file_at_or_create_durably(&mut self, path: &Path) -> io::Result<InodeId> {
        if let Some(Node::File(id)) = self.lookup(path) {
            return Ok(id);
        }
        let id = self.open(path, OpenMode::CreateNew)?;
        let loc = locate(path)?;
        self.dir_mut(&loc.parent)?.durable.insert(loc.name, id);
        Ok(id)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        let loc = locate(path)?;
        if self.dirs.contains_key(&loc.full) {
            return Err(path_error(io::ErrorKind::IsADirectory, path));
        }
        let id = self
            .dir_mut(&loc.parent)?
            .current
            .remove(&loc.name)
            .ok_or_else(|| path_error(io::ErrorKind::NotFound, path))?;
        self.forget_if_orphaned(id);
        Ok(())
    }

    fn hard_link(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let id = match self.lookup(from) {
            Some(Node::File(id)) => id,
            Some(Node::Dir) => return Err(path_error(io::ErrorKind::PermissionDenied, from)),
            None => return Err(path_error(io::ErrorKind::NotFound, from)),
        };
        if self.lookup(to).is_some() {
            return Err(path_error(io::ErrorKind::AlreadyExists, to));
        }
        let loc = locate(to)?;
        self.dir_mut(&loc.parent)?.current.insert(loc.name, id);
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        match self.lookup(from) {
            Some(Node::File(id)) => self.rename_file(id, from, to),
            Some(Node::Dir) => self.rename_dir(from, to),
            None => Err(path_error(io::ErrorKind::NotFound, from)),
        }
    }

    fn rename_file(&mut self, id: InodeId, from: &Path, to: &Path) -> io::Result<()> {
        let source = locate(from)?;
        let target = locate(to)?;
        if self.dirs.contains_key(&target.full) {
            return Err(path_error(io::ErrorKind::IsADirectory, to));
        }
        self.dir(&target.parent)?;
        if source.full == target.full {
            return Ok(());
        }
        self.dir_mut(&source.parent)?.current.remove(&source.name);
        let replaced = self
            .dir_mut(&target.parent)?
            .current
            .insert(target.name, id);
        if let Some(replaced) = replaced {
            self.forget_if_orphaned(replaced);
        }
        Ok(())
    }

    // --- Directories ---

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let full = normalize(path);
        let mut missing = Vec::new();
        for ancestor in full.ancestors() {
            if self.dirs.contains_key(ancestor) {
                break;
            }
            if self.lookup(ancestor).is_some() {
                let kind = if ancestor == full {
                    io::ErrorKind::AlreadyExists
                } else {
                    io::ErrorKind::NotADirectory
                };
                return Err(path_error(kind, ancestor));
            }
            missing.push(ancestor.to_path_buf());
        }
        for dir in missing.into_iter().rev() {
            self.dirs.insert(dir, Dir::default());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let full = normalize(path);
        let mut names: Vec<String> = self.dir(&full)?.current.keys().cloned().collect();
        names.extend(self.child_dir_names(&full));
        names.sort();
        Ok(names)
    }

    fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        let full = normalize(path);
        if is_root(&full) {
            return Err(path_error(io::ErrorKind::InvalidInput, path));
        }
        let is_empty = self.dir(&full)?.current.is_empty();
        if !is_empty || self.child_dir_names(&full).next().is_some() {
            return Err(path_error(io::ErrorKind::DirectoryNotEmpty, path));
        }
        if let Some(removed) = self.dirs.remove(&full) {
            for id in removed.durable.into_values() {
                self.forget_if_orphaned(id);
            }
        }
        Ok(())
    }

    /// Renames a directory and everything under it, durably at once.
    fn rename_dir(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let source = normalize(from);
        let target = locate(to)?;
        if target.full == source {
            return Ok(());
        }
        if is_root(&source) || target.full.starts_with(&source) {
            return Err(path_error(io::ErrorKind::InvalidInput, to));
        }
        match self.lookup(&target.full) {
            Some(Node::File(_)) => return Err(path_error(io::ErrorKind::NotADirectory, to)),
            Some(Node::Dir) => self.remove_dir(&target.full)?,
            None => {
                self.dir(&target.parent)?;
            }
        }
        let moved: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|dir| dir.starts_with(&source))
            .cloned()
            .collect();
        for old_path in moved {
            if let (Some(dir), Ok(rest)) =
                (self.dirs.remove(&old_path), old_path.strip_prefix(&source))
            {
                self.dirs.insert(target.full.join(rest), dir);
            }
        }
        Ok(())
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let full = normalize(path);
        let dir = self.dir_mut(&full)?;
        let old_durable = std::mem::replace(&mut dir.durable, dir.current.clone());
        for (child_path, child) in &mut self.dirs {
            if !is_root(child_path) && child_path.parent() == Some(full.as_path()) {
                child.entry_durable = true;
            }
        }
        for id in old_durable.into_values() {
            self.forget_if_orphaned(id);
        }
        Ok(())
    }

    // --- Inode lifetime ---

    /// Whether any current or durable name refers to inode `id`.
    fn is_linked(&self, id: InodeId) -> bool {
        self.dirs.values().any(|dir| {
            dir.current.values().any(|&entry| entry == id)
                || dir.durable.values().any(|&entry| entry == id)
        })
    }

    /// Frees inode `id` if no name and no open handle refers to it.
    fn forget_if_orphaned(&mut self, id: InodeId) {
        let is_open = self
            .inodes
            .get(&id)
            .is_some_and(|inode| inode.open_handles > 0);
        if !is_open && !self.is_linked(id) {
            self.inodes.remove(&id);
        }
    }

    // --- Crashes ---

    fn crash(&mut self, mode: CrashMode, seed: u64) {
        let mut rng = Rng::new(seed);
        self.generation += 1;
        self.locks.clear();
        self.fault = None;
        self.fail_syncs = false;
        let mut kept_current = BTreeMap::new();
        for (path, dir) in &mut self.dirs {
            kept_current.insert(path.clone(), dir.settle(mode, &mut rng));
        }
        self.drop_unsynced_dirs(&kept_current);
        self.drop_entries_shadowed_by_dirs();
        self.drop_unlinked_inodes();
        for inode in self.inodes.values_mut() {
            inode.settle(mode, &mut rng);
        }
    }

    /// Removes every directory whose entry was not durable and whose parent
    /// reverted to its durable entries, with everything under it; marks
    /// every surviving directory's entry durable.
    fn drop_unsynced_dirs(&mut self, kept_current: &BTreeMap<PathBuf, bool>) {
        let lost: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|(path, dir)| {
                !dir.entry_durable
                    && !is_root(path)
                    && path
                        .parent()
                        .is_some_and(|parent| kept_current.get(parent) == Some(&false))
            })
            .map(|(path, _)| path.clone())
            .collect();
        self.dirs
            .retain(|path, _| !lost.iter().any(|gone| path.starts_with(gone)));
        for dir in self.dirs.values_mut() {
            dir.entry_durable = true;
        }
    }

    /// Removes file entries whose name is now taken by a directory (a name
    /// that was durably a file, then unsynced-removed and made a directory).
    fn drop_entries_shadowed_by_dirs(&mut self) {
        let dir_paths: Vec<PathBuf> = self.dirs.keys().cloned().collect();
        for dir_path in dir_paths {
            let (Some(parent), Some(name)) = (dir_path.parent(), dir_path.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            if let Some(parent_dir) = self.dirs.get_mut(parent) {
                parent_dir.current.remove(name.as_ref());
                parent_dir.durable.remove(name.as_ref());
            }
        }
    }

    /// Forgets every inode no name refers to; after a crash no handle does.
    fn drop_unlinked_inodes(&mut self) {
        let mut linked = std::collections::BTreeSet::new();
        for dir in self.dirs.values() {
            linked.extend(dir.current.values().copied());
            linked.extend(dir.durable.values().copied());
        }
        self.inodes.retain(|id, _| linked.contains(id));
        for inode in self.inodes.values_mut() {
            inode.open_handles = 0;
        }
    }
}

impl Dir {
    /// Decides which entries survive a crash; afterwards they are durable.
    /// Returns whether the current entries were kept (rather than the
    /// durable ones restored).
    fn settle(&mut self, mode: CrashMode, rng: &mut Rng) -> bool {
        let keep_current = match mode {
            CrashMode::KeepAll => true,
            CrashMode::DropAll => false,
            CrashMode::Random => rng.coin(),
        };
        if keep_current {
            self.durable.clone_from(&self.current);
        } else {
            self.current.clone_from(&self.durable);
        }
        keep_current
    }
}

impl Inode {
    fn new() -> Self {
        Self {
            current: Vec::new(),
            durable: Vec::new(),
            pending: Vec::new(),
            open_handles: 0,
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> usize {
        let Some(available) = usize::try_from(offset)
            .ok()
            .and_then(|start| self.current.get(start..))
        else {
            return 0;
        };
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        n
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        apply_write(&mut self.current, offset, bytes);
        self.pending.push(PendingOp::Write {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    fn set_len(&mut self, len: usize) {
        self.current.resize(len, 0);
        self.pending.push(PendingOp::SetLen { len });
    }

    fn sync(&mut self) {
        self.durable.clone_from(&self.current);
        self.pending.clear();
    }

    fn replace_durably(&mut self, data: &[u8]) {
        self.current = data.to_vec();
        self.sync();
    }

    fn truncate_durably(&mut self, len: usize) {
        self.current.truncate(len);
        self.durable.truncate(len);
    }

    fn flip_bit(&mut self, offset: usize, bit: u8) -> io::Result<()> {
        let mask = 1u8 << bit;
        let in_current = self.current.get_mut(offset).map(|byte| *byte ^= mask);
        let in_durable = self.durable.get_mut(offset).map(|byte| *byte ^= mask);
        if in_current.is_none() && in_durable.is_none() {
            return Err(invalid_input("byte offset is past the end of the file"));
        }
        Ok(())
    }

    /// Decides which bytes survive a crash; afterwards they are durable.
    fn settle(&mut self, mode: CrashMode, rng: &mut Rng) {
        match mode {
            CrashMode::KeepAll => {}
            CrashMode::DropAll => self.current.clone_from(&self.durable),
            CrashMode::Random => self.current = self.replay_randomly(rng),
        }
        self.sync();
    }

    /// The durable bytes with each pending change applied, dropped or (for
    /// writes) torn, as `rng` decides.
    fn replay_randomly(&self, rng: &mut Rng) -> Vec<u8> {
        let mut content = self.durable.clone();
        for op in &self.pending {
            match op {
                PendingOp::Write { offset, bytes } => {
                    let kept_len = match rng.index(3) {
                        0 => bytes.len(),
                        1 => 0,
                        _ => rng.index(bytes.len()),
                    };
                    apply_write(&mut content, *offset, &bytes[..kept_len]);
                }
                PendingOp::SetLen { len } => {
                    if rng.coin() {
                        content.resize(*len, 0);
                    }
                }
            }
        }
        content
    }
}

/// Writes `bytes` into `content` at `offset`, zero-filling any gap.
fn apply_write(content: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = offset + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset..end].copy_from_slice(bytes);
}

// --- Paths and errors ---

fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

fn is_root(path: &Path) -> bool {
    ROOT_DIRS.iter().any(|root| path == Path::new(root))
}

/// Splits `path` into its directory and name.
fn locate(path: &Path) -> io::Result<Location> {
    let full = normalize(path);
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        return Err(path_error(io::ErrorKind::InvalidInput, path));
    };
    Ok(Location {
        parent: parent.to_path_buf(),
        name: name.to_string_lossy().into_owned(),
        full,
    })
}

/// Checks that `len` bytes at `offset` fit in a file; returns the offset.
fn checked_file_offset(offset: u64, len: usize) -> io::Result<usize> {
    usize::try_from(offset)
        .ok()
        .filter(|start| {
            start
                .checked_add(len)
                .is_some_and(|end| end <= MAX_FILE_BYTES)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("MemFs files are limited to {MAX_FILE_BYTES} bytes"),
            )
        })
}

fn path_error(kind: io::ErrorKind, path: &Path) -> io::Error {
    io::Error::new(kind, format!("{kind}: {}", path.display()))
}

fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}

fn missing_inode() -> io::Error {
    io::Error::other("MemFs inode vanished (bug in MemFs)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{read_file, write_file_atomic};

    fn path(p: &str) -> &Path {
        Path::new(p)
    }

    /// A file system with directory `db` (durable: its parent is synced).
    fn fs_with_db() -> MemFs {
        let fs = MemFs::new();
        fs.create_dir_all(path("db")).unwrap();
        fs.sync_dir(path("")).unwrap();
        fs
    }

    /// Creates `db/f`, durably names it, and returns its handle.
    fn durable_empty_file(fs: &MemFs) -> Arc<dyn File> {
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(path("db")).unwrap();
        file
    }

    fn is_injected(error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::Other && error.to_string().starts_with("injected fault")
    }

    #[test]
    fn write_then_read() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.write_all_at(b"world", 7).unwrap();
        assert_eq!(file.len().unwrap(), 12);
        let mut buf = [0u8; 12];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello\0\0world");
        assert_eq!(file.read_at(&mut buf, 12).unwrap(), 0);
        file.set_len(3).unwrap();
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"hel");
        assert_eq!(read_file(&fs, path("db/f")).unwrap(), b"hel");
    }

    #[test]
    fn open_modes_and_errors() {
        let fs = fs_with_db();
        let kind = |r: io::Result<Arc<dyn File>>| r.unwrap_err().kind();
        assert_eq!(
            kind(fs.open_file(path("db/f"), OpenMode::Read)),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(fs.open_file(path("nodir/f"), OpenMode::CreateNew)),
            io::ErrorKind::NotFound
        );
        fs.open_file(path("db/f"), OpenMode::CreateOrOpen).unwrap();
        assert_eq!(
            kind(fs.open_file(path("db/f"), OpenMode::CreateNew)),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(fs.open_file(path("db"), OpenMode::Read)),
            io::ErrorKind::IsADirectory
        );
        let reader = fs.open_file(path("db/f"), OpenMode::Read).unwrap();
        assert_eq!(
            reader.write_all_at(b"x", 0).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            reader.set_len(1).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn directories_list_and_kind() {
        let fs = fs_with_db();
        fs.create_dir_all(path("db/sub/deeper")).unwrap();
        fs.open_file(path("db/b"), OpenMode::CreateNew).unwrap();
        fs.open_file(path("db/a"), OpenMode::CreateNew).unwrap();
        assert_eq!(fs.list_dir(path("db")).unwrap(), ["a", "b", "sub"]);
        assert_eq!(fs.list_dir(path("")).unwrap(), ["db"]);
        assert_eq!(fs.kind(path("db/sub")).unwrap(), Some(PathKind::Dir));
        assert_eq!(fs.kind(path("db/a")).unwrap(), Some(PathKind::File));
        assert_eq!(fs.kind(path("db/zzz")).unwrap(), None);
        for root in ["", ".", "/"] {
            assert_eq!(
                fs.kind(path(root)).unwrap(),
                Some(PathKind::Dir),
                "{root:?}"
            );
        }
        assert_eq!(
            fs.list_dir(path("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.remove_dir(path("db/sub")).unwrap_err().kind(),
            io::ErrorKind::DirectoryNotEmpty
        );
        fs.remove_dir(path("db/sub/deeper")).unwrap();
        fs.remove_dir(path("db/sub")).unwrap();
        assert_eq!(fs.kind(path("db/sub")).unwrap(), None);
        assert_eq!(
            fs.remove_file(path("db/zzz")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn rename_dir_moves_its_subtree_durably() {
        let fs = fs_with_db();
        fs.create_dir_all(path("db/ckpt.tmp/sub")).unwrap();
        fs.sync_dir(path("db/ckpt.tmp")).unwrap();
        fs.sync_dir(path("db")).unwrap();
        write_file_atomic(&fs, path("db/ckpt.tmp/sub/x"), b"x").unwrap();
        fs.rename(path("db/ckpt.tmp"), path("db/ckpt")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.list_dir(path("db")).unwrap(), ["ckpt"]);
        assert_eq!(fs.read_all(path("db/ckpt/sub/x")).unwrap(), b"x");
    }

    #[test]
    fn unsynced_mkdir_is_lost_on_drop_all_with_what_it_holds() {
        let fs = fs_with_db();
        fs.create_dir_all(path("db/log/deeper")).unwrap();
        write_file_atomic(&fs, path("db/log/meta"), b"m").unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("db/log")).unwrap(), None);
        assert_eq!(fs.kind(path("db/log/deeper")).unwrap(), None);
        assert_eq!(fs.list_dir(path("db")).unwrap(), Vec::<String>::new());
        assert_eq!(fs.kind(path("db")).unwrap(), Some(PathKind::Dir));
    }

    #[test]
    fn mkdir_survives_drop_all_once_its_parent_is_synced() {
        let fs = fs_with_db();
        fs.create_dir_all(path("db/a/b")).unwrap();
        fs.sync_dir(path("db")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        // `a` is durable; `b`, whose parent `a` was never synced, is not.
        assert_eq!(fs.kind(path("db/a")).unwrap(), Some(PathKind::Dir));
        assert_eq!(fs.kind(path("db/a/b")).unwrap(), None);
        fs.create_dir_all(path("db/a/b")).unwrap();
        fs.sync_dir(path("db/a")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("db/a/b")).unwrap(), Some(PathKind::Dir));
    }

    #[test]
    fn unsynced_mkdir_survives_keep_all_and_random_decides_per_parent() {
        let fs = fs_with_db();
        fs.create_dir_all(path("db/sub")).unwrap();
        fs.crash(CrashMode::KeepAll, 0);
        assert_eq!(fs.kind(path("db/sub")).unwrap(), Some(PathKind::Dir));
        // After any crash what survived is durable.
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("db/sub")).unwrap(), Some(PathKind::Dir));
        let (mut kept, mut lost) = (0, 0);
        for seed in 0..32 {
            let fs = fs_with_db();
            fs.create_dir_all(path("db/new")).unwrap();
            fs.crash(CrashMode::Random, seed);
            match fs.kind(path("db/new")).unwrap() {
                Some(PathKind::Dir) => kept += 1,
                None => lost += 1,
                Some(PathKind::File) => panic!("a directory became a file"),
            }
        }
        assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    }

    #[test]
    fn create_dir_durably_survives_drop_all_and_is_not_counted() {
        let fs = MemFs::new();
        fs.create_dir_durably(path("/a/b")).unwrap();
        assert_eq!(fs.op_count(), 0);
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("/a/b")).unwrap(), Some(PathKind::Dir));
    }

    #[test]
    fn absolute_paths_work() {
        let fs = MemFs::new();
        fs.create_dir_all(path("/var/db")).unwrap();
        fs.sync_dir(path("/var")).unwrap();
        fs.sync_dir(path("/")).unwrap();
        write_file_atomic(&fs, path("/var/db/meta"), b"v1").unwrap();
        assert_eq!(fs.list_dir(path("/var/db/")).unwrap(), ["meta"]);
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("/var/db/meta")).unwrap(), b"v1");
    }

    #[test]
    fn drop_all_keeps_synced_data_and_loses_unsynced() {
        let fs = fs_with_db();
        let file = durable_empty_file(&fs);
        file.write_all_at(b"synced", 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at(b" and not", 6).unwrap();
        file.set_len(100).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"synced");
    }

    #[test]
    fn unsynced_create_is_lost_on_drop_all() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"data", 0).unwrap();
        file.sync_data().unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("db/f")).unwrap(), None);
        assert!(fs.list_dir(path("db")).unwrap().is_empty());
    }

    #[test]
    fn create_survives_drop_all_after_sync_dir() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"data", 0).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(path("db")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"data");
    }

    #[test]
    fn unsynced_rename_and_remove_are_reverted_on_drop_all() {
        let fs = fs_with_db();
        write_file_atomic(&fs, path("db/a"), b"A").unwrap();
        write_file_atomic(&fs, path("db/b"), b"B").unwrap();
        fs.rename(path("db/a"), path("db/b")).unwrap();
        assert_eq!(fs.list_dir(path("db")).unwrap(), ["b"]);
        assert_eq!(fs.read_all(path("db/b")).unwrap(), b"A");
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.list_dir(path("db")).unwrap(), ["a", "b"]);
        assert_eq!(fs.read_all(path("db/a")).unwrap(), b"A");
        assert_eq!(fs.read_all(path("db/b")).unwrap(), b"B");

        fs.remove_file(path("db/a")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("db/a")).unwrap(), b"A");
        fs.remove_file(path("db/a")).unwrap();
        fs.sync_dir(path("db")).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.kind(path("db/a")).unwrap(), None);
    }

    #[test]
    fn keep_all_keeps_everything() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"unsynced", 0).unwrap();
        fs.hard_link(path("db/f"), path("db/g")).unwrap();
        fs.rename(path("db/f"), path("db/h")).unwrap();
        fs.crash(CrashMode::KeepAll, 0);
        assert_eq!(fs.list_dir(path("db")).unwrap(), ["g", "h"]);
        assert_eq!(fs.read_all(path("db/g")).unwrap(), b"unsynced");
        assert_eq!(fs.read_all(path("db/h")).unwrap(), b"unsynced");
        // Everything that survived is durable now.
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("db/h")).unwrap(), b"unsynced");
    }

    #[test]
    fn old_handles_fail_after_crash() {
        let fs = fs_with_db();
        let file = durable_empty_file(&fs);
        fs.crash(CrashMode::KeepAll, 0);
        let mut buf = [0u8; 1];
        assert!(file.read_at(&mut buf, 0).is_err());
        assert!(file.write_all_at(b"x", 0).is_err());
        assert!(file.sync_data().is_err());
        assert!(file.len().is_err());
        assert!(file.set_len(0).is_err());
        let reopened = fs.open_file(path("db/f"), OpenMode::ReadWrite).unwrap();
        reopened.write_all_at(b"x", 0).unwrap();
        drop(file);
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"x");
    }

    #[test]
    fn removed_file_stays_usable_through_open_handle() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"before", 0).unwrap();
        fs.remove_file(path("db/f")).unwrap();
        assert_eq!(fs.kind(path("db/f")).unwrap(), None);
        file.write_all_at(b"after", 6).unwrap();
        let mut buf = [0u8; 11];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"beforeafter");
        drop(file);
        assert!(fs.state.lock().inodes.is_empty(), "orphan inode was freed");
    }

    #[test]
    fn renamed_over_file_stays_readable_through_open_handle() {
        let fs = fs_with_db();
        write_file_atomic(&fs, path("db/f"), b"old").unwrap();
        let old = fs.open_file(path("db/f"), OpenMode::Read).unwrap();
        write_file_atomic(&fs, path("db/f"), b"new").unwrap();
        let mut buf = [0u8; 3];
        old.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"old");
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"new");
    }

    #[test]
    fn fail_after_once_fails_one_call() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        let start = fs.op_count();
        fs.fail_after(2, FaultKind::Once);
        file.write_all_at(b"a", 0).unwrap();
        file.write_all_at(b"b", 1).unwrap();
        let error = file.write_all_at(b"c", 2).unwrap_err();
        assert!(is_injected(&error), "{error}");
        assert_eq!(
            error.to_string(),
            format!("injected fault at call {}", start + 2)
        );
        file.write_all_at(b"d", 2).unwrap();
        assert_eq!(fs.read_all(path("db/f")).unwrap(), b"abd");
        assert_eq!(fs.op_count(), start + 4);
    }

    #[test]
    fn fail_after_persistent_fails_until_cleared() {
        let fs = fs_with_db();
        fs.fail_after(1, FaultKind::Persistent);
        fs.kind(path("db")).unwrap();
        for _ in 0..3 {
            assert!(is_injected(&fs.list_dir(path("db")).unwrap_err()));
        }
        fs.clear_faults();
        fs.list_dir(path("db")).unwrap();
    }

    #[test]
    fn crash_at_stops_a_workload_and_crash_recovers() {
        let workload = |fs: &MemFs| -> io::Result<()> {
            fs.create_dir_all(path("db"))?;
            fs.sync_dir(path(""))?;
            write_file_atomic(fs, path("db/a"), b"first")?;
            write_file_atomic(fs, path("db/a"), b"second")
        };
        let counter = MemFs::new();
        workload(&counter).unwrap();
        let calls = counter.op_count();
        for n in 0..calls {
            let fs = MemFs::new();
            fs.crash_at(n);
            assert!(workload(&fs).is_err(), "call {n} should fail");
            fs.crash(CrashMode::DropAll, n);
            let content = fs.read_all(path("db/a")).ok();
            assert!(
                matches!(content.as_deref(), None | Some(b"first" | b"second")),
                "crash at {n}: {content:?}"
            );
        }
    }

    #[test]
    fn fail_syncs_fails_only_syncs() {
        let fs = fs_with_db();
        let file = fs.open_file(path("db/f"), OpenMode::CreateNew).unwrap();
        fs.fail_syncs(true);
        file.write_all_at(b"x", 0).unwrap();
        assert!(file.sync_data().is_err());
        assert!(fs.sync_dir(path("db")).is_err());
        fs.fail_syncs(false);
        file.sync_data().unwrap();
        fs.sync_dir(path("db")).unwrap();
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let fs = fs_with_db();
        let guard = fs.lock(path("db/LOCK")).unwrap();
        assert_eq!(fs.kind(path("db/LOCK")).unwrap(), Some(PathKind::File));
        assert_eq!(
            fs.lock(path("db/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(guard);
        let again = fs.lock(path("db/LOCK")).unwrap();
        fs.crash(CrashMode::KeepAll, 0);
        let after_crash = fs.lock(path("db/LOCK")).unwrap();
        drop(again); // a stale guard must not release the new holder's lock
        assert_eq!(
            fs.lock(path("db/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(after_crash);
    }

    #[test]
    fn corruption_helpers_damage_durable_bytes() {
        let fs = fs_with_db();
        fs.write_all(path("db/f"), &[0u8; 8]).unwrap();
        fs.flip_bit(path("db/f"), 3, 7).unwrap();
        fs.truncate(path("db/f"), 5).unwrap();
        fs.crash(CrashMode::DropAll, 0);
        assert_eq!(fs.read_all(path("db/f")).unwrap(), [0, 0, 0, 0x80, 0]);
        assert!(fs.flip_bit(path("db/f"), 5, 0).is_err());
        assert!(fs.flip_bit(path("db/f"), 0, 8).is_err());
        assert_eq!(fs.op_count(), 2, "helpers are not counted");
    }

    /// Runs a fixed workload (a durable prefix, then unsynced appends and an
    /// unsynced create) and a random crash; returns what survived.
    fn random_crash_outcome(seed: u64) -> (Vec<u8>, Option<Vec<u8>>) {
        let fs = fs_with_db();
        let file = durable_empty_file(&fs);
        file.write_all_at(b"durable|", 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at(&[0xAB; 64], 8).unwrap();
        file.write_all_at(&[0xCD; 64], 72).unwrap();
        fs.open_file(path("db/new"), OpenMode::CreateNew).unwrap();
        fs.crash(CrashMode::Random, seed);
        let f = fs.read_all(path("db/f")).unwrap();
        (f, fs.read_all(path("db/new")).ok())
    }

    #[test]
    fn random_crash_is_deterministic_per_seed() {
        for seed in 0..32 {
            assert_eq!(random_crash_outcome(seed), random_crash_outcome(seed));
        }
    }

    #[test]
    fn random_crash_keeps_drops_and_tears_writes() {
        let mut lengths = Vec::new();
        let mut new_file_survived = [false; 2];
        for seed in 0..64 {
            let (content, new_file) = random_crash_outcome(seed);
            assert!(content.starts_with(b"durable|"), "seed {seed}");
            let first_write = content.get(8..72.min(content.len())).unwrap_or(&[]);
            assert!(
                first_write.iter().all(|&b| b == 0xAB || b == 0),
                "seed {seed}"
            );
            lengths.push(content.len());
            new_file_survived[usize::from(new_file.is_some())] = true;
        }
        assert!(lengths.contains(&8), "some crash dropped both writes");
        assert!(lengths.contains(&136), "some crash kept the last write");
        assert!(
            lengths
                .iter()
                .any(|&len| len != 8 && len != 72 && len != 136),
            "some crash tore a write: {lengths:?}"
        );
        assert_eq!(new_file_survived, [true, true], "unsynced create is a coin");
    }
}
