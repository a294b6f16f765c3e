//! Server-sent events: a per-stream task pushes pre-rendered events through
//! a channel that backs the response body, so each event is its own HTTP body
//! frame (one chunk of the chunked encoding), flushed as it is produced.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::control::bump;
use crate::AppState;

/// Last event of every complete stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Between the last bytes and the injected error of a cut response. hyper
/// drops bytes still in its write buffer when a body errors, so the error must
/// come in a later poll, after hyper flushed what came before.
const ABORT_GRACE: Duration = Duration::from_millis(20);

pub fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

enum Item {
    Data(Bytes),
    /// End the body with an error: hyper then closes the connection without
    /// the terminating chunk, like an upstream that died mid-response.
    Abort,
}

fn body_from(rx: mpsc::Receiver<Item>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Item::Data(b) => Some((Ok(b), rx)),
            Item::Abort => {
                tokio::time::sleep(ABORT_GRACE).await;
                let err = io::Error::other("mock upstream cut the response (x-mock-truncate)");
                Some((Err(err), rx))
            }
        }
    });
    Body::from_stream(stream)
}

/// A body that sends `partial` and then breaks the connection.
pub fn cut_body(partial: Bytes) -> Body {
    let (tx, rx) = mpsc::channel(2);
    // Capacity 2 and a fresh channel: both sends succeed.
    let _ = tx.try_send(Item::Data(partial));
    let _ = tx.try_send(Item::Abort);
    body_from(rx)
}

/// What a stream sends and how the test switches bend it.
pub struct StreamJob {
    /// Every event in order, `[DONE]` included.
    pub events: Vec<Bytes>,
    /// Wait on this `x-mock-hold` token right after sending event `.0`.
    pub hold: Option<(usize, String)>,
    /// Send only this many events, then cut the connection.
    pub cut_after: Option<usize>,
    pub chunk_delay: Duration,
}

/// Starts the producer task and returns the body it feeds.
pub fn spawn(job: StreamJob, st: Arc<AppState>) -> Body {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(produce(job, tx, st));
    body_from(rx)
}

async fn produce(job: StreamJob, tx: mpsc::Sender<Item>, st: Arc<AppState>) {
    bump(&st.stats.streams_started);
    let limit = job.cut_after.unwrap_or(usize::MAX);
    for (i, ev) in job.events.into_iter().take(limit).enumerate() {
        if i > 0 && !job.chunk_delay.is_zero() {
            tokio::time::sleep(job.chunk_delay).await;
        }
        if tx.send(Item::Data(ev)).await.is_err() {
            // The body was dropped: the client went away.
            bump(&st.stats.streams_aborted);
            return;
        }
        if let Some((_, token)) = job.hold.as_ref().filter(|(at, _)| *at == i) {
            st.holds.wait(token, &st.stats, st.shutdown.clone()).await;
        }
    }
    if job.cut_after.is_some() {
        // Count first: a test may read the stats as soon as it sees the cut.
        bump(&st.stats.streams_aborted);
        bump(&st.stats.truncated_responses);
        let _ = tx.send(Item::Abort).await;
    } else {
        // `tx` drops after this, so the body ends only once this is counted.
        bump(&st.stats.streams_completed);
    }
}
