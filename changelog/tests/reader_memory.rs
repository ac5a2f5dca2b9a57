//! A reader's memory is bounded by the bytes of the batch it reads, not by
//! the record count the batch's header claims: a batch with a valid CRC
//! whose header claims ~100,000 records, of which only the first decodes,
//! must not make the reader reserve room for them all.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use varve_changelog::batch::{batch_crc, encode_batch};
use varve_changelog::filename::segment_path;
use varve_changelog::fs::{FileSystem, MemFs};
use varve_changelog::{Log, LogOptions, Record};

/// The system allocator, counting the largest single allocation.
struct Counting;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One real record followed by `padding_bytes` of 0xff, framed as a batch
/// whose header claims as many records as its length allows, CRC fixed.
fn batch_claiming_many_records(padding_bytes: usize) -> (Vec<u8>, u32) {
    let mut buf = Vec::new();
    encode_batch(&mut buf, 0, &[Record::put("k", "v")]);
    buf.extend(std::iter::repeat_n(0xff, padding_bytes));
    let len = u32::try_from(buf.len()).unwrap();
    let count = (len - 48) / 5;
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[12..16].copy_from_slice(&count.to_le_bytes());
    buf[24..28].copy_from_slice(&(count - 1).to_le_bytes());
    let crc = batch_crc(&buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    (buf, count)
}

#[test]
fn claimed_record_count_does_not_size_the_reader_allocation() {
    let fs = MemFs::new();
    let dir = Path::new("/log");
    let fs_dyn: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Log::open(dir, LogOptions::default().fs(fs_dyn.clone()))
        .unwrap()
        .close()
        .unwrap();
    for name in fs.list_dir(dir).unwrap() {
        if name.ends_with("index") {
            fs.remove_file(&dir.join(name)).unwrap();
        }
    }
    let (batch, claimed) = batch_claiming_many_records(512 << 10);
    fs.write_all(&segment_path(dir, 0, ".log"), &batch).unwrap();
    let log = Log::open(dir, LogOptions::default().fs(fs_dyn)).unwrap();
    assert_eq!(
        log.next_offset(),
        u64::from(claimed),
        "{:?}",
        log.recovery_report()
    );
    let mut reader = log.reader(0).unwrap();
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    let err = reader.next_batch().unwrap_err();
    let largest = LARGEST_BYTES.load(Ordering::Relaxed);
    assert!(err.to_string().contains("corruption"), "{err}");
    // The batch itself (about 512 KiB) is read into memory once; nothing
    // may be much larger than it (the old reserve was ~11 MiB).
    assert!(
        largest <= 2 * batch.len(),
        "largest allocation {largest} bytes for a {}-byte batch claiming {claimed} records",
        batch.len()
    );
}
