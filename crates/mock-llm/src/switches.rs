//! Per-request test switches, read from `x-mock-*` request headers so one
//! server can serve many tests at once.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::error::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Switches {
    /// `x-mock-status`: fail with this status and an OpenAI error body.
    pub status: Option<StatusCode>,
    /// `x-mock-retry-after`: `retry-after` value of an injected error (429 gets `1` by default).
    pub retry_after: Option<HeaderValue>,
    /// `x-mock-truncate`: stream: content chunks sent before the connection is
    /// cut; non-stream: the body is cut short of its `content-length`.
    pub truncate: Option<usize>,
    /// `x-mock-tool-calls`: answer with a `tool_calls` message.
    pub tool_calls: bool,
    /// `x-mock-finish-reason`: the `finish_reason` to report.
    pub finish_reason: Option<String>,
    /// `x-mock-latency-ms`: overrides `--latency-ms` (or the embeddings delay).
    pub latency: Option<Duration>,
    /// `x-mock-hold`: wait for `POST /control/release/<token>` mid-response.
    pub hold: Option<String>,
    /// `x-mock-answer-bytes`: lengthen a text answer to at least this many bytes (as far as
    /// the mock's distinct sentences go, about 1.4 KB), e.g. for a typical 1 KB answer.
    pub answer_bytes: usize,
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::bad_request(format!("header {name} is not visible ASCII"))),
    }
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, ApiError> {
    text(headers, name)?
        .map(|s| {
            s.parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("header {name} must be a non-negative integer"))
            })
        })
        .transpose()
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn flag(headers: &HeaderMap, name: &str) -> Result<Option<bool>, ApiError> {
    text(headers, name)?
        .map(|s| {
            parse_bool(s)
                .ok_or_else(|| ApiError::bad_request(format!("header {name} must be 1 or 0")))
        })
        .transpose()
}

impl Switches {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let status = match number::<u16>(headers, "x-mock-status")? {
            None => None,
            Some(code) if (200..300).contains(&code) => None,
            Some(code) => Some(
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .ok_or_else(|| {
                        ApiError::bad_request("header x-mock-status must be a 4xx or 5xx status")
                    })?,
            ),
        };
        let retry_after = match headers.get("x-mock-retry-after") {
            Some(v) => Some(v.clone()),
            None if status == Some(StatusCode::TOO_MANY_REQUESTS) => {
                Some(HeaderValue::from_static("1"))
            }
            None => None,
        };
        let finish_reason = text(headers, "x-mock-finish-reason")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let hold = text(headers, "x-mock-hold")?
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        // `x-mock-gzip` is applied by the gzip middleware; only validated here.
        flag(headers, "x-mock-gzip")?;
        Ok(Self {
            status,
            retry_after,
            truncate: number(headers, "x-mock-truncate")?,
            tool_calls: flag(headers, "x-mock-tool-calls")?.unwrap_or(false),
            finish_reason,
            latency: number(headers, "x-mock-latency-ms")?.map(Duration::from_millis),
            hold,
            answer_bytes: number(headers, "x-mock-answer-bytes")?.unwrap_or(0),
        })
    }

    pub fn injected_error(&self) -> Option<ApiError> {
        self.status.map(|status| ApiError::Injected {
            status,
            retry_after: self.retry_after.clone(),
        })
    }
}

/// Whether the response should be gzip-encoded. Lenient on purpose: a bad
/// `x-mock-gzip` value is reported by the handler's [`Switches::from_headers`].
pub fn wants_gzip(headers: &HeaderMap, gzip_when_accepted: bool) -> bool {
    if let Some(forced) = headers
        .get("x-mock-gzip")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| parse_bool(s.trim()))
    {
        return forced;
    }
    gzip_when_accepted && accepts_gzip(headers)
}

/// `accept-encoding` lists `gzip` (or `*`) with a non-zero q-value.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let zero_q = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_q
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_switches() {
        let s = Switches::from_headers(&headers(&[
            ("x-mock-status", "429"),
            ("x-mock-truncate", "3"),
            ("x-mock-tool-calls", "1"),
            ("x-mock-finish-reason", "length"),
            ("x-mock-latency-ms", "5"),
            ("x-mock-hold", "t1"),
            ("x-mock-answer-bytes", "1000"),
        ]))
        .unwrap();
        assert_eq!(s.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(s.retry_after.unwrap(), "1");
        assert_eq!(s.truncate, Some(3));
        assert!(s.tool_calls);
        assert_eq!(s.finish_reason.as_deref(), Some("length"));
        assert_eq!(s.latency, Some(Duration::from_millis(5)));
        assert_eq!(s.hold.as_deref(), Some("t1"));
        assert_eq!(s.answer_bytes, 1000);
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("x-mock-status", "abc"),
            ("x-mock-status", "302"),
            ("x-mock-truncate", "-1"),
            ("x-mock-gzip", "maybe"),
        ] {
            assert!(
                Switches::from_headers(&headers(&[(k, v)])).is_err(),
                "{k}: {v}"
            );
        }
        assert!(
            Switches::from_headers(&headers(&[("x-mock-status", "200")]))
                .unwrap()
                .status
                .is_none()
        );
    }

    #[test]
    fn gzip_negotiation() {
        assert!(wants_gzip(
            &headers(&[("accept-encoding", "br, gzip")]),
            true
        ));
        assert!(!wants_gzip(&headers(&[("accept-encoding", "gzip")]), false));
        assert!(!wants_gzip(
            &headers(&[("accept-encoding", "gzip;q=0")]),
            true
        ));
        assert!(!wants_gzip(
            &headers(&[("accept-encoding", "identity")]),
            true
        ));
        assert!(wants_gzip(&headers(&[("x-mock-gzip", "1")]), false));
        assert!(!wants_gzip(
            &headers(&[("x-mock-gzip", "0"), ("accept-encoding", "gzip")]),
            true
        ));
    }
}
