//! Peers: the cheapest thing of the same kind, measured in the same run, so a
//! number from the server is read as a ratio or a difference, never alone.
//!
//! * [`RawHttp`]: a loopback HTTP/1.1 server that answers every request with a
//!   fixed `200 null` from a blocking thread per connection (no parsing beyond
//!   the head and `Content-Length`, no runtime, no routing). The round trip to it
//!   with the benchmark's own client is the floor any HTTP service pays.
//! * [`fsync_ms`]: write 200 bytes to a file in the server's data dir and
//!   `fdatasync` it; the floor under "on disk before the 202".

use crate::stats::{summarize, Summary};
use anyhow::Result;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

pub struct RawHttp {
    pub addr: SocketAddr,
}

impl RawHttp {
    /// Listen on a random loopback port; the accept thread lives as long as the
    /// benchmark process.
    pub fn start() -> Result<RawHttp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
        });
        Ok(RawHttp { addr })
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        if length > 0 {
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body)?;
        }
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\nnull",
        )?;
    }
}

/// The durability floor, two ways, `n` samples each, in ms: a 200-byte write +
/// `fdatasync` that overwrites a block of a preallocated file (what a reused SQLite WAL
/// does in steady state: no metadata to journal), and the same as an append that
/// grows the file (the size change must be journaled too).
pub fn fsync_ms(dir: &Path, n: usize) -> Result<(Summary, Summary)> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("bench-fsync-probe");
    let rec = [b'x'; 200];
    let block = 4096u64;
    let blocks = 256u64;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all_at(&vec![0u8; (block * blocks) as usize], 0)?;
    f.sync_all()?;
    let mut overwrite = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t0 = Instant::now();
        f.write_all_at(&rec, (i % blocks) * block)?;
        f.sync_data()?;
        overwrite.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let mut append = Vec::with_capacity(n);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
    for _ in 0..n {
        let t0 = Instant::now();
        f.write_all(&rec)?;
        f.sync_data()?;
        append.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok((summarize(&overwrite), summarize(&append)))
}
