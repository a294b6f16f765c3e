//! Which commands the bridge will re-issue: a small allow-list, so the bridge is not an open
//! Redis proxy.

/// What the semantic cache sends (vector sets with their expiry index; RediSearch hashes and
/// exactly the three `FT.*` commands that back end uses), plus a few harmless reads and writes
/// for diagnostics. Every command of `crates/core/src/store/*.rs` must be here.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "PING",
    "VADD",
    "VSIM",
    "VREM",
    "VGETATTR",
    "VSETATTR",
    "VCARD",
    "VDIM",
    "VINFO",
    "VEMB",
    "ZADD",
    "ZRANGE",
    "ZREM",
    "ZCARD",
    "EXPIRE",
    "TTL",
    "PTTL",
    "GET",
    "SET",
    "DEL",
    "EXISTS",
    "HSET",
    "HGET",
    "FT.SEARCH",
    "FT.CREATE",
    "FT.INFO",
];

/// Commands that change the state of the connection they run on. All requests share one
/// multiplexed connection per Redis node, so these would leak into other requests (or wedge the
/// connection); they are refused at start-up even if listed in `--allow-commands`.
const CONNECTION_STATE: &[&str] = &[
    "AUTH",
    "HELLO",
    "SELECT",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "RESET",
    "QUIT",
    "CLIENT",
    "READONLY",
    "READWRITE",
    "SYNC",
    "PSYNC",
    "REPLCONF",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the allow-list is empty")]
    Empty,
    #[error("invalid command name {0:?}")]
    InvalidName(String),
    #[error("{0} changes connection state and cannot go through the shared connection")]
    ConnectionState(String),
}

/// Upper-case command names; the index of a name is its metrics slot.
#[derive(Debug, Clone)]
pub struct AllowList {
    names: Vec<String>,
}

impl AllowList {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, PolicyError> {
        let mut out: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if !name.bytes().all(|b| b.is_ascii_graphic()) || name.len() > 64 {
                return Err(PolicyError::InvalidName(name.to_owned()));
            }
            let upper = name.to_ascii_uppercase();
            if CONNECTION_STATE.contains(&upper.as_str()) {
                return Err(PolicyError::ConnectionState(upper));
            }
            if !out.contains(&upper) {
                out.push(upper);
            }
        }
        if out.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(Self { names: out })
    }

    pub fn default_list() -> Self {
        Self {
            names: DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Index of `name` (case-insensitive) in the list. A linear scan of a few dozen short
    /// names is cheaper than hashing an upper-cased copy.
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A command name made safe to echo in an error body or a log line.
pub fn printable(name: &[u8]) -> String {
    const MAX: usize = 40;
    let mut s: String = name
        .iter()
        .take(MAX)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b.to_ascii_uppercase())
            } else {
                '?'
            }
        })
        .collect();
    if name.len() > MAX {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_matches_case_insensitively() {
        let list = AllowList::default_list();
        assert!(list.position(b"vsim").is_some());
        assert!(list.position(b"Ft.Search").is_some());
        for cmd in [
            "FLUSHALL",
            "CONFIG",
            "KEYS",
            "EVAL",
            "MULTI",
            "DEBUG",
            "GETDEL",
            "FT.DROPINDEX",
            "FT._LIST",
            "FT.AGGREGATE",
            "HGETALL",
        ] {
            assert!(list.position(cmd.as_bytes()).is_none(), "{cmd}");
        }
        assert_eq!(
            AllowList::new(DEFAULT_ALLOWED).expect("valid").names(),
            list.names()
        );
    }

    #[test]
    fn custom_list() {
        let list = AllowList::new(&["ping", " flushall ", "PING", ""]).expect("valid");
        assert_eq!(list.names(), ["PING", "FLUSHALL"]);
        assert_eq!(
            AllowList::new(&[""; 1]).expect_err("empty"),
            PolicyError::Empty
        );
        assert_eq!(
            AllowList::new(&["multi"]).expect_err("state"),
            PolicyError::ConnectionState("MULTI".into())
        );
        assert!(AllowList::new(&["GET SET"]).is_err());
    }

    #[test]
    fn printable_names() {
        assert_eq!(printable(b"flushall"), "FLUSHALL");
        assert_eq!(printable(b"a\r\nb"), "A??B");
        assert_eq!(printable(&[b'x'; 50]).len(), 43);
    }
}
