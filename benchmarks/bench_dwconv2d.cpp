// bench_dwconv2d: lkc's AOT depth-wise conv kernels against oneDNN 2.6 in the same process.
//
// Grid (the issue): N {1,8} x C {128,384} x H=W {56,14} x kernel {7x7, 13x13, 31x31, 51x51, 51x5,
// 5x51, 7x7 d3} x pass {fwd, bwd_data, bwd_weight} = 168 workloads; `--shapes=quick` keeps N1 C128
// 56x56 {7x7, 31x31, 7x7 d3} x 3 passes. Two adjacent Google Benchmark rows per workload:
// `lkc/<workload>` and `onednn/<workload>`.
//
// Method (shared/reference/performance.md): 2 threads on both sides, OMP_WAIT_POLICY=passive,
// objects built and warmed up outside the timed loop, every Google Benchmark iteration times
// exactly one call (manual time), medians everywhere. The lkc row interleaves oneDNN calls with
// its own (alternating which goes first) and reports the median of the per-pair time ratios, so a
// noisy phase of the VM hits both sides of a pair alike. benchmarks/README.md has the details.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/fma_peak.h"
#include "benchmarks/onednn_dwconv.h"
#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/workload.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- measuring policy --------------------------------------------------------------------------

// Defaults given to Google Benchmark's --benchmark_min_time (seconds of timed calls of the row's
// own impl per repetition) and --benchmark_repetitions when the command line does not set them.
// (Set as flags, not per benchmark, so the row names stay `lkc/<workload>/manual_time`.)
constexpr double kDefaultMinTime = 0.1;
constexpr int kDefaultReps = 3;
// Warm-up: two calls per impl when its objects are built; one if the first call alone took longer
// than this (a call that long is its own warm-up).
constexpr double kLongCallSeconds = 0.25;
// lkc rows: an iteration is paired with a oneDNN call if it is the first of the invocation or the
// oneDNN calls of this invocation took less than kPairBudget x min_time so far; after that the row
// times lkc alone. Every repetition keeps at least one pair, and the slow oneDNN paths (bwd_weight,
// dilated: 10-100x slower than lkc, up to ~30 s per call) cost one call per repetition.
constexpr double kPairBudget = 2.5;
constexpr uint32_t kSeed = 20240611;

struct Options {
    std::string shapes = "full";
    std::string csv = "bench_dwconv2d.csv";
    double min_time = kDefaultMinTime;
    int reps = kDefaultReps;
    int threads = 2;
    double peak_gflops = 0;
    std::string isa = "none";
};
Options g_opt;

// ---- grid --------------------------------------------------------------------------------------

struct KernelShape {
    int kh, kw, dilation;
};
constexpr KernelShape kKernels[] = {{7, 7, 1},  {13, 13, 1}, {31, 31, 1}, {51, 51, 1},
                                    {51, 5, 1}, {5, 51, 1},  {7, 7, 3}};

std::string kernel_label(const lkc::Workload& w) {
    std::string s = std::to_string(w.kh) + "x" + std::to_string(w.kw);
    if (w.dilation != 1) s += "d" + std::to_string(w.dilation);
    return s;
}

std::vector<lkc::Workload> make_grid(bool quick) {
    const std::vector<int> ns = quick ? std::vector<int>{1} : std::vector<int>{1, 8};
    const std::vector<int> cs = quick ? std::vector<int>{128} : std::vector<int>{128, 384};
    const std::vector<int> hws = quick ? std::vector<int>{56} : std::vector<int>{56, 14};
    std::vector<lkc::Workload> grid;
    for (lkc::Pass pass : {lkc::Pass::Fwd, lkc::Pass::BwdData, lkc::Pass::BwdWeight})
        for (int n : ns)
            for (int c : cs)
                for (int hw : hws)
                    for (const KernelShape& k : kKernels) {
                        if (quick && !((k.kh == 7 && k.kw == 7) || (k.kh == 31 && k.kw == 31)))
                            continue;
                        lkc::Workload w;
                        w.op = lkc::Op::DwConv2d;
                        w.pass = pass;
                        w.n = n;
                        w.c = c;
                        w.h = hw;
                        w.w = hw;
                        w.kh = k.kh;
                        w.kw = k.kw;
                        w.dilation = k.dilation;
                        w.dtype = lkc::ElemType::F32;
                        grid.push_back(w);
                    }
    return grid;
}

