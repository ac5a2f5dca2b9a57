//! `varve info` shows what the next open of a store would cut from its
//! changelog, and the engine reports the same cut once it has made it
//! (issue 15, item 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::{arg, first_segment, json_lines, ok};
use varve_db::{Db, Options};

#[test]
fn info_shows_the_cut_the_next_open_makes_and_the_open_reports_it() {
    let (_dir, store) = common::temp_path("s");
    let db = Db::open(&store, Options::default()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();

    let text = ok(&["info", arg(&store)]);
    assert!(!text.contains("next open cuts"), "{text}");
    let json = json_lines(&ok(&["info", arg(&store), "--json"]));
    assert!(json[0]["changelog"]["next_open_cut"].is_null());

    let segment = first_segment(&store);
    let len = std::fs::metadata(&segment).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&[0xAB; 30]).unwrap();
    drop(file);

    let text = ok(&["info", arg(&store)]);
    let want = format!(
        "next open cuts 30 byte(s) of {} from byte {len}",
        segment.display()
    );
    assert!(text.contains(&want), "{text}");
    let json = json_lines(&ok(&["info", arg(&store), "--json"]));
    let cut = &json[0]["changelog"]["next_open_cut"];
    assert_eq!(cut["segment"], segment.display().to_string());
    assert_eq!(cut["byte"], len);
    assert_eq!(cut["bytes"], 30);

    let db = Db::open(&store, Options::default()).unwrap();
    let report = db.changelog_recovery_report();
    assert_eq!(report.truncated_at, Some((segment.clone(), len)));
    assert_eq!(report.truncated_bytes, 30);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let json = json_lines(&ok(&["info", arg(&store), "--json"]));
    assert!(json[0]["changelog"]["next_open_cut"].is_null());
}
