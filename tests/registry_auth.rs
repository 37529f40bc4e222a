//! Registry authentication against a real Distribution 2.8: bearer tokens from a token
//! service written for these tests (anonymous and authenticated, `token` and `access_token`,
//! renewal, re-scoping), and htpasswd basic auth over TLS with a CA made here. Credentials come
//! from `LADE_USERNAME`/`LADE_PASSWORD`, the login files, or the terminal prompt, and never
//! show up in any output.

mod common;
mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use support::proxy::{Action, Proxy};
use support::registry::{Auth, Registry};
use support::token::{self, TokenServer};

const USER: &str = "alice";
const PASS: &str = "s3cret-Pa55";

/// A token service and a plain-HTTP registry trusting it, with `public/app:1` and
/// `private/app:1` pushed (the fixtures' `single` image).
struct TokenSetup {
    reg: Registry,
    ts: TokenServer,
    _dir: Scratch,
}

fn token_setup(config: token::Config) -> TokenSetup {
    let dir = Scratch::new("token");
    let ts = TokenServer::start(&dir.join("token"), config);
    let mut reg = Registry::start(ts.registry_auth(), false);
    reg.push_creds = Some((USER.into(), PASS.into()));
    let f = fixtures();
    reg.push(&f.oci("single"), "public/app:1", &[]);
    reg.push(&f.oci("single"), "private/app:1", &[]);
    ts.clear();
    TokenSetup { reg, ts, _dir: dir }
}

/// lade with a clean credential environment (no login files of the test user's).
fn lade_cmd(lade: &Lade, home: &Scratch) -> Command {
    let mut c = lade.cmd();
    for v in [
        "LADE_USERNAME",
        "LADE_PASSWORD",
        "LADE_AUTH",
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "LADE_TLS_CA_FILE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", home.path());
    c
}

fn run_with(lade: &Lade, home: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = lade_cmd(lade, home);
    c.envs(env.iter().copied()).args(args);
    run_cmd(c)
}

fn assert_no_secret(r: &Run, secret: &str) {
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "the secret shows in the output:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"));
    assert!(!r.stderr.contains(&b64), "base64 credentials in the output");
}

#[test]
fn bearer_token_anonymous_and_authenticated() {
    let t = token_setup(token::Config::default());
    let lade = Lade::new();
    let home = Scratch::new("home");
    let public = t.reg.image("public/app:1");
    let private = t.reg.image("private/app:1");

    // Anonymous: a public image pulls with an anonymous token for exactly its scope.
    run_with(&lade, &home, &[], &["--tls-no-verify", "pull", &public]).ok();
    let reqs = t.ts.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|r| r.user.is_none() && !r.refused),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.scopes == ["repository:public/app:pull"]),
        "{reqs:?}"
    );
    // A token per process and scope, not per request.
    assert_eq!(reqs.len(), 1, "{reqs:?}");

    // Anonymous on a private image: "not found or not authorized", with a hint.
    let err = run_with(
        &lade,
        &home,
        &[],
        &["-q", "--tls-no-verify", "pull", &private],
    )
    .fails_one_line();
    assert!(
        err.contains("not found or not authorized") && err.contains("--auth"),
        "{err}"
    );

    // Authenticated: --auth, or LADE_AUTH=yes, with the credentials in the environment.
    t.ts.clear();
    let env = [("LADE_USERNAME", USER), ("LADE_PASSWORD", PASS)];
    let r = run_with(
        &lade,
        &home,
        &env,
        &["-vv", "--auth", "--tls-no-verify", "pull", &private],
    );
    assert_no_secret(&r, PASS);
    r.ok();
    let reqs = t.ts.requests();
    assert!(
        reqs.iter().all(|r| r.user.as_deref() == Some(USER)),
        "{reqs:?}"
    );
    let env_auth = [
        ("LADE_USERNAME", USER),
        ("LADE_PASSWORD", PASS),
        ("LADE_AUTH", "yes"),
    ];
    run_with(
        &lade,
        &home,
        &env_auth,
        &["--tls-no-verify", "pull", &private, "again"],
    )
    .ok();

    // A wrong password: a clear error naming the user, never the password.
    let bad = "wr0ng-Secret-xyz";
    let env = [("LADE_USERNAME", USER), ("LADE_PASSWORD", bad)];
    let r = run_with(
        &lade,
        &home,
        &env,
        &["-vv", "--auth", "--tls-no-verify", "pull", &private],
    );
    assert_no_secret(&r, bad);
    let err = r.fails();
    assert!(
        err.contains("authentication failed") && err.contains(USER),
        "{err}"
    );

    // --auth and no credentials anywhere, no terminal: a clear error, no hang.
    let mut c = Command::new("setsid");
    c.arg(lade_bin())
        .arg("--storage")
        .arg(&lade.storage)
        .args(["-q", "--auth", "--tls-no-verify", "pull", &private])
        .env("HOME", home.path())
        .env_remove("LADE_USERNAME")
        .env_remove("LADE_PASSWORD")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    let err = run_cmd(c).fails_one_line();
    assert!(
        err.contains("LADE_USERNAME") && err.contains("no terminal"),
        "{err}"
    );
}

