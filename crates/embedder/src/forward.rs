//! The BERT encoder forward pass, mean pooling and L2 normalisation, as sentence-transformers
//! computes them for all-MiniLM-L6-v2.
//!
//! A batch is "packed": the tokens of all sequences are stacked into one `[T, hidden]` matrix with
//! no padding, so the linear layers run as single large GEMMs over every token, and only the
//! attention is done per sequence (where a padding mask would otherwise be needed).

use std::sync::Arc;

use crate::kernels::{add_rows, fill_rows, layer_norm_rows, softmax_rows};
use crate::linear::{linear, Epilogue};
use crate::matmul::{matmul, MatRef};
use crate::weights::Weights;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("empty token sequence")]
    EmptySequence,
    #[error("sequence of {len} tokens is longer than the model's {max}")]
    TooLong { len: usize, max: usize },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("output buffer holds {got} floats, {want} needed")]
    OutputSize { got: usize, want: usize },
}

/// Scratch buffers, grown to the largest batch seen and reused so the hot path doesn't allocate.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    tmp: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub struct Encoder {
    w: Arc<Weights>,
    s: Scratch,
    /// The second half's buffers when a batch is split over two threads.
    s2: Scratch,
    pool: Option<Arc<rayon::ThreadPool>>,
}

/// Token count from which a batch of several sequences is split in two and each half runs on
/// its own thread, instead of sharing every matrix multiply: one synchronisation per batch
/// rather than several per layer, which pays once there is enough work for both halves.
const SPLIT_MIN_TOKENS: usize = 24;

impl Encoder {
    /// With `threads` > 1 the encoder owns a pool of that many threads and runs each forward
    /// pass inside it, so that linear layers and attention heads can be shared out.
    pub fn new(w: Arc<Weights>, threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = if threads > 1 {
            Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("embedder-gemm-{i}"))
                    .build()?,
            ))
        } else {
            None
        };
        Ok(Self {
            w,
            s: Scratch::default(),
            s2: Scratch::default(),
            pool,
        })
    }

    pub fn dim(&self) -> usize {
        self.w.config.hidden_size
    }

    /// Embeds each sequence of token ids (special tokens included, already truncated) into
    /// consecutive `dim()`-wide rows of `out`: unit-length mean-pooled vectors.
    pub fn embed(&mut self, seqs: &[&[u32]], out: &mut [f32]) -> Result<(), ForwardError> {
        let Some(pool) = self.pool.clone() else {
            return forward(&self.w, &mut self.s, seqs, out, None);
        };
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        if seqs.len() < 2 || total < SPLIT_MIN_TOKENS || out.len() != seqs.len() * self.dim() {
            return pool.install(|| forward(&self.w, &mut self.s, seqs, out, Some(&pool)));
        }
        // Data-parallel: two halves of about equal tokens, each on one thread of the pool.
        let mut cut = 1;
        let mut acc = seqs[0].len();
        while cut < seqs.len() - 1 && 2 * (acc + seqs[cut].len()) <= total {
            acc += seqs[cut].len();
            cut += 1;
        }
        let (a, b) = seqs.split_at(cut);
        let (out_a, out_b) = out.split_at_mut(cut * self.dim());
        let (w, s1, s2) = (&self.w, &mut self.s, &mut self.s2);
        let (ra, rb) = pool.install(|| {
            rayon::join(
                || forward(w, s1, a, out_a, None),
                || forward(w, s2, b, out_b, None),
            )
        });
        ra.and(rb)
    }
}

