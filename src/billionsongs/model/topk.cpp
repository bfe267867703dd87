// The k largest logits of each row, sorted, with their indices: exactly what torch.topk(x, k, sorted=True)
// returns on the CPU where k * 64 <= n, ties included (see topk.py). Built by TorchInductor's C++ toolchain.
//
// aten copies the whole row into (value, index) pairs, then runs std::partial_sort with a comparator that puts
// NaN first and larger values before smaller ones. libstdc++'s partial_sort is a heap selection: a heap of the
// first k pairs whose top is the least of them; each later pair replaces the top only if the comparator puts
// it before the top, then the heap is sorted. Ties are broken by where the heap's moves leave equal values,
// so a different selection algorithm would return tied indices in another order and change songs.
//
// Here the same heap, moved by the same steps (make_heap, adjust_heap, push_heap and sort_heap as libstdc++
// writes them), sees only the pairs that would move it: a vector of values at a time is compared with the top,
// and only those the comparator puts before it are taken, one by one, in order. Every skipped value would have
// been skipped by partial_sort too (it is not before the top, and the top only ever moves later), so the heap
// goes through exactly the same states. A row of GPT-2's vocabulary is read once, with no pair array.
#include <torch/csrc/inductor/cpp_prefix.h>

#include <cmath>
#include <vector>

namespace {

struct Pair {
    float value;
    int64_t index;
};

// aten's comparator for largest=true: NaN before numbers, then larger before smaller.
inline bool before(const Pair& x, const Pair& y) {
    return (std::isnan(x.value) && !std::isnan(y.value)) || x.value > y.value;
}

// libstdc++'s std::__push_heap.
inline void push_heap(Pair* first, int64_t hole, int64_t top, Pair value) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(first[parent], value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

// libstdc++'s std::__adjust_heap: the hole goes down to a leaf along the children not put first, then the
// value goes up from there.
inline void adjust_heap(Pair* first, int64_t hole, int64_t len, Pair value) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(first[child], first[child - 1])) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, value);
}

// libstdc++'s std::__make_heap.
inline void make_heap(Pair* first, int64_t len) {
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(first, parent, len, first[parent]);
        if (parent == 0) return;
    }
}

// libstdc++'s std::__sort_heap (each step its __pop_heap).
inline void sort_heap(Pair* first, int64_t len) {
    for (int64_t last = len - 1; last > 0; last--) {
        const Pair value = first[last];
        first[last] = first[0];
        adjust_heap(first, 0, last, value);
    }
}

using F = at::vec::Vectorized<float>;
using Two = at::vec::VectorizedN<float, 2>;
constexpr int64_t STEP = 2 * F::size();  // one Vectorized<BFloat16> of logits

inline float widen(const float* p) { return *p; }
inline float widen(const at::BFloat16* p) { return static_cast<float>(*p); }

inline Two load(const float* p) { return Two::loadu(p); }
inline Two load(const at::BFloat16* p) {
    return at::vec::convert<float, 2, at::BFloat16, 1>(at::vec::Vectorized<at::BFloat16>::loadu(p));
}

// Lanes of v that the comparator puts before `top` (NaN lanes, and those greater), as bits.
inline uint64_t taken(const F& v, float top) {
    const F hit = (v > F(top)) | v.isnan();  // all ones where taken, all zeros elsewhere
    return ~static_cast<uint64_t>(hit.zero_mask()) & ((uint64_t{1} << F::size()) - 1);
}

template <typename T>
void top_k(const T* logits, T* values, int64_t* indices, int64_t rows, int64_t n, int64_t k) {
#pragma omp parallel if (rows > 1)
    {
        std::vector<Pair> heap(k);
#pragma omp for
        for (int64_t row = 0; row < rows; row++) {
            const T* x = logits + row * n;
            Pair* h = heap.data();
            for (int64_t j = 0; j < k; j++) h[j] = {widen(x + j), j};
            make_heap(h, k);
            auto offer = [&](int64_t j) {  // partial_sort's step for pair j: std::__pop_heap(first, middle, j)
                const Pair candidate{widen(x + j), j};
                if (before(candidate, h[0])) adjust_heap(h, 0, k, candidate);
            };
            int64_t j = k;
            for (; j + STEP <= n; j += STEP) {
                const Two v = load(x + j);
                const uint64_t bits = taken(v[0], h[0].value) | taken(v[1], h[0].value) << F::size();
                for (uint64_t left = bits; left; left &= left - 1) offer(j + __builtin_ctzll(left));
            }
            for (; j < n; j++) offer(j);
            sort_heap(h, k);
            for (int64_t i = 0; i < k; i++) {
                values[row * k + i] = static_cast<T>(h[i].value);
                indices[row * k + i] = h[i].index;
            }
        }
    }
}

}  // namespace

// logits (rows, n) contiguous, bf16 when `bf16` is 1 else fp32; values (rows, k) in the same dtype, indices
// (rows, k) int64. The caller checks 0 < k and k * 64 <= n (where aten takes partial_sort).
extern "C" void kernel(const void* logits, void* values, int64_t* indices, int64_t rows, int64_t n, int64_t k,
                       int64_t bf16) {
    if (bf16)
        top_k(static_cast<const at::BFloat16*>(logits), static_cast<at::BFloat16*>(values), indices, rows, n, k);
    else
        top_k(static_cast<const float*>(logits), static_cast<float*>(values), indices, rows, n, k);
}
