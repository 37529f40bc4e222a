//! `lade artifact push|pull|attach|list`: ORAS artifacts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::Common;
use lade::artifact::{self, FileSpec};
use lade::error::Result;
use lade::reference::Reference;

#[derive(Args)]
pub struct ArtifactArgs {
    #[command(subcommand)]
    command: ArtifactCommand,
}

#[derive(Subcommand)]
enum ArtifactCommand {
    /// Push files as an artifact (OCI 1.1, as ORAS; FILE:TYPE sets a file's media type)
    Push {
        /// The artifact's type [default: application/vnd.unknown.artifact.v1]
        #[arg(long, value_name = "TYPE")]
        artifact_type: Option<String>,
        reference: String,
        #[arg(required = true, value_name = "FILE[:TYPE]")]
        files: Vec<String>,
    },
    /// Write an artifact's files into DIR [default: .], refusing names that leave it
    Pull {
        reference: String,
        dir: Option<PathBuf>,
    },
    /// Push files as an artifact referring to the image SUBJECT (an OCI 1.1 referrer)
    Attach {
        #[arg(long, value_name = "REF")]
        subject: String,
        /// The artifact's type [default: application/vnd.unknown.artifact.v1]
        #[arg(long, value_name = "TYPE")]
        artifact_type: Option<String>,
        #[arg(required = true, value_name = "FILE[:TYPE]")]
        files: Vec<String>,
    },
    /// List the artifacts referring to an image
    List { reference: String },
}

fn parse(r: &str) -> Result<Reference> {
    Reference::parse(r.strip_prefix("docker://").unwrap_or(r))
}

pub fn run(args: ArtifactArgs, c: &Common) -> Result<ExitCode> {
    let opts = c.registry();
    match args.command {
        ArtifactCommand::Push {
            artifact_type,
            reference,
            files,
        } => {
            let r = parse(&reference)?;
            let files: Vec<FileSpec> = files.iter().map(|f| FileSpec::parse(f)).collect();
            let d = artifact::push(&r, &files, artifact_type.as_deref(), &opts, c.progress)?;
            println!("pushed docker://{r} {d}");
        }
        ArtifactCommand::Pull { reference, dir } => {
            let r = parse(&reference)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            for f in artifact::pull(&r, &dir, &opts, c.progress)? {
                println!("{}", f.display());
            }
        }
        ArtifactCommand::Attach {
            subject,
            artifact_type,
            files,
        } => {
            let r = parse(&subject)?;
            let files: Vec<FileSpec> = files.iter().map(|f| FileSpec::parse(f)).collect();
            let d = artifact::attach(&r, &files, artifact_type.as_deref(), &opts, c.progress)?;
            println!("attached {d} to docker://{r}");
        }
        ArtifactCommand::List { reference } => {
            let r = parse(&reference)?;
            let (subject, list) = artifact::list(&r, &opts)?;
            c.progress
                .info(&format!("docker://{r} {subject}: {} referrers", list.len()));
            for l in list {
                println!("{} {} {}", l.digest, l.artifact_type, l.files.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
