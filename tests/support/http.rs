//! Just enough HTTP/1.1 for the test servers: read a request head, write a response. Every
//! connection serves one request and is closed (`Connection: close`), which keeps the servers
//! trivial and lets them count requests exactly.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Head {
    /// `GET /v2/ HTTP/1.1` → method `GET`, target `/v2/`; for responses, the status line's
    /// parts: `HTTP/1.1`, `200`.
    pub first: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// The query parameters, decoded (`+` and `%XX`).
    pub fn query(&self) -> Vec<(String, String)> {
        let Some((_, q)) = self.target.split_once('?') else {
            return Vec::new();
        };
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    /// The status code of a response head.
    pub fn status(&self) -> u16 {
        self.target.parse().unwrap_or(0)
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a head (request or response) up to the blank line; returns it and whatever body
/// bytes came with it. `None` when the peer sent something that is not HTTP (a TLS hello).
pub fn read_head(s: &mut impl Read) -> io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        // Not a request line (a TLS hello starts with 0x16): give up at once, as a real
        // HTTP server would, instead of waiting for a blank line that never comes.
        if !buf[0].is_ascii_uppercase() {
            return Ok(None);
        }
    };
    let rest = buf[end + 4..].to_vec();
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        return Ok(None);
    };
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut parts = first.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    if target.is_empty() {
        return Ok(None);
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some((
        Head {
            first,
            method,
            target,
            headers,
        },
        rest,
    )))
}

pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Writes a whole response with a body and `Connection: close`.
pub fn respond(s: &mut TcpStream, code: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

/// What a test server answers to a request: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A server on a free port of 127.0.0.1 that gives every request `answer`'s response, from a
/// thread that ends with the test process; returns the port.
pub fn serve(answer: impl Fn(&Head) -> Answer + Send + 'static) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            set_timeouts(&s);
            let Ok(Some((head, _))) = read_head(&mut s) else {
                continue;
            };
            let (code, headers, body) = answer(&head);
            respond(&mut s, code, &headers, &body);
        }
    });
    port
}

/// Test servers never wait long on a silent peer.
pub fn set_timeouts(s: &TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
}

/// A blocking GET with a fresh connection, for test set-up (status, headers, body).
pub fn get(port: u16, target: &str, headers: &[(&str, &str)]) -> io::Result<(Head, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    set_timeouts(&s);
    let mut req =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let (mut head, mut body) =
        read_head(&mut s)?.ok_or_else(|| io::Error::other("not an HTTP response"))?;
    // the status line is "HTTP/1.1 200 OK": method = version, target = code
    head.method = head.first.split(' ').next().unwrap_or("").to_string();
    s.read_to_end(&mut body)?;
    Ok((head, body))
}
