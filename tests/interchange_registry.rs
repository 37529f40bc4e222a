//! Interchange with registries as Docker, Podman and skopeo users expect it: a same-registry
//! `lade copy` that reads no blob, `lade login`/`logout` writing the login files lade reads,
//! and Docker's credential helpers.

mod common;
mod support;

use common::*;
use support::insecure;
use support::proxy::{Logged, Proxy};
use support::registry::Registry;

fn dump(log: &[Logged]) -> String {
    log.iter()
        .map(|l| {
            format!(
                "{} {} -> {} ({} bytes)",
                l.method, l.path, l.status, l.body_bytes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 12 item 12: every blob of a same-registry copy is mounted, and none is read: the
/// copier asks the destination to mount before it opens the source.
#[test]
fn same_registry_copy_mounts_without_reading_any_blob() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("multi"), "src/app:1", &[]);
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let lade = Lade::new();
    insecure(
        &lade,
        &[
            "copy",
            &format!("docker://{host}/src/app:1"),
            &format!("docker://{host}/dst/app:1"),
        ],
    )
    .ok();
    let log = proxy.log();
    let blob_gets: Vec<&Logged> = log
        .iter()
        .filter(|l| l.method == "GET" && l.path.contains("/blobs/"))
        .collect();
    assert!(blob_gets.is_empty(), "blobs read:\n{}", dump(&log));
    let mounted = log
        .iter()
        .filter(|l| l.method == "POST" && l.status == 201 && l.path.contains("/blobs/uploads/"))
        .count();
    // The fixture has 4 layers and a config.
    assert_eq!(mounted, 5, "{}", dump(&log));
    let bytes: u64 = log.iter().map(|l| l.body_bytes).sum();
    assert!(bytes < 64 * 1024, "{bytes} bytes moved:\n{}", dump(&log));
    // And the copy is whole: skopeo reads it back by the same digest.
    let digest = |repo: &str| {
        let mut c = std::process::Command::new("skopeo");
        c.args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{repo}", reg.host()),
        ]);
        let v: serde_json::Value = serde_json::from_str(&run_cmd(c).ok().stdout).unwrap();
        v["Digest"].as_str().unwrap().to_string()
    };
    assert_eq!(digest("src/app:1"), digest("dst/app:1"));
}
