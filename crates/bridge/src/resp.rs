//! RESP2 codec: a bounded parser for request pipelines (arrays of bulk strings only) and an
//! encoder that writes `redis::Value` replies back as RESP2.
//!
//! The parser never copies arguments: it records byte ranges into the request body, so a
//! 6 KiB FP32 vector is copied once, into the `redis::Cmd` that re-issues it.

use std::ops::Range;

use bytes::Bytes;
use redis::Value;

/// Size limits applied while parsing, so an oversized request is rejected before any of it
/// is turned into Redis commands.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    pub max_commands: usize,
    pub max_args: usize,
    pub max_arg_bytes: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("malformed RESP frame at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("too many commands in pipeline (limit {0})")]
    TooManyCommands(usize),
    #[error("too many arguments in a command (limit {0})")]
    TooManyArgs(usize),
    #[error("argument too long (limit {0} bytes)")]
    ArgTooLong(usize),
}

impl ParseError {
    /// Over-limit errors map to 413, the rest to 400.
    pub fn is_limit(&self) -> bool {
        !matches!(self, ParseError::Malformed { .. })
    }
}

/// A parsed pipeline: every command is a range into `args`, every argument a range into `body`.
#[derive(Debug)]
pub struct Pipeline {
    body: Bytes,
    args: Vec<Range<usize>>,
    commands: Vec<Range<usize>>,
}

impl Pipeline {
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// The arguments of command `i`; the first one is the command name.
    pub fn command(&self, i: usize) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.args[self.commands[i].clone()]
            .iter()
            .map(|r| &self.body[r.clone()])
    }

    /// The name (first argument) of command `i`, as sent (any case).
    pub fn name(&self, i: usize) -> &[u8] {
        let first = &self.args[self.commands[i].start];
        &self.body[first.clone()]
    }

    /// Builds the `redis::Cmd` for command `i`.
    pub fn to_cmd(&self, i: usize) -> redis::Cmd {
        let args = &self.args[self.commands[i].clone()];
        let bytes: usize = args.iter().map(|r| r.len()).sum();
        let mut cmd = redis::Cmd::with_capacity(args.len(), bytes);
        for r in args {
            cmd.arg(&self.body[r.clone()]);
        }
        cmd
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn malformed(&self, reason: &'static str) -> ParseError {
        ParseError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    /// Reads `<prefix><non-negative decimal>\r\n`.
    fn header(&mut self, prefix: u8, what: &'static str) -> Result<usize, ParseError> {
        match self.buf.get(self.pos) {
            Some(&b) if b == prefix => self.pos += 1,
            Some(_) => return Err(self.malformed(what)),
            None => return Err(self.malformed("truncated frame")),
        }
        let start = self.pos;
        let mut n: usize = 0;
        while let Some(&b) = self.buf.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            // Ten digits is far above every limit; stopping there rules out overflow.
            if self.pos - start >= 10 {
                return Err(self.malformed("length too large"));
            }
            n = n * 10 + usize::from(b - b'0');
            self.pos += 1;
        }
        if self.pos == start {
            // Catches `-1` (null), `+5` and empty lengths alike.
            return Err(self.malformed("expected a non-negative length"));
        }
        self.crlf()?;
        Ok(n)
    }

    fn crlf(&mut self) -> Result<(), ParseError> {
        match self.buf.get(self.pos..self.pos + 2) {
            Some(b"\r\n") => {
                self.pos += 2;
                Ok(())
            }
            Some(_) => Err(self.malformed("expected CRLF")),
            None => Err(self.malformed("truncated frame")),
        }
    }
}

