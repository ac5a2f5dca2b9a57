//! `varve`: look inside a Varve store, check it, get data out of it, write
//! to it, and salvage a damaged one, without writing code. See
//! `docs/TOOLS.md` for every subcommand with an example.

mod checkpoint;
mod compact;
mod error;
mod format;
mod get;
mod info;
mod log_dump;
mod manifest_dump;
mod open;
mod positions;
mod progress;
mod repair;
mod restore;
mod scan;
mod segments;
mod sst_dump;
mod store;
mod verify;
mod view;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::{Result, ToolError};
use crate::format::{Out, Style};

/// Look inside a Varve store and its changelog, check it, get data out,
/// write to it, and salvage a damaged one.
///
/// Commands that read files directly (info, verify, sst dump, log dump,
/// manifest dump, positions) also work on a store another process has
/// open, and then say that the view may be moving. get and scan read a
/// closed store only, through the engine's read-only open, without writing
/// to it; put, delete, load and compact open it through the engine with
/// the options it recorded (its TTL and compression).
///
/// A partitioned store's root (the directory with a PARTITIONS file) is
/// taken by get (which routes the key), scan (all partitions in key
/// order), info and verify (every partition); the other commands need
/// --partition N or a partition directory. Positions edits (--delete,
/// --reset) need a closed store.
///
/// Exit status: 0 on success; 1 when verify finds problems or get finds no
/// value; 2 when the command cannot do its job (missing directory, not a
/// store, store in use, unreadable files).
#[derive(Parser, Debug)]
#[command(name = "varve", version, about, long_about)]
struct Cli {
    /// Print JSON, one object per line, for scripts; every command prints a
    /// result on success too (scan: one object per entry). A byte string appears twice: "name" (the
    /// text spelling) and "name_hex" (its exact bytes as hex).
    #[arg(long, global = true)]
    json: bool,
    /// Show keys and values as `0x` hex (`0x00ff10`) instead of text with
    /// `\xNN` escapes; with get, scan, put and delete, KEY, VALUE, --from,
    /// --to and --prefix are read as hex too (the `0x` is optional).
    #[arg(long, global = true)]
    hex: bool,
    /// No progress on stderr: neither the bars drawn on a terminal nor
    /// verify's `checked N/M file` lines. Warnings and errors still print.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// With a partitioned store's root as the store path: work on this
    /// partition only (as if its `partition-NNNNN` directory were given).
    #[arg(long, global = true, value_name = "N")]
    partition: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// What a store is: format, levels, tables, changelog segments and
    /// offsets, consumer positions, amplification.
    Info {
        /// The store's directory (or a partitioned store's root: every
        /// partition, then totals).
        dir: PathBuf,
        /// Also read every live entry to measure live data and space
        /// amplification exactly (reads the whole store).
        #[arg(long)]
        live: bool,
    },
    /// Read every file of a store and check every checksum and invariant;
    /// prints `file:offset: what` for each problem and exits 1 if any.
    Verify {
        /// The store's directory (or a partitioned store's root: every
        /// partition; exit 1 if any is damaged).
        dir: PathBuf,
    },
    /// Table (SST) commands.
    #[command(subcommand)]
    Sst(SstCommand),
    /// Changelog commands.
    #[command(subcommand)]
    Log(LogCommand),
    /// Manifest commands.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// The committed consumer positions of a store's changelog, with their
    /// lag behind the log end.
    ///
    /// With --delete or --reset, edits one position of a closed store (like
    /// kafka-consumer-groups.sh --delete / --reset-offsets): a dead standby
    /// or shipper whose position pins the changelog under `UntilShipped`
    /// retention is deleted, or moved on.
    Positions {
        /// The store's directory (or its changelog directory).
        dir: PathBuf,
        /// Delete this consumer's position (retention stops waiting for it).
        #[arg(long, value_name = "NAME", conflicts_with = "reset")]
        delete: Option<String>,
        /// Move this consumer's position to the offset given by --to.
        #[arg(long, value_name = "NAME", requires = "to")]
        reset: Option<String>,
        /// With --reset: an offset from the log start offset to the log end
        /// offset, `earliest` (the log start) or `latest` (the log end).
        #[arg(long, value_name = "OFFSET", requires = "reset")]
        to: Option<String>,
        /// Print what --delete or --reset would change, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the value of a key (exit 1 if it has none). The store must be
    /// closed; nothing is written to it.
    Get {
        /// The store's directory (or a partitioned store's root).
        dir: PathBuf,
        /// The key.
        key: String,
    },
    /// Print live entries in key order, `key<TAB>value` a line. The store
    /// must be closed; nothing is written to it.
    Scan {
        /// The store's directory (or a partitioned store's root).
        dir: PathBuf,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Stop before this key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Only keys that start with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
        /// Largest key first.
        #[arg(long)]
        reverse: bool,
    },
    /// Set a key to a value (a synced write through the engine).
    Put {
        /// The store's directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Create the store if the directory is missing or empty.
        #[arg(long)]
        create: bool,
    },
    /// Compact the whole store into its last level (dropping overwritten
    /// versions and tombstones), then print its levels and amplification.
    Compact {
        /// The store's directory.
        dir: PathBuf,
    },
    /// Delete a key (a synced write through the engine).
    Delete {
        /// The store's directory.
        dir: PathBuf,
        /// The key.
        key: String,
    },
    /// Write the entries of a file of JSON lines, each
    /// {"key": .., "value": ..}; a null value deletes the key; "key_hex" and
    /// "value_hex" take hex and win over "key" and "value" (so scan --json
    /// output loads back exactly).
    Load {
        /// The store's directory.
        dir: PathBuf,
        /// The file of JSON lines (`-` for standard input).
        file: PathBuf,
        /// Create the store if the directory is missing or empty.
        #[arg(long)]
        create: bool,
    },
    /// Salvage what can be read from a damaged store into a new, consistent
    /// store in another directory, reporting exactly what was lost. The
    /// damaged store is only read.
    Repair {
        /// The damaged store's directory (only read).
        dir: PathBuf,
        /// Where to write the repaired store (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Write a consistent, openable copy of a closed store (hard links to
    /// its tables, a manifest, an empty changelog starting at the offset
    /// the copy covers).
    Checkpoint {
        /// The store's directory.
        store: PathBuf,
        /// Where to write the checkpoint (must not exist, or be empty).
        dir: PathBuf,
    },
    /// Rebuild a store from a changelog alone (sorted runs, then a merge of
    /// what overlaps); resumes an interrupted restore of the same
    /// directory. `varve restore CHANGELOG NEW_STORE` reads a changelog
    /// directory; `varve restore --kafka BOOTSTRAP TOPIC PARTITION
    /// NEW_STORE` reads one partition of a Kafka topic (built with the
    /// `kafka` feature).
    Restore {
        /// The changelog directory (or a store, whose changelog is used);
        /// with `--kafka`, the topic.
        #[arg(value_name = "CHANGELOG|TOPIC")]
        changelog: PathBuf,
        /// Where to build the store (must not exist, be empty, or hold an
        /// interrupted restore); with `--kafka`, the partition.
        #[arg(value_name = "NEW_STORE|PARTITION")]
        new_store: PathBuf,
        /// With `--kafka`: where to build the store.
        #[arg(value_name = "NEW_STORE")]
        kafka_store: Option<PathBuf>,
        /// Restore from the Kafka cluster at these bootstrap brokers
        /// (`host:port[,host:port]`).
        #[arg(long, value_name = "BOOTSTRAP")]
        kafka: Option<String>,
        /// A librdkafka property for `--kafka` (repeatable), e.g.
        /// `--kafka-property security.protocol=SSL`.
        #[arg(long = "kafka-property", value_name = "KEY=VALUE", requires = "kafka")]
        kafka_properties: Vec<String>,
        /// Start from this checkpoint; only later records are replayed.
        #[arg(long)]
        from_checkpoint: Option<PathBuf>,
        /// The memory the restore may hold, in bytes or with a K, M or G
        /// suffix (powers of 1024), e.g. `--memory-budget 256M`; default
        /// 512M. 16M of it is kept for reading and table writing; the
        /// rest holds two sorted runs, one being gathered and one being
        /// written. Each run written is a checkpoint: a killed restore
        /// resumes from the last one, redoing at most the two runs it held,
        /// so a smaller budget also means less work redone.
        #[arg(long, value_name = "BYTES")]
        memory_budget: Option<String>,
        /// Print progress on stderr as JSON lines, whatever stderr is (a
        /// log, a pipe), instead of the bar drawn on a terminal: a `start`
        /// line, a `progress` line after each read of the source (with
        /// `offset`, the records applied, and `flushed_offset`, where a
        /// restore stopped now resumes), and an `end` line with the
        /// report. Printed with `--quiet` too: it was asked for.
        #[arg(long)]
        progress_json: bool,
    },
    /// Print a completion script for a shell, generated from these very
    /// definitions: `varve completions bash > /etc/bash_completion.d/varve`,
    /// `varve completions zsh > ~/.zfunc/_varve`, `varve completions fish >
    /// ~/.config/fish/completions/varve.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum SstCommand {
    /// Properties, block layout, Bloom filter statistics and (with
    /// --entries) the entries of one table file.
    Dump {
        /// The table file (`NNNNNN.sst`).
        file: PathBuf,
        /// Print the entries (every version, tombstones included).
        #[arg(long)]
        entries: bool,
        /// Start the entries at this user key.
        #[arg(long)]
        from: Option<String>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Batches (and with --print-data, records) of a changelog, with
    /// offsets, positions, timestamps, sizes and CRC validity.
    Dump {
        /// A store, a changelog directory, or one segment file.
        path: PathBuf,
        /// Skip batches that end before this offset.
        #[arg(long)]
        from: Option<u64>,
        /// Print each record: offset, timestamp, key, value, headers.
        #[arg(long)]
        print_data: bool,
        /// Check each segment's .index and .timeindex against its batches.
        #[arg(long)]
        index_check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ManifestCommand {
    /// Every record of the manifest in use, then the state it builds.
    Dump {
        /// The store's directory, or a manifest file.
        path: PathBuf,
    },
}

/// The store path of a command that works on one store only (not on a
/// partitioned store's root), and the command's name.
fn one_store_path(command: &Command) -> Option<(&std::path::Path, &'static str)> {
    match command {
        Command::Info { .. }
        | Command::Verify { .. }
        | Command::Get { .. }
        | Command::Scan { .. }
        | Command::Sst(_) => None,
        Command::Log(LogCommand::Dump { path, .. }) => Some((path, "log dump")),
        Command::Manifest(ManifestCommand::Dump { path }) => Some((path, "manifest dump")),
        Command::Positions { dir, .. } => Some((dir, "positions")),
        Command::Put { dir, .. } => Some((dir, "put")),
        Command::Delete { dir, .. } => Some((dir, "delete")),
        Command::Load { dir, .. } => Some((dir, "load")),
        Command::Compact { dir } => Some((dir, "compact")),
        Command::Repair { dir, .. } => Some((dir, "repair")),
        Command::Checkpoint { store, .. } => Some((store, "checkpoint")),
        Command::Restore { changelog, .. } => Some((changelog, "restore")),
        Command::Completions { .. } => None,
    }
}

/// The store path of a command, to point it at one partition.
fn store_path_mut(command: &mut Command) -> Option<&mut PathBuf> {
    match command {
        Command::Info { dir, .. }
        | Command::Verify { dir }
        | Command::Positions { dir, .. }
        | Command::Get { dir, .. }
        | Command::Scan { dir, .. }
        | Command::Put { dir, .. }
        | Command::Compact { dir }
        | Command::Delete { dir, .. }
        | Command::Load { dir, .. }
        | Command::Repair { dir, .. } => Some(dir),
        Command::Log(LogCommand::Dump { path, .. })
        | Command::Manifest(ManifestCommand::Dump { path }) => Some(path),
        Command::Checkpoint { store, .. } => Some(store),
        Command::Restore { changelog, .. } => Some(changelog),
        Command::Sst(_) | Command::Completions { .. } => None,
    }
}

/// Points the command at partition `p` of the partitioned store whose
/// root it was given; returns `(p, partitions)`, the route a write's keys
/// must follow.
fn select_partition(command: &mut Command, p: u32, hex: bool) -> Result<write::Route> {
    if let Command::Get { dir, key } = &*command
        && let Some(n) = open::partitions(dir)?
    {
        let home = varve_db::varve_changelog::partitioner::partition_for_key(
            &format::arg_bytes(key, hex)?,
            n,
        );
        if home != p && p < n {
            eprintln!(
                "warning: the store routes this key to partition {home}, not {p}: it is read from partition {p} as asked"
            );
        }
    }
    let Some(path) = store_path_mut(command) else {
        return Err(ToolError::Invalid(
            "--partition goes with a command that takes a store (sst dump takes a table file)"
                .into(),
        ));
    };
    match open::partitions(path)? {
        Some(n) if p < n => {
            *path = varve_db::partition_dir(path, p);
            Ok(Some((p, n)))
        }
        Some(n) => Err(ToolError::Invalid(format!(
            "--partition {p}: {} has partitions 0 to {}",
            path.display(),
            n - 1
        ))),
        None => Err(ToolError::Invalid(format!(
            "--partition {p}: {} is not the root of a partitioned store (it has no {} file)",
            path.display(),
            varve_db::PARTITIONS_FILE
        ))),
    }
}

fn run(mut cli: Cli) -> Result<()> {
    let route = match cli.partition {
        Some(p) => select_partition(&mut cli.command, p, cli.hex)?,
        None => None,
    };
    if let Some((path, command)) = one_store_path(&cli.command) {
        open::refuse_root(path, command)?;
    }
    let mut out = Out::new(Style {
        json: cli.json,
        hex: cli.hex,
        quiet: cli.quiet,
    });
    match cli.command {
        Command::Info { dir, live } => info::run(&mut out, &dir, live),
        Command::Verify { dir } => verify::run(&mut out, &dir),
        Command::Sst(SstCommand::Dump {
            file,
            entries,
            from,
            limit,
        }) => {
            let args = sst_dump::DumpArgs {
                entries,
                from,
                limit,
            };
            sst_dump::run(&mut out, &file, &args)
        }
        Command::Log(LogCommand::Dump {
            path,
            from,
            print_data,
            index_check,
        }) => {
            let args = log_dump::DumpArgs {
                from: from.unwrap_or(0),
                print_data,
                index_check,
            };
            log_dump::run(&mut out, &path, &args)
        }
        Command::Manifest(ManifestCommand::Dump { path }) => manifest_dump::run(&mut out, &path),
        Command::Positions {
            dir,
            delete,
            reset,
            to,
            dry_run,
        } => {
            let edit = match (delete, reset, to) {
                (Some(name), _, _) => Some(positions::Edit::Delete(name)),
                (None, Some(name), Some(to)) => {
                    Some(positions::Edit::Reset(name, positions::Target::parse(&to)?))
                }
                _ => None,
            };
            match edit {
                Some(edit) => positions::edit(&mut out, &dir, &edit, dry_run),
                None if dry_run => Err(ToolError::Invalid(
                    "--dry-run goes with --delete or --reset".into(),
                )),
                None => positions::run(&mut out, &dir),
            }
        }
        Command::Get { dir, key } => get::run(&mut out, &dir, &key),
        Command::Scan {
            dir,
            from,
            to,
            prefix,
            limit,
            reverse,
        } => {
            let args = scan::ScanArgs {
                from,
                to,
                prefix,
                limit,
                reverse,
            };
            scan::run(&mut out, &dir, &args)
        }
        Command::Put {
            dir,
            key,
            value,
            create,
        } => write::put(&mut out, &dir, &key, &value, create, route),
        Command::Delete { dir, key } => write::delete(&mut out, &dir, &key, route),
        Command::Compact { dir } => compact::run(&mut out, &dir),
        Command::Load { dir, file, create } => write::load(&mut out, &dir, &file, create, route),
        Command::Repair { dir, to } => repair::run(&mut out, &dir, &to),
        Command::Checkpoint { store, dir } => checkpoint::run(&mut out, &store, &dir),
        Command::Restore {
            changelog,
            new_store,
            kafka_store,
            kafka,
            kafka_properties,
            from_checkpoint,
            memory_budget,
            progress_json,
        } => {
            let args = restore::RestoreArgs::new(
                from_checkpoint.as_deref(),
                memory_budget.as_deref(),
                progress_json,
                cli.quiet,
            )?;
            match kafka {
                None if kafka_store.is_some() => Err(ToolError::Invalid(
                    "restore takes CHANGELOG NEW_STORE (three paths only with --kafka)".into(),
                )),
                None => restore::run(&mut out, &changelog, &new_store, &args),
                Some(bootstrap) => {
                    let from = restore::KafkaPartition::parse(
                        bootstrap,
                        &changelog,
                        &new_store,
                        &kafka_properties,
                    )?;
                    let Some(store) = kafka_store else {
                        return Err(ToolError::Invalid(
                            "restore --kafka takes BOOTSTRAP TOPIC PARTITION NEW_STORE".into(),
                        ));
                    };
                    restore::run_kafka(&mut out, &from, &store, &args)
                }
            }
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "varve", &mut script);
            out.raw(&script)?;
            out.flush()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            match &e {
                ToolError::Output(_) if code == error::EXIT_OK => {}
                ToolError::Problems(_) | ToolError::NotFound => eprintln!("varve: {e}"),
                _ => eprintln!("varve: error: {e}"),
            }
            ExitCode::from(code)
        }
    }
}
