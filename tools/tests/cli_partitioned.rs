//! The root of a `PartitionedStore` (the directory with the `PARTITIONS`
//! file): `get` routes the key to its partition and names it, `info` and
//! `verify` cover every partition, and every command that works on one
//! store refuses the root with a message naming the partition
//! directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    PARTITIONS, arg, flip_byte, json_lines, ok, refused, tables, temp_partitioned, varve,
};
use varve_db::partition_dir;
use varve_db::varve_changelog::partitioner::partition_for_key;

/// The partition the store routes `key` to, as a number and as an
/// argument.
fn partition_of(key: &[u8]) -> (u32, String) {
    let p = partition_for_key(key, PARTITIONS);
    (p, p.to_string())
}

#[test]
fn get_routes_the_key_and_names_its_partition() {
    let (_parent, root) = temp_partitioned();
    let r = arg(&root);
    for (key, value) in [
        ("key:05", "newer, in the changelog"),
        ("key:17", "v17"),
        ("key:33", "v33"),
    ] {
        let p = partition_for_key(key.as_bytes(), PARTITIONS);
        let run = varve(&["get", r, key]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, format!("{value}\n"));
        assert!(
            run.stderr
                .contains(&format!("partition {p} of {PARTITIONS} (")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(&format!("partition-{p:05}")));
        let json = json_lines(&ok(&["get", r, key, "--json"]));
        assert_eq!(json[0]["partition"], p);
        assert_eq!(json[0]["value"], value);
    }
    let missing = varve(&["get", r, "key:06"]);
    assert_eq!(missing.code, 1);
    let p = partition_for_key(b"key:06", PARTITIONS);
    assert!(missing.stderr.contains(&format!("partition {p} of")));
}

#[test]
fn info_shows_every_partition_and_totals() {
    let (_parent, root) = temp_partitioned();
    let r = arg(&root);
    let text = ok(&["info", r]);
    assert!(text.starts_with("partitioned store "), "{text}");
    for p in 0..PARTITIONS {
        assert!(text.contains(&format!("== partition {p} ==")), "{text}");
        let dir = partition_dir(&root, p);
        assert!(text.contains(&format!("store          {}", dir.display())));
    }
    assert!(text.contains("totals         4 partitions: "), "{text}");
    let json = json_lines(&ok(&["info", r, "--json"]));
    assert_eq!(json.len(), 1);
    let reports = json[0]["partition_reports"].as_array().unwrap();
    assert_eq!(reports.len(), 4);
    assert_eq!(json[0]["partitions"], 4);
    let totals = &json[0]["totals"];
    let tables_on_disk: usize = (0..PARTITIONS)
        .map(|p| tables(&partition_dir(&root, p)).len())
        .sum();
    assert_eq!(totals["tables"], tables_on_disk as u64);
    // 40 puts, one put and one delete: 42 records over the changelogs,
    // two of them not yet in tables.
    assert_eq!(totals["changelog_records"], 42);
    assert_eq!(totals["unflushed_records"], 2);
    let live = json_lines(&ok(&["info", r, "--json", "--live"]));
    let live_bytes: u64 = live[0]["partition_reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["amplification"]["live_bytes"].as_u64().unwrap())
        .sum();
    assert!(live_bytes > 0);
}

#[test]
fn verify_covers_every_partition_and_fails_on_one_damaged() {
    let (_parent, root) = temp_partitioned();
    let r = arg(&root);
    let text = ok(&["verify", r, "--quiet"]);
    for p in 0..PARTITIONS {
        let line = format!("{}: ok", partition_dir(&root, p).display());
        assert!(text.lines().any(|l| l == line), "{text}");
    }
    assert_eq!(
        text.lines().last().unwrap(),
        format!("{r}: ok (4 partitions)")
    );
    let json = json_lines(&ok(&["verify", r, "--json", "--quiet"]));
    let summary = json.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["partitions"], 4);
    assert_eq!(json.iter().filter(|o| o["kind"] == "partition").count(), 4);

    let damaged = partition_dir(&root, 2);
    flip_byte(&tables(&damaged)[0], 10);
    let run = varve(&["verify", r, "--quiet"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("{}: 1 problem(s)", damaged.display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("damaged partition(s) 2 of 4"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("1 problem(s) found"), "{}", run.stderr);
    let run = varve(&["verify", r, "--json", "--quiet"]);
    assert_eq!(run.code, 1);
    let summary = json_lines(&run.stdout).pop().unwrap();
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["damaged_partitions"], serde_json::json!([2]));

    // A partition directory that is gone is a problem too; the others are
    // still checked.
    std::fs::remove_dir_all(partition_dir(&root, 3)).unwrap();
    let run = varve(&["verify", r, "--quiet"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("damaged partition(s) 2, 3 of 4"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("does not exist"), "{}", run.stdout);
}

#[test]
fn one_store_commands_refuse_the_root_and_name_a_partition() {
    let (parent, root) = temp_partitioned();
    let r = arg(&root);
    let out = parent.path().join("out");
    let o = arg(&out);
    let lines = parent.path().join("lines.json");
    std::fs::write(&lines, "{\"key\":\"a\",\"value\":\"1\"}\n").unwrap();
    let l = arg(&lines);
    let cases: [(&str, Vec<&str>); 11] = [
        ("log dump", vec!["log", "dump", r]),
        ("manifest dump", vec!["manifest", "dump", r]),
        ("positions", vec!["positions", r]),
        ("positions", vec!["positions", r, "--delete", "shipper"]),
        ("put", vec!["put", r, "k", "v"]),
        ("delete", vec!["delete", r, "k"]),
        ("load", vec!["load", r, l]),
        ("compact", vec!["compact", r]),
        ("repair", vec!["repair", r, "--to", o]),
        ("checkpoint", vec!["checkpoint", r, o]),
        ("restore", vec!["restore", r, o]),
    ];
    let first = partition_dir(&root, 0);
    for (command, args) in cases {
        let run = refused(&args, "is the root of a partitioned store (4 partitions");
        assert!(
            run.stderr
                .contains(&format!("`varve {command} {}`", first.display())),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("not a Varve store"), "{}", run.stderr);
    }
    assert!(!out.exists());
    // On a partition directory the same commands work.
    let p = arg(&first);
    ok(&["log", "dump", p]);
    ok(&["positions", p]);
}

#[test]
fn partition_selects_one_partition_of_a_root() {
    let (_parent, root) = temp_partitioned();
    let r = arg(&root);
    let (p, ps) = partition_of(b"key:17");
    // A one-store command on the root with --partition: that partition.
    let dump = ok(&["log", "dump", r, "--partition", &ps]);
    let dir = partition_dir(&root, p);
    assert!(
        dump.starts_with(&format!("Dumping {}/changelog/", dir.display())),
        "{dump}"
    );
    let info = json_lines(&ok(&["info", r, "--partition", &ps, "--json"]));
    assert_eq!(info[0]["store"], dir.display().to_string());
    let scan = ok(&["scan", r, "--partition", &ps]);
    assert!(scan.contains("key:17\tv17"), "{scan}");
    for line in scan.lines() {
        let key = line.split('\t').next().unwrap();
        assert_eq!(partition_for_key(key.as_bytes(), PARTITIONS), p, "{line}");
    }
    assert_eq!(ok(&["get", r, "key:17", "--partition", &ps]), "v17\n");
    // Asking another partition for a key: not there, and the tool says
    // where the store routes it.
    let other = ((p + 1) % PARTITIONS).to_string();
    let run = varve(&["get", r, "key:17", "--partition", &other]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains(&format!("routes this key to partition {p}, not {other}")),
        "{}",
        run.stderr
    );
    refused(&["info", r, "--partition", "4"], "has partitions 0 to 3");
    let not_root = "is not the root of a partitioned store";
    refused(&["info", arg(&dir), "--partition", "0"], not_root);
    refused(&["log", "dump", r], "add --partition N (0 to 3)");
}

#[test]
fn writes_with_partition_take_only_the_keys_routed_there() {
    let (parent, root) = temp_partitioned();
    let r = arg(&root);
    let (p, ps) = partition_of(b"fresh");
    let other = ((p + 1) % PARTITIONS).to_string();
    ok(&["put", r, "fresh", "1", "--partition", &ps]);
    assert_eq!(ok(&["get", r, "fresh"]), "1\n");
    let belongs = format!("key \"fresh\" belongs to partition {p}, not {other}");
    refused(&["put", r, "fresh", "2", "--partition", &other], &belongs);
    refused(&["delete", r, "fresh", "--partition", &other], "");
    let lines = parent.path().join("lines.json");
    std::fs::write(&lines, "{\"key\":\"fresh\",\"value\":\"3\"}\n").unwrap();
    let load = ["load", r, arg(&lines), "--partition", &other];
    refused(&load, "lines.json:1: key \"fresh\"");
    assert_eq!(ok(&["get", r, "fresh"]), "1\n");
    ok(&["load", r, arg(&lines), "--partition", &ps]);
    ok(&[
        "delete",
        r,
        "key:17",
        "--partition",
        &partition_of(b"key:17").1,
    ]);
    assert_eq!(ok(&["get", r, "fresh"]), "3\n");
    assert_eq!(varve(&["get", r, "key:17"]).code, 1);
    ok(&["verify", r, "--quiet"]);
}
