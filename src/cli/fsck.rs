//! `lade fsck`.

use std::process::ExitCode;

use clap::Args;

use super::{Common, Format};
use lade::error::Result;
use lade::storage::LockMode;
use lade::storage::fsck::FsckOptions;

#[derive(Args)]
pub struct FsckArgs {
    /// Remove corrupt objects and unusable images (pull them again afterwards), replace
    /// damaged layer trees, move unreadable image records to lost+found/
    #[arg(long)]
    repair: bool,
    /// Do not compare layer trees with their blobs (much faster; trees are only listed)
    #[arg(long)]
    quick: bool,
    /// Output: text, or JSON (counts, problems, repairs)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: FsckArgs, c: &Common) -> Result<ExitCode> {
    let mode = if args.repair {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let storage = c.open_storage(mode)?;
    let opts = FsckOptions {
        repair: args.repair,
        quick: args.quick,
    };
    let report = lade::storage::fsck::fsck(&storage, opts)?;
    let failed = !report.is_clean() && !args.repair;
    if args.format == Format::Json {
        super::print_json(&serde_json::json!({
            "blobs_checked": report.blobs_checked,
            "trees_checked": report.trees_checked,
            "trees_compared": !args.quick,
            "images_checked": report.images_checked,
            "sifs_checked": report.single_files_checked,
            "clean": report.is_clean(),
            "problems": report.problems,
            "repaired": report.repaired,
        }))?;
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
    for r in &report.repaired {
        println!("repaired: {r}");
    }
    let trees = if args.quick {
        format!(
            "{} layer trees (contents not compared: --quick)",
            report.trees_checked
        )
    } else {
        format!("{} layer trees", report.trees_checked)
    };
    // SIFs are counted where there are any: most stores have none.
    let sifs = match report.single_files_checked {
        0 => String::new(),
        n => format!(", {n} SIFs"),
    };
    println!(
        "checked {} blobs, {trees}, {} images{sifs}: {}",
        report.blobs_checked,
        report.images_checked,
        if report.is_clean() {
            "no problems".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    if !report.is_clean() && !args.repair {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
