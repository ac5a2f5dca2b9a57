//! `varve-bench`: a db_bench-style workload runner.
//!
//! ```text
//! varve-bench --workload fillseq,readrandom --num 1000000 [--threads N] [--json]
//! ```
//! Workloads run in order on one store. Keys are 16 bytes, values 100
//! bytes by default, as in RocksDB's db_bench.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;
use varve::{Db, Options, WriteBatch, WriteOptions};

#[derive(Parser, Debug)]
#[command(about = "Runs db_bench-style workloads against a Varve store")]
struct Args {
    /// Comma-separated workloads, run in order on one store: fillseq,
    /// fillrandom, overwrite, readrandom, readmissing, readseq, readreverse,
    /// seekrandom, deleterandom, fillsync, flush.
    #[arg(long, default_value = "fillseq,readrandom")]
    workload: String,
    /// Number of operations (keys) per workload.
    #[arg(long, default_value_t = 100_000)]
    num: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Writer threads for fillsync.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sync every write (fill workloads).
    #[arg(long)]
    sync: bool,
    /// Directory for the store (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    json: bool,
}

struct Outcome {
    ops: u64,
    secs: f64,
    bytes: u64,
    hist: Histogram<u64>,
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"key:0000");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    for (j, b) in v.iter_mut().enumerate() {
        *b = b'a' + ((i as usize + j) % 26) as u8;
    }
    v
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

fn timed(ops: u64, mut f: impl FnMut(u64) -> u64) -> Outcome {
    let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..ops {
        let t = Instant::now();
        bytes += f(i);
        let _ = hist.record(t.elapsed().as_nanos() as u64);
    }
    Outcome {
        ops,
        secs: start.elapsed().as_secs_f64(),
        bytes,
        hist,
    }
}

fn run(db: &Arc<Db>, name: &str, args: &Args) -> Result<Outcome, String> {
    let n = args.num;
    let vs = args.value_size;
    let wo = WriteOptions { sync: args.sync };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let put = |k: u64| -> u64 {
        let mut b = WriteBatch::new();
        b.put(key(k).to_vec(), value(k, vs));
        db.write(b, wo).expect("write");
        16 + vs as u64
    };
    Ok(match name {
        "fillseq" => timed(n, put),
        "fillrandom" | "overwrite" => timed(n, |_| put(rng.next(n))),
        "readrandom" => timed(n, |_| {
            db.get(key(rng.next(n)))
                .expect("get")
                .map_or(0, |v| 16 + v.len() as u64)
        }),
        "readmissing" => timed(n, |_| {
            db.get(key(n + rng.next(n)))
                .expect("get")
                .map_or(0, |v| v.len() as u64)
        }),
        "deleterandom" => timed(n, |_| {
            db.delete(key(rng.next(n)).to_vec()).expect("delete");
            16
        }),
        "seekrandom" => timed(n, |_| {
            let start = key(rng.next(n));
            db.range(start..)
                .take(10)
                .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).unwrap_or(0))
                .sum()
        }),
        "readseq" | "readreverse" => {
            let start = Instant::now();
            let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
            let (mut ops, mut bytes) = (0, 0);
            let mut account = |kv: varve::Result<varve::KeyValue>| {
                if let Ok((k, v)) = kv {
                    ops += 1;
                    bytes += (k.len() + v.len()) as u64;
                }
            };
            if name == "readseq" {
                db.all().for_each(&mut account)
            } else {
                db.all().rev().for_each(&mut account)
            }
            let _ = hist.record(1);
            Outcome {
                ops,
                secs: start.elapsed().as_secs_f64(),
                bytes,
                hist,
            }
        }
        "fillsync" => fill_sync(db, n, vs, args.threads),
        "flush" => {
            let start = Instant::now();
            db.flush().map_err(|e| e.to_string())?;
            let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
            let _ = hist.record(start.elapsed().as_nanos() as u64);
            Outcome {
                ops: 1,
                secs: start.elapsed().as_secs_f64(),
                bytes: 0,
                hist,
            }
        }
        other => return Err(format!("unknown workload {other}")),
    })
}

fn fill_sync(db: &Arc<Db>, n: u64, vs: usize, threads: usize) -> Outcome {
    let per_thread = n / threads as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
                for i in 0..per_thread {
                    let k = t * per_thread + i;
                    let mut b = WriteBatch::new();
                    b.put(key(k).to_vec(), value(k, vs));
                    let s = Instant::now();
                    db.write(b, WriteOptions { sync: true })
                        .expect("sync write");
                    let _ = hist.record(s.elapsed().as_nanos() as u64);
                }
                hist
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3).expect("valid histogram");
    for h in handles {
        let _ = hist.add(h.join().expect("writer thread"));
    }
    let ops = per_thread * threads as u64;
    Outcome {
        ops,
        secs: start.elapsed().as_secs_f64(),
        bytes: ops * (16 + vs as u64),
        hist,
    }
}

fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir_in(".").expect("temporary directory");
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("db"));
    let db = Arc::new(Db::open(&dir, Options::default()).expect("open store"));
    if !args.json {
        println!(
            "{:<14} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "workload", "ops", "ops/s", "MB/s", "p50 us", "p99 us", "p99.9 us"
        );
    }
    for name in args
        .workload
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let out = match run(&db, name, &args) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let ops_per_sec = out.ops as f64 / out.secs.max(1e-9);
        let mb_per_sec = out.bytes as f64 / 1e6 / out.secs.max(1e-9);
        let q = |p: f64| out.hist.value_at_quantile(p) as f64 / 1000.0;
        if args.json {
            let line = serde_json::json!({
                "engine": "varve", "workload": name, "num": out.ops, "threads": args.threads,
                "ops_per_sec": ops_per_sec, "mb_per_sec": mb_per_sec,
                "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999),
            });
            println!("{line}");
        } else {
            println!(
                "{name:<14} {:>10} {ops_per_sec:>12.0} {mb_per_sec:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                out.ops,
                q(0.5),
                q(0.99),
                q(0.999)
            );
        }
    }
}
