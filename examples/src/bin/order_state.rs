//! The order-state example: a stream task's state in Varve.
//!
//! A stream of order events (NEW → APPROVED → SHIPPED; anything else is
//! rejected) is applied to a store, each event's state change written in
//! one batch with the stream position, as a Samza or Kafka Streams task
//! would. Then:
//!
//! 1. a child process applies the stream and is killed (SIGKILL) midway;
//! 2. the store reopens with every acknowledged event in it and the
//!    stream continues from its recorded position to the end;
//! 3. a fresh store is restored from the changelog alone and compared key
//!    by key, at a printed rate; a checkpoint is taken and opened;
//! 4. a standby follows the store while it takes more events, is
//!    promoted when the store "fails", and takes writes.
//!
//! Run it with `cargo run --release -p varve-examples --bin order_state`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use varve_db::varve_changelog::LogSource;
use varve_db::{
    CatchUp, ChangelogRetention, Db, Options, RestoreOptions, Standby, WriteBatch, WriteOptions,
};

/// Events in the stream.
const EVENTS: u64 = 200_000;
/// The child is killed once it acknowledged at least this many events.
const KILL_AFTER: u64 = 60_000;
/// The child syncs (acknowledges) every this many events.
const ACK_EVERY: u64 = 1_000;
const POSITION_KEY: &str = "meta/next-event";
const REJECTED_KEY: &str = "meta/rejected";

