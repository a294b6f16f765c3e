//! Response gzip, as a middleware over the model endpoints: whole bodies are
//! compressed at once; streamed bodies frame by frame with a sync flush, so
//! every SSE event still reaches the client as soon as it is produced.

use std::io::Write;
use std::sync::Arc;

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::StreamExt;

use crate::switches::wants_gzip;
use crate::AppState;

pub async fn gzip_layer(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let gzip = wants_gzip(req.headers(), st.cfg.gzip_when_accepted);
    let resp = next.run(req).await;
    if !gzip || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    // The length changes; hyper recomputes it for whole bodies.
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = if body.size_hint().exact().is_some() {
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => Body::from(gzip_all(&bytes)),
            Err(e) => Body::from_stream(futures_util::stream::once(async { Err::<Bytes, _>(e) })),
        }
    } else {
        gzip_stream(body)
    };
    Response::from_parts(parts, body)
}

fn gzip_all(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2 + 32),
        Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

fn gzip_stream(body: Body) -> Body {
    let enc = GzEncoder::new(Vec::new(), Compression::fast());
    let stream = futures_util::stream::unfold(
        (body.into_data_stream(), Some(enc)),
        |(mut inner, enc)| async move {
            let mut enc = enc?;
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let out = enc
                        .write_all(&chunk)
                        .and_then(|()| enc.flush())
                        .map(|()| Bytes::from(std::mem::take(enc.get_mut())));
                    Some((out.map_err(axum::Error::new), (inner, Some(enc))))
                }
                // Pass a cut through: the client must see a broken body, not a clean end.
                Some(Err(e)) => Some((Err(e), (inner, None))),
                None => {
                    let tail = enc.finish().map(Bytes::from).map_err(axum::Error::new);
                    Some((tail, (inner, None)))
                }
            }
        },
    );
    Body::from_stream(stream)
}
