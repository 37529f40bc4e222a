//! `lade sign` and `lade verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::sign::{self, keys};
use lade::storage::LockMode;
use lade::transport::{Context, ImageLocation};

#[derive(Args)]
pub struct SignArgs {
    /// The private key (cosign's format; password from $LADE_KEY_PASSWORD or a prompt)
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Also attach a Sigstore bundle as an OCI 1.1 referrer, as cosign 3 does
    #[arg(long)]
    bundle: bool,
    /// The image: IMAGE_REF (a registry), docker://REF, oci:DIR[:REF] or lade:NAME
    image: String,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The public key (PEM)
    #[arg(long, value_name = "PUB")]
    key: PathBuf,
    /// The image: IMAGE_REF (a registry), docker://REF, oci:DIR[:REF] or lade:NAME
    image: String,
}

/// The context for an image location: the store opened only when it is `lade:`.
pub fn context_for(loc: &ImageLocation, c: &Common) -> Result<Context> {
    Ok(Context {
        storage: if loc.is_store() {
            Some(c.open_storage(LockMode::Shared)?)
        } else {
            None
        },
        registry: c.registry(),
    })
}

pub fn sign(args: SignArgs, c: &Common) -> Result<ExitCode> {
    let loc = ImageLocation::parse_pull_source(&args.image)?;
    let pw = super::key::password(&format!("private key {}", args.key.display()), false)?;
    let key = keys::load_private(&args.key, pw.as_bytes())?;
    let ctx = context_for(&loc, c)?;
    let att = lade::attach::open(&loc, &ctx)?;
    let done = sign::sign(&*att, &sign::identity_of(&loc), &key, args.bundle)?;
    println!(
        "signed {loc} {} as {} with key {}: {}",
        done.digest,
        done.identity,
        keys::fingerprint(key.verifying_key()),
        done.stored.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(args: VerifyArgs, c: &Common) -> Result<ExitCode> {
    let loc = ImageLocation::parse_pull_source(&args.image)?;
    let key = keys::load_public(&args.key)?;
    let ctx = context_for(&loc, c)?;
    let att = lade::attach::open(&loc, &ctx)?;
    let result = sign::verify(&*att, &key)?;
    for why in &result.rejected {
        c.progress.note(&format!("rejected: {why}"));
    }
    if result.verified.is_empty() {
        return Err(result.failure(&loc.to_string(), &key));
    }
    let fp = keys::fingerprint(&key);
    for f in &result.verified {
        println!(
            "verified {} {}: {}, identity {}, key {fp}",
            loc,
            f.digest,
            f.kind,
            if f.identity.is_empty() {
                "(none)"
            } else {
                &f.identity
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