lkc::bench::DwProblem to_problem(const lkc::Workload& w) {
    lkc::bench::DwProblem p{
        w.n, w.c, w.h, w.w, w.kh, w.kw, w.stride, w.dilation, lkc::bench::DwProblem::Fwd};
    switch (w.pass) {
        case lkc::Pass::Fwd:
            p.pass = lkc::bench::DwProblem::Fwd;
            break;
        case lkc::Pass::BwdData:
            p.pass = lkc::bench::DwProblem::BwdData;
            break;
        case lkc::Pass::BwdWeight:
            p.pass = lkc::bench::DwProblem::BwdWeight;
            break;
    }
    return p;
}

// ---- the objects under test: one workload at a time, shared by its two adjacent rows ----------

template <class F>
double time_call(F&& f) {
    const auto t0 = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <class F>
void warm_up(F&& f) {
    if (time_call(f) < kLongCallSeconds) f();
}

struct Subjects {
    std::string workload;
    bool lkc_tried = false, dnn_tried = false;
    std::unique_ptr<lkc::DwConv2dRunner> lkc;
    std::unique_ptr<lkc::bench::OnednnDwconv> dnn;
    std::string lkc_error, dnn_error;
};
Subjects g_subjects;

Subjects& subjects_for(const std::string& workload) {
    if (g_subjects.workload != workload) {
        g_subjects = Subjects{};  // frees the previous workload's buffers first
        g_subjects.workload = workload;
    }
    return g_subjects;
}

lkc::DwConv2dRunner* get_lkc(Subjects& s, const lkc::Workload& w) {
    if (!s.lkc_tried) {
        s.lkc_tried = true;
        try {
            auto r = std::make_unique<lkc::DwConv2dRunner>(w, lkc::Device::Cpu);
            r->fill_random(kSeed);
            warm_up([&] { r->run(); });
            s.lkc = std::move(r);
        } catch (const std::exception& e) {
            s.lkc_error = e.what();
        }
    }
    return s.lkc.get();
}

lkc::bench::OnednnDwconv* get_dnn(Subjects& s, const lkc::Workload& w) {
    if (!s.dnn_tried) {
        s.dnn_tried = true;
        try {
            auto d = std::make_unique<lkc::bench::OnednnDwconv>(to_problem(w));
            warm_up([&] { d->run(); });
            s.dnn = std::move(d);
        } catch (const std::exception& e) {
            s.dnn_error = e.what();
        }
    }
    return s.dnn.get();
}

// ---- rows --------------------------------------------------------------------------------------

double median(std::vector<double> v) {  // Google Benchmark's definition (mean of the middle two)
    if (v.empty()) return kNaN;
    const size_t h = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + h, v.end());
    const double hi = v[h];
    if (v.size() % 2 == 1) return hi;
    return (*std::max_element(v.begin(), v.begin() + h) + hi) / 2.0;
}

// One call of a row's function by Google Benchmark: a calibration trial or a repetition. The
// trials come first, so the last `reps` entries are exactly the reported repetitions.
struct Invocation {
    bool ok = false;
    std::string error;
    double median_s = kNaN, nominal_gflops = kNaN, useful_gflops = kNaN, pct_peak = kNaN;
    double ratio = kNaN;  // lkc rows: median of per-pair lkc/oneDNN time ratios
};

struct Row {
    bool is_lkc = false;
    lkc::Workload w;
    std::string workload;  // canonical string
    std::string detail;    // kernel variant / oneDNN implementation
    std::vector<Invocation> invocations;
};
std::vector<std::unique_ptr<Row>> g_rows;

void skip_row(benchmark::State& state, Row& row, const std::string& msg) {
    Invocation inv;
    inv.error = msg;
    row.invocations.push_back(inv);
    state.SkipWithError(row.invocations.back().error.c_str());
    for (auto _ : state) {
    }
}

