// The int8 MLP's middle in one pass per row (see gelu_quantize.py): the first layer's integer sums rescaled
// and biased, GPT-2's tanh GELU, and the rows quantized for the second layer, with the bits of the three
// separate ops it replaces. Built by TorchInductor's C++ toolchain, which turns off the compiler's fusing of
// multiplies and adds (-ffp-contract=off), so each op rounds as written: the rescale must (the eager ops it
// replaces round after every multiply and add). aten's own GELU kernel is built with GCC's default, which
// fuses `x + kappa * x^3` into one multiply-add, so the GELU here writes that one out (at::vec::fmadd).
#include <torch/csrc/inductor/cpp_prefix.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

using F = at::vec::Vectorized<float>;

inline F widen(const float* p) { return F::loadu(p); }
inline F widen(const at::BFloat16* p) {
    return at::vec::convert<float>(at::vec::Vectorized<at::BFloat16>::loadu(p, F::size()));
}

// (sums * scale) * weight_scale + bias, each op rounded: `quantized._rescaled`.
template <typename B>
void rescale(const float* sums, float scale, const float* weight_scale, const B* bias, float* out, int64_t n) {
    for (int64_t i = 0; i < n; i += F::size())
        (F::loadu(sums + i) * F(scale) * F::loadu(weight_scale + i) + widen(bias + i)).store(out + i);
}

// aten's vectorized tanh GELU (GeluKernelImpl, approximate="tanh") as GCC builds it, in place; returns the row's largest |x|.
float gelu(float* x, int64_t n) {
    const F beta(static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5)), kappa(0.044715f), one(1.0f), half(0.5f);
    F most(0.0f);
    for (int64_t i = 0; i < n; i += F::size()) {
        const F v = F::loadu(x + i);
        const F cube = v * v * v;
        const F inner = beta * at::vec::fmadd(kappa, cube, v);
        const F y = half * v * (one + inner.tanh());
        y.store(x + i);
        most = at::vec::maximum(most, y.abs());
    }
    return at::vec::vec_reduce_all<float>([](F& a, F& b) { return at::vec::maximum(a, b); }, most);
}

template <typename B>
void run(const float* sums, const float* scale, const float* weight_scale, const B* bias, void* values,
         float* out_scale, float* activations, int64_t rows, int64_t n, bool signed_values) {
#pragma omp parallel if (rows > 1)
    {
        std::vector<float> row(n);
#pragma omp for
        for (int64_t r = 0; r < rows; r++) {
            rescale(sums + r * n, scale[r], weight_scale, bias, row.data(), n);
            // `quantized._rounded_rows`: the row's scale is its largest magnitude (at least the smallest
            // normal float) over 127; each value is divided by it, rounded half to even and, as int8 or
            // shifted by 128 as uint8 (`quantized._signed_rows`, `_shifted_rows`), stored.
            const float s = std::max(gelu(row.data(), n), std::numeric_limits<float>::min()) / 127.0f;
            if (activations) std::copy(row.begin(), row.end(), activations + r * n);
            out_scale[r] = s;
            for (int64_t i = 0; i < n; i += F::size()) {
                const F q = (F::loadu(row.data() + i) / F(s)).round();
                if (signed_values)
                    at::vec::convert<int8_t>(q).store(static_cast<int8_t*>(values) + r * n + i, F::size());
                else
                    at::vec::convert<uint8_t>(q + F(128.0f)).store(static_cast<uint8_t*>(values) + r * n + i, F::size());
            }
        }
    }
}

}  // namespace

// sums (rows, n) fp32, scale (rows) fp32, weight_scale (n) fp32, bias (n) bf16 when `bf16_bias` is 1 else fp32;
// writes values (rows, n), int8 when `signed_values` is 1 else uint8 shifted by 128, out_scale (rows) fp32 and,
// when `keep` is 1, the GELU's output into activations (rows, n) fp32 (for the check in gelu_quantize.py).
// n is a multiple of 32 (the caller checks).
extern "C" void kernel(const float* sums, const float* scale, const float* weight_scale, const void* bias,
                       void* values, float* out_scale, float* activations, int64_t rows, int64_t n,
                       int64_t bf16_bias, int64_t keep, int64_t signed_values) {
    float* kept = keep ? activations : nullptr;
    if (bf16_bias)
        run(sums, scale, weight_scale, static_cast<const at::BFloat16*>(bias), values, out_scale, kept, rows, n,
            signed_values);
    else
        run(sums, scale, weight_scale, static_cast<const float*>(bias), values, out_scale, kept, rows, n,
            signed_values);
}
