//! Linear layers, `C += A · W`, with `W` packed once at load time into 16-column panels for a
//! hand-written AVX2/FMA micro-kernel (chosen at run time; a portable fallback otherwise).
//!
//! Why not a GEMM crate: general-purpose GEMMs re-pack the weight matrix on every call, and for a
//! single short sentence (m ≈ 10–30 rows against 384×1536 weights) that copy costs more than the
//! arithmetic. Packing once and streaming the panels keeps small batches fast, and a 6×16 register
//! tile keeps large ones close to the FMA peak. Panels may be stored as f16 or bf16 (half the
//! bytes to stream; the kernels widen them to f32 as they load them).

/// Columns per panel: two 8-wide AVX vectors.
pub const NR: usize = 16;
/// Most rows per micro-tile of any kernel (the AVX-512 one).
const MAX_MR: usize = 24;
/// Depth of one pass over a panel: KC × 16 floats (24 KiB) stay in L1 while the row tiles reuse it.
const KC: usize = 384;
/// Rows per outer block: MC × KC floats of A (≈ 180 KiB) stay in L2 while every panel visits them.
const MC: usize = 120;

/// One 64-byte cache line of panel storage: one panel row of 16 f32, or two of 16 half floats.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; NR]);

/// How the packed weights are stored. The arithmetic is f32 whatever the storage (the kernels
/// widen each panel row as they load it, and activations, LayerNorm, softmax and the output
/// stay f32); half-size storage only halves the bytes a forward pass streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum WeightDtype {
    #[default]
    F32,
    /// IEEE half (10-bit mantissa): relative rounding error ≤ 2⁻¹¹.
    F16,
    /// bfloat16 (7-bit mantissa, f32's exponent): relative rounding error ≤ 2⁻⁸.
    Bf16,
    /// bfloat16 weights *and* activations on AMX tiles, f32 accumulation (`crate::amx`). Only
    /// where `amx::available()`.
    Bf16Amx,
}

impl WeightDtype {
    pub fn bytes(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 | WeightDtype::Bf16 | WeightDtype::Bf16Amx => 2,
        }
    }

    /// `x` rounded to this storage type and back (round to nearest even).
    pub fn round(self, x: f32) -> f32 {
        match self {
            WeightDtype::F32 => x,
            WeightDtype::F16 => half::f16::from_f32(x).to_f32(),
            WeightDtype::Bf16 | WeightDtype::Bf16Amx => half::bf16::from_f32(x).to_f32(),
        }
    }
}

/// A `k × n` weight matrix, as `ceil(n / 16)` panels of `k` rows of 16 values each (padded
/// with zeros), stored as `dtype`.
pub struct PackedWeight {
    k: usize,
    n: usize,
    dtype: WeightDtype,
    panels: Vec<Line>,
}

