// Measured fp32 FMA peak of this machine, for reporting kernels as "% of peak". Runs 16
// independent FMA chains per thread (enough to hide FMA latency on two pipes) on `threads`
// std::threads at once for ~150 ms, best of 3 trials. ISA chosen at run time, so this compiles
// without -mavx512f.
#pragma once

namespace lkc::bench {

// GFLOP/s (2 FLOP per lane per FMA) over all threads, with the widest ISA available
// (AVX-512 if the CPU has avx512f, else AVX2+FMA; 0 if neither).
double measure_fma_peak_gflops(int threads);
// Same with AVX2 (_mm256_fmadd_ps) forced; 0 if the CPU lacks AVX2/FMA.
double measure_fma_peak_gflops_avx2(int threads);
// ISA used by measure_fma_peak_gflops: "avx512", "avx2" or "none".
const char* fma_peak_isa();

}  // namespace lkc::bench