/// Parses a request body made of one or more RESP2 arrays of bulk strings.
pub fn parse_pipeline(body: Bytes, limits: &FrameLimits) -> Result<Pipeline, ParseError> {
    let mut cur = Cursor { buf: &body, pos: 0 };
    let mut args = Vec::new();
    let mut commands = Vec::new();
    if cur.buf.is_empty() {
        return Err(cur.malformed("empty body"));
    }
    while cur.pos < cur.buf.len() {
        if commands.len() == limits.max_commands {
            return Err(ParseError::TooManyCommands(limits.max_commands));
        }
        let argc = cur.header(b'*', "expected an array of bulk strings")?;
        if argc == 0 {
            return Err(cur.malformed("empty command"));
        }
        if argc > limits.max_args {
            return Err(ParseError::TooManyArgs(limits.max_args));
        }
        let first = args.len();
        for _ in 0..argc {
            let len = cur.header(b'$', "expected a bulk string")?;
            if len > limits.max_arg_bytes {
                return Err(ParseError::ArgTooLong(limits.max_arg_bytes));
            }
            let start = cur.pos;
            let end = start
                .checked_add(len)
                .filter(|&end| end <= cur.buf.len())
                .ok_or_else(|| cur.malformed("truncated bulk string"))?;
            cur.pos = end;
            cur.crlf()?;
            args.push(start..end);
        }
        commands.push(first..args.len());
    }
    Ok(Pipeline {
        body,
        args,
        commands,
    })
}