impl PackedWeight {
    /// Packs a row-major `k × n` matrix, stored as f32.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Self {
        Self::pack_as(w, k, n, WeightDtype::F32)
    }

    /// Packs a row-major `k × n` matrix, stored as `dtype`.
    pub fn pack_as(w: &[f32], k: usize, n: usize, dtype: WeightDtype) -> Self {
        assert_eq!(w.len(), k * n, "PackedWeight::pack: wrong size");
        if dtype == WeightDtype::Bf16Amx {
            return Self::from_bytes(k, n, dtype, &crate::amx::pack(w, k, n));
        }
        let np = n.div_ceil(NR);
        let mut vals = vec![0.0f32; np * k * NR];
        for j in 0..np {
            for p in 0..k {
                let cols = (n - j * NR).min(NR);
                let dst = (j * k + p) * NR;
                vals[dst..dst + cols].copy_from_slice(&w[p * n + j * NR..p * n + j * NR + cols]);
            }
        }
        let bytes: Vec<u8> = match dtype {
            WeightDtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            WeightDtype::F16 => vals
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            WeightDtype::Bf16 => vals
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            WeightDtype::Bf16Amx => unreachable!("packed above"),
        };
        Self::from_bytes(k, n, dtype, &bytes)
    }

    /// Wraps packed storage in 64-byte aligned lines.
    fn from_bytes(k: usize, n: usize, dtype: WeightDtype, bytes: &[u8]) -> Self {
        let mut panels = vec![Line::default(); bytes.len().div_ceil(64)];
        // SAFETY: `panels` holds at least `bytes.len()` bytes; Line is plain old data.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                panels.as_mut_ptr() as *mut u8,
                bytes.len(),
            )
        };
        Self {
            k,
            n,
            dtype,
            panels,
        }
    }

    pub fn dtype(&self) -> WeightDtype {
        self.dtype
    }

    /// Bytes of packed storage.
    pub fn size_bytes(&self) -> usize {
        self.panels.len() * 64
    }

    /// Start of row `p` of panel `j`.
    fn panel_ptr(&self, j: usize, p: usize) -> *const u8 {
        (self.panels.as_ptr() as *const u8).wrapping_add((j * self.k + p) * NR * self.dtype.bytes())
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    fn num_panels(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

/// What to apply to the finished output, while it is still in cache and on the thread that
/// computed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Epilogue {
    None,
    /// GELU (erf form), for the intermediate layer.
    Gelu,
}

/// A raw `*mut f32` that may cross threads: each thread writes only its own columns of C.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: `linear` hands every thread a disjoint set of columns, so no element is shared.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `c = epilogue(c + a · w)`: `a` is `m × k` row-major (row stride `lda`), `c` is `m × n`
/// row-major (row stride `ldc`). With a pool, groups of panels are spread over its threads
/// (cheaply when the caller already runs inside that pool).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    m: usize,
    a: &[f32],
    lda: usize,
    w: &PackedWeight,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
    pool: Option<&rayon::ThreadPool>,
) {
    let (k, n) = (w.k, w.n);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        lda >= k && (m - 1) * lda + k <= a.len(),
        "linear: lhs out of bounds"
    );
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "linear: dst out of bounds"
    );
    let np = w.num_panels();
    if w.dtype == WeightDtype::Bf16Amx {
        assert!(
            crate::amx::available(),
            "linear: bf16-amx weights without AMX"
        );
        return AMX_ACTIVATIONS.with_borrow_mut(|act| {
            crate::amx::round_activations(m, a, lda, k, act);
            let (ap, cp) = (act.as_ptr() as usize, SendPtr(c.as_mut_ptr()));
            let run = |p0: usize, p1: usize| {
                // SAFETY: AMX is available; `act` holds m rounded rows, the bounds of c were
                // checked above, and the panel range [p0, p1) owns its columns alone.
                unsafe {
                    crate::amx::block(
                        m,
                        ap as *const u16,
                        k,
                        w.panel_ptr(0, 0),
                        n,
                        p0,
                        p1,
                        cp.0,
                        ldc,
                    );
                    gelu_columns(epilogue, 0..m, p0, p1, n, cp, ldc);
                }
            };
            split(pool, m * n * k / AMX_SPEEDUP, np, crate::amx::GROUP, run)
        });
    }
    let cp = SendPtr(c.as_mut_ptr());
    let run = |p0: usize, p1: usize| {
        // SAFETY: bounds were checked above; the panel range [p0, p1) owns columns
        // [p0 * 16, min(p1 * 16, n)) of every row, disjoint from every other range.
        unsafe { block(m, a.as_ptr(), lda, w, p0, p1, cp, ldc, epilogue) }
    };
    split(pool, m * n * k, np, 1, run)
}

/// How many times less time a multiply-add takes on AMX tiles than in the AVX-512 kernel, for
/// deciding when a product is worth a second thread (README, "AMX bf16 tiles": 4-7.5×).
const AMX_SPEEDUP: usize = 4;

