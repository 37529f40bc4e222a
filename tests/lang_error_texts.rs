//! Malformed documents and misbehaving transfers from a registry: each error names the field
//! and the document (and whose), or what happened to the transfer (issue 13, item 6, the
//! error texts). A real Distribution registry behind the fault-injecting proxy.

mod common;
mod support;

use common::*;
use support::proxy::{Action, Proxy};
use support::registry::Registry;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A manifest with one layer of `size` (JSON text) and the config `{}`.
fn manifest(size: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":2}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"sha256:{}","size":{size}}}]}}"#,
        sha256(b"{}"),
        "ab".repeat(32)
    )
}

fn serve(proxy: &Proxy, manifest: String) {
    let config = sha256(b"{}");
    proxy.set_rule(move |head, _| {
        if head.target.ends_with("/manifests/1") {
            let headers = vec![("Content-Type".into(), OCI_MANIFEST.into())];
            Action::Status(200, headers, manifest.clone())
        } else if head.target.ends_with(&format!("/blobs/{config}")) {
            Action::Status(200, vec![], "{}".into())
        } else {
            Action::Forward
        }
    });
}

#[test]
fn malformed_documents_name_field_and_source() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let image = format!("{}/bad/img:1", proxy.host());
    let lade = Lade::new();
    let pull = |lade: &Lade| {
        let mut c = lade.cmd();
        c.args(["-q", "--tls-no-verify", "pull", &image]);
        run_cmd(c).fails_one_line()
    };
    for (size, want) in [
        ("-1", "layers[0].size: invalid value: integer `-1`"),
        ("1.5", "layers[0].size: invalid type: floating point `1.5`"),
        ("1,\"size\":2", "layers[0]: duplicate field `size`"),
    ] {
        serve(&proxy, manifest(size));
        let err = pull(&lade);
        assert!(
            err.contains(want) && err.contains(&image) && !err.contains("serde failed"),
            "{size}: {err}"
        );
    }
    // 2^63 is not a size: refused as such, not fetched and retried.
    serve(&proxy, manifest("9223372036854775808"));
    proxy.clear();
    let err = pull(&lade);
    assert!(err.contains("is not a size"), "{err}");
    assert!(
        !proxy
            .log()
            .iter()
            .any(|l| l.path.contains("/blobs/sha256:abab")),
        "{}",
        proxy.dump()
    );
    // A config `{}`: its missing field and whose config it is.
    serve(
        &proxy,
        manifest("10").replace(",\"layers\":[{", ",\"layers\":[],\"x\":[{"),
    );
    let err = pull(&lade);
    assert!(
        err.contains("config sha256:") && err.contains("missing field `rootfs`"),
        "{err}"
    );
}

#[test]
fn a_stalled_transfer_says_it_timed_out() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("single"), "app/img:1", &[]);
    let proxy = Proxy::start(reg.port);
    proxy.set_rule(|head, _| {
        if head.target.contains("/blobs/") && !head.target.contains(&sha256(b"{}")) {
            Action::Stall(0)
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    let mut c = lade.cmd();
    c.env("LADE_READ_TIMEOUT", "1").args([
        "-q",
        "--tls-no-verify",
        "pull",
        &format!("{}/app/img:1", proxy.host()),
    ]);
    let err = run_cmd(c).fails_one_line();
    assert!(
        err.contains("timed out") && !err.contains("decoding"),
        "{err}"
    );
}
