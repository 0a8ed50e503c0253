// Whole-network inference with the graph executor (issue 5 targets): RepLKNet-31B, UniRepLKNet-T,
// SLaK-T and ShiftwiseConv-T at 224x224, batch 1 and 8, 2 threads. Per model and batch: median
// latency over repetitions, img/s, nominal GFLOP/s and % of the measured FMA peak (nominal FLOPs:
// 2 x the model's multiply-adds counted densely, the published convention; SLaK-T and SW-T at
// their dense train-form counts), the per-layer time profile (largest layers first), and the
// planned activation arena vs the minimum a sequential schedule needs. Also CSV.
//
//   bench_models [--models=a,b] [--batches=1,8] [--reps=N] [--csv=FILE] [--records=FILE]
//                [--no-records] [--layers=N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_util.h"
#include "benchmarks/fma_peak.h"
#include "graph/cost.h"
#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/weights.h"

namespace {

using lkc::bench::median;
using lkc::bench::split;

// The published / dense train-form multiply-adds of the model at this batch (the FLOPs the target
// is stated in): the train-form graph's count.
double nominal_flops(const std::string& model, int batch) {
    lkc::graph::ModelOptions mo;
    mo.batch = batch;
    const lkc::graph::Graph g = lkc::graph::build_model(model, mo);
    return lkc::graph::total_cost(g).flops();
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> models = {"replknet-31b", "unireplknet-t", "slak-t", "shiftwise-t"};
    std::vector<int> batches = {1, 8};
    int reps = 10, layers = 12;
    std::string csv = "bench_models.csv";
    std::vector<std::string> records;
    bool no_records = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&](const char* p) {
            return a.rfind(p, 0) == 0 ? a.substr(std::strlen(p)) : std::string();
        };
        if (a.rfind("--models=", 0) == 0) {
            models = split(val("--models="));
        } else if (a.rfind("--batches=", 0) == 0) {
            batches.clear();
            for (const std::string& b : split(val("--batches=")))
                batches.push_back(std::atoi(b.c_str()));
        } else if (a.rfind("--reps=", 0) == 0) {
            reps = std::max(1, std::atoi(val("--reps=").c_str()));
        } else if (a.rfind("--layers=", 0) == 0) {
            layers = std::atoi(val("--layers=").c_str());
        } else if (a.rfind("--csv=", 0) == 0) {
            csv = val("--csv=");
        } else if (a.rfind("--records=", 0) == 0) {
            records.push_back(val("--records="));
        } else if (a == "--no-records") {
            no_records = true;
        } else {
            std::fprintf(stderr,
                         "usage: bench_models [--models=a,b] [--batches=1,8] [--reps=N] "
                         "[--layers=N] [--csv=FILE] [--records=FILE] [--no-records]\n");
            return 2;
        }
    }
    const char* hl = std::getenv("HL_NUM_THREADS");
    const int threads = hl ? std::max(1, std::atoi(hl)) : 2;
    if (!hl) setenv("HL_NUM_THREADS", "2", 1);
    const double peak = lkc::bench::measure_fma_peak_gflops(threads);
    std::printf("bench_models: FMA peak %.1f GFLOP/s (%s, %d threads)\n", peak,
                lkc::bench::fma_peak_isa(), threads);
    std::ofstream out(csv.empty() ? "/dev/null" : csv);
    out << "model,batch,median_ms,img_per_s,nominal_gflop,gflops,pct_peak,arena_mib,"
           "sequential_min_mib,arena_ratio,peak_gflops\n";
    std::printf("%-14s %5s %10s %8s %9s %8s %7s %10s %10s\n", "model", "batch", "median ms",
                "img/s", "GFLOP", "GFLOP/s", "%peak", "arena MiB", "seq.min");
    for (const std::string& m : models) {
        for (int b : batches) {
            lkc::graph::ModelOptions mo;
            mo.batch = b;
            lkc::graph::Graph g = lkc::graph::build_model(m, mo);
            lkc::graph::init_weights(g, 1, lkc::graph::InitMode::Test);
            lkc::graph::ExecOptions eo;
            eo.records = records.empty() ? std::vector<std::string>{"none"} : records;
            eo.no_records = no_records;
            lkc::graph::Executor ex(g, eo);
            lkc::Tensor x(lkc::DType::F32, {b, 3, 224, 224});
            std::mt19937 gen(7);
            std::uniform_real_distribution<float> u(-2, 2);
            for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = u(gen);
            ex.run({{"x", x}});  // warm-up
            std::vector<double> ms;
            for (int r = 0; r < reps; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                ex.run({{"x", x}});
                ms.push_back(
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count());
            }
            const double med = median(ms), flops = nominal_flops(m, b);
            const double gfs = flops / med * 1e-6;
            const double arena = ex.plan().arena_bytes / 1048576.0;
            const double seq = ex.plan().sequential_min_bytes / 1048576.0;
            std::printf("%-14s %5d %10.2f %8.2f %9.2f %8.1f %6.1f%% %10.2f %10.2f\n", m.c_str(), b,
                        med, b * 1000.0 / med, flops * 1e-9, gfs, 100 * gfs / peak, arena, seq);
            out << m << "," << b << "," << med << "," << b * 1000.0 / med << "," << flops * 1e-9
                << "," << gfs << "," << 100 * gfs / peak << "," << arena << "," << seq << ","
                << (seq > 0 ? arena / seq : 0) << "," << peak << "\n";
            if (layers > 0) {
                // One profiled run: per-layer times, largest first.
                lkc::graph::ExecOptions po = eo;
                po.profile = true;
                lkc::graph::Executor px(g, po);
                px.run({{"x", x}});
                px.run({{"x", x}});
                auto prof = px.last_profile();
                double total = 0;
                for (const auto& p : prof) total += p.ms;
                std::sort(prof.begin(), prof.end(),
                          [](const auto& p, const auto& q) { return p.ms > q.ms; });
                // By op kind too.
                std::map<std::string, std::pair<double, double>> by_op;  // ms, flops
                for (const auto& p : prof) {
                    by_op[p.op].first += p.ms;
                    by_op[p.op].second += p.flops;
                }
                std::printf("  by op (profiled run %.2f ms):", total);
                for (const auto& [op, v] : by_op)
                    std::printf("  %s %.1f%% (%.0f GF/s)", op.c_str(), 100 * v.first / total,
                                v.first > 0 ? v.second / v.first * 1e-6 : 0.0);
                std::printf("\n");
                for (size_t i = 0; i < std::min<size_t>(size_t(layers), prof.size()); ++i)
                    std::printf("  %8.3f ms %5.1f%% %7.1f GF/s  %-15s %-42s %s\n", prof[i].ms,
                                100 * prof[i].ms / total,
                                prof[i].ms > 0 ? prof[i].flops / prof[i].ms * 1e-6 : 0.0,
                                prof[i].op.c_str(), prof[i].name.c_str(), prof[i].kernel.c_str());
            }
            std::fflush(stdout);
        }
    }
    if (!csv.empty()) std::printf("wrote %s\n", csv.c_str());
    return 0;
}
