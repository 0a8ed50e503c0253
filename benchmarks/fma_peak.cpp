#include "benchmarks/fma_peak.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace lkc::bench {

namespace {

constexpr int kAcc = 16;                 // independent accumulators (chains) per thread
constexpr double kTargetSeconds = 0.15;  // per trial
constexpr int kTrials = 3;

// AVX-512: each chain iterates x <- x*x + c with c = -0.5 (one register operand per FMA); x
// converges to (1 - sqrt 3)/2, so no denormals or overflow.
// AVX2 has only 16 ymm registers: a constant would spill two of the 16 chains, so each chain
// iterates x <- x*x - x (vfmsub, same cost as vfmadd), which shrinks like 1/sqrt(4t) but stays
// far above the denormal range for any realistic run.
// The results are summed and returned so the loops cannot be removed.

__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
    const __m512 c = _mm512_set1_ps(-0.5f);
    __m512 acc[kAcc];
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(0.01f * static_cast<float>(i));
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
        for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], acc[i], c);
    }
    __m512 sum = acc[0];
#pragma GCC unroll 16
    for (int i = 1; i < kAcc; ++i) sum = _mm512_add_ps(sum, acc[i]);
    // Plain store + scalar sum: _mm512_reduce_add_ps trips -Wuninitialized in GCC 12 headers.
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    float s = 0.0f;
    for (float v : lanes) s += v;
    return s;
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
    __m256 acc[kAcc];
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(0.1f + 0.01f * static_cast<float>(i));
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
        for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmsub_ps(acc[i], acc[i], acc[i]);
    }
    __m256 sum = acc[0];
#pragma GCC unroll 16
    for (int i = 1; i < kAcc; ++i) sum = _mm256_add_ps(sum, acc[i]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float s = 0.0f;
    for (float v : lanes) s += v;
    return s;
}

using ChainFn = float (*)(int64_t);

volatile float g_sink = 0.0f;  // consumes the chain results

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs fn(iters) on `threads` threads released together; returns wall seconds from release to
// the last thread's end.
double timed_trial(ChainFn fn, int threads, int64_t iters) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<float> results(static_cast<size_t>(threads), 0.0f);
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            results[static_cast<size_t>(t)] = fn(iters);
        });
    }
    while (ready.load() < threads) std::this_thread::yield();
    const auto t0 = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();
    const double sec = seconds_since(t0);
    float s = 0.0f;
    for (float r : results) s += r;
    g_sink = g_sink + s;
    return sec;
}

double measure(ChainFn fn, int lanes, int threads) {
    threads = std::max(1, threads);
    // Warm-up (clocks, page-in), then calibrate the iteration count on one thread.
    g_sink = g_sink + fn(1 << 20);
    int64_t iters = 1 << 22;
    for (;;) {
        const auto t0 = std::chrono::steady_clock::now();
        g_sink = g_sink + fn(iters);
        const double sec = seconds_since(t0);
        if (sec >= 0.01) {
            iters = std::max<int64_t>(1 << 20, static_cast<int64_t>(iters * kTargetSeconds / sec));
            break;
        }
        iters *= 4;
    }
    const double flop_per_iter = 2.0 * kAcc * lanes;
    double best = 0.0;
    for (int trial = 0; trial < kTrials; ++trial) {
        const double sec = timed_trial(fn, threads, iters);
        best = std::max(best, flop_per_iter * static_cast<double>(iters) * threads / sec * 1e-9);
    }
    return best;
}

bool has_avx512() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

bool has_avx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

double measure_fma_peak_gflops(int threads) {
    if (has_avx512()) return measure(fma_chains_avx512, 16, threads);
    return measure_fma_peak_gflops_avx2(threads);
}

double measure_fma_peak_gflops_avx2(int threads) {
    if (!has_avx2()) return 0.0;
    return measure(fma_chains_avx2, 8, threads);
}

const char* fma_peak_isa() {
    if (has_avx512()) return "avx512";
    return has_avx2() ? "avx2" : "none";
}

}  // namespace lkc::bench
