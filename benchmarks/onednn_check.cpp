// Cross-checks OnednnDwconv::run_nchw against a naive double-precision depth-wise conv for small
// problems (all three passes), then times oneDNN on two large-kernel shapes as a sanity check
// against shared/reference/performance.md. Exit status 1 if any max relative error > 1e-4.
// Run with OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/fma_peak.h"
#include "benchmarks/onednn_dwconv.h"
#include "runtime/reference_dwconv.h"
#include "runtime/workload.h"

namespace {

using lkc::bench::DwProblem;
using lkc::bench::OnednnDwconv;

struct Geometry {
    int oh, ow, ph, pw;
    explicit Geometry(const DwProblem& p)
        : oh((p.h + p.stride - 1) / p.stride),
          ow((p.w + p.stride - 1) / p.stride),
          ph(p.dilation * (p.kh - 1) / 2),
          pw(p.dilation * (p.kw - 1) / 2) {}
};

// lkc's naive double reference (runtime/reference_dwconv.h), same argument order as run_nchw.
std::vector<double> reference(const DwProblem& p, const std::vector<float>& a,
                              const std::vector<float>& b) {
    const std::vector<double> da(a.begin(), a.end()), db(b.begin(), b.end());
    switch (p.pass) {
        case DwProblem::Fwd:  // a = x, b = w
            return lkc::ref::dwconv_fwd(da, db, {}, p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride,
                                        p.dilation);
        case DwProblem::BwdData:  // a = dy, b = w
            return lkc::ref::dwconv_bwd_data(da, db, p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride,
                                             p.dilation);
        case DwProblem::BwdWeight: {  // a = x, b = dy
            std::vector<double> dw;
            lkc::ref::dwconv_bwd_weight(da, db, p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride,
                                        p.dilation, &dw, nullptr);
            return dw;
        }
    }
    return {};
}

std::vector<float> random_data(size_t n, unsigned seed) {
    std::vector<float> v(n);
    unsigned s = seed * 2654435761u + 12345u;
    for (auto& e : v) {
        s = s * 1664525u + 1013904223u;
        e = static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    return v;
}

std::string describe(const DwProblem& p) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%-10s n%d c%d %dx%d k%dx%d s%d d%d",
                  lkc::bench::dw_pass_name(p.pass), p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride,
                  p.dilation);
    return buf;
}

// Max |got − ref| / max |ref|.
bool check(const DwProblem& p) {
    const Geometry g(p);
    const size_t x_size = size_t(p.n) * p.c * p.h * p.w;
    const size_t y_size = size_t(p.n) * p.c * g.oh * g.ow;
    const size_t w_size = size_t(p.c) * p.kh * p.kw;
    size_t a_size = x_size, b_size = w_size;
    if (p.pass == DwProblem::BwdData) a_size = y_size;
    if (p.pass == DwProblem::BwdWeight) b_size = y_size;
    const std::vector<float> a = random_data(a_size, 7);
    const std::vector<float> b = random_data(b_size, 11);

    OnednnDwconv conv(p);
    const std::vector<float> got = conv.run_nchw(a, b);
    const std::vector<double> ref = reference(p, a, b);
    double max_diff = 0.0, max_ref = 0.0;
    bool size_ok = got.size() == ref.size();
    for (size_t i = 0; size_ok && i < ref.size(); ++i) {
        max_diff = std::max(max_diff, std::abs(double(got[i]) - ref[i]));
        max_ref = std::max(max_ref, std::abs(ref[i]));
    }
    const double rel = max_diff / std::max(max_ref, 1e-30);
    const bool ok = size_ok && rel <= 1e-4;
    std::printf("%s  %-4s rel_err %.2e  %-26s %s\n", describe(p).c_str(), ok ? "ok" : "FAIL", rel,
                conv.impl_name().c_str(), conv.layouts().c_str());
    return ok;
}

