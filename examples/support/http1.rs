//! A minimal HTTP/1.1 request parser and `Hello, World!` responder, shared by the
//! `http_hello` example and its tokio peer (`peer_tokio_http`), so that both do the
//! same work per request.
//!
//! It handles what a benchmark client and a browser send: a request line and headers,
//! an optional `Content-Length` body (skipped), keep-alive by default for HTTP/1.1 and
//! on request for HTTP/1.0, `Connection: close`, and pipelining (every complete
//! request in the buffer is answered, in order). Chunked request bodies and oversized
//! heads get an error response and a close.
#![allow(dead_code)]

/// The response body.
pub const BODY: &[u8] = b"Hello, World!";

/// Refuse heads longer than this.
pub const MAX_HEAD: usize = 16 * 1024;

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request of `len` bytes (head and body).
    Request {
        len: usize,
        head_only: bool,
        close: bool,
    },
    /// Not a whole request yet; the next call may start searching for the end of
    /// the head at this offset.
    Partial(usize),
    /// Malformed: answer with this status and close.
    Bad(&'static str),
}

/// Finds the end of the head (`\r\n\r\n`), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

/// Parses the request at the start of `buf`. `scanned` is how many bytes of `buf` an
/// earlier call already searched for the end of the head (0 if none).
pub fn parse(buf: &[u8], scanned: usize) -> Parsed {
    let Some(end) = head_end(buf, scanned) else {
        return if buf.len() > MAX_HEAD {
            Parsed::Bad("431 Request Header Fields Too Large")
        } else {
            Parsed::Partial(buf.len())
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end - 4]) else {
        return Parsed::Bad("400 Bad Request");
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad("400 Bad Request");
    };
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Parsed::Bad("505 HTTP Version Not Supported"),
    };
    let mut body = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Bad("400 Bad Request");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => body = n,
                Err(_) => return Parsed::Bad("400 Bad Request"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad("501 Not Implemented");
        }
    }
    if buf.len() < end + body {
        // The head is complete, the body is not: parse the head again next time.
        return Parsed::Partial(0);
    }
    Parsed::Request {
        len: end + body,
        head_only: method == "HEAD",
        close,
    }
}

/// Appends the response to a request.
pub fn respond(out: &mut Vec<u8>, head_only: bool, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(BODY);
    }
}

/// Appends an error response (the connection is closed after it).
pub fn respond_error(out: &mut Vec<u8>, status: &str) {
    out.extend_from_slice(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
}

/// A connection's request buffer: feed it bytes, get the responses to write.
#[derive(Default)]
pub struct Conn {
    buf: Vec<u8>,
    /// How much of `buf` has been searched for the end of a head.
    scanned: usize,
    /// A response asked for the connection to close: ignore anything after it.
    pub closing: bool,
}

impl Conn {
    /// Takes `data`, appends the responses to every complete request to `out`, and
    /// returns whether the connection must close once `out` is written.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.closing {
            return true;
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            match parse(&self.buf[at..], self.scanned) {
                Parsed::Request {
                    len,
                    head_only,
                    close,
                } => {
                    respond(out, head_only, close);
                    at += len;
                    self.scanned = 0;
                    if close {
                        self.closing = true;
                        break;
                    }
                }
                Parsed::Partial(scanned) => {
                    self.scanned = scanned;
                    break;
                }
                Parsed::Bad(status) => {
                    respond_error(out, status);
                    self.closing = true;
                    break;
                }
            }
        }
        self.buf.drain(..at);
        self.closing
    }
}
