//! `varve restore`'s two forms refuse arguments they cannot use before
//! touching anything (no broker needed).

mod common;

use common::{arg, refused, temp_path};

#[test]
fn three_paths_without_kafka_are_refused() {
    let (_dir, store) = temp_path("new");
    refused(
        &["restore", "changelog", "topic", arg(&store)],
        "three paths only with --kafka",
    );
    assert!(!store.exists(), "nothing was created");
}

#[test]
fn kafka_needs_a_partition_number_and_a_store() {
    let (_dir, store) = temp_path("new");
    for partition in ["one", "1.5", "2147483648"] {
        refused(
            &[
                "restore",
                "--kafka",
                "127.0.0.1:1",
                "t",
                partition,
                arg(&store),
            ],
            "is not a partition number",
        );
    }
    refused(
        &["restore", "--kafka", "127.0.0.1:1", "t", "0"],
        "BOOTSTRAP TOPIC PARTITION NEW_STORE",
    );
    refused(
        &[
            "restore",
            "--kafka",
            "127.0.0.1:1",
            "--kafka-property",
            "no-equals-sign",
            "t",
            "0",
            arg(&store),
        ],
        "is not KEY=VALUE",
    );
    assert!(!store.exists(), "nothing was created");
}

#[test]
fn kafka_properties_need_kafka() {
    let (_dir, store) = temp_path("new");
    refused(
        &[
            "restore",
            "--kafka-property",
            "security.protocol=SSL",
            "changelog",
            arg(&store),
        ],
        "--kafka",
    );
}

/// Without the feature the command says how to get it; with it, an
/// unreachable broker is a clear error within the bridge's timeout.
#[test]
fn kafka_restore_without_a_reachable_broker_is_refused() {
    let (_dir, store) = temp_path("new");
    let says = if cfg!(feature = "kafka") {
        "Kafka"
    } else {
        "built without Kafka support"
    };
    refused(
        &[
            "restore",
            "--kafka",
            "127.0.0.1:1",
            "--kafka-property",
            "socket.connection.setup.timeout.ms=1000",
            "t",
            "0",
            arg(&store),
        ],
        says,
    );
    assert!(!store.exists(), "nothing was created");
}

#[test]
fn a_memory_budget_must_be_a_byte_count() {
    let (_dir, store) = temp_path("new");
    let (_src_dir, src) = temp_path("src");
    std::fs::create_dir(&src).unwrap();
    for budget in [
        "",
        "0",
        "1.5G",
        "-1",
        "12T",
        "64 M",
        "lots",
        "99999999999999999999G",
    ] {
        let flag = format!("--memory-budget={budget}");
        let run = refused(
            &["restore", &flag, arg(&src), arg(&store)],
            "--memory-budget",
        );
        assert!(
            run.stderr.contains("byte count"),
            "{budget:?}: {}",
            run.stderr
        );
        // The typed invalid-argument error, not clap's usage message.
        assert!(run.stderr.starts_with("varve: error: "), "{}", run.stderr);
    }
    assert!(!store.exists(), "nothing was created");
}
