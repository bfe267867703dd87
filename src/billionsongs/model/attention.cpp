// One query per row attending over that row's cached keys and values (see attention.py): bf16 in and out,
// fp32 inside, AVX-512. Built by TorchInductor's own C++ toolchain (same compiler, flags and at::vec
// primitives as the kernel Inductor writes for `attention._summed`) and used only where it returns that
// kernel's bits exactly (`fused_attention.py` checks at start-up), so no song changes.
//
// Why hand-written: Inductor's kernel spends more instructions than the memory takes to read. It widens
// each bf16 with two instructions, ends every dot product with its own four-step horizontal sum, and
// divides each softmax weight once per head dimension. Here:
// - a 64-byte load of 32 bf16 is split into its even and odd elements, each widened by one instruction;
// - sixteen dot products are summed horizontally together, as a transpose;
// - each weight is divided once; each (row, head) is one pass on one thread, with no barriers;
// - while one (row, head) is summed, the next one's keys and values are prefetched into L2. A thread reads
//   its (row, head)s in turn, each a fresh stretch of memory (the keys, then 64 short runs of values), where
//   the hardware prefetchers start cold every time and the arithmetic waited on memory: on the 2-vCPU Zen 4
//   the cache was read at 13-15 GB/s against 28-44 for a plain sum; prefetched, 1.3-1.5x faster at 8 rows
//   x 400 positions, 1.4-1.6x at 64 x 190, 1.7-2x at 32 x 100 (12 layers, out of cache, 2026-12-03).
// Every sum still adds the same terms in the same order. Inductor's dot product over a chunk of 32 keeps
// element e in lane e of two 16-lane accumulators and sums them pairing e with e^16, then e^8, e^4, e^2,
// e^1. The even elements (e = 2i) in lane i pair as i^8, i^4, i^2, i^1: at::vec's 16-lane sum, done here
// as a transpose; the odd ones the same; the last step adds the two. IEEE addition is commutative, so
// the operand order inside each pair does not matter.
#include <torch/csrc/inductor/cpp_prefix.h>

#include <algorithm>
#include <limits>
#include <vector>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>

namespace {

using F = at::vec::Vectorized<float>;
constexpr int64_t CHUNK = 32;  // bf16 per 64-byte load; Inductor's chunk for both dot products
constexpr int64_t AHEAD = 8192;  // bytes prefetched ahead in each stream by a thread's first (row, head)
constexpr int BLOCK = 8;       // dot products in flight: 8 even and 8 odd accumulators

// The even (e = 2i) and odd elements of 32 bf16 at p, as fp32, lane i.
inline void split(const at::BFloat16* p, __m512& even, __m512& odd) {
    const __m512i raw = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// a[0..7] even and a[8..15] odd accumulators of 8 dot products; returns the 8 totals in lanes 0..7,
// each the even elements' 16-lane sum plus the odd elements' (in at::vec's pairing order).
inline __m256 totals(__m512 a[16]) {
    __m512 b[8], c[4], d[2];
    for (int m = 0; m < 8; m++)  // lane i with i^8: 256-bit halves
        b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xEE));
    for (int m = 0; m < 4; m++)  // i with i^4: 128-bit blocks
        c[m] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0xDD));
    for (int m = 0; m < 2; m++)  // i with i^2
        d[m] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * m], c[2 * m + 1], 0x44),
                             _mm512_shuffle_ps(c[2 * m], c[2 * m + 1], 0xEE));
    // i with i^1: lane 4k+t now holds accumulator 4t+k's sum
    const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
    const __m512 ordered = _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), e);
    return _mm256_add_ps(_mm512_castps512_ps256(ordered), _mm512_extractf32x8_ps(ordered, 1));
}

