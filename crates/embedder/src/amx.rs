//! Linear layers on Intel AMX tiles (`TDPBF16PS`): bf16 weights and activations, f32
//! accumulation. One instruction multiplies a 16×32 bf16 tile of activations by a 32×16 tile of
//! weights into a 16×16 f32 tile, so a short sentence's GEMM costs a fraction of the AVX-512
//! kernel's (README, "AMX bf16 tiles"). Only used where [`available`] says so: the CPU has
//! AMX-BF16 and Linux granted this process the tile state; everywhere else the SIMD kernels run.
//!
//! Weights are packed as [`NR`]-column panels like the SIMD kernels', but in the tiles' pair
//! layout: line `q` of a panel holds rows `2q` and `2q + 1` interleaved column by column (32 bf16,
//! one 64-byte line), and the depth is padded with zeros to a multiple of [`KSTEP`].

use crate::linear::NR;

/// Depth of one tile product: 32 bf16 (64 bytes) per activation row.
pub const KSTEP: usize = 32;
/// Rows of one tile.
const TR: usize = 16;
/// Output panels whose accumulators stay in tiles at once (tmm0-3; tmm4 holds the activations,
/// tmm5-7 the weights).
pub const GROUP: usize = 4;

/// Whether this process may run the AMX kernel (checked once). Any other value of
/// `SEMCACHE_EMBEDDER_KERNEL` than `amx` (`avx512`, `avx2`, `portable`) says no, for comparisons.
pub fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let forced = std::env::var("SEMCACHE_EMBEDDER_KERNEL").unwrap_or_default();
        if !forced.is_empty() && forced != "amx" {
            return false;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            cpu_has_amx_bf16() && request_tile_state()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        false
    })
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-BF16 (bit 22). `is_x86_feature_detected!` does
/// not know them on stable Rust yet.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 7 is read only if the CPU reports it.
    unsafe {
        if __cpuid(0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << 22) != 0
    }
}

/// Linux leaves the 8 KiB tile state out of a process's signal frames and context switches
/// until the process asks for it; without this, the first tile instruction raises SIGILL.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only changes this process's permitted xfeatures.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// `x` rounded to bf16 (nearest, ties to even), as its bits. Activations stay finite, so this
/// skips `half::bf16::from_f32`'s NaN branch, which keeps the loop from vectorising: 4 against
/// 12 µs for a 12 × 1536 activation matrix.
#[inline(always)]
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Depth padded to whole tile steps.
pub fn padded_depth(k: usize) -> usize {
    k.div_ceil(KSTEP) * KSTEP
}