thread_local! {
    /// The bf16 activations of the current AMX product, reused between calls.
    static AMX_ACTIVATIONS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `run` over the panels `[0, np)`, in chunks of whole multiples of `align` panels spread
/// over the pool when the product (`work` multiply-adds) is large enough to pay for it.
fn split(
    pool: Option<&rayon::ThreadPool>,
    work: usize,
    np: usize,
    align: usize,
    run: impl Fn(usize, usize) + Sync,
) {
    let Some(pool) = pool else {
        return run(0, np);
    };
    // Small products are not worth waking another thread for.
    if pool.current_num_threads() <= 1 || work < 1 << 18 {
        return run(0, np);
    }
    // Several chunks per thread, taken by work stealing: when another process holds one core,
    // the thread that is running takes over the rest instead of the pass waiting for the other.
    let chunks = (pool.current_num_threads() * 4).min(np.div_ceil(3)).max(1);
    let per = np.div_ceil(chunks).div_ceil(align) * align;
    pool.install(|| {
        use rayon::prelude::*;
        (0..np.div_ceil(per))
            .into_par_iter()
            .for_each(|i| run(i * per, ((i + 1) * per).min(np)));
    });
}

/// Panels `[p0, p1)` of `c += a · w`.
///
/// # Safety
/// `a` must hold `m` rows of stride `lda` with at least `k` columns, `c` must hold `m` rows of
/// stride `ldc` with at least `w.n` columns, and no other thread may touch these columns of `c`.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    m: usize,
    a: *const f32,
    lda: usize,
    w: &PackedWeight,
    p0: usize,
    p1: usize,
    c: SendPtr,
    ldc: usize,
    epilogue: Epilogue,
) {
    let k = w.k;
    let (kern, mr) = kernel_fn(w.dtype);
    let mut tile = [0.0f32; MAX_MR * NR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for m0 in (0..m).step_by(MC) {
            let mc = MC.min(m - m0);
            for j in p0..p1 {
                let panel = w.panel_ptr(j, k0);
                let cols = (w.n - j * NR).min(NR);
                for r0 in (m0..m0 + mc).step_by(mr) {
                    let rows = mr.min(m0 + mc - r0);
                    let ap = a.add(r0 * lda + k0);
                    let cp = c.0.add(r0 * ldc + j * NR);
                    if cols == NR {
                        kern(rows, kc, ap, lda, panel, cp, ldc);
                    } else {
                        // Ragged last panel: run on a full tile, copy back the real columns.
                        for r in 0..rows {
                            for q in 0..cols {
                                tile[r * NR + q] = *cp.add(r * ldc + q);
                            }
                        }
                        kern(rows, kc, ap, lda, panel, tile.as_mut_ptr(), NR);
                        for r in 0..rows {
                            for q in 0..cols {
                                *cp.add(r * ldc + q) = tile[r * NR + q];
                            }
                        }
                    }
                }
            }
            if k0 + kc == k {
                gelu_columns(epilogue, m0..m0 + mc, p0, p1, w.n, c, ldc);
            }
        }
    }
}

/// Applies the epilogue to rows `rows` of panels `[p0, p1)` of `c`, finished.
///
/// # Safety
/// As for [`block`]: `c` holds these rows and columns, and no other thread touches them.
unsafe fn gelu_columns(
    epilogue: Epilogue,
    rows: std::ops::Range<usize>,
    p0: usize,
    p1: usize,
    n: usize,
    c: SendPtr,
    ldc: usize,
) {
    if epilogue == Epilogue::Gelu {
        let (c0, c1) = (p0 * NR, (p1 * NR).min(n));
        for r in rows {
            let row = std::slice::from_raw_parts_mut(c.0.add(r * ldc + c0), c1 - c0);
            crate::kernels::gelu(row);
        }
    }
}

/// `c[rows × 16] += a[rows × kc] · panel[kc × 16]`, rows ≤ the kernel's row count; the panel
/// is raw storage of the weight's dtype (the kernel is chosen for it).
type KernelFn = unsafe fn(usize, usize, *const f32, usize, *const u8, *mut f32, usize);

/// Storage codes for the kernels' const generic parameter.
const D_F32: u8 = 0;
const D_F16: u8 = 1;
const D_BF16: u8 = 2;

/// The best kernel for this CPU and storage type, and how many rows it takes at once (checked
/// once per type). `SEMCACHE_EMBEDDER_KERNEL=avx512|avx2|portable` forces a lesser one (and
/// turns AMX off), for comparisons.
fn kernel_fn(dtype: WeightDtype) -> (KernelFn, usize) {
    use std::sync::OnceLock;
    static BEST: [OnceLock<(KernelFn, usize)>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match dtype {
        WeightDtype::F32 => 0,
        WeightDtype::F16 => 1,
        WeightDtype::Bf16 => 2,
        WeightDtype::Bf16Amx => unreachable!("AMX weights run in amx::block"),
    };
    *BEST[slot].get_or_init(|| {
        let forced = std::env::var("SEMCACHE_EMBEDDER_KERNEL").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if (forced.is_empty() || forced == "amx" || forced == "avx512") && has!("avx512f") {
                let f: KernelFn = match dtype {
                    WeightDtype::F32 => avx512::kernel::<D_F32>,
                    WeightDtype::F16 => avx512::kernel::<D_F16>,
                    WeightDtype::Bf16 | WeightDtype::Bf16Amx => avx512::kernel::<D_BF16>,
                };
                return (f, avx512::MR);
            }
            if forced != "portable"
                && has!("avx2")
                && has!("fma")
                && (dtype != WeightDtype::F16 || has!("f16c"))
            {
                let f: KernelFn = match dtype {
                    WeightDtype::F32 => avx2::kernel::<D_F32>,
                    WeightDtype::F16 => avx2::kernel::<D_F16>,
                    WeightDtype::Bf16 | WeightDtype::Bf16Amx => avx2::kernel::<D_BF16>,
                };
                return (f, avx2::MR);
            }
        }
        let _ = forced;
        let f: KernelFn = match dtype {
            WeightDtype::F32 => portable_kernel::<D_F32>,
            WeightDtype::F16 => portable_kernel::<D_F16>,
            WeightDtype::Bf16 | WeightDtype::Bf16Amx => portable_kernel::<D_BF16>,
        };
        (f, 6)
    })
}

