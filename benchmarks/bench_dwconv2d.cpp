// bench_dwconv2d: lkc's AOT depth-wise conv kernels against oneDNN 2.6 and against lkc's own
// unfused / separate / merged / dense peers, in the same process.
//
// Dense grid (the foundation issue): N {1,8} x C {128,384} x H=W {56,14} x kernel {7x7, 13x13,
// 31x31, 51x51, 51x5, 5x51, 7x7 d3} x pass {fwd, bwd_data, bwd_weight} = 168 workloads; two
// adjacent rows per workload: `lkc/<workload>` and `onednn/<workload>`.
//
// Families (issue 3), each workload's rows adjacent:
//   dwconv2d_multi   lkc/<wl> (fused), lkc_separate/<wl> (one dense lkc pass per branch + a sum
//                    pass), onednn/<wl> (one oneDNN conv per branch + sum), lkc_merged/<wl> (fwd,
//                    bwd_data: the dense lkc kernel on reparam::merge_branches' kernel)
//   dwconv2d_sparse  lkc/<wl>/d<density> (d 0.3, 0.6, 1.0), lkc_dense/<dense wl>,
//                    onednn/<dense wl> (unless the dense grid already has that row)
//   shiftwise        lkc/<wl> (fused), lkc_unfused/<wl> (materialised sub-kernel maps,
//                    benchmarks/shiftwise_unfused.h), fwd only: lkc_merged/<wl> (dense lkc kernel
//                    on reparam::shiftwise_to_cross' kernel), lkc_dense_eq/<wl> (a dense lkc kernel
//                    with the same number of taps)
// `--shapes=full` (default) runs both sets, `dense` / `families` one of them, `quick` a subset
// of each.
//
// Method (shared/reference/performance.md): 2 threads on every side, OMP_WAIT_POLICY=passive,
// objects built and warmed up outside the timed loop, every Google Benchmark iteration times
// exactly one call (manual time), medians everywhere. The first row of a workload (lkc)
// interleaves the calls of its peers with its own (alternating which goes first) and reports the
// median of the per-pair time ratios, so a noisy phase of the VM hits both sides of a pair alike.
// benchmarks/README.md has the details.
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
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "benchmarks/dense_pass.h"
#include "benchmarks/fma_peak.h"
#include "benchmarks/onednn_dwconv.h"
#include "benchmarks/shiftwise_unfused.h"
#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/op_inputs.h"
#include "runtime/op_runner.h"
#include "runtime/reparam.h"
#include "runtime/schedule_selection.h"
#include "runtime/workload.h"

namespace {

using Clock = std::chrono::steady_clock;
using lkc::Blocked;
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
// Rows with peers (lkc rows): an iteration is paired with a call of a peer if it is the first of
// the invocation or that peer's calls of this invocation took less than kPairBudget x min_time so
// far; after that the row times itself without that peer. Every repetition keeps at least one
// pair per peer, and the slow peers (oneDNN bwd_weight and dilation: 10-100x slower than lkc, up
// to ~30 s per call) cost one call per repetition.
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
    std::vector<std::string> records;  // --records=FILE (repeatable)
    bool no_records = false;           // --no-records: hand defaults only
};
Options g_opt;

bool run_dense_grid() { return g_opt.shapes != "families"; }
bool run_families() { return g_opt.shapes != "dense"; }
bool quick() { return g_opt.shapes == "quick"; }

// ---- dense grid --------------------------------------------------------------------------------

struct KernelShape {
    int kh, kw, dilation;
};
constexpr KernelShape kKernels[] = {{7, 7, 1},  {13, 13, 1}, {31, 31, 1}, {51, 51, 1},
                                    {51, 5, 1}, {5, 51, 1},  {7, 7, 3}};

