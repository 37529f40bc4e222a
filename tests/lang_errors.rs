//! Everyday mistakes and mishaps, each ending in a message that says what happened and what to
//! do (issue 12, items 8, 9 and 10), as an ordinary user.

mod common;
mod support;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use common::*;
use support::registry::{Auth, Registry, free_port};

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "img"]);
    for args in [
        &["list", "-l"][..],
        &["list", "img"],
        &["gestalt", "storage-path"],
    ] {
        // A pipe whose reading end is closed before lade writes: every write fails.
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let out = lade
            .cmd()
            .args(args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}\n{stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn architectures_are_checked() {
    let lade = Lade::new();
    let err = lade
        .run(["-a", "bogus", "pull", &fixtures().oci("single")])
        .fails_one_line();
    assert!(
        err.contains("--arch bogus") && err.contains("arm64"),
        "{err}"
    );
    // A single-platform amd64 image asked for as arm64: pulled (nothing else to choose, as
    // podman does), with a warning naming both.
    let r = lade
        .run(["-a", "arm64", "pull", &fixtures().oci("single"), "img"])
        .ok();
    let warning: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert!(
        warning.len() == 1 && warning[0].contains("linux/amd64") && warning[0].contains("arm64"),
        "{}",
        r.stderr
    );
    let r = lade
        .run(["-a", "amd64", "pull", &fixtures().oci("single"), "img"])
        .ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn run_mistakes_get_hints() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "img"]);
    // The command without `--`.
    let r = lade.run(["run", "img", "/bin/echo", "hi"]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("lade run [OPTIONS] IMAGE -- /bin/echo"),
        "{}",
        r.stderr
    );
    // A name that is not stored.
    let err = lade.run(["run", "nosuch", "--", "true"]).fails_one_line();
    assert!(err.contains("lade pull nosuch"), "{err}");
    // A registry reference with its transport.
    let err = lade
        .run(["run", "docker://127.0.0.1:5000/a/b:1", "--", "true"])
        .fails_one_line();
    assert!(
        err.contains("not found") && err.contains("lade pull docker://127.0.0.1:5000/a/b:1"),
        "{err}"
    );
    // Another transport: pull it first.
    let err = lade
        .run(["run", &fixtures().oci("single"), "--", "true"])
        .fails_one_line();
    assert!(err.contains("lade pull oci:"), "{err}");
}

#[test]
fn registry_failures_say_what_to_do() {
    // Nothing listens: is a registry running?
    let lade = Lade::new();
    let port = free_port();
    let err = lade
        .run(["pull", &format!("127.0.0.1:{port}/a/b:1")])
        .fails_one_line();
    assert!(err.contains("is a registry running"), "{err}");

    // A wrong password for basic authentication: refused, not "not found".
    let reg = Registry::start(Auth::Htpasswd(vec![("bob".into(), "right".into())]), true);
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let err = lade
        .cmd()
        .env("HOME", lade.path("home"))
        .env("LADE_USERNAME", "bob")
        .env("LADE_PASSWORD", "wrong")
        .args(["--auth", "--tls-ca-file", &ca, "pull", &reg.image("a/b:1")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        stderr.contains("refused the password of user 'bob'") && !stderr.contains("not found"),
        "{stderr}"
    );
}
