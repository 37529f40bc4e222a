//! `lade login` and `lade logout`, as `podman login`/`docker login` take them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::transport::registry::credentials::{self, Credentials, Env, Origin};
use lade::transport::registry::login::{self, Target};

#[derive(Args)]
pub struct LoginArgs {
    /// User name [default: asked on the terminal]
    #[arg(short, long, value_name = "USER")]
    username: Option<String>,
    /// Read the password from standard input (its first line) instead of the terminal
    #[arg(long)]
    password_stdin: bool,
    /// Login file to write [default: $REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, else ~/.config/containers/auth.json]
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry, HOST[:PORT], optionally with a /NAMESPACE the credentials are for
    registry: String,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Login file to remove the credentials from [default: as for login]
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry, as given to `lade login`
    registry: String,
}

pub fn login(args: LoginArgs, c: &Common) -> Result<ExitCode> {
    let target = Target::parse(&args.registry)?;
    let file = login::file_to_write(args.authfile.as_deref(), &Env::from_process())?;
    let creds = if args.password_stdin {
        let username = match args.username {
            Some(u) => u,
            None => {
                return Err(lade::error::Error::invalid(
                    "--password-stdin",
                    "needs --username (standard input holds only the password)",
                ));
            }
        };
        Credentials {
            username,
            password: login::password_from_stdin()?,
            origin: Origin::Prompt,
        }
    } else {
        credentials::prompt(&target.registry, args.username.as_deref())?
    };
    let opts = c.registry();
    login::verify(&target, &creds, &opts)?;
    let place = login::save(&file, &target, &creds)?;
    c.progress.info(&format!(
        "login succeeded: credentials for {} saved in {place}",
        target.key
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs, c: &Common) -> Result<ExitCode> {
    let target = Target::parse(&args.registry)?;
    let file = login::file_to_write(args.authfile.as_deref(), &Env::from_process())?;
    login::forget(&file, &target)?;
    c.progress.info(&format!(
        "removed the credentials for {} from {}",
        target.key,
        file.display()
    ));
    Ok(ExitCode::SUCCESS)
}
