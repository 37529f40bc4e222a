//! A fault-injecting HTTP proxy in front of a plain-HTTP registry, loopback only, written for
//! the tests. Each request is logged (path, Range, Authorization present, status, body bytes
//! sent) and handled as the test's rule says: forwarded as is, cut after N body bytes,
//! forwarded without `Content-Length`, answered with a canned status, or redirected.
//! Connections that do not speak HTTP (lade's TLS probe under `--tls-no-verify`) are counted
//! apart.
//!
//! Also [`BlobServer`]: another port serving blobs out of an OCI layout, the target of
//! redirects, recording whether an `Authorization` header reached it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{self, Head};

#[derive(Debug, Clone)]
pub enum Action {
    Forward,
    /// Forward, but close the connection after this many body bytes.
    Cut(u64),
    /// Forward this many body bytes, then send nothing more for a minute (a stalled transfer).
    Stall(u64),
    /// Forward without `Content-Length`; the end of the body is the end of the connection.
    NoContentLength,
    /// Answer with this status, headers and body instead of forwarding.
    Status(u16, Vec<(String, String)>, String),
    /// Answer `307` with this `Location`.
    Redirect(String),
    /// Forward, replacing (or adding) one response header.
    SetHeader(String, String),
    /// Forward without the request's `Range` header (a server that ignores ranges).
    IgnoreRange,
    /// Close the connection without answering (a reset before the response).
    Close,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: bool,
    pub status: u16,
    pub body_bytes: u64,
    pub action: String,
}

/// Decides what to do with a request; `nth` counts earlier requests for the same path.
pub type Rule = Box<dyn FnMut(&Head, usize) -> Action + Send>;

