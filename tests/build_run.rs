//! What a `lade build` RUN step sees from the host: `-b/--bind` directories and the variables
//! ch-image passes through (the proxies, `USER`, and `SSH_AUTH_SOCK` with its socket), on the
//! busybox fixture, as an ordinary user.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

impl BuildCtx {
    /// Write `df` as the Dockerfile and run `lade build EXTRA... -t t CTX` with `env` added.
    fn build_with(&self, extra: &[&str], df: &str, env: &[(&str, &str)]) -> Run {
        fs::write(self.ctx.join("Dockerfile"), df).unwrap();
        let mut c = self.build_cmd(extra, "t");
        for (k, v) in env {
            c.env(k, v);
        }
        run_cmd(c)
    }
}

#[test]
fn bind_mounts_host_directories_into_run_only() {
    let b = BuildCtx::new();
    let host = b.lade.path("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in.txt"), "from the host\n").unwrap();
    let spec = format!("{}:/srv/lade/in", host.display());
    // The image has no /srv: the mount point is made for the step, and left out of its layer.
    assert!(!b.lade.ok(["run", "base", "--", "ls", "/"]).contains("srv"));
    let r = b.build_with(
        &["-b", &spec],
        "FROM base\nRUN cat /srv/lade/in/in.txt > /copied && echo back > /srv/lade/in/out.txt\n",
        &[],
    );
    r.ok();
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/copied"]),
        "from the host\n"
    );
    assert_eq!(fs::read_to_string(host.join("out.txt")).unwrap(), "back\n");
    assert_eq!(b.last_layer_names("t"), ["copied"]);

    // -b SRC alone binds at the same path; COPY still sees only the context.
    let same = b.lade.path("same");
    fs::create_dir_all(&same).unwrap();
    fs::write(same.join("f"), "same path\n").unwrap();
    let df = format!("FROM base\nRUN cat {}/f > /same\n", same.display());
    b.build_with(&["--bind", same.to_str().unwrap()], &df, &[])
        .ok();
    assert_eq!(b.lade.ok(["run", "t", "--", "cat", "/same"]), "same path\n");

    // Bad binds are one-line errors naming the option.
    let missing = b.lade.path("missing");
    let err = b
        .build_with(&["-b", missing.to_str().unwrap()], "FROM base\n", &[])
        .fails_one_line();
    assert!(err.contains("-b") && err.contains("missing"), "{err}");
    let err = b
        .build_with(
            &["-b", &format!("{}:rel", host.display())],
            "FROM base\n",
            &[],
        )
        .fails_one_line();
    assert!(err.contains("DST must be an absolute path"), "{err}");
}

#[test]
fn proxy_variables_reach_run_and_do_not_miss_the_cache() {
    let b = BuildCtx::new();
    let df = "FROM base\nRUN env | grep -i _proxy | sort > /proxies\n";
    let env = [
        ("HTTP_PROXY", "http://proxy.invalid:3128"),
        ("no_proxy", "localhost"),
    ];
    let r = b.build_with(&[], df, &env).ok();
    assert_eq!(marks(&r.stdout), "*.");
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/proxies"]),
        "HTTP_PROXY=http://proxy.invalid:3128\nno_proxy=localhost\n"
    );
    // A changed proxy is not a change of the build (ch-image).
    let r = b
        .build_with(&[], df, &[("HTTP_PROXY", "http://other.invalid:8080")])
        .ok();
    assert_eq!(marks(&r.stdout), "**");
    // And they are substituted without an ARG.
    let r = b
        .build_with(
            &[],
            "FROM base\nLABEL p=$HTTPS_PROXY\n",
            &[("HTTPS_PROXY", "http://s.invalid")],
        )
        .ok();
    assert_eq!(marks(&r.stdout), "*.");
    assert_eq!(b.config("t")["config"]["Labels"]["p"], "http://s.invalid");
}

