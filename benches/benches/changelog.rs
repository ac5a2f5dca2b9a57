//! Criterion micro-benchmarks of the changelog, each beside the baseline it
//! is judged against (plain `std::fs` I/O on the same file system, in the
//! same run).
//!
//! | group | what | baseline |
//! | --- | --- | --- |
//! | `append_nosync` | `Log::append` of batches of 100 and of 1 records, `SyncPolicy::Manual` | `write` of CRC-framed records |
//! | `read_sequential` | the whole log through `Log::reader` and `Log::read` | `read` of the segment files |
//! | `append_sync` | one record per append, `SyncPolicy::Always` | `write` + `fdatasync` |
//! | `group_commit` | 1, 4 and 16 threads appending one record each, `Always` | the 1-thread rate |
//! | `checksum` | CRC-32 of 4 KiB, 64 KiB and a 100-record batch | |
//! | `batch_codec` | encoding and decoding a 100-record batch | |
//!
//! Records are 116 bytes of payload (16-byte key, 100-byte value). The
//! scratch directory is under the target directory (`VARVE_BENCH_DIR`
//! overrides it); it must not be a `tmpfs`, where syncs cost nothing.
//! Every log and baseline file is replaced (untimed) after 48 MiB, so that
//! no segment roll falls in the measurement and the disk does not fill.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use varve_bench::{FRAMED_RECORD_BYTES, RECORD_BYTES, bench_dir, file_system_of, records};
use varve_changelog::batch::{Batch, batch_crc, encode_batch};
use varve_changelog::{Log, LogOptions, Record, SyncPolicy};

/// Records per batch in the batched benchmarks.
const BATCH: usize = 100;
/// A log or baseline file is replaced (untimed) once it holds this much.
const REPLACE_AFTER_BYTES: u64 = 48 << 20;
/// Payload bytes written once for the read benchmarks.
const READ_DATA_BYTES: usize = 64 << 20;
/// Chunk of the baseline's reads and of `Log::read` fetches.
const FETCH_BYTES: usize = 1 << 20;

fn main() {
    // Parse the arguments first: `--help` or a bad argument exits the
    // process, which would leave the scratch directory behind.
    let mut c = Criterion::default().configure_from_args();
    let scratch = bench_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("create scratch dir");
    let fs = file_system_of(scratch.path()).map_or_else(
        || "unknown file system".to_owned(),
        |(mount, kind)| format!("{kind} mounted at {}", mount.display()),
    );
    eprintln!(
        "varve-bench: scratch dir {} ({fs})",
        scratch.path().display()
    );
    if fs.starts_with("tmpfs") {
        eprintln!("varve-bench: WARNING: tmpfs makes fdatasync free; set VARVE_BENCH_DIR");
    }
    let dir = scratch.path();
    append_nosync(&mut c, dir);
    read_sequential(&mut c, dir);
    append_sync(&mut c, dir);
    group_commit(&mut c, dir);
    checksum(&mut c);
    batch_codec(&mut c);
    c.final_summary();
}

/// A fresh directory for one log or baseline file.
fn fresh_dir(parent: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(parent).expect("create log dir")
}

/// Drops `log` and its directory without making the close write back the
/// (throw-away) data: the segment files are truncated first. Untimed
/// hygiene, so that discarding a log costs no disk bandwidth.
fn discard_log(log: Log, dir: tempfile::TempDir) {
    for entry in std::fs::read_dir(dir.path()).expect("list log dir") {
        let path = entry.expect("list log dir").path();
        if path.extension().is_some_and(|e| e == "log") {
            let file = OpenOptions::new().write(true).open(&path);
            file.and_then(|f| f.set_len(0)).expect("truncate segment");
        }
    }
    drop(log);
    drop(dir);
}

/// As [`discard_log`], for a baseline file.
fn discard_file(file: File, dir: tempfile::TempDir) {
    file.set_len(0).expect("truncate baseline file");
    drop(file);
    drop(dir);
}

fn open_log(dir: &Path, sync_policy: SyncPolicy, preallocate_bytes: Option<u64>) -> Log {
    let opts = LogOptions::default()
        .sync_policy(sync_policy)
        .preallocate_bytes(preallocate_bytes);
    Log::open(dir, opts).expect("open log")
}

fn create_file(dir: &Path) -> File {
    File::create_new(dir.join("baseline.dat")).expect("create baseline file")
}

/// Times `iters` appends of `batch`, on fresh logs replaced every
/// [`REPLACE_AFTER_BYTES`].
fn time_log_appends(
    parent: &Path,
    batch: &[Record],
    sync_policy: SyncPolicy,
    preallocate_bytes: Option<u64>,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let dir = fresh_dir(parent);
        let log = open_log(dir.path(), sync_policy, preallocate_bytes);
        // Untimed first append: it pays for the new file (and, under
        // `Always`, for syncing its first preallocated chunk), a cost that
        // recurs once per segment, not once per sample.
        let mut written = log.append(batch).expect("append").size_bytes as u64;
        let start = Instant::now();
        while remaining > 0 && written < REPLACE_AFTER_BYTES {
            let info = log.append(black_box(batch)).expect("append");
            written += info.size_bytes as u64;
            remaining -= 1;
        }
        total += start.elapsed();
        discard_log(log, dir);
    }
    total
}