void finish_invocation(benchmark::State& state, Row& row, Invocation inv,
                       const std::vector<double>& times, const std::vector<double>& ratios) {
    inv.ok = true;
    inv.median_s = median(times);
    inv.nominal_gflops = row.w.nominal_flops() / inv.median_s * 1e-9;
    inv.useful_gflops = row.w.useful_flops() / inv.median_s * 1e-9;
    inv.pct_peak = g_opt.peak_gflops > 0 ? 100.0 * inv.useful_gflops / g_opt.peak_gflops : kNaN;
    inv.ratio = median(ratios);
    state.counters["median_ms"] = inv.median_s * 1e3;
    state.counters["nominal_GFLOPs"] = inv.nominal_gflops;
    state.counters["useful_GFLOPs"] = inv.useful_gflops;
    state.counters["pct_peak"] = inv.pct_peak;
    if (row.is_lkc && !ratios.empty()) state.counters["ratio_vs_onednn"] = inv.ratio;
    row.invocations.push_back(std::move(inv));
}

void run_lkc_row(benchmark::State& state, Row& row) {
    Subjects& s = subjects_for(row.workload);
    lkc::DwConv2dRunner* r = get_lkc(s, row.w);
    if (!r) return skip_row(state, row, "lkc: " + s.lkc_error);
    row.detail = r->kernel().name;
    state.SetLabel(row.detail);
    lkc::bench::OnednnDwconv* d = get_dnn(s, row.w);  // the pairing partner; may be missing

    std::vector<double> times, ratios;
    times.reserve(std::min<size_t>(state.max_iterations, size_t{1} << 20));
    double partner_seconds = 0;
    std::string error;
    for (auto _ : state) {
        const bool pair = d && (ratios.empty() || partner_seconds < kPairBudget * g_opt.min_time);
        const bool partner_first = pair && ratios.size() % 2 == 1;
        double t_dnn = 0;
        if (partner_first) {
            try {
                t_dnn = time_call([&] { d->run(); });
            } catch (const std::exception& e) {
                s.dnn.reset();  // no more pairing for this workload; the lkc time still counts
                s.dnn_error = e.what();
                d = nullptr;
            }
        }
        double t_lkc = 0;
        try {
            t_lkc = time_call([&] { r->run(); });
        } catch (const std::exception& e) {
            error = std::string("lkc: ") + e.what();
            state.SkipWithError(error.c_str());
            break;
        }
        if (pair && !partner_first && d) {
            try {
                t_dnn = time_call([&] { d->run(); });
            } catch (const std::exception& e) {
                s.dnn.reset();
                s.dnn_error = e.what();
                d = nullptr;
            }
        }
        state.SetIterationTime(t_lkc);
        times.push_back(t_lkc);
        if (pair && d) {
            partner_seconds += t_dnn;
            ratios.push_back(t_lkc / t_dnn);
        }
    }
    if (!error.empty()) {
        Invocation inv;
        inv.error = error;
        row.invocations.push_back(inv);
        return;
    }
    finish_invocation(state, row, Invocation{}, times, ratios);
}

void run_onednn_row(benchmark::State& state, Row& row) {
    Subjects& s = subjects_for(row.workload);
    lkc::bench::OnednnDwconv* d = get_dnn(s, row.w);
    if (!d) return skip_row(state, row, "onednn: " + s.dnn_error);
    row.detail = d->impl_name();
    state.SetLabel(row.detail);

    std::vector<double> times;
    times.reserve(std::min<size_t>(state.max_iterations, size_t{1} << 20));
    std::string error;
    for (auto _ : state) {
        double t = 0;
        try {
            t = time_call([&] { d->run(); });
        } catch (const std::exception& e) {
            error = std::string("onednn: ") + e.what();
            state.SkipWithError(error.c_str());
            break;
        }
        state.SetIterationTime(t);
        times.push_back(t);
    }
    if (!error.empty()) {
        Invocation inv;
        inv.error = error;
        row.invocations.push_back(inv);
        return;
    }
    finish_invocation(state, row, Invocation{}, times, {});
}

