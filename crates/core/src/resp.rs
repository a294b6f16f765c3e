//! RESP2: encoding command pipelines and decoding replies.
//!
//! The filter talks to Redis through the bridge with raw RESP2 in an HTTP body, so vectors travel
//! as binary bulk strings and nothing in the wasm filter formats floats or JSON for Redis.

use thiserror::Error;

/// One Redis reply, as RESP2 knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum RespError {
    #[error("RESP reply is truncated")]
    Truncated,
    #[error("RESP reply has an invalid type byte {0:#04x} at offset {1}")]
    BadType(u8, usize),
    #[error("RESP reply has an invalid length or integer at offset {0}")]
    BadNumber(usize),
    #[error("RESP reply is nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("RESP reply has {0} trailing bytes")]
    Trailing(usize),
}

/// A pipeline of commands, encoded as RESP2 arrays of bulk strings.
#[derive(Debug, Default, Clone)]
pub struct Pipeline {
    buf: Vec<u8>,
    count: usize,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one command; every argument is sent as a bulk string, so binary is safe.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Self {
        self.buf.push(b'*');
        self.buf
            .extend_from_slice(args.len().to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        for arg in args {
            let arg = arg.as_ref();
            self.buf.push(b'$');
            self.buf.extend_from_slice(arg.len().to_string().as_bytes());
            self.buf.extend_from_slice(b"\r\n");
            self.buf.extend_from_slice(arg);
            self.buf.extend_from_slice(b"\r\n");
        }
        self.count += 1;
        self
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Appends another pipeline's commands after this one's.
    pub fn append(&mut self, other: Pipeline) {
        self.buf.extend_from_slice(&other.buf);
        self.count += other.count;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

const MAX_DEPTH: usize = 8;

/// Decodes exactly `expected` replies from `input`; anything missing or left over is an error.
pub fn decode_replies(input: &[u8], expected: usize) -> Result<Vec<Reply>, RespError> {
    let mut pos = 0;
    let mut out = Vec::with_capacity(expected);
    for _ in 0..expected {
        out.push(decode_one(input, &mut pos, 0)?);
    }
    if pos != input.len() {
        return Err(RespError::Trailing(input.len() - pos));
    }
    Ok(out)
}

fn read_line<'a>(input: &'a [u8], pos: &mut usize) -> Result<&'a [u8], RespError> {
    let start = *pos;
    let rest = input.get(start..).ok_or(RespError::Truncated)?;
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(RespError::Truncated)?;
    *pos = start + end + 2;
    Ok(&rest[..end])
}

fn parse_int(line: &[u8], at: usize) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(RespError::BadNumber(at))
}

fn decode_one(input: &[u8], pos: &mut usize, depth: usize) -> Result<Reply, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::TooDeep(MAX_DEPTH));
    }
    let at = *pos;
    let ty = *input.get(at).ok_or(RespError::Truncated)?;
    *pos += 1;
    let line = read_line(input, pos)?;
    match ty {
        b'+' => Ok(Reply::Simple(String::from_utf8_lossy(line).into_owned())),
        b'-' => Ok(Reply::Error(String::from_utf8_lossy(line).into_owned())),
        b':' => Ok(Reply::Integer(parse_int(line, at)?)),
        b'$' => {
            let len = parse_int(line, at)?;
            if len == -1 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(|_| RespError::BadNumber(at))?;
            let end = pos.checked_add(len).ok_or(RespError::BadNumber(at))?;
            let data = input.get(*pos..end).ok_or(RespError::Truncated)?;
            if input.get(end..end + 2) != Some(b"\r\n") {
                return Err(RespError::Truncated);
            }
            *pos = end + 2;
            Ok(Reply::Bulk(data.to_vec()))
        }
        b'*' => {
            let len = parse_int(line, at)?;
            if len == -1 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(|_| RespError::BadNumber(at))?;
            // Every element needs at least 3 bytes: refuse lengths the input cannot hold.
            if len > input.len().saturating_sub(*pos) / 3 + 1 {
                return Err(RespError::Truncated);
            }
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(decode_one(input, pos, depth + 1)?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(RespError::BadType(other, at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_arguments_as_bulk_strings() {
        let mut p = Pipeline::new();
        p.cmd(&[b"SET".as_slice(), b"k", &[0u8, 13, 10, 255]]);
        assert_eq!(
            p.into_bytes(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\x00\r\n\xff\r\n".to_vec()
        );
    }

    #[test]
    fn decodes_every_reply_type_in_order() {
        let input =
            b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:1\r\n";
        let replies = decode_replies(input, 6).unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR bad".into()),
                Reply::Integer(42),
                Reply::Bulk(b"a\r\n".to_vec()),
                Reply::Nil,
                Reply::Array(vec![
                    Reply::Bulk(b"x".to_vec()),
                    Reply::Array(vec![Reply::Integer(1)])
                ]),
            ]
        );
    }

    #[test]
    fn rejects_truncated_trailing_and_garbage() {
        assert_eq!(decode_replies(b"$5\r\nab", 1), Err(RespError::Truncated));
        assert_eq!(
            decode_replies(b":1\r\n:2\r\n", 1),
            Err(RespError::Trailing(4))
        );
        assert!(matches!(
            decode_replies(b"?x\r\n", 1),
            Err(RespError::BadType(b'?', 0))
        ));
        assert_eq!(decode_replies(b"*100000\r\n", 1), Err(RespError::Truncated));
        assert_eq!(decode_replies(b":1\r\n", 2), Err(RespError::Truncated));
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert_eq!(
            decode_replies(deep.as_bytes(), 1),
            Err(RespError::TooDeep(8))
        );
    }
}