#[test]
fn user_and_proxy_reach_run_and_do_not_miss_the_cache() {
    let b = BuildCtx::new();
    let df = "FROM base\nRUN echo \"$USER $http_proxy $ALL_PROXY\" > /u\n";
    let r = b
        .build_with(
            &[],
            df,
            &[
                ("USER", "alice"),
                ("http_proxy", "http://p.invalid:3128"),
                ("ALL_PROXY", "socks5://s.invalid"),
            ],
        )
        .ok();
    assert_eq!(marks(&r.stdout), "*.");
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/u"]),
        "alice http://p.invalid:3128 socks5://s.invalid\n"
    );
    // Another user building the same Dockerfile is not a change of the build (ch-image).
    let r = b
        .build_with(
            &[],
            df,
            &[("USER", "bob"), ("http_proxy", "http://p.invalid:3128")],
        )
        .ok();
    assert_eq!(marks(&r.stdout), "**");
    // Substituted without an ARG, like the proxies.
    b.build_with(
        &[],
        "FROM base\nWORKDIR /home/$USER\n",
        &[("USER", "carol")],
    )
    .ok();
    let root = b.lade.path("out");
    b.lade
        .ok(["unpack".as_ref(), "t".as_ref(), root.as_os_str()]);
    assert!(root.join("home/carol").is_dir());
}

/// A static client for the busybox image, which has no applet that connects to a unix
/// socket: it connects to `$SSH_AUTH_SOCK` and copies what it reads to standard output.
/// None when there is no C compiler (tests/run-all.sh installs gcc and libc6-dev).
fn agent_client(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("agent-client.c");
    fs::write(
        &src,
        r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
    const char *p = getenv("SSH_AUTH_SOCK");
    if (!p) { fputs("SSH_AUTH_SOCK is not set\n", stderr); return 2; }
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror(p); return 1; }
    char buf[256];
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
    return 0;
}
"#,
    )
    .unwrap();
    let out = dir.join("agent-client");
    let r = match std::process::Command::new("cc")
        .args(["-static", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipped: no C compiler (cc: {e})");
            return None;
        }
    };
    assert!(
        r.status.success(),
        "cc -static failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    Some(out)
}

/// The host's agent socket (usually under /tmp, which a RUN step does not share) works in
/// RUN, and neither it nor its mount point ends up in the layer.
#[test]
fn ssh_agent_socket_works_in_run_and_stays_out_of_the_layer() {
    let b = BuildCtx::new();
    let Some(client) = agent_client(&b.ctx) else {
        return;
    };
    assert!(client.starts_with(&b.ctx));
    // A stand-in for ssh-agent, in a directory the step cannot see without the bind.
    let sock = b.lade.path("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            use std::io::Write;
            let _ = conn.and_then(|mut c| c.write_all(b"hello from the agent\n"));
        }
    });
    let df = "FROM base\nCOPY agent-client /\nRUN /agent-client > /answer\n";
    let r = b
        .build_with(&[], df, &[("SSH_AUTH_SOCK", sock.to_str().unwrap())])
        .ok();
    assert_eq!(marks(&r.stdout), "*..");
    assert!(!r.stderr.contains("SSH_AUTH_SOCK"), "{}", r.stderr);
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/answer"]),
        "hello from the agent\n"
    );
    assert_eq!(b.last_layer_names("t"), ["answer"]);
    let root = b.lade.path("out");
    b.lade
        .ok(["unpack".as_ref(), "t".as_ref(), root.as_os_str()]);
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("ssh")), "{names:?}");
    // Substitution gives the path inside too (the host's would be useless in the image).
    let r = b.build_with(
        &[],
        "FROM base\nWORKDIR /w$SSH_AUTH_SOCK\n",
        &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
    );
    r.ok();
    let out = b.lade.path("out-w");
    b.lade
        .ok(["unpack".as_ref(), "t".as_ref(), out.as_os_str()]);
    assert!(out.join("w/.lade-ssh-agent.sock").is_dir());

    // Another socket, or none, is not a change of the build.
    let r = b
        .build_with(&[], df, &[("SSH_AUTH_SOCK", "/nonexistent/agent.sock")])
        .ok();
    assert_eq!(marks(&r.stdout), "***");
}