// CSV `kernel`: KhxKw[d<D>] (dense, sparse), the branch list (multi), K<K>k<k>g<G> (shiftwise).
std::string kernel_label(const lkc::Workload& w) {
    auto dense = [](int kh, int kw, int d) {
        std::string s = std::to_string(kh) + "x" + std::to_string(kw);
        if (d != 1) s += "d" + std::to_string(d);
        return s;
    };
    switch (w.op) {
        case lkc::Op::DwConv2dMulti: {
            std::string s;
            for (const lkc::Branch& b : w.branches)
                s += (s.empty() ? "" : ",") + dense(b.kh, b.kw, b.dilation);
            return s;
        }
        case lkc::Op::ShiftWise:
            return "K" + std::to_string(w.big_k) + "k" + std::to_string(w.small_k) + "g" +
                   std::to_string(w.groups);
        default:
            return dense(w.kh, w.kw, w.dilation);
    }
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

lkc::bench::DwProblem::Pass to_dnn_pass(lkc::Pass pass) {
    switch (pass) {
        case lkc::Pass::Fwd:
            return lkc::bench::DwProblem::Fwd;
        case lkc::Pass::BwdData:
            return lkc::bench::DwProblem::BwdData;
        case lkc::Pass::BwdWeight:
            return lkc::bench::DwProblem::BwdWeight;
    }
    return lkc::bench::DwProblem::Fwd;
}

lkc::bench::DwProblem to_problem(const lkc::Workload& w) {
    return lkc::bench::DwProblem{
        w.n, w.c, w.h, w.w, w.kh, w.kw, w.stride, w.dilation, to_dnn_pass(w.pass)};
}

// ---- subjects: the objects under test, built lazily and shared by the rows of one group -------

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

// One implementation of one workload: a call to time and the objects behind it.
struct Subject {
    std::string detail;  // kernel variant / oneDNN implementation
    std::function<void()> run;
    std::shared_ptr<void> owner;
};
using Factory = std::function<Subject()>;  // builds, fills the inputs; throws on failure

template <class T>
Subject subject_of(std::shared_ptr<T> obj, std::string detail) {
    Subject s;
    T* p = obj.get();
    s.run = [p] { p->run(); };
    s.owner = std::move(obj);
    s.detail = std::move(detail);
    return s;
}

// The rows of one workload (dense grid) or one family instance (e.g. a multi-branch workload
// with its separate / oneDNN / merged peers; a sparse shape with its three densities and dense
// peers) share their subjects; they are freed when the run moves on to another group.
struct Group {
    std::map<std::string, Factory> factories;
};
std::vector<Group> g_groups;

struct Cached {
    bool tried = false;
    std::unique_ptr<Subject> subject;
    std::string error;
};
struct SubjectCache {
    int group = -1;
    std::map<std::string, Cached> items;
};
SubjectCache g_cache;

// The subject `key` of `group`, built (and warmed up) on first use; nullptr with *error set if it
// cannot be built.
Subject* get_subject(int group, const std::string& key, std::string* error) {
    if (g_cache.group != group) {
        g_cache.items.clear();  // frees the previous group's buffers first
        g_cache.group = group;
    }
    Cached& c = g_cache.items[key];
    if (!c.tried) {
        c.tried = true;
        try {
            auto s = std::make_unique<Subject>(g_groups.at(size_t(group)).factories.at(key)());
            warm_up(s->run);
            c.subject = std::move(s);
        } catch (const std::exception& e) {
            c.error = e.what();
        }
    }
    if (!c.subject && error) *error = c.error;
    return c.subject.get();
}

void fail_subject(int group, const std::string& key, const std::string& error) {
    if (g_cache.group != group) return;
    Cached& c = g_cache.items[key];
    c.subject.reset();
    c.error = error;
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
    std::map<std::string, double> ratios;  // peer impl -> median of per-pair row/peer time ratios
};

enum class Set { Dense, Multi, Sparse, Shift };

struct Peer {
    std::string key;   // subject key in the group
    std::string impl;  // its rows' impl (counter ratio_vs_<impl>)
};

struct Row {
    Set set = Set::Dense;
    std::string impl;      // lkc, onednn, lkc_separate, lkc_merged, lkc_dense, lkc_unfused, ...
    lkc::Workload w;       // the workload in the row name
    std::string workload;  // its canonical string
    std::string variant;   // "" or "d0.3" (sparse density)
    double density = kNaN;
    std::string exec;  // the workload the row's kernel actually runs, when it differs from w
    double useful_flops = 0, nominal_flops = 0;  // counted per call (README: Counters)
    // When set: computes (useful, nominal) on the row's first run (sparse rows: from the mask).
    std::function<std::pair<double, double>()> flops;
    int group = -1;
    std::string self;  // subject key
    std::vector<Peer> peers;
    std::string detail;  // kernel variant / oneDNN implementation
    std::vector<Invocation> invocations;

    std::string name() const {
        return impl + "/" + workload + (variant.empty() ? "" : "/" + variant);
    }
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
                       const std::vector<double>& times) {
    inv.ok = true;
    inv.median_s = median(times);
    inv.nominal_gflops = row.nominal_flops / inv.median_s * 1e-9;
    inv.useful_gflops = row.useful_flops / inv.median_s * 1e-9;
    inv.pct_peak = g_opt.peak_gflops > 0 ? 100.0 * inv.useful_gflops / g_opt.peak_gflops : kNaN;
    state.counters["median_ms"] = inv.median_s * 1e3;
    state.counters["nominal_GFLOPs"] = inv.nominal_gflops;
    state.counters["useful_GFLOPs"] = inv.useful_gflops;
    state.counters["pct_peak"] = inv.pct_peak;
    for (const auto& [impl, r] : inv.ratios) state.counters["ratio_vs_" + impl] = r;
    row.invocations.push_back(std::move(inv));
}

// Times the row's own subject; rows with peers interleave the peers' calls (see kPairBudget).
void run_row(benchmark::State& state, Row& row) {
    std::string error;
    Subject* self = get_subject(row.group, row.self, &error);
    if (!self) return skip_row(state, row, row.impl + ": " + error);
    row.detail = self->detail;
    state.SetLabel(row.detail);
    if (row.flops) {
        try {
            std::tie(row.useful_flops, row.nominal_flops) = row.flops();
        } catch (const std::exception& e) {
            return skip_row(state, row, row.impl + ": " + e.what());
        }
        row.flops = nullptr;
    }

    struct Partner {
        const Peer* peer;
        Subject* s;  // nullptr: missing or failed (no more pairing)
        double seconds = 0;
        std::vector<double> ratios;
        bool pair = false, first = false;
        double t = 0;
    };
    std::vector<Partner> partners;
    for (const Peer& p : row.peers)
        partners.push_back({&p, get_subject(row.group, p.key, nullptr)});
    auto call = [&](Partner& p) {
        try {
            p.t = time_call(p.s->run);
        } catch (const std::exception& e) {
            fail_subject(row.group, p.peer->key, e.what());  // the row's own time still counts
            p.s = nullptr;
        }
    };

    std::vector<double> times;
    times.reserve(std::min<size_t>(state.max_iterations, size_t{1} << 20));
    for (auto _ : state) {
        for (Partner& p : partners) {
            p.pair = p.s && (p.ratios.empty() || p.seconds < kPairBudget * g_opt.min_time);
            p.first = p.pair && p.ratios.size() % 2 == 1;
            p.t = 0;
        }
        for (Partner& p : partners)
            if (p.first) call(p);
        double t_self = 0;
        try {
            t_self = time_call(self->run);
        } catch (const std::exception& e) {
            error = row.impl + ": " + e.what();
            state.SkipWithError(error.c_str());
            break;
        }
        for (Partner& p : partners)
            if (p.pair && !p.first && p.s) call(p);
        state.SetIterationTime(t_self);
        times.push_back(t_self);
        for (Partner& p : partners) {
            if (p.pair && p.s) {
                p.seconds += p.t;
                p.ratios.push_back(t_self / p.t);
            }
        }
    }
    if (!error.empty()) {
        Invocation inv;
        inv.error = error;
        row.invocations.push_back(inv);
        return;
    }
    Invocation inv;
    for (const Partner& p : partners)
        if (!p.ratios.empty()) inv.ratios[p.peer->impl] = median(p.ratios);
    finish_invocation(state, row, std::move(inv), times);
}

// ---- the families' peers -----------------------------------------------------------------------

// Random floats in [-1, 1] into the real channels of a blocked buffer (padding channels stay 0).
void fill_blocked(Blocked& b, int channels, std::mt19937& g) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    b.for_each_element([&](int ci, int x, int y, int cb, int n) {
        b(ci, x, y, cb, n) = (cb * 16 + ci < channels) ? u(g) : 0.0f;
    });
}
template <class B>
void fill_plain(B& b, std::mt19937& g) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float* p = b.data(); p != b.data() + b.number_of_elements(); ++p) *p = u(g);
}