void attend(const at::BFloat16* qkv, at::BFloat16* keys, at::BFloat16* values, const int64_t* positions,
            at::BFloat16* out, int64_t rows, int64_t heads, int64_t length, int64_t head_dim, float scale) {
    const float inf = std::numeric_limits<float>::infinity();
    const int64_t chunks = head_dim / CHUNK, width = heads * head_dim;
#pragma omp parallel
    {
        std::vector<float> weight(length), even_weight(length / 2), odd_weight(length / 2), summed(head_dim);
        std::vector<__m512> q_even(chunks), q_odd(chunks);
        int64_t first = -1;  // this thread's first (row, head): nothing prefetched it, so it prefetches ahead
#pragma omp for
        for (int64_t rh = 0; rh < rows * heads; rh++) {
            if (first < 0) first = rh;
            const int64_t row = rh / heads, position = positions[row];
            const at::BFloat16* q = qkv + row * 3 * width + (rh % heads) * head_dim;
            at::BFloat16* k = keys + rh * length * head_dim;
            at::BFloat16* v = values + rh * head_dim * length;
            at::BFloat16* o = out + rh * head_dim;
            if (position < 0 || position >= length) {  // never written: NaN, where it would be seen at once
                for (int64_t d = 0; d < head_dim; d++) o[d] = std::numeric_limits<float>::quiet_NaN();
                continue;
            }
            // this step's key and value into the cache
            for (int64_t d = 0; d < head_dim; d++) {
                k[position * head_dim + d] = q[width + d];
                v[d * length + position] = q[2 * width + d];
            }
            // Positions past the row's own chunk get weight exactly 0 and add exactly nothing to any sum (the
            // sums start at +0, so adding 0 times a finite value leaves each one as it is): they are skipped,
            // and a row pays for its own length, not the batch's longest.
            const int64_t end = (position / CHUNK + 1) * CHUNK;
            float* w = weight.data();
            for (int64_t c = 0; c < chunks; c++) split(q + c * CHUNK, q_even[c], q_odd[c]);
            // the next (row, head)'s keys while this one's scores are summed, its values while these values are
            // (none past the last row)
            const int64_t next_row = (rh + 1) / heads;
            const int64_t next_end = next_row < rows && positions[next_row] >= 0 && positions[next_row] < length
                                         ? (positions[next_row] / CHUNK + 1) * CHUNK : 0;
            const char* next_keys = reinterpret_cast<const char*>(k + length * head_dim);
            const at::BFloat16* next_values = v + head_dim * length;
            const int64_t lines = next_end * head_dim / 32;  // 64-byte lines of keys in use, and of values
            const int64_t key_steps = end / BLOCK, key_per = (lines + key_steps - 1) / key_steps;
            // scores: q . k for each position
            for (int64_t l = 0; l < end; l += BLOCK) {
                if (rh == first)
                    for (int u = 0; u < BLOCK * 2; u++)
                        _mm_prefetch(reinterpret_cast<const char*>(k + l * head_dim) + AHEAD + 64 * u, _MM_HINT_T0);
                for (int64_t j = l / BLOCK * key_per; j < std::min(lines, (l / BLOCK + 1) * key_per); j++)
                    _mm_prefetch(next_keys + 64 * j, _MM_HINT_T1);
                __m512 acc[16];
                for (int u = 0; u < 16; u++) acc[u] = _mm512_setzero_ps();
                for (int64_t c = 0; c < chunks; c++) {
                    for (int u = 0; u < BLOCK; u++) {
                        __m512 even, odd;
                        split(k + (l + u) * head_dim + c * CHUNK, even, odd);
                        acc[u] = _mm512_add_ps(acc[u], _mm512_mul_ps(q_even[c], even));
                        acc[BLOCK + u] = _mm512_add_ps(acc[BLOCK + u], _mm512_mul_ps(q_odd[c], odd));
                    }
                }
                _mm256_storeu_ps(w + l, totals(acc));
            }
            // softmax, as Inductor's kernel computes it; positions past the row's own are -inf
            const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            const __m512i last = _mm512_set1_epi32(static_cast<int>(position));
            auto scaled = [&](int64_t l) {
                const __mmask16 hidden = _mm512_cmpgt_epi32_mask(
                    _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(l))), last);
                return F(_mm512_mask_mov_ps((F::loadu(w + l) * F(scale)), hidden, _mm512_set1_ps(-inf)));
            };
            F top(-inf);
            for (int64_t l = 0; l < end; l += F::size()) top = at::vec::maximum(top, scaled(l));
            const float most = max_propagate_nan(
                -inf, at::vec::vec_reduce_all<float, 1>([](F& x, F& y) { return at::vec::maximum(x, y); }, top));
            F sum(0);
            for (int64_t l = 0; l < end; l += F::size()) {
                F e = (scaled(l) - F(most)).exp();
                e.store(w + l);
                sum = sum + e;
            }
            const __m512 total_sum = _mm512_set1_ps(
                0.0f + at::vec::vec_reduce_all<float, 1>([](F& x, F& y) { return x + y; }, sum));
            // weights, divided once, split into each chunk's even and odd positions
            const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            for (int64_t l = 0; l < end; l += CHUNK) {
                const __m512 lo = _mm512_div_ps(_mm512_loadu_ps(w + l), total_sum);
                const __m512 hi = _mm512_div_ps(_mm512_loadu_ps(w + l + 16), total_sum);
                _mm512_storeu_ps(even_weight.data() + l / 2, _mm512_permutex2var_ps(lo, evens, hi));
                _mm512_storeu_ps(odd_weight.data() + l / 2, _mm512_permutex2var_ps(lo, odds, hi));
            }
            // the weighted sum of values, for each head dimension
            const int64_t next_dim_lines = next_end / CHUNK;
            const int64_t value_steps = head_dim / BLOCK * (end / CHUNK);
            const int64_t value_per = (lines + value_steps - 1) / value_steps;
            int64_t step = 0;
            for (int64_t d = 0; d < head_dim; d += BLOCK) {
                __m512 acc[16];
                for (int u = 0; u < 16; u++) acc[u] = _mm512_setzero_ps();
                for (int64_t l = 0; l < end; l += CHUNK, step++) {
                    for (int64_t j = step * value_per; j < std::min(lines, (step + 1) * value_per); j++)
                        _mm_prefetch(reinterpret_cast<const char*>(
                                         next_values + (j / next_dim_lines) * length + (j % next_dim_lines) * CHUNK),
                                     _MM_HINT_T1);
                    const __m512 we = _mm512_loadu_ps(even_weight.data() + l / 2);
                    const __m512 wo = _mm512_loadu_ps(odd_weight.data() + l / 2);
                    for (int u = 0; u < BLOCK; u++) {
                        const at::BFloat16* p = v + (d + u) * length + l;
                        if (rh == first) _mm_prefetch(reinterpret_cast<const char*>(p) + AHEAD, _MM_HINT_T0);
                        __m512 even, odd;
                        split(p, even, odd);
                        acc[u] = _mm512_add_ps(acc[u], _mm512_mul_ps(we, even));
                        acc[BLOCK + u] = _mm512_add_ps(acc[BLOCK + u], _mm512_mul_ps(wo, odd));
                    }
                }
                _mm256_storeu_ps(summed.data() + d, totals(acc));
            }
            for (int64_t d = 0; d < head_dim; d += CHUNK) {
                const auto y = at::vec::VectorizedN<float, 2>::loadu(summed.data() + d, CHUNK);
                at::vec::convert<at::BFloat16, 1, float, 2>(y).store(o + d, CHUNK);
            }
        }
    }
}

}  // namespace

// qkv is (rows, 3, heads, head_dim), the cache (at least rows, heads, length, head_dim) for keys and (.., head_dim,
// length) for values; length and head_dim are multiples of 32 (the caller checks). Writes row r's key and
// value at positions[r], then attends over positions 0..positions[r].
extern "C" void kernel(const at::BFloat16* qkv, at::BFloat16* keys, at::BFloat16* values, const int64_t* positions,
                       at::BFloat16* out, int64_t rows, int64_t heads, int64_t length, int64_t head_dim, float scale) {
    attend(qkv, keys, values, positions, out, rows, heads, length, head_dim, scale);
}
#else
#error "the hand-written attention kernel needs AVX-512; attention.py uses Inductor's kernel instead"
#endif