type Error = Box<dyn std::error::Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    New,
    Approved,
    Shipped,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Approved => "APPROVED",
            Status::Shipped => "SHIPPED",
        }
    }

    fn parse(bytes: &[u8]) -> Option<Status> {
        match bytes {
            b"NEW" => Some(Status::New),
            b"APPROVED" => Some(Status::Approved),
            b"SHIPPED" => Some(Status::Shipped),
            _ => None,
        }
    }

    /// Whether an order in `from` (`None`: unknown) may move to `self`.
    fn may_follow(self, from: Option<Status>) -> bool {
        matches!(
            (from, self),
            (None, Status::New)
                | (Some(Status::New), Status::Approved)
                | (Some(Status::Approved), Status::Shipped)
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Event {
    order: u64,
    status: Status,
}

/// The whole stream, the same on every run: mostly valid transitions of
/// recent orders, and some invalid ones (a second NEW, a skipped step).
fn events() -> Vec<Event> {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut created = 0u64;
    (0..EVENTS)
        .map(|_| {
            let r = next();
            if created == 0 || r % 3 == 0 {
                created += 1;
                return Event {
                    order: created - 1,
                    status: Status::New,
                };
            }
            let window = created.min(5_000);
            let order = created - 1 - next() % window;
            let status = match next() % 10 {
                0 => Status::New,
                1..=5 => Status::Approved,
                _ => Status::Shipped,
            };
            Event { order, status }
        })
        .collect()
}

fn order_key(order: u64) -> String {
    format!("order/{order:08}")
}

fn options() -> Options {
    Options::default()
        // The changelog keeps the latest record of every key, like a
        // compacted Kafka topic, so it alone can rebuild the store.
        .changelog_retention(ChangelogRetention::Compact {
            tombstone_retention_ms: 24 * 3600 * 1000,
        })
        .changelog_segment_size_bytes(4 << 20)
        .memtable_size_bytes(4 << 20)
}

fn position(db: &Db) -> Result<u64, Error> {
    Ok(match db.get(POSITION_KEY)? {
        Some(v) => std::str::from_utf8(&v)?.parse()?,
        None => 0,
    })
}

/// Applies event `i` to the store: the state change (if valid) and the
/// stream position in one atomic batch.
fn apply(db: &Db, i: u64, event: Event, sync: bool) -> Result<(), Error> {
    let key = order_key(event.order);
    let current = db.get(&key)?.and_then(|v| Status::parse(&v));
    let mut batch = WriteBatch::new();
    if event.status.may_follow(current) {
        batch.put(key, event.status.as_str());
    } else {
        let rejected: u64 = match db.get(REJECTED_KEY)? {
            Some(v) => std::str::from_utf8(&v)?.parse()?,
            None => 0,
        };
        batch.put(REJECTED_KEY, (rejected + 1).to_string());
    }
    batch.put(POSITION_KEY, (i + 1).to_string());
    db.write(batch, WriteOptions::default().sync(sync))?;
    Ok(())
}

/// The state after the first `upto` events, computed without a store.
fn model(events: &[Event], upto: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut rejected = 0u64;
    for event in &events[..upto as usize] {
        let key = order_key(event.order).into_bytes();
        let current = state.get(&key).and_then(|v| Status::parse(v));
        if event.status.may_follow(current) {
            state.insert(key, event.status.as_str().as_bytes().to_vec());
        } else {
            rejected += 1;
        }
    }
    if rejected > 0 {
        state.insert(REJECTED_KEY.into(), rejected.to_string().into_bytes());
    }
    if upto > 0 {
        state.insert(POSITION_KEY.into(), upto.to_string().into_bytes());
    }
    state
}

fn contents(db: &Db) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    let mut out = BTreeMap::new();
    for kv in db.iter() {
        let (k, v) = kv?;
        out.insert(k.to_vec(), v.to_vec());
    }
    Ok(out)
}

/// The child: applies the stream from the store's position, printing each
/// acknowledged (synced) position, until killed or done.
fn feed(dir: &Path) -> Result<(), Error> {
    let events = events();
    let db = Db::open(dir, options())?;
    let from = position(&db)?;
    for i in from..EVENTS {
        let sync = (i + 1) % ACK_EVERY == 0;
        apply(&db, i, events[i as usize], sync)?;
        if sync {
            println!("acked {}", i + 1);
        }
    }
    db.close()?;
    Ok(())
}

/// Step 1: runs the feed in a child process and kills it once it has
/// acknowledged `KILL_AFTER` events; returns the last acknowledged count.
fn feed_and_kill(dir: &Path) -> Result<u64, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("feed")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let mut acked = 0;
    for line in BufReader::new(stdout).lines() {
        if let Some(n) = line?.strip_prefix("acked ") {
            acked = n.parse()?;
            if acked >= KILL_AFTER {
                break;
            }
        }
    }
    child.kill()?;
    child.wait()?;
    Ok(acked)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, cmd, dir] = args.as_slice()
        && cmd == "feed"
    {
        return feed(Path::new(dir));
    }
    let scratch = tempfile::tempdir()?;
    let base: PathBuf = scratch.path().to_owned();
    let primary_dir = base.join("primary");
    let events = events();
    println!("order-state: {EVENTS} order events (NEW → APPROVED → SHIPPED)");

    // 1. Apply the stream in a child process and kill it midway.
    let acked = feed_and_kill(&primary_dir)?;
    println!("1. the feeding process was killed (SIGKILL) after acknowledging {acked} events");

    // 2. Reopen: every acknowledged event is there; continue to the end.
    let db = Db::open(&primary_dir, options())?;
    let recovered = position(&db)?;
    if recovered < acked {
        return Err(format!("lost acknowledged events: at {recovered}, acked {acked}").into());
    }
    if contents(&db)? != model(&events, recovered) {
        return Err("the reopened store differs from the stream's first events".into());
    }
    println!(
        "2. reopened at event {recovered} (≥ {acked} acknowledged), state matches the model; continuing"
    );
    let started = Instant::now();
    for i in recovered..EVENTS {
        apply(&db, i, events[i as usize], false)?;
    }
    db.flush()?;
    let state = contents(&db)?;
    if state != model(&events, EVENTS) {
        return Err("the final state differs from the model".into());
    }
    let rejected = state
        .get(REJECTED_KEY.as_bytes())
        .map_or("0".into(), |v| String::from_utf8_lossy(v).into_owned());
    println!(
        "   applied the remaining {} events in {:.2}s; {} orders, {rejected} invalid transitions rejected",
        EVENTS - recovered,
        started.elapsed().as_secs_f64(),
        state.len() - 2
    );

    // 3. Restore a fresh store from the changelog alone; take a checkpoint.
    let restored_dir = base.join("restored");
    let report = varve_db::restore(
        &restored_dir,
        &mut LogSource::new(db.changelog()),
        RestoreOptions::default().store_options(options()),
    )?;
    let restored = Db::open(&restored_dir, options())?;
    if contents(&restored)? != state {
        return Err("the restored store differs from the original".into());
    }
    println!(
        "3. restored {} changelog records ({:.1} MB) into a fresh store in {:.2}s: {:.0} records/s, {:.1} MB/s; equal key by key",
        report.records,
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        report.records as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.mb_per_s()
    );
    restored.close()?;
    let checkpoint = db.checkpoint(base.join("checkpoint"))?;
    let opened = Db::open(&checkpoint.path, options())?;
    if contents(&opened)? != state {
        return Err("the checkpoint differs from the store".into());
    }
    opened.close()?;
    println!(
        "   checkpoint at changelog offset {} opens with the same state",
        checkpoint.offset
    );

    // 4. A standby follows the store while more events arrive, then is
    //    promoted when the store goes away.
    let standby = Standby::follow(&db, base.join("standby"), "order-standby", options())?;
    let more = extra_events(&db, 20_000)?;
    let end = db.changelog().next_offset();
    if !standby.wait_for_offset(end, Duration::from_secs(60))? {
        return Err("the standby did not catch up".into());
    }
    let before_failover = contents(&db)?;
    println!(
        "4. a standby followed {more} more events (lag {} offsets now)",
        standby.lag()?
    );
    db.close()?;
    let promoted = standby.promote(CatchUp::ToEnd)?;
    if contents(&promoted)? != before_failover {
        return Err("the promoted standby differs from the store it followed".into());
    }
    promoted.put(order_key(u64::MAX >> 1), Status::New.as_str())?;
    println!(
        "   promoted after the store closed: {} keys, nothing lost, and it takes writes",
        contents(&promoted)?.len()
    );
    promoted.close()?;
    println!("done");
    Ok(())
}

/// Ships `n` more orders through NEW → APPROVED → SHIPPED.
fn extra_events(db: &Db, n: u64) -> Result<u64, Error> {
    let mut i = position(db)?;
    for order in 0..n / 3 {
        let order = (1 << 40) + order;
        for status in [Status::New, Status::Approved, Status::Shipped] {
            apply(db, i, Event { order, status }, false)?;
            i += 1;
        }
    }
    Ok(n / 3 * 3)
}