fn auth_json(user: &str, pass: &str, key: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!(r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#)
}

/// A hand-written `~/.docker/config.json` holding `user:pass` for `host`.
fn write_docker_config(home: &Scratch, user: &str, pass: &str, host: &str) {
    fs::create_dir_all(home.join(".docker")).unwrap();
    fs::write(
        home.join(".docker/config.json"),
        auth_json(user, pass, host),
    )
    .unwrap();
}

#[test]
fn credentials_from_login_files() {
    let t = token_setup(token::Config::default());
    let lade = Lade::new();
    let private = t.reg.image("private/app:1");
    let host = t.reg.host();

    // ~/.docker/config.json
    let home = Scratch::new("home");
    write_docker_config(&home, USER, PASS, &host);
    let r = run_with(
        &lade,
        &home,
        &[],
        &["-vv", "--auth", "--tls-no-verify", "pull", &private],
    );
    assert_no_secret(&r, PASS);
    r.ok();

    // $REGISTRY_AUTH_FILE wins over ~/.docker/config.json (which now has a wrong password).
    fs::write(
        home.join(".docker/config.json"),
        auth_json(USER, "nope", &host),
    )
    .unwrap();
    let file = home.join("auth.json");
    fs::write(&file, auth_json(USER, PASS, &format!("{host}/private"))).unwrap();
    let env = [("REGISTRY_AUTH_FILE", file.to_str().unwrap())];
    run_with(
        &lade,
        &home,
        &env,
        &["--auth", "--tls-no-verify", "pull", &private, "b"],
    )
    .ok();

    // $XDG_RUNTIME_DIR/containers/auth.json (podman's and skopeo's login file)
    let xdg = Scratch::new("xdg");
    fs::create_dir_all(xdg.join("containers")).unwrap();
    fs::write(
        xdg.join("containers/auth.json"),
        auth_json(USER, PASS, &host),
    )
    .unwrap();
    let env = [("XDG_RUNTIME_DIR", xdg.path().to_str().unwrap())];
    run_with(
        &lade,
        &home,
        &env,
        &["--auth", "--tls-no-verify", "pull", &private, "c"],
    )
    .ok();

    // The wrong one alone fails, naming where the credentials came from.
    let r = run_with(
        &lade,
        &home,
        &[],
        &["-q", "--auth", "--tls-no-verify", "pull", &private],
    );
    let err = r.fails_one_line();
    assert!(err.contains("config.json") && err.contains(USER), "{err}");
    assert!(!err.contains("nope"), "{err}");
}

#[test]
fn access_token_field_and_renewal() {
    // Tokens that live one second, sent as `access_token` (OAuth2 style).
    let t = token_setup(token::Config {
        expires_in: 1,
        access_token_field: true,
        ..token::Config::default()
    });
    let reference = lade::reference::Reference::parse(&t.reg.image("public/app:1")).unwrap();
    let opts = lade::transport::registry::Options {
        tls_no_verify: true,
        env: Some(Default::default()),
        ..Default::default()
    };
    use lade::transport::ImageSource;
    let src = lade::transport::registry::RegistrySource::open(&reference, &opts, None).unwrap();
    let m = src.top_manifest().unwrap();
    assert_eq!(t.ts.requests().len(), 1);
    std::thread::sleep(Duration::from_millis(1200));
    let config = m.image().unwrap().config().digest().to_string();
    let mut blob = Vec::new();
    std::io::Read::read_to_end(
        &mut src.open_blob(&config.parse().unwrap()).unwrap(),
        &mut blob,
    )
    .unwrap();
    assert!(!blob.is_empty());
    // The expired token was renewed before use, without a 401 first.
    assert_eq!(t.ts.requests().len(), 2, "{:?}", t.ts.requests());
}

#[test]
fn rejected_token_is_renewed_and_scope_rerequested() {
    let t = token_setup(token::Config::default());
    let proxy = Proxy::start(t.reg.port);
    let realm = t.ts.realm();
    // The first blob request with a token is refused as if the token had been revoked; the
    // first manifest request is told it needs a wider scope.
    proxy.set_rule(move |head, nth| {
        let challenge = |scope: &str, error: bool| {
            let mut v = format!(
                r#"Bearer realm="{realm}",service="{}",scope="{scope}""#,
                token::SERVICE
            );
            if error {
                v.push_str(r#",error="insufficient_scope""#);
            }
            Action::Status(401, vec![("WWW-Authenticate".into(), v)], "{}".into())
        };
        let authed = head.header("authorization").is_some();
        if head.path().contains("/manifests/") && authed && nth == 1 {
            return challenge(
                "repository:public/app:pull repository:public/other:pull",
                true,
            );
        }
        if head.path().contains("/blobs/") && authed && nth == 0 {
            return challenge("repository:public/app:pull", false);
        }
        Action::Forward
    });
    let lade = Lade::new();
    let home = Scratch::new("home");
    let name = format!("{}/public/app:1", proxy.host());
    run_with(&lade, &home, &[], &["--tls-no-verify", "pull", &name]).ok();
    let reqs = t.ts.requests();
    assert!(
        reqs.iter()
            .any(|r| r.scopes == ["repository:public/app:pull", "repository:public/other:pull"]),
        "scope not re-requested: {reqs:?}\n{}",
        proxy.dump()
    );
    assert!(
        reqs.len() >= 3,
        "token not renewed: {reqs:?}\n{}",
        proxy.dump()
    );
}

// ------------------------------------------------------------------------------------------------
// Basic auth over TLS

const BOB: &str = "bob";
const BOB_PASS: &str = "b0b-Pass-word";

fn basic_tls() -> Registry {
    let reg = Registry::start(Auth::Htpasswd(vec![(BOB.into(), BOB_PASS.into())]), true);
    reg.push(&fixtures().oci("multi"), "team/app:1", &[]);
    reg
}

#[test]
fn basic_auth_over_tls_with_a_ca_file() {
    let reg = basic_tls();
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let lade = Lade::new();
    let home = Scratch::new("home");
    let name = reg.image("team/app:1");
    let creds = [("LADE_USERNAME", BOB), ("LADE_PASSWORD", BOB_PASS)];

    // Unknown CA: refused, with a hint.
    let err = run_with(&lade, &home, &creds, &["-q", "--auth", "pull", &name]).fails_one_line();
    assert!(
        err.contains("certificate") && err.contains("--tls-ca-file"),
        "{err}"
    );
    // Known CA, anonymous: the registry's 401 reads as "not found or not authorized".
    let err = run_with(
        &lade,
        &home,
        &[],
        &["-q", "--tls-ca-file", &ca, "pull", &name],
    )
    .fails_one_line();
    assert!(
        err.contains("not found or not authorized") && err.contains("--auth"),
        "{err}"
    );
    // Known CA and credentials.
    let r = run_with(
        &lade,
        &home,
        &creds,
        &["-vv", "--auth", "--tls-ca-file", &ca, "pull", &name],
    );
    assert_no_secret(&r, BOB_PASS);
    r.ok();
    let out = lade.path("out");
    lade.ok(["unpack".as_ref(), name.as_ref(), out.as_os_str()]);
    lade.ok(["pull", &fixtures().oci("multi"), "local"]);
    let local = lade.path("local");
    lade.ok(["unpack".as_ref(), "local".as_ref(), local.as_os_str()]);
    assert_same_tree(&local, &out, &CompareOpts::default());

    // The CA from the environment; and --tls-no-verify accepts any certificate.
    let env = [
        ("LADE_USERNAME", BOB),
        ("LADE_PASSWORD", BOB_PASS),
        ("LADE_TLS_CA_FILE", ca.as_str()),
    ];
    run_with(&lade, &home, &env, &["--auth", "pull", &name, "x"]).ok();
    // A CA the system trusts (here through $SSL_CERT_FILE, and through $SSL_CERT_DIR), loaded
    // only once neither a CA file nor Mozilla's roots vouch for the registry.
    let ca_dir = Scratch::new("ca-dir");
    std::fs::copy(&ca, ca_dir.join("test-ca.pem")).unwrap();
    let ca_dir = ca_dir.path().to_str().unwrap().to_string();
    for (var, value) in [
        ("SSL_CERT_FILE", ca.as_str()),
        ("SSL_CERT_DIR", ca_dir.as_str()),
    ] {
        let env = [
            ("LADE_USERNAME", BOB),
            ("LADE_PASSWORD", BOB_PASS),
            (var, value),
        ];
        run_with(&lade, &home, &env, &["--auth", "pull", &name, "sys"]).ok();
    }
    run_with(
        &lade,
        &home,
        &creds,
        &["--auth", "--tls-no-verify", "pull", &name, "y"],
    )
    .ok();

    // A wrong password: one line, the user named, the password nowhere.
    let bad = [("LADE_USERNAME", BOB), ("LADE_PASSWORD", "Wr0ng-b0b")];
    let r = run_with(
        &lade,
        &home,
        &bad,
        &["-q", "--auth", "--tls-ca-file", &ca, "pull", &name],
    );
    assert_no_secret(&r, "Wr0ng-b0b");
    let err = r.fails_one_line();
    assert!(
        err.contains("refused the password") && err.contains(BOB),
        "{err}"
    );
}

#[test]
fn plain_http_token_realm_refused_over_tls() {
    let dir = Scratch::new("token");
    let ts = TokenServer::start(&dir.join("token"), token::Config::default());
    let reg = Registry::start(ts.registry_auth(), true);
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let lade = Lade::new();
    let home = Scratch::new("home");
    let err = run_with(
        &lade,
        &home,
        &[],
        &["-q", "--tls-ca-file", &ca, "pull", &reg.image("public/x:1")],
    )
    .fails_one_line();
    assert!(
        err.contains("plain-HTTP") && err.contains("refused"),
        "{err}"
    );
    assert!(ts.requests().is_empty(), "{:?}", ts.requests());
}

/// The prompt, through a pseudo-terminal (`script`): the user name is asked with echo, the
/// password without.
#[test]
fn interactive_prompt_does_not_echo() {
    support::registry::require("script", "bsdutils");
    let reg = basic_tls();
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let lade = Lade::new();
    let home = Scratch::new("home");
    for password_many in [false, true] {
        let cmdline = format!(
            "'{}' --storage '{}' --auth {} --tls-ca-file '{ca}' pull {} n{}",
            lade_bin().display(),
            lade.storage.display(),
            if password_many { "--password-many" } else { "" },
            reg.image("team/app:1"),
            password_many as u8,
        );
        // Answer each prompt only once it is shown, so that the terminal's echo is surely
        // off for the password.
        let feeder =
            format!("sleep 1; printf '{BOB}\\n'; sleep 2; printf '{BOB_PASS}\\n'; sleep 8");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("({feeder}) | script -qefc \"$0\" /dev/null",))
            .arg(&cmdline)
            .env("HOME", home.path())
            .env_remove("LADE_USERNAME")
            .env_remove("LADE_PASSWORD")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null());
        let r = run_cmd(c);
        assert!(
            r.stdout.contains("Password for bob@"),
            "no prompt:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert_no_secret(&r, BOB_PASS);
        assert!(r.success(), "pull failed:\n{}\n{}", r.stdout, r.stderr);
    }
}

// ------------------------------------------------------------------------------------------------
// Stored logins: reads that a registry refuses anonymously retry with a login file's
// credentials, without --auth; never with --no-auth or LADE_AUTH=no.

/// `lade login -u USER --password-stdin REGISTRY` with `password` on standard input.
fn login(lade: &Lade, home: &Scratch, opts: &[&str], user: &str, password: &str, host: &str) {
    use std::io::Write as _;
    let mut c = lade_cmd(lade, home);
    c.args(opts)
        .args(["login", "-u", user, "--password-stdin", host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lade login failed: {err}");
}

/// `--no-auth`, and `LADE_AUTH=no`: reads stay strictly anonymous, so the registry's refusal
/// is the error, with its hint, whatever the login files hold.
fn assert_strictly_anonymous_refusal(lade: &Lade, home: &Scratch, opts: &[&str], name: &str) {
    for (flag, env) in [(Some("--no-auth"), None), (None, Some(("LADE_AUTH", "no")))] {
        let mut args = vec!["-q"];
        args.extend(flag);
        args.extend_from_slice(opts);
        args.extend_from_slice(&["pull", name]);
        let err = run_with(lade, home, env.as_slice(), &args).fails_one_line();
        assert!(
            err.contains("not found or not authorized") && err.contains("--auth"),
            "{flag:?} {env:?}: {err}"
        );
    }
}

/// A stored login's credentials refused: one line saying `why`, naming `user` and the login
/// `file`, never the `secret`.
fn assert_refusal_names_user_and_file(
    r: Run,
    secret: &str,
    why: &str,
    user: &str,
    file: &std::path::Path,
) {
    assert_no_secret(&r, secret);
    let err = r.fails_one_line();
    assert!(
        err.contains(why)
            && err.contains(&format!("'{user}'"))
            && err.contains(&*file.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn stored_logins_serve_refused_reads_bearer() {
    let t = token_setup(token::Config::default());
    let lade = Lade::new();
    let home = Scratch::new("home");
    let host = t.reg.host();
    let public = t.reg.image("public/app:1");
    let private = t.reg.image("private/app:1");
    let tls = ["--tls-no-verify"];
    // With no XDG_RUNTIME_DIR, `lade login` writes ~/.config/containers/auth.json.
    login(&lade, &home, &tls, USER, PASS, &host);
    let file = home.join(".config/containers/auth.json");
    assert!(file.exists());

    // Anonymous first; the token service refuses the private scope to that (an anonymous token
    // without access), so the stored login is tried, and named.
    t.ts.clear();
    let r = run_with(
        &lade,
        &home,
        &[],
        &["-v", "--tls-no-verify", "pull", &private],
    );
    assert_no_secret(&r, PASS);
    let r = r.ok();
    let reqs = t.ts.requests();
    assert!(
        reqs.first().is_some_and(|r| r.user.is_none())
            && reqs.iter().any(|r| r.user.as_deref() == Some(USER)),
        "{reqs:?}"
    );
    assert!(
        r.stderr.contains("refused anonymous access")
            && r.stderr.contains(&*file.to_string_lossy()),
        "{}",
        r.stderr
    );
    // Every read goes through the same client: inspect, list of a remote, copy.
    let spec = format!("docker://{private}");
    run_with(&lade, &home, &[], &["--tls-no-verify", "inspect", &spec]).ok();
    let r = run_with(&lade, &home, &[], &["--tls-no-verify", "list", &private]).ok();
    assert!(
        r.stdout.contains("available remotely:  yes"),
        "{}",
        r.stdout
    );
    let oci = format!("oci:{}:x", lade.path("copied").display());
    run_with(&lade, &home, &[], &["--tls-no-verify", "copy", &spec, &oci]).ok();
    let context = home.join("context");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("Dockerfile"), format!("FROM {private}\n")).unwrap();
    let context = context.to_str().unwrap();
    // (A store of its own, so that FROM must pull.)
    let fresh = Lade::new();
    let r = run_with(
        &fresh,
        &home,
        &[],
        &["-v", "--tls-no-verify", "build", "-t", "b", context],
    )
    .ok();
    assert!(
        r.stderr.contains("refused anonymous access"),
        "{}",
        r.stderr
    );

    // --no-auth and LADE_AUTH=no: strictly anonymous, as before; no credentials sent.
    t.ts.clear();
    assert_strictly_anonymous_refusal(&lade, &home, &tls, &private);
    let reqs = t.ts.requests();
    assert!(
        reqs.iter().all(|r| r.user.is_none() && !r.refused),
        "{reqs:?}"
    );

    // Stale credentials stored: a public image still pulls, and they are never sent.
    fs::write(&file, auth_json(USER, "stale-Pass", &host)).unwrap();
    t.ts.clear();
    run_with(
        &lade,
        &home,
        &[],
        &["--tls-no-verify", "pull", &public, "pub"],
    )
    .ok();
    let reqs = t.ts.requests();
    assert!(
        !reqs.is_empty() && reqs.iter().all(|r| r.user.is_none() && !r.refused),
        "{reqs:?}"
    );
    // ... and a private one fails in one line naming the user and the file, not the password.
    let r = run_with(
        &lade,
        &home,
        &[],
        &["-q", "--tls-no-verify", "pull", &private],
    );
    assert_refusal_names_user_and_file(r, "stale-Pass", "authentication failed", USER, &file);
    assert!(t.ts.requests().iter().any(|r| r.refused));

    // A hand-written ~/.docker/config.json entry serves as well.
    fs::remove_file(&file).unwrap();
    write_docker_config(&home, USER, PASS, &host);
    let r = run_with(
        &lade,
        &home,
        &[],
        &["-v", "--tls-no-verify", "pull", &private, "d"],
    )
    .ok();
    assert!(r.stderr.contains(".docker/config.json"), "{}", r.stderr);
}

/// A token service that refuses anonymous requests outright (401, not a token without
/// access): the stored login is tried on that refusal too, and only then.
#[test]
fn stored_logins_serve_a_token_service_refusing_anonymous() {
    let t = token_setup(token::Config {
        refuse_anonymous: true,
        ..token::Config::default()
    });
    let (lade, home) = (Lade::new(), Scratch::new("home"));
    let public = t.reg.image("public/app:1");
    assert_strictly_anonymous_refusal(&lade, &home, &["--tls-no-verify"], &public);
    login(
        &lade,
        &home,
        &["--tls-no-verify"],
        USER,
        PASS,
        &t.reg.host(),
    );
    t.ts.clear();
    run_with(&lade, &home, &[], &["--tls-no-verify", "pull", &public]).ok();
    let users: Vec<_> = t.ts.requests().into_iter().map(|r| r.user).collect();
    assert_eq!(users, [None, Some(USER.to_string())]);
}

#[test]
fn stored_logins_serve_refused_reads_basic() {
    let reg = basic_tls();
    let (host, name) = (reg.host(), reg.image("team/app:1"));
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let (lade, home) = (Lade::new(), Scratch::new("home"));
    let tls = ["--tls-ca-file", ca.as_str()];
    login(&lade, &home, &tls, BOB, BOB_PASS, &host);
    let file = home.join(".config/containers/auth.json");

    let pull = |args: &[&str]| {
        let mut all = vec!["--tls-ca-file", ca.as_str()];
        all.extend_from_slice(args);
        run_with(&lade, &home, &[], &all)
    };
    let r = pull(&["-v", "pull", &name]);
    assert_no_secret(&r, BOB_PASS);
    let r = r.ok();
    assert!(r.stderr.contains(&*file.to_string_lossy()), "{}", r.stderr);
    assert_strictly_anonymous_refusal(&lade, &home, &tls, &name);

    // Wrong stored credentials: one line naming the user and the file.
    fs::write(&file, auth_json(BOB, "Wr0ng-st0red", &host)).unwrap();
    let r = pull(&["-q", "pull", &name, "w"]);
    assert_refusal_names_user_and_file(r, "Wr0ng-st0red", "refused the password", BOB, &file);

    // A hand-written ~/.docker/config.json entry.
    fs::remove_file(&file).unwrap();
    write_docker_config(&home, BOB, BOB_PASS, &host);
    pull(&["pull", &name, "d"]).ok();
}
