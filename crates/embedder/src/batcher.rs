//! The bounded request queue and the model worker threads that drain it in batches.
//!
//! HTTP handlers tokenise and `submit` a job; a full queue is refused at once (the caller answers
//! 429) rather than letting latency grow without bound. Each worker takes every job waiting (up
//! to a token budget), runs them as one packed forward pass, and answers through oneshot
//! channels. Batching is what makes concurrent load cheap: one pass over the weights serves many
//! requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::forward::{Encoder, ForwardError};
use crate::weights::Weights;

/// Embeddings of one job, `inputs × dim` row-major.
pub type JobResult = Result<Vec<f32>, ForwardError>;

pub struct Job {
    /// Token ids per input, special tokens included, already truncated.
    pub seqs: Vec<Vec<u32>>,
    pub reply: oneshot::Sender<JobResult>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the request queue is full")]
    Overloaded,
    #[error("the model worker has stopped")]
    Stopped,
}

/// The sending side, shared by the HTTP handlers.
#[derive(Clone)]
pub struct QueueHandle {
    tx: SyncSender<Job>,
    live_workers: Arc<AtomicUsize>,
}

/// The receiving side, handed to `spawn_workers`.
pub struct JobQueue {
    rx: Receiver<Job>,
    live_workers: Arc<AtomicUsize>,
}

/// A queue holding at most `capacity` jobs that no worker has taken yet.
pub fn queue(capacity: usize) -> (QueueHandle, JobQueue) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let live_workers = Arc::new(AtomicUsize::new(0));
    (
        QueueHandle {
            tx,
            live_workers: live_workers.clone(),
        },
        JobQueue { rx, live_workers },
    )
}

impl QueueHandle {
    /// Enqueues a job without waiting; the receiver yields its embeddings.
    pub fn submit(&self, seqs: Vec<Vec<u32>>) -> Result<oneshot::Receiver<JobResult>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { seqs, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(SubmitError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Whether at least one worker is running.
    pub fn healthy(&self) -> bool {
        self.live_workers.load(Ordering::SeqCst) > 0
    }
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub workers: usize,
    /// Threads per linear layer inside each worker (the worker itself plus a private pool).
    pub gemm_threads: usize,
    /// Token budget of one forward pass; bigger batches are split into several passes.
    pub max_batch_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start a worker thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("cannot build the GEMM thread pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
}

pub struct Workers {
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Waits for the workers, which stop once every `QueueHandle` is dropped and the queue is
    /// drained.
    pub fn join(self) {
        for h in self.handles {
            if h.join().is_err() {
                tracing::error!("a model worker panicked");
            }
        }
    }
}

/// Counts a worker as live until its thread ends, panics included.
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn spawn_workers(
    weights: Arc<Weights>,
    queue: JobQueue,
    opts: &WorkerOptions,
) -> Result<Workers, SpawnError> {
    let rx = Arc::new(Mutex::new(queue.rx));
    let mut handles = Vec::new();
    for i in 0..opts.workers.max(1) {
        let mut enc = Encoder::new(weights.clone(), opts.gemm_threads)?;
        let rx = rx.clone();
        let max_tokens = opts.max_batch_tokens.max(1);
        queue.live_workers.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(queue.live_workers.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("embedder-worker-{i}"))
            .spawn(move || {
                let _guard = guard;
                while let Some(jobs) = next_batch(&rx, max_tokens) {
                    run_batch(&mut enc, jobs, max_tokens);
                }
            });
        handles.push(spawned?);
    }
    Ok(Workers { handles })
}

/// Blocks for one job, then takes whatever else is already waiting, up to `max_tokens`.
/// `None` once the queue is closed and empty.
fn next_batch(rx: &Mutex<Receiver<Job>>, max_tokens: usize) -> Option<Vec<Job>> {
    // A poisoned lock only means another worker panicked; the receiver itself is intact.
    let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
    let first = rx.recv().ok()?;
    let mut tokens = job_tokens(&first);
    let mut jobs = vec![first];
    while tokens < max_tokens {
        match rx.try_recv() {
            Ok(job) => {
                tokens += job_tokens(&job);
                jobs.push(job);
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    Some(jobs)
}

fn job_tokens(job: &Job) -> usize {
    job.seqs.iter().map(Vec::len).sum()
}

/// Runs every input of `jobs` through the model in passes of at most `max_tokens` tokens and
/// answers each job.
fn run_batch(enc: &mut Encoder, jobs: Vec<Job>, max_tokens: usize) {
    let dim = enc.dim();
    // Clients that went away (timeouts, disconnects) need no answer.
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    let mut outputs: Vec<JobResult> = jobs
        .iter()
        .map(|j| Ok(vec![0.0; j.seqs.len() * dim]))
        .collect();
    // (job, input) pairs in order; a pass takes a run of them.
    let items: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.seqs.len()).map(move |i| (j, i)))
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < items.len() {
            let (j, i) = items[end];
            let len = jobs[j].seqs[i].len();
            if end > start && tokens + len > max_tokens {
                break;
            }
            tokens += len;
            end += 1;
        }
        let pass = &items[start..end];
        let refs: Vec<&[u32]> = pass
            .iter()
            .map(|&(j, i)| jobs[j].seqs[i].as_slice())
            .collect();
        out.resize(pass.len() * dim, 0.0);
        match enc.embed(&refs, &mut out) {
            Ok(()) => {
                for (row, &(j, i)) in out.chunks_exact(dim).zip(pass) {
                    if let Ok(v) = &mut outputs[j] {
                        v[i * dim..(i + 1) * dim].copy_from_slice(row);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed");
                for &(j, _) in pass {
                    outputs[j] = Err(e.clone());
                }
            }
        }
        start = end;
    }
    for (job, result) in jobs.into_iter().zip(outputs) {
        // The client may have gone meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_is_refused_and_closed_queue_reports_stopped() {
        let (handle, jobs) = queue(2);
        let _a = handle.submit(vec![vec![101, 102]]).expect("first fits");
        let _b = handle.submit(vec![vec![101, 102]]).expect("second fits");
        assert_eq!(
            handle.submit(vec![vec![101, 102]]).err(),
            Some(SubmitError::Overloaded)
        );
        assert!(!handle.healthy(), "no worker was started");
        drop(jobs);
        assert_eq!(
            handle.submit(vec![vec![101, 102]]).err(),
            Some(SubmitError::Stopped)
        );
    }

    #[test]
    fn next_batch_respects_the_token_budget() {
        let (handle, jobs) = queue(8);
        let mut replies = Vec::new();
        for len in [3, 3, 3, 3] {
            replies.push(handle.submit(vec![vec![101; len]]).expect("fits"));
        }
        let rx = Mutex::new(jobs.rx);
        let first = next_batch(&rx, 6).expect("jobs waiting");
        assert_eq!(first.len(), 2, "two 3-token jobs fill a 6-token budget");
        let second = next_batch(&rx, 100).expect("jobs waiting");
        assert_eq!(second.len(), 2);
        drop(handle);
        assert!(next_batch(&rx, 100).is_none(), "closed and empty");
    }
}