/// One forward pass over `seqs` into `out`; with `pool`, the linear layers and attention heads
/// are shared out over it (the caller runs this inside that pool).
fn forward(
    w: &Weights,
    s: &mut Scratch,
    seqs: &[&[u32]],
    out: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
) -> Result<(), ForwardError> {
    let cfg = &w.config;
    let h = cfg.hidden_size;
    let want = seqs.len() * h;
    if out.len() != want {
        return Err(ForwardError::OutputSize {
            got: out.len(),
            want,
        });
    }
    let mut total = 0;
    let mut longest = 0;
    for s in seqs {
        if s.is_empty() {
            return Err(ForwardError::EmptySequence);
        }
        if s.len() > w.max_seq_length {
            return Err(ForwardError::TooLong {
                len: s.len(),
                max: w.max_seq_length,
            });
        }
        if let Some(&bad) = s.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(ForwardError::BadToken(bad));
        }
        total += s.len();
        longest = longest.max(s.len());
    }
    if total == 0 {
        return Ok(());
    }
    let (t, im) = (total, cfg.intermediate_size);
    grow(&mut s.x, t * h);
    grow(&mut s.tmp, t * h);
    grow(&mut s.qkv, t * 3 * h);
    grow(&mut s.ctx, t * h);
    grow(&mut s.inter, t * im);
    grow(&mut s.scores, cfg.num_attention_heads * longest * longest);
    let eps = cfg.layer_norm_eps as f32;

    // Embeddings: word + (position + token type 0), then LayerNorm.
    let x = &mut s.x[..t * h];
    let mut row = 0;
    for seq in seqs {
        for (pos, &id) in seq.iter().enumerate() {
            let id = id as usize;
            let dst = &mut x[row * h..(row + 1) * h];
            let word = &w.word[id * h..(id + 1) * h];
            let pt = &w.pos_type[pos * h..(pos + 1) * h];
            for ((d, a), b) in dst.iter_mut().zip(word).zip(pt) {
                *d = a + b;
            }
            row += 1;
        }
    }
    layer_norm_rows(x, h, &w.emb_ln_w, &w.emb_ln_b, eps);

    for layer in &w.layers {
        let x = &mut s.x[..t * h];
        let qkv = &mut s.qkv[..t * 3 * h];
        fill_rows(qkv, &layer.qkv_b);
        linear(t, x, h, &layer.qkv_w, qkv, 3 * h, Epilogue::None, pool);
        attention(
            seqs,
            qkv,
            &mut s.ctx[..t * h],
            &mut s.scores,
            h,
            cfg.num_attention_heads,
            longest,
            pool.is_some(),
        );
        // x = LN(x + ctx · Wo + bo)
        let tmp = &mut s.tmp[..t * h];
        add_rows(tmp, x, &layer.out_b);
        linear(
            t,
            &s.ctx[..t * h],
            h,
            &layer.out_w,
            tmp,
            h,
            Epilogue::None,
            pool,
        );
        layer_norm_rows(tmp, h, &layer.ln1_w, &layer.ln1_b, eps);
        std::mem::swap(&mut s.x, &mut s.tmp);
        let x = &mut s.x[..t * h];
        // x = LN(x + gelu(x · W1 + b1) · W2 + b2)
        let inter = &mut s.inter[..t * im];
        fill_rows(inter, &layer.ff1_b);
        linear(t, x, h, &layer.ff1_w, inter, im, Epilogue::Gelu, pool);
        let tmp = &mut s.tmp[..t * h];
        add_rows(tmp, x, &layer.ff2_b);
        linear(t, inter, im, &layer.ff2_w, tmp, h, Epilogue::None, pool);
        layer_norm_rows(tmp, h, &layer.ln2_w, &layer.ln2_b, eps);
        std::mem::swap(&mut s.x, &mut s.tmp);
    }

    // Mean pooling (no padding, so every row counts) and L2 normalisation.
    let x = &s.x[..t * h];
    let mut start = 0;
    for (seq, o) in seqs.iter().zip(out.chunks_exact_mut(h)) {
        o.fill(0.0);
        for r in x[start * h..(start + seq.len()) * h].chunks_exact(h) {
            for (a, b) in o.iter_mut().zip(r) {
                *a += b;
            }
        }
        start += seq.len();
        let norm = o.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        for v in o.iter_mut() {
            *v /= norm;
        }
    }
    Ok(())
}

/// Self-attention of every sequence: ctx = softmax(Q Kᵀ) V per head (Q is pre-scaled). Heads
/// are independent, so with `parallel` they are spread over the current rayon pool; each head
/// has its own `longest²` slice of `scores` and writes only its own columns of `ctx`.
#[allow(clippy::too_many_arguments)]
fn attention(
    seqs: &[&[u32]],
    qkv: &[f32],
    ctx: &mut [f32],
    scores: &mut [f32],
    h: usize,
    heads: usize,
    longest: usize,
    parallel: bool,
) {
    let d = h / heads;
    let t = ctx.len() / h;
    let ctx_ptr = SendPtr(ctx.as_mut_ptr());
    let head = |hd: usize, sc: &mut [f32]| {
        let mut start = 0;
        for seq in seqs {
            let n = seq.len();
            let rows = &qkv[start * 3 * h..(start + n) * 3 * h];
            let sc = &mut sc[..n * n];
            let q = MatRef {
                data: &rows[hd * d..],
                rs: 3 * h,
                cs: 1,
            };
            // Kᵀ: element (i, j) is K[j][i].
            let kt = MatRef {
                data: &rows[h + hd * d..],
                rs: 1,
                cs: 3 * h,
            };
            matmul(n, n, d, q, kt, sc, n, false);
            softmax_rows(sc, n);
            let v = MatRef {
                data: &rows[2 * h + hd * d..],
                rs: 3 * h,
                cs: 1,
            };
            // SAFETY: rows [start, start + n) of ctx, columns [hd*d, hd*d + d): in bounds (t rows
            // of h) and written by this head only; no other reference to ctx is live.
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    ctx_ptr.get().add(start * h + hd * d),
                    (n - 1) * h + d,
                )
            };
            matmul(n, d, n, MatRef::rows(sc, n), v, out, h, false);
            start += n;
        }
        debug_assert!(start <= t);
    };
    let per_head = longest * longest;
    let scores = &mut scores[..heads * per_head];
    // Short inputs: attention is a few microseconds, not worth sharing out.
    if parallel && per_head * seqs.len() >= 4096 {
        use rayon::prelude::*;
        scores
            .par_chunks_mut(per_head)
            .enumerate()
            .for_each(|(hd, sc)| head(hd, sc));
    } else {
        for (hd, sc) in scores.chunks_mut(per_head).enumerate() {
            head(hd, sc);
        }
    }
}

/// The `ctx` pointer shared by the attention heads, each writing its own columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see `attention`: heads write disjoint columns.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method rather than `.0`, so closures capture the whole (Sync) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}