// dwconv2d_multi as separate dense lkc passes, one per branch (its dwconv2d workload, with its
// dilation), plus a sum pass: fwd y = sum_b y_b (bias in branch 0), bwd_data dx = sum_b dx_b,
// bwd_weight every branch's dense weight gradient (no sum).
class SeparateBranches {
  public:
    explicit SeparateBranches(const lkc::Workload& w) : w_(w) {
        std::mt19937 g(kSeed);
        if (w.pass != lkc::Pass::BwdData) {
            x_ = lkc::make_blocked(w.n, w.c, w.h, w.w);
            fill_blocked(x_, w.c, g);
        }
        if (w.pass != lkc::Pass::Fwd) {
            dy_ = lkc::make_blocked(w.n, w.c, w.h, w.w);
            fill_blocked(dy_, w.c, g);
        }
        for (size_t i = 0; i < w.branches.size(); ++i) {
            const lkc::Branch& b = w.branches[i];
            lkc::Workload d;
            d.op = lkc::Op::DwConv2d;
            d.pass = w.pass;
            d.n = w.n, d.c = w.c, d.h = w.h, d.w = w.w;
            d.kh = b.kh, d.kw = b.kw, d.dilation = b.dilation;
            dense_.emplace_back(d);
            wt_.emplace_back(b.kw, b.kh, 1, w.c);
            if (w.pass == lkc::Pass::BwdWeight) {
                wt_.back().fill(0.0f);
                db_.emplace_back(w.c);
            } else {
                fill_plain(wt_.back(), g);
                outs_.push_back(lkc::make_blocked(w.n, w.c, w.h, w.w));
            }
            bias_.emplace_back(w.c);
            bias_.back().fill(0.0f);
            if (i == 0 && w.pass == lkc::Pass::Fwd) fill_plain(bias_.back(), g);
        }
        if (w.pass != lkc::Pass::BwdWeight) {
            sum_ = lkc::make_blocked(w.n, w.c, w.h, w.w);
            for (Blocked& o : outs_) ptrs_.push_back(&o);
        }
    }
    void run() {
        const size_t nb = dense_.size();
        switch (w_.pass) {
            case lkc::Pass::Fwd:
                for (size_t i = 0; i < nb; ++i) dense_[i].fwd(x_, wt_[i], bias_[i], outs_[i]);
                lkc::bench::sum_blocked(ptrs_, sum_);
                break;
            case lkc::Pass::BwdData:
                for (size_t i = 0; i < nb; ++i) dense_[i].bwd_data(dy_, wt_[i], outs_[i]);
                lkc::bench::sum_blocked(ptrs_, sum_);
                break;
            case lkc::Pass::BwdWeight:
                for (size_t i = 0; i < nb; ++i) dense_[i].bwd_weight(x_, dy_, wt_[i], db_[i]);
                break;
        }
    }
    std::string detail() const {
        std::string s = std::to_string(dense_.size()) + " dense passes: ";
        for (size_t i = 0; i < dense_.size(); ++i)
            s += (i ? " + " : "") + std::string(dense_[i].kernel().name);
        return s + (w_.pass == lkc::Pass::BwdWeight ? "" : " + sum");
    }

  private:
    lkc::Workload w_;
    std::vector<lkc::bench::DenseDw> dense_;
    Blocked x_, dy_, sum_;
    std::vector<Blocked> outs_;
    std::vector<Blocked*> ptrs_;
    std::vector<lkc::bench::Weights> wt_;
    std::vector<lkc::bench::Vec> bias_, db_;
};

lkc::Workload dense_workload(const lkc::Workload& like, lkc::Pass pass, int kh, int kw) {
    lkc::Workload d;
    d.op = lkc::Op::DwConv2d;
    d.pass = pass;
    d.n = like.n, d.c = like.c, d.h = like.h, d.w = like.w;
    d.kh = kh, d.kw = kw;
    return d;
}

Factory dense_factory(const lkc::Workload& w) {
    return [w] {
        auto r = std::make_shared<lkc::DwConv2dRunner>(w, lkc::Device::Cpu);
        r->fill_random(kSeed);
        const std::string name = r->kernel().name;
        return subject_of(r, name);
    };
}
Factory onednn_factory(const lkc::Workload& w) {
    return [w] {
        auto d = std::make_shared<lkc::bench::OnednnDwconv>(to_problem(w));
        const std::string name = d->impl_name();
        return subject_of(d, name);
    };
}
// make_runner (TapsRunner, the sparse runner) with the given inputs, or fill_random.
Factory op_factory(const lkc::Workload& w, std::function<std::map<std::string, lkc::Tensor>()> in) {
    return [w, in] {
        std::shared_ptr<lkc::OpRunner> r = lkc::make_runner(w, lkc::Device::Cpu);
        if (in) {
            r->set_inputs(in());
        } else {
            r->fill_random(kSeed);
        }
        const std::string name = r->kernel_name();
        return subject_of(r, name);
    };
}
// The dense lkc kernel on given file-layout inputs (merged kernels); detail names the workload.
Factory dense_with_inputs(const lkc::Workload& d,
                          std::function<std::map<std::string, lkc::Tensor>()> in) {
    return [d, in] {
        auto r = std::make_shared<lkc::DwConv2dRunner>(d, lkc::Device::Cpu);
        r->set_inputs(in());
        const std::string name = std::string(r->kernel().name) + " on " + lkc::to_string(d);
        return subject_of(r, name);
    };
}

// The dense kernel with as many taps as a shift-wise op's equivalent kernels
// (2 * k * nk*k + k*k): the examples (63x5 for nk = 17, 27x11 for 16, 9x11 for 5), else
// the most elongated odd factorisation with both extents <= 63.
std::pair<int, int> equal_taps_kernel(const lkc::Workload& sw) {
    const int k = sw.small_k, nk = sw.num_sub_kernels();
    const int taps = 2 * k * nk * k + k * k;
    if (k == 3 && nk == 17) return {63, 5};
    if (k == 3 && nk == 16) return {27, 11};
    if (k == 3 && nk == 5) return {9, 11};
    for (int a = 63; a >= 1; a -= 2)
        if (taps % a == 0 && (taps / a) % 2 == 1 && taps / a <= 63) return {a, taps / a};
    return {0, 0};
}

