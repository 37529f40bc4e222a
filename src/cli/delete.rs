//! `lade delete`: local images and single-file images (SIFs) by glob, and `docker://REF`s
//! from their registries.

use std::process::ExitCode;

use clap::Args;

use super::{Common, one_line};
use lade::error::Result;
use lade::reference::Reference;
use lade::storage::LockMode;

#[derive(Args)]
pub struct DeleteArgs {
    /// Image or SIF names or shell globs of them (quoted), or docker://REF; repeatable
    #[arg(required = true)]
    globs: Vec<String>,
}

pub fn run(args: DeleteArgs, c: &Common) -> Result<ExitCode> {
    let (remote, globs): (Vec<String>, Vec<String>) = args
        .globs
        .into_iter()
        .partition(|g| g.starts_with("docker://"));
    let mut failed = None;
    for r in &remote {
        let result = Reference::parse(&r["docker://".len()..])
            .and_then(|name| lade::transport::registry::delete_remote(&name, &c.registry()));
        match result {
            Ok(done) => println!("{r}: {done}"),
            Err(e) => {
                eprintln!("lade: error: {}", one_line(&e));
                failed = Some(ExitCode::FAILURE);
            }
        }
    }
    if globs.is_empty() {
        return Ok(failed.unwrap_or(ExitCode::SUCCESS));
    }
    let storage = c.open_storage(LockMode::Exclusive)?;
    let mut deleted = Vec::new();
    for glob in &globs {
        match lade::storage::gc::delete_matching(&storage, glob) {
            Ok(names) => deleted.extend(names),
            Err(e) => {
                eprintln!("lade: error: {}", one_line(&e));
                failed = Some(ExitCode::FAILURE);
            }
        }
    }
    if deleted.is_empty() {
        return Ok(failed.unwrap_or(ExitCode::SUCCESS));
    }
    // "deleted" is said only once the objects that are no longer used are gone too: a
    // collection that fails says which images it deleted in its error instead.
    match lade::storage::gc::collect_garbage(&storage) {
        Ok(report) => {
            deleted.iter().for_each(|n| println!("deleted {n}"));
            c.progress.note(&format!(
                "removed {} unused blobs and {} unused layer trees",
                report.blobs_removed, report.trees_removed
            ));
            Ok(failed.unwrap_or(ExitCode::SUCCESS))
        }
        Err(e) => {
            eprintln!(
                "lade: error: deleted {}, but removing what they used failed: {}",
                deleted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                one_line(&e)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