// ---- console: only the median line of each row (and the first error) ---------------------------

class MedianConsoleReporter : public benchmark::ConsoleReporter {
  public:
    using benchmark::ConsoleReporter::ConsoleReporter;
    void ReportRuns(const std::vector<Run>& runs) override {
        std::vector<Run> keep;
        for (const Run& r : runs) {
            if (r.run_type == Run::RT_Aggregate) {
                if (r.aggregate_name == "median") keep.push_back(r);
            } else if (!r.error_occurred) {
                keep.push_back(r);  // single repetition: no aggregates exist
            } else if (r.run_name.str() != last_error_) {
                last_error_ = r.run_name.str();
                keep.push_back(r);
            }
        }
        if (!keep.empty()) benchmark::ConsoleReporter::ReportRuns(keep);
    }

  private:
    std::string last_error_;
};

// ---- results: CSV and summary ------------------------------------------------------------------

struct Result {
    const Row* row = nullptr;
    bool ok = false;
    std::string error;
    double median_ms = kNaN, nominal_gflops = kNaN, useful_gflops = kNaN, pct_peak = kNaN;
    double ratio = kNaN;
};

// Medians over the reported repetitions (the last `reps` invocations), as Google Benchmark's
// `_median` aggregate computes them from the per-repetition counters.
std::vector<Result> collect_results() {
    std::vector<Result> out;
    for (const auto& row : g_rows) {
        if (row->invocations.empty()) continue;  // filtered out
        const size_t k = std::min<size_t>(row->invocations.size(), static_cast<size_t>(g_opt.reps));
        std::vector<double> t, nom, use, pct, ratio;
        Result res;
        res.row = row.get();
        for (size_t i = row->invocations.size() - k; i < row->invocations.size(); ++i) {
            const Invocation& inv = row->invocations[i];
            if (!inv.ok) {
                if (res.error.empty()) res.error = inv.error;
                continue;
            }
            t.push_back(inv.median_s * 1e3);
            nom.push_back(inv.nominal_gflops);
            use.push_back(inv.useful_gflops);
            pct.push_back(inv.pct_peak);
            if (!std::isnan(inv.ratio)) ratio.push_back(inv.ratio);
        }
        res.ok = !t.empty();
        res.median_ms = median(t);
        res.nominal_gflops = median(nom);
        res.useful_gflops = median(use);
        res.pct_peak = median(pct);
        res.ratio = median(ratio);
        out.push_back(res);
    }
    return out;
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string q = "\"";
    for (char ch : s) {
        if (ch == '"') q += '"';
        q += ch;
    }
    return q + "\"";
}

std::string num(double v, int prec) {
    if (std::isnan(v)) return "";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", prec, v);
    return buf;
}

