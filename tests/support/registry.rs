//! Debian's `docker-registry` (Distribution 2.8) on a free loopback port, per test, in one of
//! the three set-ups CI uses: anonymous plain HTTP, htpasswd basic auth over TLS (with a CA
//! made here by `openssl`), and bearer tokens from [`super::token::TokenServer`].
//! Images get there with `skopeo copy`.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use crate::common::{Scratch, run_cmd};

pub const REGISTRY_BIN: &str = "docker-registry";

/// A port nobody listens on right now (the OS's choice; a race with other tests is possible
/// and handled by retrying the start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Fails loudly (CI installs these) when a tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; these tests need it (Debian package: {package})"
    );
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    require("openssl", "openssl");
    fs::create_dir_all(dir).unwrap();
    let ossl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(dir);
        run_cmd(c).ok();
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lade test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A self-signed certificate for 127.0.0.1 made as Distribution's documentation ("Deploy a
/// registry server", "Use self-signed certificates") says, `openssl req -x509 …`, which makes
/// it a CA certificate too. `ca` is the certificate itself.
pub fn self_signed_cert(dir: &Path) -> Certs {
    require("openssl", "openssl");
    fs::create_dir_all(dir).unwrap();
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-keyout",
        "domain.key",
        "-addext",
        "subjectAltName = IP:127.0.0.1",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        "domain.crt",
    ])
    .current_dir(dir);
    run_cmd(c).ok();
    Certs {
        ca: dir.join("domain.crt"),
        cert: dir.join("domain.crt"),
        key: dir.join("domain.key"),
    }
}

pub enum Auth {
    None,
    /// htpasswd users (bcrypt, as Distribution requires).
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens: the token server's realm URL, service, issuer and certificate.
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert: PathBuf,
    },
}

pub struct Registry {
    pub port: u16,
    pub tls: Option<Certs>,
    child: Child,
    pub dir: Scratch,
    /// Credentials skopeo pushes with, when the registry needs them.
    pub push_creds: Option<(String, String)>,
}

impl Registry {
    /// Anonymous, plain HTTP.
    pub fn anonymous() -> Registry {
        Registry::start(Auth::None, false)
    }

    pub fn start(auth: Auth, tls: bool) -> Registry {
        Registry::start_with_certs(auth, tls.then_some(make_certs as fn(&Path) -> Certs))
    }

    /// A registry over TLS with the certificate `certs` makes in the directory it is given.
    pub fn start_with_certs(auth: Auth, certs: Option<fn(&Path) -> Certs>) -> Registry {
        require(REGISTRY_BIN, "docker-registry");
        require("skopeo", "skopeo");
        let dir = Scratch::new("registry");
        let certs = certs.map(|make| make(&dir.join("certs")));
        let mut push_creds = None;
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd(users) => {
                let mut lines = String::new();
                for (u, p) in users {
                    let h = bcrypt::hash(p, 4).expect("bcrypt");
                    lines.push_str(&format!("{u}:{h}\n"));
                }
                fs::write(dir.join("htpasswd"), lines).unwrap();
                push_creds = users.first().cloned();
                format!(
                    "auth:\n  htpasswd:\n    realm: lade-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            Auth::Token {
                realm,
                service,
                issuer,
                cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let tls_yaml = match &certs {
            Some(c) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.cert.display(),
                c.key.display()
            ),
            None => String::new(),
        };
        // A port race with another test is possible: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: lade-test-secret\n{tls_yaml}{auth_yaml}",
                dir.join("data").display()
            );
            let cfg_path = dir.join("config.yml");
            fs::write(&cfg_path, config).unwrap();
            let log = fs::File::create(dir.join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot start docker-registry");
            if wait_listening(port, &mut child) {
                return Registry {
                    port,
                    tls: certs,
                    child,
                    dir,
                    push_creds,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; log:\n{}",
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/REPO` for a lade or skopeo reference.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// `skopeo copy [EXTRA] SRC docker://HOST/REPO_TAG`.
    pub fn push(&self, src: &str, repo_tag: &str, extra: &[&str]) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.push_creds {
            c.arg(format!("--dest-creds={u}:{p}"));
        }
        c.args(extra);
        c.arg(src).arg(format!("docker://{}", self.image(repo_tag)));
        // skopeo keeps temporary files in TMPDIR (default /var/tmp)
        c.env("TMPDIR", self.dir.path());
        run_cmd(c).ok();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something answers HTTP (or TLS) on the port, or the process died.
fn wait_listening(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Make sure it is ours: another test may have taken the port meanwhile, in which
            // case our registry exits with "address already in use".
            std::thread::sleep(Duration::from_millis(150));
            return matches!(child.try_wait(), Ok(None));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `GET /v2/` over plain HTTP answers (for a plain-HTTP registry).
pub fn ping_http(port: u16) -> u16 {
    http::get(port, "/v2/", &[])
        .map(|(h, _)| h.status())
        .unwrap_or(0)
}
