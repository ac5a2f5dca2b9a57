//! `varve-bench`: a db_bench-style workload runner.
//!
//! ```text
//! varve-bench --workload fillrandom,readrandom --num 1000000 [--engine varve] [--json]
//! varve-bench report results.jsonl --out charts/
//! ```
//! Workloads run in order on one store; see `varve-bench --help` and
//! `benches/README.md`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use varve_bench::runner::{self, KeyOrder, RunConfig, WORKLOADS, json, report, table};

#[derive(Parser, Debug)]
#[command(about = "Runs db_bench-style workloads against Varve or a peer engine")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Comma-separated workloads, run in order on one store: fillseq,
    /// fillrandom, overwrite, readrandom, readmissing, readseq, readreverse,
    /// seekrandom, readwhilewriting, deleterandom, compact, fillsync, syncfloor,
    /// flush, log_append, log_read, restore, kafka_restore, bulkload (or
    /// `all`).
    #[arg(long, default_value = "fillseq,readrandom")]
    workload: String,
    /// Operations per workload, and the size of the key space.
    #[arg(long, default_value_t = 100_000)]
    num: u64,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Threads: writers for fillsync, readers for readwhilewriting (plus
    /// one writer), workers for the other point workloads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Entries per write call in the fill workloads and log_append.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Sync every write (fillsync always syncs).
    #[arg(long)]
    sync: bool,
    /// Block cache capacity, in bytes or with a K, M or G suffix (powers
    /// of 1024).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    cache_size: usize,
    /// Directory for the store (DIR/<engine>) and the log workloads'
    /// changelog; default: a fresh directory under $VARVE_BENCH_DIR or the
    /// current directory, removed afterwards.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Engine: varve, or a peer built in with its cargo feature (rocksdb,
    /// fjall, sled).
    #[arg(long, default_value = "varve")]
    engine: String,
    /// Print one JSON object per workload on standard output (the table
    /// goes to standard error).
    #[arg(long)]
    json: bool,
    /// Never draw the progress line.
    #[arg(long)]
    no_progress: bool,
    /// Order of the keys log_append writes (and restore then loads): seq,
    /// or random (every key once, shuffled).
    #[arg(long, default_value = "seq")]
    key_order: KeyOrder,
    /// Varve only: run on a partitioned store of this many partitions,
    /// sharing one block cache, write-buffer budget and 2 + 2 background
    /// threads.
    #[arg(long)]
    partitions: Option<u32>,
    /// With --partitions: the shared write-buffer budget (K, M or G
    /// suffix); default one store's (192M).
    #[arg(long, value_parser = parse_size)]
    write_buffer_size: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render a results file (JSON lines from --json) as one SVG chart per
    /// workload, plus summary.md.
    Report {
        /// The results file.
        input: PathBuf,
        /// Directory for the charts.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `64M` → 67108864.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let n: usize = digits.parse().map_err(|_| format!("not a size: {text}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size too large: {text}"))
}

fn main() {
    let args = Args::parse();
    let outcome = match &args.command {
        Some(Command::Report { input, out }) => report::render(input, out).map(|files| {
            for file in files {
                println!("{}", file.display());
            }
        }),
        None => run(&args),
    };
    if let Err(message) = outcome {
        eprintln!("varve-bench: {message}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let scratch;
    let dir = match &args.dir {
        Some(dir) => {
            let store = dir.join(&args.engine);
            if store.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                return Err(format!(
                    "{} already holds a store: remove it or choose another --dir",
                    store.display()
                ));
            }
            dir.clone()
        }
        None => {
            scratch = varve_bench::bench_dir(Path::new("."))
                .map_err(|e| format!("creating a scratch directory: {e}"))?;
            scratch.path().to_path_buf()
        }
    };
    let workloads = if args.workload == "all" {
        WORKLOADS.iter().map(|w| (*w).to_owned()).collect()
    } else {
        args.workload
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let config = RunConfig {
        engine: args.engine.clone(),
        workloads,
        num: args.num,
        key_size: args.key_size,
        value_size: args.value_size,
        threads: args.threads,
        batch_size: args.batch_size,
        sync: args.sync,
        cache_size_bytes: args.cache_size,
        dir,
        progress: !args.no_progress,
        key_order: args.key_order,
        partitions: args.partitions,
        write_buffer_size_bytes: args.write_buffer_size,
    };
    let json_out = args.json;
    let say = |line: String| {
        if json_out {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(table::header());
    runner::run(&config, &mut |result| {
        say(table::row(result));
        if json_out {
            println!("{}", json::to_line(result));
        }
    })
}
