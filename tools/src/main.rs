//! `varve`: offline inspection, verification and repair of Varve stores.

use clap::Parser;

/// Look inside a Varve store and its changelog.
#[derive(Parser)]
#[command(name = "varve", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