/// Value `i` of raw panel storage of type `D`.
#[inline(always)]
unsafe fn load_scalar<const D: u8>(b: *const u8, i: usize) -> f32 {
    match D {
        D_F32 => (b as *const f32).add(i).read_unaligned(),
        D_F16 => half::f16::from_bits((b as *const u16).add(i).read_unaligned()).to_f32(),
        _ => f32::from_bits(((b as *const u16).add(i).read_unaligned() as u32) << 16),
    }
}

/// Portable micro-kernel for CPUs without AVX2/FMA.
unsafe fn portable_kernel<const D: u8>(
    rows: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
) {
    for r in 0..rows {
        let mut acc = [0.0f32; NR];
        for (q, v) in acc.iter_mut().enumerate() {
            *v = *c.add(r * ldc + q);
        }
        for p in 0..kc {
            let av = *a.add(r * lda + p);
            for (q, v) in acc.iter_mut().enumerate() {
                *v += av * load_scalar::<D>(b, p * NR + q);
            }
        }
        for (q, v) in acc.iter().enumerate() {
            *c.add(r * ldc + q) = *v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{D_BF16, D_F16, D_F32, NR};

    /// Rows per tile: 6 × 2 accumulators + 2 panel vectors + 1 broadcast = 15 of 16 registers.
    pub const MR: usize = 6;

    /// Prefetch distance in 64-byte lines (measured: 24 beats none and 64 on this machine).
    const PREFETCH_LINES: usize = 24;

    pub unsafe fn kernel<const D: u8>(
        rows: usize,
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const u8,
        c: *mut f32,
        ldc: usize,
    ) {
        match (rows, D) {
            (6, D_F32) => tile::<6>(kc, a, lda, b as *const f32, c, ldc),
            (5, D_F32) => tile::<5>(kc, a, lda, b as *const f32, c, ldc),
            (4, D_F32) => tile::<4>(kc, a, lda, b as *const f32, c, ldc),
            (3, D_F32) => tile::<3>(kc, a, lda, b as *const f32, c, ldc),
            (2, D_F32) => tile::<2>(kc, a, lda, b as *const f32, c, ldc),
            (1, D_F32) => tile::<1>(kc, a, lda, b as *const f32, c, ldc),
            (6, _) => tile_half::<6, D>(kc, a, lda, b, c, ldc),
            (5, _) => tile_half::<5, D>(kc, a, lda, b, c, ldc),
            (4, _) => tile_half::<4, D>(kc, a, lda, b, c, ldc),
            (3, _) => tile_half::<3, D>(kc, a, lda, b, c, ldc),
            (2, _) => tile_half::<2, D>(kc, a, lda, b, c, ldc),
            (1, _) => tile_half::<1, D>(kc, a, lda, b, c, ldc),
            _ => {}
        }
    }

    /// R × 16 tile over half-size storage (`D_F16` needs F16C): each panel row is widened to
    /// f32 as it is loaded.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_half<const R: usize, const D: u8>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const u8,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for r in 0..R {
            lo[r] = _mm256_loadu_ps(c.add(r * ldc));
            hi[r] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
        for p in 0..kc {
            let row = b.add(p * NR * 2);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH_LINES * 64) as *const i8);
            let h0 = _mm_loadu_si128(row as *const __m128i);
            let h1 = _mm_loadu_si128(row.add(16) as *const __m128i);
            let (b0, b1) = if D == D_F16 {
                (_mm256_cvtph_ps(h0), _mm256_cvtph_ps(h1))
            } else {
                debug_assert_eq!(D, D_BF16);
                (
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h0))),
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h1))),
                )
            };
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + p));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(c.add(r * ldc), lo[r]);
            _mm256_storeu_ps(c.add(r * ldc + 8), hi[r]);
        }
    }

    /// R × 16 tile: accumulators live in registers for the whole depth loop.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for r in 0..R {
            lo[r] = _mm256_loadu_ps(c.add(r * ldc));
            hi[r] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
        for p in 0..kc {
            // Panel lines are 64-byte aligned.
            // Software prefetch a few lines ahead: the first row tile streams the panel from
            // memory, and the hardware prefetcher alone leaves a single core latency-bound.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((p + PREFETCH_LINES) * NR) as *const i8);
            let b0 = _mm256_load_ps(b.add(p * NR));
            let b1 = _mm256_load_ps(b.add(p * NR + 8));
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + p));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(c.add(r * ldc), lo[r]);
            _mm256_storeu_ps(c.add(r * ldc + 8), hi[r]);
        }
    }
}