bool write_csv(const std::string& path, const std::vector<Result>& results) {
    const std::string tmp = path + ".tmp." + std::to_string(getpid());
    {
        std::ofstream f(tmp, std::ios::trunc);
        if (!f) return false;
        f << "impl,workload,pass,kernel,n,c,h,w,median_ms,nominal_gflops,useful_gflops,pct_peak,"
             "ratio_vs_onednn,impl_detail,peak_gflops\n";
        for (const Result& r : results) {
            const Row& row = *r.row;
            const std::string detail = r.ok ? row.detail : "ERROR: " + r.error;
            f << (row.is_lkc ? "lkc" : "onednn") << ',' << row.workload << ','
              << lkc::pass_name(row.w.pass) << ',' << kernel_label(row.w) << ',' << row.w.n << ','
              << row.w.c << ',' << row.w.h << ',' << row.w.w << ',' << num(r.median_ms, 4) << ','
              << num(r.nominal_gflops, 2) << ',' << num(r.useful_gflops, 2) << ','
              << num(r.pct_peak, 2) << ',' << (row.is_lkc ? num(r.ratio, 4) : std::string()) << ','
              << csv_field(detail) << ',' << num(g_opt.peak_gflops, 1) << '\n';
        }
        f.flush();
        if (!f) {
            std::remove(tmp.c_str());
            return false;
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        return false;
    }
    return true;
}

// Target bookkeeping for the summary: a minimum (or maximum) over the lkc rows a target covers.
struct Extreme {
    double value = kNaN;
    std::string where;
    int count = 0;
    void take(double v, const std::string& w, bool want_min) {
        ++count;
        if (std::isnan(value) || (want_min ? v < value : v > value)) {
            value = v;
            where = w;
        }
    }
};

const char* verdict(bool measured, bool pass) { return !measured ? "n/a" : pass ? "PASS" : "MISS"; }

void print_summary(FILE* out, const std::vector<Result>& results, size_t grid_workloads) {
    const lkc::Pass passes[] = {lkc::Pass::Fwd, lkc::Pass::BwdData, lkc::Pass::BwdWeight};
    // Per pass: geomean of the paired ratios over all rows of the grid (the target, and the
    // verdict), and over the undilated rows alone (shown because the dilated rows, 10-50x faster
    // than oneDNN, pull the geomean down a lot).
    double log_sum[3] = {0, 0, 0}, log_sum_d1[3] = {0, 0, 0};
    int ratio_count[3] = {0, 0, 0}, ratio_count_d1[3] = {0, 0, 0};
    int lkc_errors = 0;
    Extreme fwd_pct, bwdw_gflops;  // minima
    Extreme dil_speedup[3];        // minima of oneDNN time / lkc time
    double dil_log_sum[3] = {0, 0, 0};
    for (const Result& r : results) {
        const Row& row = *r.row;
        if (!row.is_lkc) continue;
        const int p = static_cast<int>(row.w.pass);
        if (!r.ok) {
            ++lkc_errors;
            continue;
        }
        if (!std::isnan(r.ratio)) {
            log_sum[p] += std::log(r.ratio);
            ++ratio_count[p];
            if (row.w.dilation == 1) {
                log_sum_d1[p] += std::log(r.ratio);
                ++ratio_count_d1[p];
            }
        }
        const int taps = row.w.kh * row.w.kw;
        if (row.w.pass == lkc::Pass::Fwd && row.w.h == 56 && row.w.w == 56 && taps >= 13 * 13 &&
            row.w.dilation == 1)
            fwd_pct.take(r.pct_peak, row.workload, true);
        if (row.w.pass == lkc::Pass::BwdWeight && taps >= 7 * 7)
            bwdw_gflops.take(r.useful_gflops, row.workload, true);
        if (row.w.dilation == 3 && row.w.kh == 7 && row.w.kw == 7 && !std::isnan(r.ratio)) {
            dil_speedup[p].take(1.0 / r.ratio, row.workload, true);
            dil_log_sum[p] += -std::log(r.ratio);
        }
    }

    std::vector<std::string> measured;
    for (const Result& r : results) measured.push_back(r.row->workload);
    std::sort(measured.begin(), measured.end());
    measured.erase(std::unique(measured.begin(), measured.end()), measured.end());

    std::fflush(stdout);
    std::fprintf(out,
                 "\n== bench_dwconv2d summary: lkc vs oneDNN (%s shapes, %zu of %zu workloads "
                 "measured) ==\n",
                 g_opt.shapes.c_str(), measured.size(), grid_workloads);
    std::fprintf(out,
                 "FMA peak %.1f GFLOP/s (%s, %d threads); ratio = lkc time / oneDNN time, "
                 "median of interleaved pairs\n",
                 g_opt.peak_gflops, g_opt.isa.c_str(), g_opt.threads);
    if (lkc_errors) std::fprintf(out, "lkc rows that failed (SkipWithError): %d\n", lkc_errors);
    std::fprintf(out, "\n%-11s %20s %20s %10s %8s\n", "pass", "geomean ratio (rows)",
                 "undilated (rows)", "target", "verdict");
    const double ratio_target[3] = {0.67, 0.5, kNaN};
    for (lkc::Pass pass : passes) {
        const int p = static_cast<int>(pass);
        auto cell = [](double sum, int count) {
            return (count ? num(std::exp(sum / count), 3) : std::string("-")) + " (" +
                   std::to_string(count) + ")";
        };
        const bool have = ratio_count[p] > 0;
        const double g = have ? std::exp(log_sum[p] / ratio_count[p]) : kNaN;
        const bool has_target = !std::isnan(ratio_target[p]);
        std::fprintf(out, "%-11s %20s %20s %10s %8s\n", lkc::pass_name(pass),
                     cell(log_sum[p], ratio_count[p]).c_str(),
                     cell(log_sum_d1[p], ratio_count_d1[p]).c_str(),
                     has_target ? ("<= " + num(ratio_target[p], 2)).c_str() : "-",
                     has_target ? verdict(have, g <= ratio_target[p]) : "");
    }

    std::fprintf(out, "\n%-58s %9s %9s %8s  %s\n", "target", "measured", "goal", "verdict",
                 "worst workload (rows covered)");
    auto line = [&](const char* what, const Extreme& e, double goal, const char* goal_text,
                    const char* unit) {
        const bool have = e.count > 0;
        std::fprintf(out, "%-58s %8s%s %9s %8s  %s (%d)\n", what,
                     have ? num(e.value, 1).c_str() : "-", have ? unit : " ", goal_text,
                     verdict(have, e.value >= goal), have ? e.where.c_str() : "-", e.count);
    };
    line("fwd: min % of peak (useful), Kh*Kw >= 13x13, 56x56", fwd_pct, 60.0, ">= 60 %", "%");
    line("bwd_weight: min useful GFLOP/s, Kh*Kw >= 7x7", bwdw_gflops, 100.0, ">= 100", " ");
    for (lkc::Pass pass : passes) {
        const int p = static_cast<int>(pass);
        const std::string what =
            std::string("7x7 d3 ") + lkc::pass_name(pass) + ": min speed-up vs oneDNN (geomean " +
            (dil_speedup[p].count ? num(std::exp(dil_log_sum[p] / dil_speedup[p].count), 1)
                                  : std::string("-")) +
            ")";
        line(what.c_str(), dil_speedup[p], 5.0, ">= 5x", "x");
    }
    std::fflush(out);
}

// ---- command line ------------------------------------------------------------------------------

// Value of --name=value in argv (Google Benchmark's own flags are only peeked at), or nullptr.
const char* peek_flag(int argc, char** argv, const char* name) {
    const size_t len = std::strlen(name);
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--", 2) == 0 && std::strncmp(argv[i] + 2, name, len) == 0 &&
            argv[i][2 + len] == '=')
            return argv[i] + 3 + len;
    return nullptr;
}

