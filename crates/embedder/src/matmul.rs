//! Strided f32 matrix multiply for the attention products (Q·Kᵀ and P·V, whose operands are
//! strided views of the fused QKV matrix): a bounds-checked wrapper over the `gemm` crate, which
//! picks its SIMD kernels at run time.

/// A read-only strided view: element (r, c) lives at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "matmul: {what} view out of bounds");
        }
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `a` is m×k, `b` is k×n and `c` is m×n
/// row-major with row stride `c_rs`. Single-threaded: these products are small.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k, "lhs");
    b.check(k, n, "rhs");
    assert!(
        (m - 1) * c_rs + n <= c.len() && c_rs >= n,
        "matmul: dst view out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * c_rs..r * c_rs + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the checks above keep every element the kernels touch inside the three slices;
    // `c` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: MatRef, b: MatRef) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_strides_and_accumulate() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let a = MatRef::rows(&a, k);
        // b given transposed: element (p, j) at bt[j * k + p].
        let b = MatRef {
            data: &bt,
            rs: 1,
            cs: k,
        };
        let want = naive(m, n, k, a, b);
        {
            let mut c = vec![1.0; m * n];
            matmul(m, n, k, a, b, &mut c, n, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            matmul(m, n, k, a, b, &mut c, n, true);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-4, "{x} vs {}", 2.0 * y);
            }
        }
    }
}