// Exact FLOPs of a masked (sparse) kernel: 2*N per (channel, listed tap, output pixel), over all
// output pixels (nominal) or over those where the tap reads inside the input (useful).
std::pair<double, double> masked_flops(const lkc::Workload& w, const std::vector<uint8_t>& mask) {
    const int oh = w.out_h(), ow = w.out_w(), d = w.dilation, s = w.stride;
    const int ph = d * (w.kh - 1) / 2, pw = d * (w.kw - 1) / 2;
    auto inside = [&](int u, int out, int in, int pad) {
        int n = 0;
        for (int i = 0; i < out; ++i) {
            const int p = i * s + u * d - pad;
            n += p >= 0 && p < in;
        }
        return n;
    };
    std::vector<int> rows(size_t(w.kh)), cols(size_t(w.kw));
    for (int u = 0; u < w.kh; ++u) rows[size_t(u)] = inside(u, oh, w.h, ph);
    for (int v = 0; v < w.kw; ++v) cols[size_t(v)] = inside(v, ow, w.w, pw);
    double useful = 0, nominal = 0;
    for (int c = 0; c < w.c; ++c)
        for (int u = 0; u < w.kh; ++u)
            for (int v = 0; v < w.kw; ++v)
                if (mask[(size_t(c) * w.kh + u) * w.kw + v]) {
                    useful += double(rows[size_t(u)]) * cols[size_t(v)];
                    nominal += double(oh) * ow;
                }
    return {2.0 * w.n * useful, 2.0 * w.n * nominal};
}

// ---- registration ------------------------------------------------------------------------------

std::set<std::string> g_row_names;

Row* add_row(Set set, const std::string& impl, const lkc::Workload& w, int group,
             const std::string& self, std::vector<Peer> peers = {}) {
    auto row = std::make_unique<Row>();
    row->set = set;
    row->impl = impl;
    row->w = w;
    row->workload = lkc::to_string(w);
    row->useful_flops = w.useful_flops();
    row->nominal_flops = w.nominal_flops();
    row->group = group;
    row->self = self;
    row->peers = std::move(peers);
    Row* r = row.get();
    g_rows.push_back(std::move(row));
    return r;
}

int new_group() {
    g_groups.emplace_back();
    return int(g_groups.size()) - 1;
}

void add_dense_grid(const std::vector<lkc::Workload>& grid) {
    for (const lkc::Workload& w : grid) {
        const int g = new_group();
        g_groups[size_t(g)].factories["lkc"] = dense_factory(w);
        g_groups[size_t(g)].factories["onednn"] = onednn_factory(w);
        add_row(Set::Dense, "lkc", w, g, "lkc", {{"onednn", "onednn"}});
        add_row(Set::Dense, "onednn", w, g, "onednn");
    }
}

const lkc::Pass kPasses[] = {lkc::Pass::Fwd, lkc::Pass::BwdData, lkc::Pass::BwdWeight};

std::string with_pass(const char* fmt, lkc::Pass pass) {
    char buf[256];
    std::snprintf(buf, sizeof buf, fmt, lkc::pass_name(pass));
    return buf;
}

void add_multi(bool q) {
    // SLaK strips, RepLKNet large + small, UniRepLKNet's dilated reparam block.
    const std::vector<const char*> kernels =
        q ? std::vector<const char*>{"b51x5d1,5x51d1,5x5d1"}
          : std::vector<const char*>{"b51x5d1,5x51d1,5x5d1", "b31x31d1,5x5d1",
                                     "b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,3x3d5"};
    const std::vector<const char*> shapes =
        q ? std::vector<const char*>{"n1c128h56w56"}
          : std::vector<const char*>{"n1c128h56w56", "n1c128h14w14", "n8c128h14w14"};
    for (lkc::Pass pass : kPasses)
        for (const char* shape : shapes)
            for (const char* k : kernels) {
                const lkc::Workload w = lkc::parse_workload(
                    with_pass((std::string("dwconv2d_multi:%s:") + shape + ":" + k).c_str(), pass));
                const int g = new_group();
                auto& f = g_groups[size_t(g)].factories;
                f["lkc"] = op_factory(w, nullptr);
                f["lkc_separate"] = [w] {
                    auto s = std::make_shared<SeparateBranches>(w);
                    const std::string d = s->detail();
                    return subject_of(s, d);
                };
                f["onednn"] = [w] {
                    std::vector<lkc::bench::DwBranch> br;
                    for (const lkc::Branch& b : w.branches) br.push_back({b.kh, b.kw, b.dilation});
                    auto d = std::make_shared<lkc::bench::OnednnMultiDw>(w.n, w.c, w.h, w.w, br,
                                                                         to_dnn_pass(w.pass));
                    const std::string name = d->impl_name();
                    return subject_of(d, name);
                };
                std::vector<Peer> peers = {{"lkc_separate", "lkc_separate"}, {"onednn", "onednn"}};
                lkc::Workload merged;
                if (pass != lkc::Pass::BwdWeight) {
                    int kh = 1, kw = 1;
                    for (const lkc::Branch& b : w.branches) {
                        kh = std::max(kh, (b.kh - 1) * b.dilation + 1);
                        kw = std::max(kw, (b.kw - 1) * b.dilation + 1);
                    }
                    merged = dense_workload(w, pass, kh, kw);
                    f["lkc_merged"] = dense_with_inputs(merged, [w] {
                        const auto in = lkc::make_example_inputs(w, kSeed);
                        std::vector<lkc::reparam::Branch> br;
                        for (size_t i = 0; i < w.branches.size(); ++i)
                            br.push_back({in.at("w" + std::to_string(i)), lkc::Tensor(),
                                          w.branches[i].dilation});
                        const lkc::reparam::ConvParams m = lkc::reparam::merge_branches(br);
                        std::map<std::string, lkc::Tensor> out{{"w", m.w}};
                        if (w.pass == lkc::Pass::Fwd) {
                            out["x"] = in.at("x");
                            out["b"] = m.b;
                        } else {
                            out["dy"] = in.at("dy");
                        }
                        return out;
                    });
                    peers.push_back({"lkc_merged", "lkc_merged"});
                }
                add_row(Set::Multi, "lkc", w, g, "lkc", peers);
                add_row(Set::Multi, "lkc_separate", w, g, "lkc_separate");
                add_row(Set::Multi, "onednn", w, g, "onednn");
                if (pass != lkc::Pass::BwdWeight) {
                    Row* r = add_row(Set::Multi, "lkc_merged", w, g, "lkc_merged");
                    r->exec = lkc::to_string(merged);
                }
            }
}