bool is_true(const char* v) {
    return v && (!std::strcmp(v, "true") || !std::strcmp(v, "yes") || !std::strcmp(v, "1"));
}
bool is_false(const char* v) {
    return v && (!std::strcmp(v, "false") || !std::strcmp(v, "no") || !std::strcmp(v, "0"));
}

void print_help() {
    std::printf(
        "bench_dwconv2d: lkc depth-wise conv kernels vs oneDNN (same process, 2 threads)\n"
        "  --shapes=full|quick   full: the 168-workload issue grid (default); quick: N1 C128 "
        "56x56\n"
        "                        {7x7, 31x31, 7x7 d3} x {fwd, bwd_data, bwd_weight}\n"
        "  --csv=FILE            per-row results (default bench_dwconv2d.csv; --csv= disables)\n"
        "  Google Benchmark defaults changed here: --benchmark_min_time=%g (timed seconds per\n"
        "  repetition per row), --benchmark_repetitions=%d (medians over repetitions reported)\n"
        "Rows: lkc/<workload> and onednn/<workload>; select with --benchmark_filter=REGEX.\n"
        "See benchmarks/README.md.\n\n",
        kDefaultMinTime, kDefaultReps);
    benchmark::PrintDefaultHelp();
}

// Parses and removes this program's own flags and collects the Google Benchmark flags to add;
// returns false (with a message) on a bad value.
std::vector<std::string> g_added_flags;
bool parse_own_flags(int* argc, char** argv) {
    int out = 1;
    for (int i = 1; i < *argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* prefix) -> const char* {
            const size_t n = std::strlen(prefix);
            return a.compare(0, n, prefix) == 0 ? argv[i] + n : nullptr;
        };
        if (const char* v = value("--shapes=")) {
            g_opt.shapes = v;
            if (g_opt.shapes != "full" && g_opt.shapes != "quick") {
                std::fprintf(stderr, "bench_dwconv2d: --shapes must be full or quick, got '%s'\n",
                             v);
                return false;
            }
        } else if (const char* csv = value("--csv=")) {
            g_opt.csv = csv;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = nullptr;

    // Google Benchmark's timing flags: read them (they shape the pairing budget and which
    // invocations are repetitions) or add this program's defaults.
    if (const char* v = peek_flag(*argc, argv, "benchmark_min_time")) {
        char* end = nullptr;
        g_opt.min_time = std::strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(g_opt.min_time > 0)) {
            std::fprintf(stderr,
                         "bench_dwconv2d: --benchmark_min_time wants seconds > 0 (plain "
                         "number in Google Benchmark 1.7), got '%s'\n",
                         v);
            return false;
        }
    } else {
        g_added_flags.push_back("--benchmark_min_time=" + std::to_string(g_opt.min_time));
    }
    if (const char* v = peek_flag(*argc, argv, "benchmark_repetitions")) {
        char* end = nullptr;
        const long r = std::strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || r < 1) {
            std::fprintf(stderr, "bench_dwconv2d: --benchmark_repetitions wants >= 1, got '%s'\n",
                         v);
            return false;
        }
        g_opt.reps = static_cast<int>(r);
    } else {
        g_added_flags.push_back("--benchmark_repetitions=" + std::to_string(g_opt.reps));
    }
    return true;
}