/// AVX-512: one 16-wide register per row, so a tile is up to 24 rows (24 accumulators of 32
/// registers) and a short sentence's rows take a single pass over each panel.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{D_BF16, D_F16, D_F32, NR};

    pub const MR: usize = 24;
    /// Prefetch distance in 64-byte lines.
    const PREFETCH_LINES: usize = 24;

    macro_rules! dispatch {
        ($rows:expr, $d:ident, $($r:literal)*; $args:tt) => {
            match $rows {
                $($r => tile::<$r, $d> $args,)*
                _ => {}
            }
        };
    }

    pub unsafe fn kernel<const D: u8>(
        rows: usize,
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const u8,
        c: *mut f32,
        ldc: usize,
    ) {
        dispatch!(rows, D, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24;
                  (kc, a, lda, b, c, ldc))
    }

    /// R × 16 tile; panel rows of type `D` are widened to f32 as they are loaded (F16 with
    /// VCVTPH2PS, BF16 by a 16-bit shift: both AVX-512F).
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const D: u8>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: *const u8,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        for (r, v) in acc.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(c.add(r * ldc));
        }
        let row_bytes = if D == D_F32 { NR * 4 } else { NR * 2 };
        for p in 0..kc {
            let row = b.add(p * row_bytes);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH_LINES * 64) as *const i8);
            let bv = match D {
                D_F32 => _mm512_load_ps(row as *const f32),
                D_F16 => _mm512_cvtph_ps(_mm256_loadu_si256(row as *const __m256i)),
                _ => {
                    debug_assert_eq!(D, D_BF16);
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                        _mm256_loadu_si256(row as *const __m256i),
                    )))
                }
            };
            for (r, v) in acc.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r * lda + p)), bv, *v);
            }
        }
        for (r, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(m: usize, k: usize, n: usize, pool: Option<&rayon::ThreadPool>) {
        for dtype in [WeightDtype::F32, WeightDtype::F16, WeightDtype::Bf16] {
            check_as(m, k, n, pool, dtype);
        }
        if crate::amx::available() {
            check_as(m, k, n, pool, WeightDtype::Bf16Amx);
        }
    }

    /// Against a naive product with the weights rounded to `dtype`.
    fn check_as(
        m: usize,
        k: usize,
        n: usize,
        pool: Option<&rayon::ThreadPool>,
        dtype: WeightDtype,
    ) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let pw = PackedWeight::pack_as(&w, k, n, dtype);
        assert_eq!(pw.dtype(), dtype);
        let mut c: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
        let mut want = c.clone();
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    // AMX rounds the activations to bf16 too.
                    let x = match dtype {
                        WeightDtype::Bf16Amx => dtype.round(a[i * k + p]),
                        _ => a[i * k + p],
                    };
                    want[i * n + j] += x * dtype.round(w[p * n + j]);
                }
            }
        }
        linear(m, &a, k, &pw, &mut c, n, Epilogue::None, pool);
        for (i, (x, y)) in c.iter().zip(&want).enumerate() {
            assert!(
                (x - y).abs() < 1e-3 * (1.0 + y.abs()),
                "{dtype:?} {m}x{k}x{n} [{i}]: {x} vs {y}"
            );
        }
    }

    fn two_threads() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool")
    }

    #[test]
    fn matches_naive_on_ragged_shapes() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 5, 3),
            (13, 384, 48),
            (6, 400, 17),
            (130, 800, 40),
        ] {
            check(m, k, n, None);
        }
    }

    #[test]
    fn matches_naive_with_a_pool() {
        let pool = two_threads();
        check(100, 384, 160, Some(&pool));
        check(300, 384, 1536, Some(&pool));
        check(33, 1536, 384, Some(&pool));
    }

    /// Rows and depths around the tiles' 16 rows and 32-deep steps, columns around the groups of
    /// four panels, against the naive product (on a CPU without AMX, says so and checks nothing).
    #[test]
    fn amx_matches_naive_across_tile_edges() {
        if !crate::amx::available() {
            eprintln!("no AMX-BF16 on this CPU: the AMX kernel is not tested here");
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (15, 31, 16),
            (16, 32, 64),
            (17, 33, 65),
            (33, 384, 100),
            (12, 1536, 384),
        ] {
            check_as(m, k, n, None, WeightDtype::Bf16Amx);
        }
        let pool = two_threads();
        check_as(40, 384, 1536, Some(&pool), WeightDtype::Bf16Amx);
    }

    #[test]
    fn gelu_epilogue_matches_separate_gelu() {
        let pool = two_threads();
        let (m, k, n) = (40, 800, 400);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 70.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 50.0)
            .collect();
        let pw = PackedWeight::pack(&w, k, n);
        let mut fused = vec![0.1; m * n];
        let mut plain = fused.clone();
        linear(m, &a, k, &pw, &mut fused, n, Epilogue::Gelu, Some(&pool));
        linear(m, &a, k, &pw, &mut plain, n, Epilogue::None, None);
        crate::kernels::gelu(&mut plain);
        for (x, y) in fused.iter().zip(&plain) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn every_kernel_and_row_count_matches_the_portable_one() {
        for dtype in [WeightDtype::F32, WeightDtype::F16, WeightDtype::Bf16] {
            let mut kernels: Vec<(&str, KernelFn, usize)> = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") && has!("f16c") {
                    kernels.push(match dtype {
                        WeightDtype::F32 => ("avx2", avx2::kernel::<D_F32>, avx2::MR),
                        WeightDtype::F16 => ("avx2", avx2::kernel::<D_F16>, avx2::MR),
                        _ => ("avx2", avx2::kernel::<D_BF16>, avx2::MR),
                    });
                }
                if has!("avx512f") {
                    kernels.push(match dtype {
                        WeightDtype::F32 => ("avx512", avx512::kernel::<D_F32>, avx512::MR),
                        WeightDtype::F16 => ("avx512", avx512::kernel::<D_F16>, avx512::MR),
                        _ => ("avx512", avx512::kernel::<D_BF16>, avx512::MR),
                    });
                }
            }
            let portable: KernelFn = match dtype {
                WeightDtype::F32 => portable_kernel::<D_F32>,
                WeightDtype::F16 => portable_kernel::<D_F16>,
                _ => portable_kernel::<D_BF16>,
            };
            let (k, n) = (37, 16);
            let a: Vec<f32> = (0..MAX_MR * k).map(|i| (i % 17) as f32 * 0.1).collect();
            // Small integers and halves: exact in every storage type.
            let w: Vec<f32> = (0..k * n).map(|i| (i % 9) as f32 * 0.5).collect();
            let pw = PackedWeight::pack_as(&w, k, n, dtype);
            let b = pw.panel_ptr(0, 0);
            for (name, kern, mr) in kernels {
                for rows in 1..=mr {
                    let mut want = vec![1.0; rows * n];
                    let mut got = want.clone();
                    let mut exact = want.clone();
                    // SAFETY: a has rows × k floats, the panel k rows, c rows × n: in bounds.
                    unsafe {
                        portable(rows, k, a.as_ptr(), k, b, want.as_mut_ptr(), n);
                        kern(rows, k, a.as_ptr(), k, b, got.as_mut_ptr(), n);
                        portable_kernel::<D_F32>(
                            rows,
                            k,
                            a.as_ptr(),
                            k,
                            PackedWeight::pack(&w, k, n).panel_ptr(0, 0),
                            exact.as_mut_ptr(),
                            n,
                        );
                    }
                    for ((x, y), z) in got.iter().zip(&want).zip(&exact) {
                        assert!(
                            (x - y).abs() < 1e-2 && (y - z).abs() < 1e-2,
                            "{dtype:?} {name} rows={rows}: {x} vs {y} vs {z}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn half_storage_is_half_the_size() {
        let w = vec![0.5f32; 384 * 1536];
        let f32_bytes = PackedWeight::pack(&w, 384, 1536).size_bytes();
        assert_eq!(f32_bytes, 384 * 1536 * 4);
        for dtype in [WeightDtype::F16, WeightDtype::Bf16] {
            assert_eq!(
                PackedWeight::pack_as(&w, 384, 1536, dtype).size_bytes(),
                f32_bytes / 2
            );
        }
    }
}