/// The build's one line about SSH_AUTH_SOCK (asserting there is exactly one).
fn ssh_warning(r: &Run) -> &str {
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("SSH_AUTH_SOCK"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    lines[0]
}

/// An agent that goes away during a build: the steps after it get no agent and a warning,
/// rather than failing to bind a socket that is no longer there.
#[test]
fn ssh_agent_gone_mid_build_warns_and_builds() {
    let b = BuildCtx::new();
    let Some(_client) = agent_client(&b.ctx) else {
        return;
    };
    let sock = b.lade.path("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let path = sock.clone();
    std::thread::spawn(move || {
        if let Some(Ok(mut c)) = listener.incoming().next() {
            use std::io::Write;
            // Gone before the client has its answer, so before the next step starts.
            fs::remove_file(&path).unwrap();
            let _ = c.write_all(b"last answer\n");
        }
    });
    let df = "FROM base\nCOPY agent-client /\nRUN /agent-client > /a1\n\
              RUN echo \"[${SSH_AUTH_SOCK-unset}]\" > /a2\n";
    let r = b
        .build_with(&[], df, &[("SSH_AUTH_SOCK", sock.to_str().unwrap())])
        .ok();
    assert_eq!(marks(&r.stdout), "*...", "{}", r.stderr);
    assert!(
        ssh_warning(&r).contains("gone since the build started"),
        "{}",
        r.stderr
    );
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/a1", "/a2"]),
        "last answer\n[unset]\n"
    );
}

/// A stale SSH_AUTH_SOCK (the agent gone) is a one-line warning; RUN gets no agent.
#[test]
fn missing_ssh_agent_socket_warns_and_builds() {
    let b = BuildCtx::new();
    let not_socket = b.lade.path("plain-file");
    fs::write(&not_socket, "").unwrap();
    let missing = b.lade.path("gone/agent.sock");
    for (i, (path, why)) in [(&missing, "No such file"), (&not_socket, "not a socket")]
        .into_iter()
        .enumerate()
    {
        let df = format!("FROM base\nRUN echo \"[${{SSH_AUTH_SOCK-unset}}] {i}\" > /s\n");
        let r = b
            .build_with(&[], &df, &[("SSH_AUTH_SOCK", path.to_str().unwrap())])
            .ok();
        assert_eq!(marks(&r.stdout), "*.");
        let warning = ssh_warning(&r);
        assert!(
            warning.starts_with("warning: ") && warning.contains(why),
            "{}",
            r.stderr
        );
        assert_eq!(
            b.lade.ok(["run", "t", "--", "cat", "/s"]),
            format!("[unset] {i}\n")
        );
        assert_eq!(b.last_layer_names("t"), ["s"]);
    }
}

/// A base whose /etc/resolv.conf is a symbolic link (systemd-resolved's stub): RUN sees the
/// host's file, and the step's layer leaves the image's link alone.
#[test]
fn run_sees_host_resolv_conf_over_an_image_symlink_and_keeps_the_link() {
    let Ok(host) = fs::read_to_string("/etc/resolv.conf") else {
        eprintln!("skipped: the host has no /etc/resolv.conf");
        return;
    };
    let b = BuildCtx::new();
    let tree = b.lade.path("linked");
    b.lade
        .ok(["unpack".as_ref(), "base".as_ref(), tree.as_os_str()]);
    fs::create_dir_all(tree.join("etc")).unwrap();
    let _ = fs::remove_file(tree.join("etc/resolv.conf"));
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        tree.join("etc/resolv.conf"),
    )
    .unwrap();
    b.lade
        .ok(["import".as_ref(), tree.as_os_str(), "linked".as_ref()]);
    let out = b
        .build_with(
            &[],
            "FROM linked\nRUN cat /etc/resolv.conf > /seen && echo done\n",
            &[],
        )
        .ok()
        .stdout;
    assert!(out.contains("done"), "{out}");
    let names = b.last_layer_names("t");
    assert!(names.iter().any(|n| n == "seen"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("resolv.conf")),
        "{names:?}"
    );
    let root = b.lade.path("out");
    b.lade
        .ok(["unpack".as_ref(), "t".as_ref(), root.as_os_str()]);
    assert_eq!(fs::read_to_string(root.join("seen")).unwrap(), host);
    assert!(
        fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
