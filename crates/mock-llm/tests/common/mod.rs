//! Test harness: runs the real binary and talks raw HTTP/1.1 to it, so tests
//! see the exact framing (chunks, content-length, cut connections).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Generous bound so a broken server fails a test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The running binary; killed on drop, even when the test panics.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
}

impl Server {
    /// Fast defaults for tests: no latency, tiny chunk delay.
    pub fn start() -> Self {
        Self::start_with(&["--latency-ms", "0", "--chunk-delay-ms", "1"], &[])
    }

    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_semcache-mock-llm"));
        cmd.args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn semcache-mock-llm");
        let stdout = child.stdout.take().expect("stdout piped");
        // Guard first, so a failed start still kills the child.
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        server.addr = addr.to_owned();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
        child.wait().expect("wait for the server")
    }

    pub fn open(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Conn {
        Conn::open(&self.addr, method, path, headers, body)
    }

    pub fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        self.open("POST", path, headers, body.to_string().as_bytes())
            .finish()
    }

    pub fn post_raw(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        self.open("POST", path, headers, body).finish()
    }

    pub fn get(&self, path: &str) -> Resp {
        self.open("GET", path, &[], b"").finish()
    }

    pub fn stats(&self) -> Value {
        let r = self.get("/control/stats");
        assert_eq!(r.status, 200);
        r.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Vec<u8>),
    /// The body ended properly (terminating chunk, or full content-length).
    End,
    /// The connection ended before the body did; holds the bytes of the
    /// unfinished frame that did arrive.
    Broken(Vec<u8>),
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// One request on its own connection (`connection: close`), read step by step.
pub struct Conn {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    framing: Framing,
    done: bool,
}

impl Conn {
    pub fn open(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Conn {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("content-type: application/json\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("write head");
        stream.write_all(body).expect("write body");

        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header line");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header colon");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let framing = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            Framing::Chunked
        } else if let Some(len) = get("content-length") {
            Framing::Length(len.parse().expect("content-length"))
        } else {
            Framing::Close
        };
        Conn {
            reader,
            status,
            headers,
            framing,
            done: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next body frame (one HTTP chunk for chunked bodies).
    pub fn next_chunk(&mut self) -> Chunk {
        if self.done {
            return Chunk::End;
        }
        match self.framing {
            Framing::Chunked => {
                let mut line = String::new();
                match self.reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return Chunk::Broken(Vec::new()),
                    Ok(_) => {}
                }
                let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                    return Chunk::Broken(Vec::new());
                };
                let mut data = vec![0; size + 2];
                if self.reader.read_exact(&mut data).is_err() {
                    return Chunk::Broken(Vec::new());
                }
                if size == 0 {
                    self.done = true;
                    return Chunk::End;
                }
                data.truncate(size);
                Chunk::Data(data)
            }
            Framing::Length(len) => {
                self.done = true;
                let mut data = Vec::new();
                let _ = (&mut self.reader).take(len as u64).read_to_end(&mut data);
                if data.len() < len {
                    return Chunk::Broken(data);
                }
                Chunk::Data(data)
            }
            Framing::Close => {
                self.done = true;
                let mut data = Vec::new();
                let _ = self.reader.read_to_end(&mut data);
                Chunk::Data(data)
            }
        }
    }

    /// Reads the rest of the response.
    pub fn finish(mut self) -> Resp {
        let mut chunks = Vec::new();
        let complete = loop {
            match self.next_chunk() {
                Chunk::Data(d) => chunks.push(d),
                Chunk::End => break true,
                Chunk::Broken(partial) => {
                    if !partial.is_empty() {
                        chunks.push(partial);
                    }
                    break false;
                }
            }
        };
        Resp {
            status: self.status,
            body: chunks.concat(),
            chunks,
            complete,
            headers: self.headers,
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// All body bytes received (still gzip-encoded if the server gzipped).
    pub body: Vec<u8>,
    /// Body frames as received (HTTP chunks for chunked bodies).
    pub chunks: Vec<Vec<u8>>,
    /// Whether the body ended properly.
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

/// `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Parsed JSON events of an SSE body plus whether it ended with `[DONE]`.
pub fn sse_json(body: &str) -> (Vec<Value>, bool) {
    let data = sse_data(body);
    let done = data.last().is_some_and(|d| d == "[DONE]");
    let events = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event JSON"))
        .collect();
    (events, done)
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

pub fn chat_body(model: &str, messages: &[(&str, &str)]) -> Value {
    let msgs: Vec<Value> = messages
        .iter()
        .map(|(role, content)| serde_json::json!({ "role": role, "content": content }))
        .collect();
    serde_json::json!({ "model": model, "messages": msgs })
}

pub fn content_of(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content string")
        .to_owned()
}