/// Times `iters` plain `write` calls of `batch` framed (length, CRC-32,
/// payload per record), framing included; with `sync`, each write is
/// followed by `fdatasync`. Files are replaced every
/// [`REPLACE_AFTER_BYTES`].
fn time_plain_writes(parent: &Path, batch: &[Record], sync: bool, iters: u64) -> Duration {
    let mut buf = Vec::with_capacity(batch.len() * FRAMED_RECORD_BYTES);
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let dir = fresh_dir(parent);
        let mut file = create_file(dir.path());
        // Untimed first write, as for the log.
        buf.clear();
        varve_bench::frame_records(&mut buf, batch);
        file.write_all(&buf).expect("write");
        if sync {
            file.sync_data().expect("fdatasync");
        }
        let mut written = buf.len() as u64;
        let start = Instant::now();
        while remaining > 0 && written < REPLACE_AFTER_BYTES {
            buf.clear();
            varve_bench::frame_records(&mut buf, black_box(batch));
            file.write_all(&buf).expect("write");
            if sync {
                file.sync_data().expect("fdatasync");
            }
            written += buf.len() as u64;
            remaining -= 1;
        }
        total += start.elapsed();
        discard_file(file, dir);
    }
    total
}

/// Times `iters` framed one-record `write` + `fdatasync` calls into a file
/// zero-filled (and synced, untimed) ahead of the data, so that no sync
/// changes the file's size or allocation.
fn time_preallocated_writes(parent: &Path, record: &[Record], iters: u64) -> Duration {
    let mut buf = Vec::with_capacity(FRAMED_RECORD_BYTES);
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    let per_file = REPLACE_AFTER_BYTES / FRAMED_RECORD_BYTES as u64;
    while remaining > 0 {
        let n = remaining.min(per_file);
        let dir = fresh_dir(parent);
        let mut file = create_file(dir.path());
        let len = (n * FRAMED_RECORD_BYTES as u64).next_multiple_of(1 << 20);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..len >> 20 {
            file.write_all(&zeros).expect("zero-fill");
        }
        file.sync_all().expect("sync zero-fill");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let start = Instant::now();
        for _ in 0..n {
            buf.clear();
            varve_bench::frame_records(&mut buf, black_box(record));
            file.write_all(&buf).expect("write");
            file.sync_data().expect("fdatasync");
        }
        total += start.elapsed();
        remaining -= n;
        discard_file(file, dir);
    }
    total
}

fn append_nosync(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("append_nosync");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for n in [BATCH, 1] {
        let batch = records(0, n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("varve", format!("batch{n}")), |b| {
            b.iter_custom(|iters| time_log_appends(dir, &batch, SyncPolicy::Manual, None, iters));
        });
        g.bench_function(BenchmarkId::new("plain_write", format!("batch{n}")), |b| {
            b.iter_custom(|iters| time_plain_writes(dir, &batch, false, iters));
        });
    }
    g.finish();
}

/// The log's segment files, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list log dir")
        .map(|e| e.expect("list log dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn record_bytes(r: &Record) -> usize {
    r.key.len() + r.value.as_ref().map_or(0, Bytes::len)
}

/// A group for benchmarks whose every iteration waits on the disk: a
/// second of warm-up, four of measurement, ten samples.
fn disk_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    throughput: Throughput,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10)
        .throughput(throughput);
    g
}

/// Fetches the whole of `log` from offset 0, `FETCH_BYTES` at a time,
/// handing each fetch's batches to `each`; returns the offset after the
/// last batch.
fn fetch_all(log: &Log, mut each: impl FnMut(&[Batch])) -> u64 {
    let mut from = 0;
    loop {
        let fetch = log.read(from, FETCH_BYTES).expect("fetch");
        if fetch.batches.is_empty() {
            return from;
        }
        each(&fetch.batches);
        from = fetch.next_fetch_offset;
    }
}

