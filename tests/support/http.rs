//! Minimal HTTP/1.1 on std sockets, the one copy every stand-in and proxy of the tests
//! uses: reading one request off a socket, a plain GET, a thread-per-connection TCP
//! acceptor on 127.0.0.1, and a byte pipe between two sockets.

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Socket read/write limit inside the proxies and fake servers: they serve tests on
/// loopback, so anything slower than this is a stuck peer, not a slow one.
pub const SOCKET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads one message: head (request line and headers, as sent, ending in the blank line)
/// and a Content-Length body. `None` on EOF before the first byte; an error on EOF inside
/// the head.
pub fn read_message(r: &mut impl BufRead) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let end = line == "\r\n" || line == "\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len: usize = header_in(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// The value of header `name` (any case) in a message head.
pub fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// One HTTP/1.1 request as read off a socket.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query string, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Reads one request (head, then a Content-Length body); `None` on a clean EOF.
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let Some((head, body)) = read_message(r)? else {
        return Ok(None);
    };
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|h| {
            let (k, v) = h.trim_end().split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    assert!(
        header_in(&head, "transfer-encoding").is_none(),
        "chunked request bodies are not supported by this test server"
    );
    if let Some(len) = header_in(&head, "content-length") {
        len.parse::<usize>().expect("numeric Content-Length");
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
    }))
}

/// A plain GET over a fresh connection: (status, body), the body read to EOF and decoded
/// when it comes chunked (large answers, e.g. Prometheus' rules).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = header_in(head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A chunked body (sizes in hex, each chunk followed by CRLF, ending with size 0) joined.
fn dechunk(mut rest: &str) -> std::io::Result<String> {
    let bad = || std::io::Error::other("malformed chunked body");
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or_else(bad)?);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or_else(bad)?;
    }
}

/// Accepts connections on 127.0.0.1 on a thread until dropped; `handle` runs on a thread
/// per connection, with `SOCKET_TIMEOUT` set both ways.
pub struct Acceptor {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(SOCKET_TIMEOUT));
                let _ = conn.set_write_timeout(Some(SOCKET_TIMEOUT));
                let h = handle.clone();
                std::thread::spawn(move || h(conn));
            }
        });
        Acceptor {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connected stream a pipe can copy through (TCP or unix).
pub trait Duplex: Read + Write + Send + Sized + 'static {
    fn clone_stream(&self) -> std::io::Result<Self>;
    fn shutdown_write(&self);
}

impl Duplex for TcpStream {
    fn clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Copies bytes both ways between two connected streams, a thread per direction; each
/// direction half-closes its target at EOF. Returns at once: a plain byte forward.
pub fn pipe(a: impl Duplex, b: impl Duplex) {
    let (Ok(mut a2), Ok(mut b2)) = (a.clone_stream(), b.clone_stream()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b2);
        b2.shutdown_write();
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a2);
        a2.shutdown_write();
    });
}