/// Packs a row-major `k × n` matrix into pair-layout bf16 panels (see the module comment), as
/// little-endian bytes: `ceil(n / 16)` panels of `padded_depth(k) / 2` lines of 64 bytes.
pub fn pack(w: &[f32], k: usize, n: usize) -> Vec<u8> {
    let (kp, np) = (padded_depth(k), n.div_ceil(NR));
    let mut out = vec![0u8; np * kp * NR * 2];
    for j in 0..np {
        for p in 0..k {
            for q in 0..(n - j * NR).min(NR) {
                let v = half::bf16::from_f32(w[p * n + j * NR + q]).to_bits();
                // Panel j, line p / 2, column q, slot p % 2.
                let at = ((j * kp + p / 2 * 2) * NR + 2 * q + p % 2) * 2;
                out[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// Rounds `m` rows of `a` (stride `lda`, `k` columns) to bf16 into `out`, row stride
/// `padded_depth(k)`, the padding zeroed.
pub fn round_activations(m: usize, a: &[f32], lda: usize, k: usize, out: &mut Vec<u16>) {
    let kp = padded_depth(k);
    out.clear();
    out.resize(m * kp, 0);
    for (r, dst) in out.chunks_exact_mut(kp).enumerate() {
        for (d, &s) in dst.iter_mut().zip(&a[r * lda..r * lda + k]) {
            *d = bf16_bits(s);
        }
    }
}

/// The 64-byte tile configuration `LDTILECFG` reads (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// tmm0-4 (accumulators and activations) with `rows` rows; tmm5-7 (weights) full.
    fn new(rows: usize) -> Self {
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = if t < 5 { rows as u8 } else { TR as u8 };
        }
        cfg
    }
}

#[cfg(target_arch = "x86_64")]
mod ops {
    //! One instruction each. Tile registers are invisible to the compiler, so their contents
    //! survive between these `asm!` blocks; tile numbers are immediates, hence the const
    //! parameters.
    use std::arch::asm;

    #[inline(always)]
    pub unsafe fn config(cfg: *const super::TileConfig) {
        asm!("ldtilecfg [{}]", in(reg) cfg, options(nostack, readonly));
    }

    #[inline(always)]
    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    #[inline(always)]
    pub unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
        asm!("tileloadd tmm{t}, [{p} + {s} * 1]", t = const T, p = in(reg) p, s = in(reg) stride,
             options(nostack, readonly));
    }

    #[inline(always)]
    pub unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
        asm!("tilestored [{p} + {s} * 1], tmm{t}", t = const T, p = in(reg) p, s = in(reg) stride,
             options(nostack));
    }

    /// tmm`C` += tmm4 (activations) · tmm`B` (weights).
    #[inline(always)]
    pub unsafe fn dot<const C: u8, const B: u8>() {
        asm!("tdpbf16ps tmm{c}, tmm4, tmm{b}", c = const C, b = const B, options(nostack, nomem));
    }

    /// Loads accumulator `i` (0-3).
    #[inline(always)]
    pub unsafe fn load_acc(i: usize, p: *const u8, stride: usize) {
        match i {
            0 => load::<0>(p, stride),
            1 => load::<1>(p, stride),
            2 => load::<2>(p, stride),
            _ => load::<3>(p, stride),
        }
    }

    /// Stores accumulator `i` (0-3).
    #[inline(always)]
    pub unsafe fn store_acc(i: usize, p: *mut u8, stride: usize) {
        match i {
            0 => store::<0>(p, stride),
            1 => store::<1>(p, stride),
            2 => store::<2>(p, stride),
            _ => store::<3>(p, stride),
        }
    }

    /// Loads the weight tile at `b` and adds its product into accumulator `i` (0-3). Three
    /// weight registers in rotation, so a load need not wait for the previous product.
    #[inline(always)]
    pub unsafe fn load_dot(i: usize, b: *const u8) {
        match i {
            0 => {
                load::<5>(b, 64);
                dot::<0, 5>()
            }
            1 => {
                load::<6>(b, 64);
                dot::<1, 6>()
            }
            2 => {
                load::<7>(b, 64);
                dot::<2, 7>()
            }
            _ => {
                load::<5>(b, 64);
                dot::<3, 5>()
            }
        }
    }
}

/// 16 × 16 f32, for a ragged last panel's accumulator.
#[repr(C, align(64))]
struct Scratch([f32; TR * NR]);

/// Panels `[p0, p1)` of `c += a · w`.
///
/// # Safety
/// [`available`] must have returned true. `a` must hold `m` rows of `padded_depth(k)` bf16 (as
/// [`round_activations`] writes them), `w` the panels [`pack`] made for `k × n`, `c` `m` rows of
/// stride `ldc` with at least `n` columns, and no other thread may touch these columns of `c`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn block(
    m: usize,
    a: *const u16,
    k: usize,
    w: *const u8,
    n: usize,
    p0: usize,
    p1: usize,
    c: *mut f32,
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let kp = padded_depth(k);
        let panel_bytes = kp * NR * 2;
        let mut scratch: [Scratch; GROUP] = std::array::from_fn(|_| Scratch([0.0; TR * NR]));
        let mut configured = 0;
        for r0 in (0..m).step_by(TR) {
            let rows = TR.min(m - r0);
            if rows != configured {
                ops::config(&TileConfig::new(rows));
                configured = rows;
            }
            for g0 in (p0..p1).step_by(GROUP) {
                let g = GROUP.min(p1 - g0);
                // Accumulators start from c (the caller may be adding to a bias or residual).
                for (i, s) in scratch.iter_mut().enumerate().take(g) {
                    let j = g0 + i;
                    let cols = (n - j * NR).min(NR);
                    let cp = c.add(r0 * ldc + j * NR);
                    if cols == NR {
                        ops::load_acc(i, cp as *const u8, ldc * 4);
                    } else {
                        for r in 0..rows {
                            for q in 0..NR {
                                s.0[r * NR + q] = if q < cols { *cp.add(r * ldc + q) } else { 0.0 };
                            }
                        }
                        ops::load_acc(i, s.0.as_ptr() as *const u8, NR * 4);
                    }
                }
                for step in 0..kp / KSTEP {
                    ops::load::<4>(a.add(r0 * kp + step * KSTEP) as *const u8, kp * 2);
                    for i in 0..g {
                        ops::load_dot(i, w.add((g0 + i) * panel_bytes + step * TR * 64));
                    }
                }
                for (i, s) in scratch.iter_mut().enumerate().take(g) {
                    let j = g0 + i;
                    let cols = (n - j * NR).min(NR);
                    let cp = c.add(r0 * ldc + j * NR);
                    if cols == NR {
                        ops::store_acc(i, cp as *mut u8, ldc * 4);
                    } else {
                        ops::store_acc(i, s.0.as_mut_ptr() as *mut u8, NR * 4);
                        for r in 0..rows {
                            for q in 0..cols {
                                *cp.add(r * ldc + q) = s.0[r * NR + q];
                            }
                        }
                    }
                }
            }
        }
        // Back to the init state, so the kernel need not save 8 KiB of tiles on every switch.
        ops::release();
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, a, k, w, n, p0, p1, c, ldc);
        unreachable!("amx::block without AMX");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        for x in [1.0f32, -2.5, 0.1, 2.71, 1e-20, -7.77e10, 0.0] {
            assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x}");
        }
        // Exactly halfway between two bf16 values: ties go to the even one.
        let tie = f32::from_bits(0x3f80_8000);
        assert_eq!(bf16_bits(tie), 0x3f80);
        let tie_odd = f32::from_bits(0x3f81_8000);
        assert_eq!(bf16_bits(tie_odd), 0x3f82);
    }

    #[test]
    fn pair_layout_interleaves_two_rows_per_line() {
        let (k, n) = (3, 17);
        let w: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let bytes = pack(&w, k, n);
        let kp = padded_depth(k);
        assert_eq!(kp, 32);
        assert_eq!(bytes.len(), 2 * kp * NR * 2);
        let at = |panel: usize, line: usize, slot: usize| {
            let o = ((panel * kp + line * 2) * NR + slot) * 2;
            half::bf16::from_bits(u16::from_le_bytes([bytes[o], bytes[o + 1]])).to_f32()
        };
        // Line 0 of panel 0: (w[0][0], w[1][0], w[0][1], w[1][1], ...).
        assert_eq!(at(0, 0, 0), w[0]);
        assert_eq!(at(0, 0, 1), w[n]);
        assert_eq!(at(0, 0, 2), w[1]);
        // Row 2 has no partner: the odd slot is padding.
        assert_eq!(at(0, 1, 0), w[2 * n]);
        assert_eq!(at(0, 1, 1), 0.0);
        // Panel 1 holds the 17th column only.
        assert_eq!(at(1, 0, 0), w[16]);
        assert_eq!(at(1, 0, 2), 0.0);
    }
}