fn read_sequential(c: &mut Criterion, dir: &Path) {
    let log_dir = fresh_dir(dir);
    let log = open_log(log_dir.path(), SyncPolicy::Manual, None);
    let batches = READ_DATA_BYTES / (BATCH * RECORD_BYTES);
    for i in 0..batches {
        log.append(&records((i * BATCH) as u64, BATCH))
            .expect("append");
    }
    log.sync().expect("flush");
    let total_records = (batches * BATCH) as u64;
    let payload = total_records * RECORD_BYTES as u64;
    let files = segment_files(log_dir.path());
    let file_bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat segment").len())
        .sum();
    eprintln!(
        "varve-bench: read data: {total_records} records, {payload} payload bytes, \
         {file_bytes} bytes in {} segment file(s)",
        files.len()
    );

    let mut g = disk_group(c, "read_sequential", Throughput::Bytes(payload));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("varve_reader", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for r in log.reader(0).expect("reader") {
                bytes += record_bytes(&r.expect("read record").record);
            }
            assert_eq!(bytes as u64, payload);
        });
    });
    g.bench_function("varve_fetch_1MiB", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let end = fetch_all(&log, |batches| {
                bytes += batches.iter().map(|b| b.bytes().len()).sum::<usize>();
            });
            assert_eq!(end, total_records);
            black_box(bytes)
        });
    });
    g.bench_function("varve_fetch_1MiB_decode", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            fetch_all(&log, |batches| {
                for batch in batches {
                    for item in batch.records() {
                        bytes += record_bytes(&item.expect("decode").1);
                    }
                }
            });
            assert_eq!(bytes as u64, payload);
        });
    });
    for crc in [false, true] {
        let name = if crc {
            "std_read_1MiB_crc"
        } else {
            "std_read_1MiB"
        };
        g.bench_function(name, |b| {
            let mut buf = vec![0u8; FETCH_BYTES];
            b.iter(|| {
                let (mut bytes, mut sum) = (0u64, 0u32);
                for path in &files {
                    let mut file = File::open(path).expect("open segment");
                    loop {
                        let n = file.read(&mut buf).expect("read");
                        if n == 0 {
                            break;
                        }
                        if crc {
                            sum ^= crc32fast::hash(&buf[..n]);
                        }
                        bytes += n as u64;
                    }
                }
                assert_eq!(bytes, file_bytes);
                black_box(sum)
            });
        });
    }
    g.finish();
    discard_log(log, log_dir);
}

fn append_sync(c: &mut Criterion, dir: &Path) {
    let record = records(0, 1);
    let mut g = disk_group(c, "append_sync", Throughput::Elements(1));
    // The log preallocates 1 MiB ahead under `Always` by default.
    g.bench_function("varve_always_prealloc", |b| {
        b.iter_custom(|iters| time_log_appends(dir, &record, SyncPolicy::Always, None, iters));
    });
    g.bench_function("plain_prealloc_write_fdatasync", |b| {
        b.iter_custom(|iters| time_preallocated_writes(dir, &record, iters));
    });
    g.bench_function("varve_always_no_prealloc", |b| {
        b.iter_custom(|iters| time_log_appends(dir, &record, SyncPolicy::Always, Some(0), iters));
    });
    g.bench_function("plain_append_write_fdatasync", |b| {
        b.iter_custom(|iters| time_plain_writes(dir, &record, true, iters));
    });
    g.finish();
}

/// Times `iters` one-record appends spread over `threads` threads sharing
/// one `Always` log (wall time from a common start to the last append).
fn time_group_commit(parent: &Path, record: &[Record], threads: u64, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let dir = fresh_dir(parent);
    let log = open_log(dir.path(), SyncPolicy::Always, None);
    // Untimed first append, as in `time_log_appends`.
    log.append(record).expect("append");
    let barrier = Barrier::new(threads as usize + 1);
    let elapsed = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..per_thread {
                    log.append(black_box(record)).expect("append");
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins the threads.
        start
    })
    .elapsed();
    discard_log(log, dir);
    // Scale to exactly `iters` appends.
    elapsed.mul_f64(iters as f64 / (per_thread * threads) as f64)
}

fn group_commit(c: &mut Criterion, dir: &Path) {
    let record = records(0, 1);
    let mut g = disk_group(c, "group_commit", Throughput::Elements(1));
    for threads in [1u64, 4, 16] {
        g.bench_with_input(
            BenchmarkId::new("varve_always_threads", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| time_group_commit(dir, &record, t, iters)),
        );
    }
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let data: Vec<u8> = (0..64 << 10)
        .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    for size in [4usize << 10, 64 << 10] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("crc32fast", format!("{}KiB", size >> 10)),
            &data[..size],
            |b, d| b.iter(|| crc32fast::hash(black_box(d))),
        );
    }
    let mut encoded = Vec::new();
    encode_batch(&mut encoded, 0, &records(0, BATCH));
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("batch_crc/batch100", |b| {
        b.iter(|| batch_crc(black_box(&encoded)));
    });
    g.finish();
}

fn batch_codec(c: &mut Criterion) {
    let batch = records(0, BATCH);
    let mut encoded = Vec::new();
    encode_batch(&mut encoded, 0, &batch);
    let encoded = Bytes::from(encoded);
    let mut g = c.benchmark_group("batch_codec");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("encode/batch100", |b| {
        let mut buf = Vec::new();
        b.iter(|| {
            buf.clear();
            encode_batch(&mut buf, 0, black_box(&batch))
        });
    });
    g.bench_function("check_and_decode/batch100", |b| {
        b.iter(|| {
            let batch = Batch::from_bytes(black_box(encoded.clone())).expect("valid batch");
            let mut bytes = 0;
            for item in batch.records() {
                bytes += record_bytes(&item.expect("decode").1);
            }
            bytes
        });
    });
    g.finish();
}
