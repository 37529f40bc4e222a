//! A registry deployed as Distribution's documentation says, with a self-signed certificate
//! made by `openssl req -x509` (so also a CA), given to lade with `--tls-ca-file`: trusted
//! for that server, as curl `--cacert` trusts it; its name still checked (issue 12, item 2).

mod common;
mod support;

use std::process::Command;

use common::*;
use support::registry::{Auth, Registry, self_signed_cert};

#[test]
fn self_signed_registry_certificate_given_by_the_user() {
    let reg = Registry::start_with_certs(Auth::None, Some(self_signed_cert));
    reg.push(&fixtures().oci("single"), "team/app:1", &[]);
    let cert = reg.tls.as_ref().unwrap().cert.to_str().unwrap().to_string();

    // curl agrees the certificate is good for this server.
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-f", "--cacert", &cert])
        .arg(format!("https://{}/v2/", reg.host()));
    run_cmd(curl).ok();

    let lade = Lade::new();
    lade.run([
        "--tls-ca-file",
        &cert,
        "pull",
        &reg.image("team/app:1"),
        "app",
    ])
    .ok();
    let out = lade.ok(["run", "app", "--", "/bin/echo", "ran"]);
    assert_eq!(out.trim(), "ran");

    // The name is still checked: the certificate is for 127.0.0.1, not localhost.
    let other = format!("localhost:{}/team/app:1", reg.port);
    let err = lade
        .run(["--tls-ca-file", &cert, "pull", &other])
        .fails_one_line();
    assert!(err.contains("certificate"), "{err}");
    // Without the file it is refused as before.
    let err = lade
        .run(["pull", &reg.image("team/app:1")])
        .fails_one_line();
    assert!(err.contains("--tls-ca-file"), "{err}");
}