void add_sparse(bool q) {
    const std::vector<std::pair<int, int>> kernels =
        q ? std::vector<std::pair<int, int>>{{31, 31}}
          : std::vector<std::pair<int, int>>{{31, 31}, {51, 51}, {51, 5}};
    const std::vector<const char*> shapes =
        q ? std::vector<const char*>{"n1c128h56w56"}
          : std::vector<const char*>{"n1c128h56w56", "n1c128h14w14"};
    const std::vector<double> densities =
        q ? std::vector<double>{0.3} : std::vector<double>{0.3, 0.6, 1.0};
    for (lkc::Pass pass : kPasses)
        for (const char* shape : shapes)
            for (const auto& [kh, kw] : kernels) {
                const std::string kern = "k" + std::to_string(kh) + "x" + std::to_string(kw);
                const lkc::Workload ws = lkc::parse_workload(with_pass(
                    (std::string("dwconv2d_sparse:%s:") + shape + ":" + kern).c_str(), pass));
                const lkc::Workload wd = lkc::parse_workload(
                    with_pass((std::string("dwconv2d:%s:") + shape + ":" + kern).c_str(), pass));
                const int g = new_group();
                auto& f = g_groups[size_t(g)].factories;
                f["lkc_dense"] = dense_factory(wd);
                f["onednn"] = onednn_factory(wd);
                for (double d : densities) {
                    char v[16];
                    std::snprintf(v, sizeof v, "d%.1f", d);
                    f[v] = op_factory(
                        ws, [ws, d] { return lkc::make_example_inputs(ws, kSeed, false, d); });
                    Row* r = add_row(Set::Sparse, "lkc", ws, g, v,
                                     {{"lkc_dense", "lkc_dense"}, {"onednn", "onednn"}});
                    r->variant = v;
                    r->density = d;
                    r->flops = [ws, d]() -> std::pair<double, double> {
                        const auto in = lkc::make_example_inputs(ws, kSeed, false, d);
                        return masked_flops(ws, lkc::read_mask(ws, in.at("mask")));
                    };
                }
                add_row(Set::Sparse, "lkc_dense", wd, g, "lkc_dense");
                // The dense grid's row of the same workload, when it runs, is the same peer.
                if (!g_row_names.count("onednn/" + lkc::to_string(wd)))
                    add_row(Set::Sparse, "onednn", wd, g, "onednn");
            }
}

void add_shiftwise(bool q) {
    // ShiftwiseConv-T's four stages (rep channels): c, H=W, K.
    struct Stage {
        int c, hw, k;
    };
    const std::vector<Stage> stages =
        q ? std::vector<Stage>{{60, 56, 51}}
          : std::vector<Stage>{{60, 56, 51}, {122, 28, 49}, {246, 14, 47}, {492, 7, 13}};
    for (lkc::Pass pass : kPasses)
        for (const Stage& st : stages) {
            char buf[128];
            std::snprintf(buf, sizeof buf, "shiftwise:%s:n1c%dh%dw%d:K%dk3g4", lkc::pass_name(pass),
                          st.c, st.hw, st.hw, st.k);
            const lkc::Workload w = lkc::parse_workload(buf);
            const int g = new_group();
            auto& f = g_groups[size_t(g)].factories;
            f["lkc"] = op_factory(w, nullptr);
            f["lkc_unfused"] = [w] {
                auto u = std::make_shared<lkc::bench::ShiftwiseUnfused>(w);
                u->fill_random(kSeed);
                const std::string d = u->detail();
                return subject_of(u, d);
            };
            std::vector<Peer> peers = {{"lkc_unfused", "lkc_unfused"}};
            lkc::Workload merged, eq;
            if (pass == lkc::Pass::Fwd) {
                // The inference form y = ah*yh + av*yv + as*ys + b + x as one centred S x S kernel.
                const int mid = w.big_k / 2, reach = w.num_sub_kernels() * w.small_k - 1 - mid;
                const int s = 2 * std::max(mid, reach) + 1;
                merged = dense_workload(w, pass, s, s);
                f["lkc_merged"] = dense_with_inputs(merged, [w] {
                    const auto in = lkc::make_example_inputs(w, kSeed, false, 0.5, true);
                    const lkc::reparam::ConvParams m = lkc::reparam::shiftwise_to_cross(
                        in.at("w"), in.at("slot_h"), in.at("slot_v"), in.at("ident"), w.big_k,
                        in.at("ah"), in.at("av"), in.at("as"), in.at("b"));
                    return std::map<std::string, lkc::Tensor>{
                        {"x", in.at("x")}, {"w", m.w}, {"b", m.b}};
                });
                const auto [kh, kw] = equal_taps_kernel(w);
                eq = dense_workload(w, pass, kh, kw);
                f["lkc_dense_eq"] = [eq] {
                    auto r = std::make_shared<lkc::DwConv2dRunner>(eq, lkc::Device::Cpu);
                    r->fill_random(kSeed);
                    const std::string name =
                        std::string(r->kernel().name) + " on " + lkc::to_string(eq);
                    return subject_of(r, name);
                };
                peers.push_back({"lkc_merged", "lkc_merged"});
                peers.push_back({"lkc_dense_eq", "lkc_dense_eq"});
            }
            add_row(Set::Shift, "lkc", w, g, "lkc", peers);
            add_row(Set::Shift, "lkc_unfused", w, g, "lkc_unfused");
            if (pass == lkc::Pass::Fwd) {
                Row* m = add_row(Set::Shift, "lkc_merged", w, g, "lkc_merged");
                m->exec = lkc::to_string(merged);
                Row* e = add_row(Set::Shift, "lkc_dense_eq", w, g, "lkc_dense_eq");
                e->exec = lkc::to_string(eq);
                e->useful_flops = eq.useful_flops();  // its own taps: the per-tap comparison
                e->nominal_flops = eq.nominal_flops();
            }
        }
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
    std::map<std::string, double> ratios;  // peer impl -> median over repetitions
    double ratio(const std::string& impl) const {
        auto it = ratios.find(impl);
        return it == ratios.end() ? kNaN : it->second;
    }
};