struct Shared {
    upstream: u16,
    rule: Mutex<Rule>,
    log: Mutex<Vec<Logged>>,
    non_http: AtomicUsize,
    stop: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(Box::new(|_, _| Action::Forward)),
            log: Mutex::new(Vec::new()),
            non_http: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || handle(conn, &sh));
            }
        });
        Proxy { port, shared }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_rule(&self, rule: impl FnMut(&Head, usize) -> Action + Send + 'static) {
        *self.shared.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.log.lock().unwrap().clear();
        self.shared.non_http.store(0, Ordering::SeqCst);
    }

    /// Connections that sent something other than HTTP (TLS probes).
    pub fn non_http(&self) -> usize {
        self.shared.non_http.load(Ordering::SeqCst)
    }

    /// A readable dump for assertion messages.
    pub fn dump(&self) -> String {
        self.log()
            .iter()
            .map(|l| {
                format!(
                    "{} {} range={:?} auth={} -> {} ({} bytes, {})",
                    l.method, l.path, l.range, l.authorization, l.status, l.body_bytes, l.action
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(mut client: TcpStream, sh: &Shared) {
    http::set_timeouts(&client);
    // A small send buffer keeps `body_bytes` close to what reached the client: a client killed
    // mid-body never receives what still sits in the proxy's buffer (up to 4 MiB by default).
    let size: libc::c_int = 128 << 10;
    // SAFETY: a valid socket, and a c_int of the length given.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let (head, early_body) = match http::read_head(&mut client) {
        Ok(Some((h, rest))) => (h, rest),
        _ => {
            sh.non_http.fetch_add(1, Ordering::SeqCst);
            let _ = client.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            return;
        }
    };
    let nth = sh
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.path == head.path())
        .count();
    let action = (sh.rule.lock().unwrap())(&head, nth);
    let mut entry = Logged {
        method: head.method.clone(),
        path: head.path().to_string(),
        range: head.header("range").map(str::to_string),
        authorization: head.header("authorization").is_some(),
        status: 0,
        body_bytes: 0,
        action: format!("{action:?}"),
    };
    match &action {
        Action::Status(code, headers, body) => {
            let h: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            http::respond(&mut client, *code, &h, body.as_bytes());
            entry.status = *code;
            entry.body_bytes = body.len() as u64;
        }
        Action::Close => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Action::Redirect(location) => {
            http::respond(&mut client, 307, &[("Location", location.clone())], b"");
            entry.status = 307;
        }
        Action::Forward
        | Action::Cut(_)
        | Action::Stall(_)
        | Action::NoContentLength
        | Action::SetHeader(..)
        | Action::IgnoreRange => {
            forward(
                &mut client,
                &head,
                early_body,
                sh.upstream,
                &action,
                &mut entry,
            );
        }
    }
    sh.log.lock().unwrap().push(entry);
}

fn forward(
    client: &mut TcpStream,
    head: &Head,
    early_body: Vec<u8>,
    upstream: u16,
    action: &Action,
    entry: &mut Logged,
) {
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        http::respond(client, 502, &[], b"upstream down");
        entry.status = 502;
        return;
    };
    http::set_timeouts(&up);
    let mut req = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if matches!(action, Action::IgnoreRange) && k.eq_ignore_ascii_case("range") {
            continue;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    if up.write_all(req.as_bytes()).is_err() {
        return;
    }
    // The request's body (pushes): `Content-Length` bytes, some read with the head already.
    let mut body_left: u64 = head
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let first = early_body.len().min(body_left as usize);
    if up.write_all(&early_body[..first]).is_err() {
        return;
    }
    body_left -= first as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while body_left > 0 {
        let want = chunk.len().min(body_left as usize);
        match client.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if up.write_all(&chunk[..n]).is_err() {
                    return;
                }
                body_left -= n as u64;
            }
        }
    }
    let Ok(Some((resp, first_body))) = http::read_head(&mut up) else {
        http::respond(client, 502, &[], b"bad upstream response");
        entry.status = 502;
        return;
    };
    entry.status = resp.target.parse().unwrap_or(0);
    let mut out = format!("{}\r\n", resp.first);
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        if matches!(action, Action::NoContentLength) && k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if let Action::SetHeader(name, _) = action
            && k.eq_ignore_ascii_case(name)
        {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Action::SetHeader(name, value) = action {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    if client.write_all(out.as_bytes()).is_err() {
        return;
    }
    let limit = match action {
        Action::Cut(n) | Action::Stall(n) => *n,
        _ => u64::MAX,
    };
    let mut sent = 0u64;
    let mut pending = first_body;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !pending.is_empty() {
            let take = (pending.len() as u64).min(limit - sent) as usize;
            if client.write_all(&pending[..take]).is_err() {
                break;
            }
            sent += take as u64;
            pending.clear();
        }
        if sent >= limit {
            break;
        }
        match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    entry.body_bytes = sent;
    let _ = client.flush();
    if matches!(action, Action::Stall(_)) {
        // Silent until the client gives up and closes (or a minute passes).
        let _ = client.set_read_timeout(Some(std::time::Duration::from_millis(100)));
        let mut byte = [0u8; 1];
        for _ in 0..600 {
            match client.read(&mut byte) {
                Ok(0) => break,
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    break;
                }
                _ => {}
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Serves `/blobs/sha256/<hex>` from an OCI layout's blob directory, logging whether each
/// request carried `Authorization`.
pub struct BlobServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
}

impl BlobServer {
    pub fn start(layout: PathBuf) -> BlobServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, st) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                http::set_timeouts(&conn);
                let Ok(Some((head, _))) = http::read_head(&mut conn) else {
                    continue;
                };
                reqs.lock().unwrap().push((
                    head.path().to_string(),
                    head.header("authorization").is_some(),
                ));
                let file = head
                    .path()
                    .strip_prefix("/blobs/sha256/")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|h| layout.join("blobs/sha256").join(h));
                match file.and_then(|f| std::fs::read(f).ok()) {
                    Some(data) => http::respond(&mut conn, 200, &[], &data),
                    None => http::respond(&mut conn, 404, &[], b"no such blob"),
                }
            }
        });
        BlobServer {
            port,
            requests,
            stop,
        }
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
