//! `lade completion SHELL` and `lade man`: shell completion scripts and manual pages, both
//! generated from the same clap definitions the parser uses, so they never drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, Common};
use lade::error::{Error, Result};

#[derive(Args)]
pub struct CompletionArgs {
    /// The shell to complete for; the script goes to standard output
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write every page (lade.1, lade-pull.1, …) into DIR, created if missing; without it,
    /// print lade.1 to standard output
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
}

pub fn completion(args: CompletionArgs, _c: &Common) -> Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "lade", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs, c: &Common) -> Result<ExitCode> {
    // `lade help` is the same as `--help`: no page of its own (clap_mangen's choice for a
    // directory, kept for the single page too so that both agree).
    let cmd = Cli::command().disable_help_subcommand(true);
    let Some(dir) = args.output else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| Error::io("standard output", e))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io_path(&dir, e))?;
    clap_mangen::generate_to(cmd, &dir).map_err(|e| Error::io_path(&dir, e))?;
    c.progress
        .info(&format!("wrote the manual pages to {}", dir.display()));
    Ok(ExitCode::SUCCESS)
}
