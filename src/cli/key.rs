//! `lade key generate [PREFIX]`: a key pair in cosign's formats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::Common;
use lade::error::{Error, Result};
use lade::sign::keys;

#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write PREFIX.key (encrypted, as cosign writes it) and PREFIX.pub; the password comes
    /// from $LADE_KEY_PASSWORD or a prompt that does not echo
    Generate {
        /// File name prefix [default: cosign]
        prefix: Option<PathBuf>,
    },
}

/// The password for a private key: `$LADE_KEY_PASSWORD` (may be empty, as with cosign's
/// `COSIGN_PASSWORD`), else asked on the terminal without echo (twice when `confirm`).
pub fn password(what: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("LADE_KEY_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    let no_tty = |e: std::io::Error| {
        Error::invalid(
            what,
            format!(
                "needs a password and there is no terminal to ask on ({e}); set LADE_KEY_PASSWORD"
            ),
        )
    };
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("Password for {what}: ")).map_err(no_tty)?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password(format!("Password for {what} again: ")).map_err(no_tty)?,
        );
        if *again != *first {
            return Err(Error::invalid(what, "the two passwords differ"));
        }
    }
    Ok(first)
}

pub fn run(args: KeyArgs, c: &Common) -> Result<ExitCode> {
    match args.command {
        KeyCommand::Generate { prefix } => {
            let prefix = prefix.unwrap_or_else(|| PathBuf::from("cosign"));
            let private = prefix.with_extension("key");
            let public = prefix.with_extension("pub");
            for p in [&private, &public] {
                if p.exists() {
                    return Err(Error::invalid(
                        p.display().to_string(),
                        "exists; refusing to overwrite a key (move it away first)",
                    ));
                }
            }
            let pw = password(&format!("new key {}", private.display()), true)?;
            let pair = keys::generate(pw.as_bytes())?;
            write_new(&private, pair.private_pem.as_bytes(), 0o600)?;
            write_new(&public, pair.public_pem.as_bytes(), 0o644)?;
            c.progress.info(&format!(
                "wrote private key {} and public key {}",
                private.display(),
                public.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates a file that must not exist yet, with `mode`.
fn write_new(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io_path(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io_path(path, e))
}
