//! A no-op `provided` runtime: the smallest honest client of the Lambda Runtime API.
//!
//! Loops `GET /2018-06-01/runtime/invocation/next` → `POST .../{id}/response` with
//! body `null`, over one persistent HTTP/1.1 connection to `$AWS_LAMBDA_RUNTIME_API`.
//! Std only, so its own start-up cost is a bare process exec.
//!
//! `$NOOP_BOOTSTRAP_RESPONSE`, when set, is the response body instead of `null` (the
//! gateway benchmark returns `{"statusCode":200,...}`, which both payload formats accept).
//!
//! `noop-bootstrap --exit` exits at once and `noop-bootstrap --ready` writes one byte
//! to stdout first: the benchmark times those as the "bare start" of this same binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::exit;

struct Conn {
    api: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

struct Resp {
    status: u16,
    request_id: Option<String>,
}

impl Conn {
    fn connect(api: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(api)?;
        s.set_nodelay(true)?;
        Ok(Conn {
            api: api.to_string(),
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// One request, written with a single `write`, and its response read in full.
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.api).into_bytes();
        if method == "POST" {
            req.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.writer.write_all(&req)?;

        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(eof());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length = 0usize;
        let mut chunked = false;
        let mut request_id = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(eof());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.parse().map_err(|_| bad("content-length"))?,
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "lambda-runtime-aws-request-id" => request_id = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("chunk size"))?;
                if n == 0 {
                    // Trailers (none expected) end with an empty line.
                    loop {
                        line.clear();
                        if self.reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; n + 2];
                self.reader.read_exact(&mut chunk)?;
            }
        } else if length > 0 {
            let mut body = vec![0u8; length];
            self.reader.read_exact(&mut body)?;
        }
        Ok(Resp { status, request_id })
    }
}

fn eof() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn main() {
    if std::env::args().any(|a| a == "--exit") {
        return;
    }
    if std::env::args().any(|a| a == "--ready") {
        let _ = std::io::stdout().write_all(b".");
        return;
    }
    let api = match std::env::var("AWS_LAMBDA_RUNTIME_API") {
        Ok(a) => a,
        Err(_) => {
            eprintln!("noop-bootstrap: AWS_LAMBDA_RUNTIME_API is not set");
            exit(2);
        }
    };
    let mut conn = match Conn::connect(&api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("noop-bootstrap: cannot reach the Runtime API at {api}: {e}");
            exit(1);
        }
    };
    let response = std::env::var("NOOP_BOOTSTRAP_RESPONSE")
        .map(String::into_bytes)
        .unwrap_or_else(|_| b"null".to_vec());
    let mut retried = false;
    loop {
        let step = conn
            .call("GET", "/2018-06-01/runtime/invocation/next", b"")
            .and_then(|r| {
                let id = r
                    .request_id
                    .filter(|_| r.status == 200)
                    .ok_or_else(|| bad("no invocation in /next reply"))?;
                conn.call(
                    "POST",
                    &format!("/2018-06-01/runtime/invocation/{id}/response"),
                    &response,
                )
            });
        match step {
            Ok(_) => retried = false,
            // A kept-alive connection the server closed: reconnect once.
            Err(e) if !retried => {
                retried = true;
                conn = match Conn::connect(&api) {
                    Ok(c) => c,
                    Err(_) => {
                        eprintln!("noop-bootstrap: Runtime API gone: {e}");
                        exit(1);
                    }
                };
            }
            Err(e) => {
                eprintln!("noop-bootstrap: Runtime API error: {e}");
                exit(1);
            }
        }
    }
}
