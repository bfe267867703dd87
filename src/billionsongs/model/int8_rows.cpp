// Rows times an int8 weight, as exact integer sums (see int8_rows.py): AVX512-VNNI, weights streamed once
// from memory, each 64-byte load used by a block of up to six rows and read again from L2 by the next block;
// the sums optionally rescaled in the same pass.
//
// Exactness: VPDPBUSD multiplies four unsigned 8-bit activations by four signed 8-bit weights, each product
// fits 16 bits (255 * 127), and adds their sum to a 32-bit lane without saturating. The activations come
// shifted by 128 (as oneDNN takes them), so 128 times the weight's column sum is taken off at the end: the
// int32 result is the exact sum of the int8 products for any layer narrower than 2^31 / (128 * 127)
// = 132,104 inputs, and its conversion to float rounds as torch's does (to nearest even).
#include <torch/csrc/inductor/cpp_prefix.h>

#include <cstdint>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>

namespace {

constexpr int64_t GROUP = 64;       // outputs per block: four 16-lane accumulators per row
constexpr int64_t STEP = GROUP * 4;  // bytes of weight per four inputs: the blocked layout's unit
constexpr int64_t AHEAD = 4096;     // bytes prefetched ahead in the weight stream
constexpr int MOST = 6;             // rows per block: 24 accumulators, 4 weights and a broadcast in 32 registers

// acc += the four-byte dot products of x (unsigned) and w (signed), lane by lane. Written as one instruction
// of inline assembly because GCC 12, given the intrinsic, keeps more than about 16 accumulators on the
// stack (a load and a store around every product); through this it keeps all 24 in registers.
__attribute__((always_inline, target("avx512f,avx512vnni"))) inline void dot4(__m512i& acc, __m512i x, __m512i w) {
    asm("vpdpbusd %[w], %[x], %[acc]" : [acc] "+v"(acc) : [x] "v"(x), [w] "v"(w));
}

// What becomes of the integer sums (a null `scale`: float32 sums as they are): each times its row's scale, then its
// column's, plus the column's bias, each op rounded as written (Inductor builds with -ffp-contract=off),
// then stored as float32 or rounded to bf16 by at::vec's conversion: int8's rescale glue's bits
// (`quantized._rescaled`, then `.to(dtype)`).
struct Finish {
    const float* scale;         // (rows), or null: plain float32 sums
    const float* weight_scale;  // (n)
    const void* bias;           // (n) float32 or bf16, or null: none
    bool bias_bf16, out_bf16;
};

__attribute__((always_inline)) inline __m512 widened_bf16(const void* p, __mmask16 keep) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(keep, static_cast<const uint16_t*>(p))), 16));
}

// One block of 64 outputs for ROWS rows: weights (k / 4, 64, 4), contiguous.
template <int ROWS>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void block(
        const uint8_t* x, const int8_t* w, const int32_t* compensation, void* out, int64_t k, int64_t n,
        int64_t first, __m512i flip, const Finish& finish, int64_t row) {
    __m512i acc[ROWS][4];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 8
        for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_si512();
    for (int64_t s = 0; s < k / 4; s++) {
        const int8_t* p = w + s * STEP;
#pragma GCC unroll 8
        for (int u = 0; u < 4; u++) _mm_prefetch(reinterpret_cast<const char*>(p) + AHEAD + 64 * u, _MM_HINT_T0);
        __m512i weights[4];
#pragma GCC unroll 8
        for (int b = 0; b < 4; b++) weights[b] = _mm512_loadu_si512(p + 64 * b);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) {
            int32_t four;
            __builtin_memcpy(&four, x + r * k + 4 * s, 4);
            const __m512i xs = _mm512_xor_si512(_mm512_set1_epi32(four), flip);
#pragma GCC unroll 8
            for (int b = 0; b < 4; b++) dot4(acc[r][b], xs, weights[b]);
        }
    }
#pragma GCC unroll 8
    for (int b = 0; b < 4; b++) {
        const int64_t column = first + 16 * b;
        if (column >= n) break;
        const __mmask16 keep = column + 16 <= n ? __mmask16(0xFFFF) : __mmask16((1u << (n - column)) - 1);
        const __m512i minus = _mm512_loadu_si512(compensation + column);
        const __m512 weight_scale = finish.scale ? _mm512_maskz_loadu_ps(keep, finish.weight_scale + column)
                                                 : _mm512_setzero_ps();
        __m512 bias = _mm512_setzero_ps();
        if (finish.bias)
            bias = finish.bias_bf16 ? widened_bf16(static_cast<const at::BFloat16*>(finish.bias) + column, keep)
                                    : _mm512_maskz_loadu_ps(keep, static_cast<const float*>(finish.bias) + column);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], minus));
            if (finish.scale) {
                v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(finish.scale[row + r])), weight_scale);
                if (finish.bias) v = _mm512_add_ps(v, bias);
            }
            if (finish.out_bf16)
                _mm256_mask_storeu_epi16(static_cast<at::BFloat16*>(out) + r * n + column, keep,
                                         at::vec::cvtfp32_bf16(v));
            else
                _mm512_mask_storeu_ps(static_cast<float*>(out) + r * n + column, keep, v);
        }
    }
}

}  // namespace

// x (rows, k): int8 values plus 128 as uint8, or, where `signed_rows` is 1, the int8 values (each byte's top
// bit flipped here: the same thing). weights (ceil(n / 64), k / 4, 64, 4) int8, zero past n; compensation
// (ceil(n / 64) * 64) int32: 128 times each output's weight sum. k a multiple of 4. out (rows, n): float32
// sums where `rescale` is 0; else, with the row scales (rows) and weight_scale (n) float32 and bias (n) (none
// where `bias_kind` is 0, float32 where 1, bf16 where 2), the rescaled outputs, bf16 where `out_bf16` is 1.
extern "C" void kernel(const void* rows_in, const int8_t* weights, const int32_t* compensation, void* out,
                       int64_t rows, int64_t k, int64_t n, int64_t signed_rows, int64_t rescale, const float* scale,
                       const float* weight_scale, const void* bias, int64_t bias_kind, int64_t out_bf16) {
    const int64_t groups = (n + GROUP - 1) / GROUP;
    const __m512i flip = _mm512_set1_epi32(signed_rows ? static_cast<int32_t>(0x80808080u) : 0);
    const uint8_t* x = static_cast<const uint8_t*>(rows_in);
    const Finish finish{rescale ? scale : nullptr, weight_scale, bias_kind ? bias : nullptr, bias_kind == 2,
                        out_bf16 != 0};
    const int64_t element = out_bf16 ? 2 : 4;
#pragma omp parallel for
    for (int64_t g = 0; g < groups; g++) {
        const int8_t* w = weights + g * k * GROUP;
        // rows in blocks of at most MOST, as even as they go (32 rows: 6, 6, 5, 5, 5, 5)
        const int64_t blocks = (rows + MOST - 1) / MOST;
        for (int64_t b = 0, r = 0; b < blocks; b++) {
            const int64_t height = (rows - r) / (blocks - b);
            const uint8_t* xr = x + r * k;
            void* o = static_cast<char*>(out) + r * n * element;
            switch (height) {
                case 1: block<1>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
                case 2: block<2>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
                case 3: block<3>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
                case 4: block<4>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
                case 5: block<5>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
                default: block<MOST>(xr, w, compensation, o, k, n, g * GROUP, flip, finish, r); break;
            }
            r += height;
        }
    }
}
#else
#error "the int8 rows kernel needs AVX-512 (and VNNI); quantized.py uses oneDNN's kernel instead"
#endif