// libgomp reads OMP_* once, when it is loaded (before main), and Halide reads HL_NUM_THREADS when
// its thread pool starts. So: set what is unset and re-execute this program once; the second
// start finds everything set and goes on.
void ensure_thread_environment(char** argv) {
    bool changed = false;
    const char* defaults[][2] = {
        {"OMP_NUM_THREADS", "2"}, {"OMP_WAIT_POLICY", "passive"}, {"HL_NUM_THREADS", "2"}};
    for (const auto& kv : defaults) {
        if (!std::getenv(kv[0])) {
            setenv(kv[0], kv[1], 0);
            changed = true;
        }
    }
    if (!changed) return;
    execv("/proc/self/exe", argv);
    std::fprintf(stderr,
                 "bench_dwconv2d: warning: could not re-execute with the thread environment "
                 "(%s); OpenMP keeps its start-up settings\n",
                 std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
    ensure_thread_environment(argv);
    if (!parse_own_flags(&argc, argv)) return 2;
    // Flags peeked before Initialize() consumes them.
    const bool list_only = is_true(peek_flag(argc, argv, "benchmark_list_tests"));
    const char* format = peek_flag(argc, argv, "benchmark_format");
    const bool console = !format || std::strcmp(format, "console") == 0;
    const char* color = peek_flag(argc, argv, "benchmark_color");
    const bool use_color = is_true(color) || (!is_false(color) && isatty(STDOUT_FILENO));
    const bool tabular = is_true(peek_flag(argc, argv, "benchmark_counters_tabular"));

    std::vector<char*> args(argv, argv + argc);
    for (std::string& f : g_added_flags) args.push_back(f.data());
    args.push_back(nullptr);
    int nargs = static_cast<int>(args.size()) - 1;
    benchmark::Initialize(&nargs, args.data(), print_help);
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return 2;

    const char* omp = std::getenv("OMP_NUM_THREADS");
    const char* hl = std::getenv("HL_NUM_THREADS");
    g_opt.threads = std::max(1, std::atoi(omp ? omp : "2"));
    if (hl && std::atoi(hl) != g_opt.threads)
        std::fprintf(stderr,
                     "bench_dwconv2d: warning: HL_NUM_THREADS=%s but OMP_NUM_THREADS=%s: "
                     "lkc and oneDNN do not use the same number of threads\n",
                     hl, omp);

    if (!list_only) {
        // Before oneDNN starts its OpenMP pool.
        g_opt.peak_gflops = lkc::bench::measure_fma_peak_gflops(g_opt.threads);
        g_opt.isa = lkc::bench::fma_peak_isa();
        std::fprintf(stderr,
                     "bench_dwconv2d: FMA peak %.1f GFLOP/s (%s, %d threads); OMP_NUM_THREADS=%s "
                     "OMP_WAIT_POLICY=%s HL_NUM_THREADS=%s; %s shapes, min_time %.3g s x %d reps\n",
                     g_opt.peak_gflops, g_opt.isa.c_str(), g_opt.threads, omp ? omp : "(unset)",
                     std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)",
                     hl ? hl : "(unset)", g_opt.shapes.c_str(), g_opt.min_time, g_opt.reps);
    }
    benchmark::AddCustomContext("lkc_fma_peak_gflops", num(g_opt.peak_gflops, 1));
    benchmark::AddCustomContext("lkc_fma_isa", g_opt.isa);
    benchmark::AddCustomContext("lkc_threads", std::to_string(g_opt.threads));
    benchmark::AddCustomContext("lkc_shapes", g_opt.shapes);

    const std::vector<lkc::Workload> grid = make_grid(g_opt.shapes == "quick");
    for (const lkc::Workload& w : grid) {
        const std::string name = lkc::to_string(w);
        for (bool is_lkc : {true, false}) {
            auto row = std::make_unique<Row>();
            row->is_lkc = is_lkc;
            row->w = w;
            row->workload = name;
            Row* r = row.get();
            g_rows.push_back(std::move(row));
            const std::string bench_name = (is_lkc ? "lkc/" : "onednn/") + name;
            benchmark::RegisterBenchmark(bench_name.c_str(),
                                         [r](benchmark::State& st) {
                                             r->is_lkc ? run_lkc_row(st, *r)
                                                       : run_onednn_row(st, *r);
                                         })
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond)
                ->DisplayAggregatesOnly(true);
        }
    }

    // Console: our median-only view. Other --benchmark_format values keep Google Benchmark's
    // reporter, and then the summary goes to stderr so stdout stays machine-readable.
    if (console) {
        int opts = benchmark::ConsoleReporter::OO_None;
        if (use_color) opts |= benchmark::ConsoleReporter::OO_Color;
        if (tabular) opts |= benchmark::ConsoleReporter::OO_Tabular;
        MedianConsoleReporter reporter(
            static_cast<benchmark::ConsoleReporter::OutputOptions>(opts));
        benchmark::RunSpecifiedBenchmarks(&reporter);
    } else {
        benchmark::RunSpecifiedBenchmarks();
    }
    g_subjects = Subjects{};

    std::vector<Result> results = collect_results();
    if (!results.empty()) {
        // The peak is a ceiling that a busy neighbour can only push down: measure it again and
        // rate the CSV and the summary against the higher of the two measurements.
        const double start_peak = g_opt.peak_gflops;
        const double end_peak = lkc::bench::measure_fma_peak_gflops(g_opt.threads);
        g_opt.peak_gflops = std::max(start_peak, end_peak);
        std::fprintf(
            stderr,
            "bench_dwconv2d: FMA peak at the end %.1f GFLOP/s (start %.1f); CSV and summary "
            "use %.1f\n",
            end_peak, start_peak, g_opt.peak_gflops);
        for (Result& r : results)
            r.pct_peak = g_opt.peak_gflops > 0 ? 100.0 * r.useful_gflops / g_opt.peak_gflops : kNaN;
        if (!g_opt.csv.empty()) {
            if (write_csv(g_opt.csv, results))
                std::fprintf(stderr, "bench_dwconv2d: wrote %zu rows to %s\n", results.size(),
                             g_opt.csv.c_str());
            else
                std::fprintf(stderr, "bench_dwconv2d: could not write %s\n", g_opt.csv.c_str());
        }
        print_summary(console ? stdout : stderr, results, grid.size());
    }
    benchmark::Shutdown();
    return 0;
}