double useful_flops(const DwProblem& p) {
    lkc::Workload w;
    w.n = p.n, w.c = p.c, w.h = p.h, w.w = p.w, w.kh = p.kh, w.kw = p.kw;
    w.stride = p.stride, w.dilation = p.dilation;
    return w.useful_flops();
}

void time_problem(const DwProblem& p, double peak) {
    OnednnDwconv conv(p);
    for (int i = 0; i < 2; ++i) conv.run();  // warm-up
    std::vector<double> ms;
    for (int i = 0; i < 20; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        conv.run();
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = 0.5 * (ms[9] + ms[10]);
    const double nominal = conv.nominal_flops() / (med * 1e6);
    const double useful = useful_flops(p) / (med * 1e6);
    std::printf(
        "%s  %-26s median %9.3f ms (min %9.3f)  nominal %6.1f GF/s  useful %6.1f GF/s "
        "(%4.1f %% of peak)\n",
        describe(p).c_str(), conv.impl_name().c_str(), med, ms[0], nominal, useful,
        100.0 * useful / peak);
}

}  // namespace

int main() {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    const int threads =
        omp ? std::max(1, std::atoi(omp)) : std::max(1u, std::thread::hardware_concurrency());
    // Measure the peak before oneDNN starts its OpenMP pool.
    const double peak = lkc::bench::measure_fma_peak_gflops(threads);
    std::printf("FMA peak (%s, %d threads): %.1f GFLOP/s; OMP_NUM_THREADS=%s OMP_WAIT_POLICY=%s\n",
                lkc::bench::fma_peak_isa(), threads, peak, omp ? omp : "(unset)",
                std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)");

    bool all_ok = true;
    try {
        std::printf("\n-- correctness (run_nchw vs naive double) --\n");
        // {n, c, h, w, kh, kw, stride, dilation}; C not a multiple of 16 exercises blocked
        // channel padding.
        const std::vector<DwProblem> shapes = {
            {2, 20, 15, 17, 7, 7, 1, 1, DwProblem::Fwd},
            {2, 20, 15, 17, 7, 7, 2, 1, DwProblem::Fwd},
            {1, 16, 19, 18, 7, 7, 1, 3, DwProblem::Fwd},
            {1, 16, 19, 18, 7, 7, 2, 3, DwProblem::Fwd},
            {2, 24, 12, 14, 5, 3, 1, 1, DwProblem::Fwd},
            {2, 24, 13, 14, 5, 3, 2, 1, DwProblem::Fwd},
            {1, 18, 11, 10, 3, 5, 2, 2, DwProblem::Fwd},
            {1, 32, 7, 7, 13, 13, 1, 1, DwProblem::Fwd},
            {1, 32, 7, 7, 13, 13, 2, 1, DwProblem::Fwd},
            // Stride 2 on even maps: padding_r < padding_l (3x3: 0 vs 1; 1x1: -1 vs 0).
            {2, 20, 8, 10, 3, 3, 2, 1, DwProblem::Fwd},
            {1, 16, 8, 8, 1, 1, 2, 1, DwProblem::Fwd},
        };
        for (auto pass : {DwProblem::Fwd, DwProblem::BwdData, DwProblem::BwdWeight}) {
            for (DwProblem p : shapes) {
                p.pass = pass;
                all_ok = check(p) && all_ok;
            }
        }

        std::printf("\n-- timing (median of 20 after 2 warm-up runs; peak %.1f GFLOP/s) --\n",
                    peak);
        for (auto pass : {DwProblem::Fwd, DwProblem::BwdData, DwProblem::BwdWeight}) {
            time_problem({1, 128, 56, 56, 31, 31, 1, 1, pass}, peak);
            time_problem({1, 128, 56, 56, 7, 7, 1, 3, pass}, peak);
        }
    } catch (const std::exception& e) {
        std::printf("error: %s\n", e.what());
        return 2;
    }
    std::printf("\n%s\n", all_ok ? "all checks passed" : "SOME CHECKS FAILED");
    return all_ok ? 0 : 1;
}