// Medians over the reported repetitions (the last `reps` invocations), as Google Benchmark's
// `_median` aggregate computes them from the per-repetition counters.
std::vector<Result> collect_results() {
    std::vector<Result> out;
    for (const auto& row : g_rows) {
        if (row->invocations.empty()) continue;  // filtered out
        const size_t k = std::min<size_t>(row->invocations.size(), static_cast<size_t>(g_opt.reps));
        std::vector<double> t, nom, use, pct;
        std::map<std::string, std::vector<double>> ratio;
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
            for (const auto& [impl, r] : inv.ratios)
                if (!std::isnan(r)) ratio[impl].push_back(r);
        }
        res.ok = !t.empty();
        res.median_ms = median(t);
        res.nominal_gflops = median(nom);
        res.useful_gflops = median(use);
        res.pct_peak = median(pct);
        for (const auto& [impl, v] : ratio) res.ratios[impl] = median(v);
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
             "ratio_vs_onednn,impl_detail,peak_gflops,op,variant,exec_workload,paired_ratios\n";
        for (const Result& r : results) {
            const Row& row = *r.row;
            const std::string detail = r.ok ? row.detail : "ERROR: " + r.error;
            std::string paired;
            for (const auto& [impl, v] : r.ratios)
                paired += (paired.empty() ? "" : ";") + impl + "=" + num(v, 4);
            f << row.impl << ',' << csv_field(row.workload) << ',' << lkc::pass_name(row.w.pass)
              << ',' << csv_field(kernel_label(row.w)) << ',' << row.w.n << ',' << row.w.c << ','
              << row.w.h << ',' << row.w.w << ',' << num(r.median_ms, 4) << ','
              << num(r.nominal_gflops, 2) << ',' << num(r.useful_gflops, 2) << ','
              << num(r.pct_peak, 2) << ',' << num(r.ratio("onednn"), 4) << ',' << csv_field(detail)
              << ',' << num(g_opt.peak_gflops, 1) << ',' << lkc::op_name(row.w.op) << ','
              << row.variant << ',' << csv_field(row.exec) << ',' << paired << '\n';
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
        if (std::isnan(v)) return;
        ++count;
        if (std::isnan(value) || (want_min ? v < value : v > value)) {
            value = v;
            where = w;
        }
    }
};

const char* verdict(bool measured, bool pass) { return !measured ? "n/a" : pass ? "PASS" : "MISS"; }

void print_dense_summary(FILE* out, const std::vector<Result>& results, size_t grid_workloads) {
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
        if (row.set != Set::Dense || row.impl != "lkc") continue;
        const int p = static_cast<int>(row.w.pass);
        if (!r.ok) {
            ++lkc_errors;
            continue;
        }
        const double ratio = r.ratio("onednn");
        if (!std::isnan(ratio)) {
            log_sum[p] += std::log(ratio);
            ++ratio_count[p];
            if (row.w.dilation == 1) {
                log_sum_d1[p] += std::log(ratio);
                ++ratio_count_d1[p];
            }
        }
        const int taps = row.w.kh * row.w.kw;
        if (row.w.pass == lkc::Pass::Fwd && row.w.h == 56 && row.w.w == 56 && taps >= 13 * 13 &&
            row.w.dilation == 1)
            fwd_pct.take(r.pct_peak, row.workload, true);
        if (row.w.pass == lkc::Pass::BwdWeight && taps >= 7 * 7)
            bwdw_gflops.take(r.useful_gflops, row.workload, true);
        if (row.w.dilation == 3 && row.w.kh == 7 && row.w.kw == 7 && !std::isnan(ratio)) {
            dil_speedup[p].take(1.0 / ratio, row.workload, true);
            dil_log_sum[p] += -std::log(ratio);
        }
    }

    std::vector<std::string> measured;
    for (const Result& r : results)
        if (r.row->set == Set::Dense) measured.push_back(r.row->workload);
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