/// Appends the RESP2 encoding of `value` to `out`.
///
/// RESP3-only types are mapped the way Redis itself downgrades them for RESP2 clients:
/// maps become flat arrays, sets arrays, doubles and big numbers bulk strings, booleans
/// integers 1/0. RESP2 has one nil on the wire here (`$-1`): `redis::Value` does not keep
/// the null-array/null-bulk distinction.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.extend_from_slice(b"$-1\r\n"),
        Value::Int(i) => int_line(out, b':', *i),
        Value::BulkString(b) => bulk(out, b),
        Value::Array(items) | Value::Set(items) => {
            len_line(out, b'*', items.len());
            items.iter().for_each(|v| encode(v, out));
        }
        Value::Map(pairs) => {
            len_line(out, b'*', pairs.len() * 2);
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::SimpleString(s) => simple(out, b'+', s.as_bytes()),
        Value::Okay => out.extend_from_slice(b"+OK\r\n"),
        Value::Attribute { data, .. } => encode(data, out),
        Value::Double(d) => {
            let text = if d.is_nan() {
                "nan".to_owned()
            } else if d.is_infinite() {
                if *d > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                d.to_string()
            };
            bulk(out, text.as_bytes());
        }
        Value::Boolean(b) => int_line(out, b':', i64::from(*b)),
        Value::VerbatimString { text, .. } => bulk(out, text.as_bytes()),
        Value::BigNumber(digits) => bulk(out, digits),
        Value::Push { data, .. } => {
            len_line(out, b'*', data.len());
            data.iter().for_each(|v| encode(v, out));
        }
        Value::ServerError(err) => {
            out.push(b'-');
            push_line_safe(out, err.code().as_bytes());
            if let Some(detail) = err.details() {
                out.push(b' ');
                push_line_safe(out, detail.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        // `Value` is non-exhaustive: a future variant still yields one well-formed reply.
        _ => out.extend_from_slice(b"-ERR semcache-bridge: unsupported reply type\r\n"),
    }
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    len_line(out, b'$', data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn simple(out: &mut Vec<u8>, prefix: u8, text: &[u8]) {
    // A status line cannot carry CR/LF; such a value (never sent by Redis) goes as bulk.
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        return bulk(out, text);
    }
    out.push(prefix);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// Error lines are one line by definition: stray CR/LF become spaces.
fn push_line_safe(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn len_line(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn int_line(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_commands: 4,
        max_args: 3,
        max_arg_bytes: 8,
    };

    fn parse(body: &[u8]) -> Result<Pipeline, ParseError> {
        parse_pipeline(Bytes::copy_from_slice(body), &LIMITS)
    }

    fn args(p: &Pipeline, i: usize) -> Vec<Vec<u8>> {
        p.command(i).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn parses_binary_pipeline() {
        let p = parse(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\r\n\0\xff\r\n")
            .expect("valid");
        assert_eq!(p.len(), 2);
        assert_eq!(p.name(0), b"PING");
        assert_eq!(
            args(&p, 1),
            vec![b"SET".to_vec(), b"k".to_vec(), b"\r\n\0\xff".to_vec()]
        );
        assert_eq!(
            p.to_cmd(1).get_packed_command(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\r\n\0\xff\r\n"
        );
    }

    #[test]
    fn empty_bulk_is_fine() {
        let p = parse(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n").expect("valid");
        assert_eq!(args(&p, 0)[1], b"");
    }

    #[test]
    fn rejects_malformed() {
        for body in [
            &b""[..],
            b"PING\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$4\r\nPING",
            b"*1\r\n$4\r\nPINGxx",
            b"*1\r\n$5\r\nPING\r\n",
            b"*1\n$4\r\nPING\r\n",
            b"*1\r\n$4\r\nPING\r\n\r\n",
            b"*1\r\n$+4\r\nPING\r\n",
            b"*1\r\n$99999999999\r\nPING\r\n",
            b"*2\r\n$4\r\nPING\r\n",
        ] {
            let err = parse(body).expect_err("must fail");
            assert!(!err.is_limit(), "{body:?} gave {err}");
        }
    }

    #[test]
    fn enforces_limits() {
        let cmd = b"*1\r\n$4\r\nPING\r\n";
        assert_eq!(
            parse(&cmd.repeat(5)).expect_err("5 > 4").to_string(),
            ParseError::TooManyCommands(4).to_string()
        );
        assert!(parse(&cmd.repeat(4)).is_ok());
        assert_eq!(
            parse(b"*4\r\n").expect_err("argc"),
            ParseError::TooManyArgs(3)
        );
        assert_eq!(
            parse(b"*1\r\n$9\r\n").expect_err("len"),
            ParseError::ArgTooLong(8)
        );
        assert!(parse(b"*1\r\n$8\r\n12345678\r\n").is_ok());
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn encodes_resp2() {
        assert_eq!(enc(&Value::Nil), b"$-1\r\n");
        assert_eq!(enc(&Value::Int(-7)), b":-7\r\n");
        assert_eq!(enc(&Value::Okay), b"+OK\r\n");
        assert_eq!(enc(&Value::SimpleString("PONG".into())), b"+PONG\r\n");
        assert_eq!(
            enc(&Value::BulkString(b"a\r\n".to_vec())),
            b"$3\r\na\r\n\r\n"
        );
        assert_eq!(
            enc(&Value::Array(vec![Value::Int(1), Value::Nil])),
            b"*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(enc(&Value::Array(vec![])), b"*0\r\n");
        assert_eq!(
            enc(&Value::Map(vec![(
                Value::SimpleString("a".into()),
                Value::Double(0.5)
            )])),
            b"*2\r\n+a\r\n$3\r\n0.5\r\n"
        );
        assert_eq!(enc(&Value::Boolean(true)), b":1\r\n");
        assert_eq!(enc(&Value::Double(f64::NEG_INFINITY)), b"$4\r\n-inf\r\n");
        assert_eq!(enc(&Value::Set(vec![Value::Int(2)])), b"*1\r\n:2\r\n");
        assert_eq!(enc(&Value::BigNumber(b"123".to_vec())), b"$3\r\n123\r\n");
        assert_eq!(enc(&Value::SimpleString("a\nb".into())), b"$3\r\na\nb\r\n");
    }

    #[test]
    fn encodes_server_errors_in_band() {
        let v = redis::parse_redis_value(b"-WRONGTYPE Operation against a key\r\n").expect("parse");
        assert_eq!(enc(&v), b"-WRONGTYPE Operation against a key\r\n");
        let v = redis::parse_redis_value(b"-ERR unknown command 'X'\r\n").expect("parse");
        assert_eq!(enc(&v), b"-ERR unknown command 'X'\r\n");
        let v = redis::parse_redis_value(b"-MYMODULE oops\r\n").expect("parse");
        assert_eq!(enc(&v), b"-MYMODULE oops\r\n");
    }
}