// Issue 3: per-workload tables of the families and the verdicts against the targets.
void print_families_summary(FILE* out, const std::vector<Result>& results) {
    // Look-up of a row's result by (impl, workload string, variant).
    std::map<std::tuple<std::string, std::string, std::string>, const Result*> by;
    for (const Result& r : results) by[{r.row->impl, r.row->workload, r.row->variant}] = &r;
    auto find = [&](const std::string& impl, const std::string& wl,
                    const std::string& variant = "") -> const Result* {
        auto it = by.find({impl, wl, variant});
        return it != by.end() && it->second->ok ? it->second : nullptr;
    };
    auto fwd_of = [](const lkc::Workload& w) {
        lkc::Workload f = w;
        f.pass = lkc::Pass::Fwd;
        return lkc::to_string(f);
    };
    // Shortened workload for the tables: drop ":f32".
    auto shortwl = [](std::string s) {
        const size_t p = s.rfind(":f32");
        if (p != std::string::npos && p + 4 == s.size()) s.resize(p);
        return s;
    };
    auto cell = [](double v, int prec) { return std::isnan(v) ? std::string("-") : num(v, prec); };

    int lkc_rows = 0, lkc_errors = 0;
    for (const Result& r : results)
        if (r.row->set != Set::Dense && r.row->impl == "lkc") {
            ++lkc_rows;
            lkc_errors += !r.ok;
        }
    if (!lkc_rows) return;

    Extreme multi_sep, slak_pct, sw_unfused, sw_tap;
    double multi_log = 0;
    std::map<std::string, Extreme> sparse_goal;  // "<pass> d<d>" -> max of ratio / goal
    std::map<std::string, Extreme> sparse_ratio;
    std::map<std::string, double> sparse_goal_value;
    std::map<std::string, Extreme> bwd_fwd;  // "<op> <pass>" -> max bwd/fwd time

    std::fflush(stdout);
    std::fprintf(out,
                 "\n== bench_dwconv2d summary, issue 3 families (%s shapes): %d lkc rows measured "
                 "==\n",
                 g_opt.shapes.c_str(), lkc_rows);
    std::fprintf(out,
                 "ratios /peer = lkc time / peer time, median of interleaved pairs (< 1: lkc "
                 "faster); bwd/fwd = ratio of the lkc rows' median times; %%peak = useful "
                 "GFLOP/s / %.1f\n",
                 g_opt.peak_gflops);
    if (lkc_errors) std::fprintf(out, "lkc rows that failed (SkipWithError): %d\n", lkc_errors);

    auto has = [&](Set set) {
        for (const Result& r : results)
            if (r.row->set == set && r.row->impl == "lkc") return true;
        return false;
    };
    // dwconv2d_multi
    if (has(Set::Multi))
        std::fprintf(out, "\n%-78s %9s %6s %9s %8s %8s %8s\n", "dwconv2d_multi", "lkc ms", "%peak",
                     "/separate", "/onednn", "/merged", "bwd/fwd");
    for (const Result& r : results) {
        const Row& row = *r.row;
        if (row.set != Set::Multi || row.impl != "lkc") continue;
        double bf = kNaN;
        if (row.w.pass != lkc::Pass::Fwd)
            if (const Result* f = find("lkc", fwd_of(row.w)); f && r.ok)
                bf = r.median_ms / f->median_ms;
        std::fprintf(out, "%-78s %9s %6s %9s %8s %8s %8s\n", shortwl(row.workload).c_str(),
                     r.ok ? cell(r.median_ms, 3).c_str() : "ERROR", cell(r.pct_peak, 1).c_str(),
                     cell(r.ratio("lkc_separate"), 3).c_str(), cell(r.ratio("onednn"), 3).c_str(),
                     cell(r.ratio("lkc_merged"), 3).c_str(), cell(bf, 2).c_str());
        if (!r.ok) continue;
        if (row.w.pass == lkc::Pass::Fwd) {
            const double sep = r.ratio("lkc_separate");
            if (!std::isnan(sep)) multi_log += std::log(sep);
            multi_sep.take(sep, row.workload, false);
            const bool slak = row.w.branches.size() == 3 && row.w.branches[0].kh == 51 &&
                              row.w.branches[0].kw == 5 && row.w.branches[1].kh == 5 &&
                              row.w.branches[1].kw == 51 && row.w.branches[2].kh == 5 &&
                              row.w.branches[2].kw == 5;
            if (slak && row.w.h == 56 && row.w.w == 56)
                slak_pct.take(r.pct_peak, row.workload, true);
        } else {
            bwd_fwd[std::string("dwconv2d_multi ") + lkc::pass_name(row.w.pass)].take(
                bf, row.workload, false);
        }
    }

    // dwconv2d_sparse
    if (has(Set::Sparse))
        std::fprintf(out, "\n%-78s %9s %8s %8s %8s %8s\n", "dwconv2d_sparse (density)", "lkc ms",
                     "/dense", "goal", "/onednn", "bwd/fwd");
    for (const Result& r : results) {
        const Row& row = *r.row;
        if (row.set != Set::Sparse || row.impl != "lkc") continue;
        const double goal = 1.2 * row.density + 0.05;
        const double rd = r.ratio("lkc_dense");
        double bf = kNaN;
        if (row.w.pass != lkc::Pass::Fwd)
            if (const Result* f = find("lkc", fwd_of(row.w), row.variant); f && r.ok)
                bf = r.median_ms / f->median_ms;
        std::fprintf(out, "%-78s %9s %8s %8s %8s %8s\n",
                     (shortwl(row.workload) + " " + row.variant).c_str(),
                     r.ok ? cell(r.median_ms, 3).c_str() : "ERROR", cell(rd, 3).c_str(),
                     row.density < 1.0 ? ("<=" + num(goal, 2)).c_str() : "-",
                     cell(r.ratio("onednn"), 3).c_str(), cell(bf, 2).c_str());
        if (!r.ok) continue;
        if (row.density < 1.0) {
            const std::string key = std::string(lkc::pass_name(row.w.pass)) + " " + row.variant;
            sparse_goal[key].take(rd / goal, row.workload, false);
            sparse_ratio[key].take(rd, row.workload, false);
            sparse_goal_value[key] = goal;
        }
        if (row.w.pass != lkc::Pass::Fwd)
            bwd_fwd[std::string("dwconv2d_sparse ") + lkc::pass_name(row.w.pass)].take(
                bf, row.workload + " " + row.variant, false);
    }

    // shiftwise
    if (has(Set::Shift))
        std::fprintf(out, "\n%-78s %9s %6s %9s %8s %9s %8s %8s\n", "shiftwise", "lkc ms", "%peak",
                     "/unfused", "/merged", "/dense_eq", "tap/deq", "bwd/fwd");
    for (const Result& r : results) {
        const Row& row = *r.row;
        if (row.set != Set::Shift || row.impl != "lkc") continue;
        double bf = kNaN, tap = kNaN;
        if (row.w.pass != lkc::Pass::Fwd) {
            if (const Result* f = find("lkc", fwd_of(row.w)); f && r.ok)
                bf = r.median_ms / f->median_ms;
        } else if (const Result* e = find("lkc_dense_eq", row.workload)) {
            // Per useful tap: (t_sw / U_sw) / (t_eq / U_eq) from the paired time ratio.
            tap = r.ratio("lkc_dense_eq") * e->row->useful_flops / row.useful_flops;
        }
        std::fprintf(
            out, "%-78s %9s %6s %9s %8s %9s %8s %8s\n", shortwl(row.workload).c_str(),
            r.ok ? cell(r.median_ms, 3).c_str() : "ERROR", cell(r.pct_peak, 1).c_str(),
            cell(r.ratio("lkc_unfused"), 3).c_str(), cell(r.ratio("lkc_merged"), 3).c_str(),
            cell(r.ratio("lkc_dense_eq"), 3).c_str(), cell(tap, 3).c_str(), cell(bf, 2).c_str());
        if (!r.ok) continue;
        if (row.w.pass == lkc::Pass::Fwd) {
            sw_unfused.take(1.0 / r.ratio("lkc_unfused"), row.workload, true);
            sw_tap.take(tap, row.workload, false);
        } else {
            bwd_fwd[std::string("shiftwise ") + lkc::pass_name(row.w.pass)].take(bf, row.workload,
                                                                                 false);
        }
    }

    std::fprintf(out, "\n%-78s %9s %9s %8s  %s\n", "target", "measured", "goal", "verdict",
                 "worst workload (rows covered)");
    auto line = [&](const std::string& what, const Extreme& e, bool pass, const std::string& goal,
                    int prec, const char* unit) {
        const bool have = e.count > 0;
        std::fprintf(out, "%-78s %8s%s %9s %8s  %s (%d)\n", what.c_str(),
                     have ? num(e.value, prec).c_str() : "-", have ? unit : " ", goal.c_str(),
                     verdict(have, pass), have ? e.where.c_str() : "-", e.count);
    };
    line("multi fwd: lkc / separate passes, max (geomean " +
             (multi_sep.count ? num(std::exp(multi_log / multi_sep.count), 3) : "-") + ")",
         multi_sep, multi_sep.value <= 0.6, "<= 0.60", 3, " ");
    line("multi fwd SLaK 51x5+5x51+5x5 56x56: min % of peak (useful)", slak_pct,
         slak_pct.value >= 60.0, ">= 60 %", 1, "%");
    for (lkc::Pass pass : kPasses)
        for (const char* d : {"d0.3", "d0.6"}) {
            const std::string key = std::string(lkc::pass_name(pass)) + " " + d;
            const Extreme& e = sparse_ratio[key];
            const double goal = sparse_goal_value.count(key) ? sparse_goal_value[key] : kNaN;
            line("sparse " + key + ": lkc / lkc dense, max", e,
                 sparse_goal[key].count && sparse_goal[key].value <= 1.0,
                 "<= " + (std::isnan(goal) ? std::string("1.2d+.05") : num(goal, 2)), 3, " ");
        }
    line("shiftwise fwd: min speed-up vs unfused", sw_unfused, sw_unfused.value >= 5.0, ">= 5x", 1,
         "x");
    line("shiftwise fwd: per-useful-tap time / dense equal taps, max", sw_tap, sw_tap.value <= 1.3,
         "<= 1.30", 2, " ");
    for (const char* op : {"dwconv2d_multi", "dwconv2d_sparse", "shiftwise"})
        for (lkc::Pass pass : {lkc::Pass::BwdData, lkc::Pass::BwdWeight}) {
            const std::string key = std::string(op) + " " + lkc::pass_name(pass);
            const Extreme& e = bwd_fwd[key];
            line(key + ": bwd / fwd time, max", e, e.value <= 1.5, "<= 1.50", 2, " ");
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
        "bench_dwconv2d: lkc depth-wise conv kernels vs oneDNN and lkc's unfused peers (same\n"
        "process, 2 threads)\n"
        "  --shapes=SET          full (default): the dense grid (168 workloads) and the issue-3\n"
        "                        families; dense: the grid only; families: the families only\n"
        "                        (dwconv2d_multi, dwconv2d_sparse, shiftwise); quick: N1 C128\n"
        "                        56x56 {7x7, 31x31, 7x7 d3} x 3 passes plus one workload per "
        "family\n"
        "  --csv=FILE            per-row results (default bench_dwconv2d.csv; --csv= disables)\n"
        "  --records=FILE        tuning records the lkc kernels are chosen from (repeatable;\n"
        "                        default: the built-in tables of schedules/tuned/ only)\n"
        "  --no-records          hand-default kernels only (the detail column says which ran)\n"
        "  Google Benchmark defaults changed here: --benchmark_min_time=%g (timed seconds per\n"
        "  repetition per row), --benchmark_repetitions=%d (medians over repetitions reported)\n"
        "Rows: <impl>/<workload>[/d<density>]; select with --benchmark_filter=REGEX.\n"
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
            if (g_opt.shapes != "full" && g_opt.shapes != "quick" && g_opt.shapes != "dense" &&
                g_opt.shapes != "families") {
                std::fprintf(stderr,
                             "bench_dwconv2d: --shapes must be full, quick, dense or families, "
                             "got '%s'\n",
                             v);
                return false;
            }
        } else if (const char* csv = value("--csv=")) {
            g_opt.csv = csv;
        } else if (const char* rec = value("--records=")) {
            g_opt.records.push_back(rec);
        } else if (a == "--no-records") {
            g_opt.no_records = true;
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

    // Kernel choice: the built-in tuned tables plus --records files (never the user's own cache
    // file implicitly: a benchmark says what it ran from).
    if (g_opt.no_records) {
        lkc::disable_schedules();
    } else {
        lkc::use_schedules(g_opt.records.empty() ? std::vector<std::string>{"none"} : g_opt.records);
        for (const std::string& p : lkc::schedule_problems())
            std::fprintf(stderr, "bench_dwconv2d: tuning records: skipped %s\n", p.c_str());
        std::string src;
        for (const std::string& s : lkc::schedule_sources()) src += (src.empty() ? "" : ", ") + s;
        std::fprintf(stderr, "bench_dwconv2d: kernel choice from %s\n",
                     src.empty() ? "hand defaults (no tuned tables)" : src.c_str());
    }
    benchmark::AddCustomContext("lkc_records", g_opt.no_records ? "none" : "tables");

    std::vector<lkc::Workload> grid;
    if (run_dense_grid()) {
        grid = make_grid(quick());
        add_dense_grid(grid);
    }
    for (const auto& row : g_rows) g_row_names.insert(row->name());
    if (run_families()) {
        add_multi(quick());
        add_sparse(quick());
        add_shiftwise(quick());
    }
    for (const auto& row : g_rows) {
        Row* r = row.get();
        const std::string bench_name = r->name();
        benchmark::RegisterBenchmark(bench_name.c_str(),
                                     [r](benchmark::State& st) { run_row(st, *r); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->DisplayAggregatesOnly(true);
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
    g_cache = SubjectCache{};

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
        FILE* out = console ? stdout : stderr;
        if (run_dense_grid()) print_dense_summary(out, results, grid.size());
        if (run_families()) print_families_summary(out, results);
    }
    benchmark::Shutdown();
    return 0;
}
