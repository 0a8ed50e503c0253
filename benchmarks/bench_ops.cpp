// lkc's whole-network op kernels (runtime/ops.h) against oneDNN 2.6 in the same process, fp32,
// 2 threads on every side.
//
// Rows (Google Benchmark, manual time = the lkc call):
//   gemm/<shape>[:gelu|:scale_res]   1x1 conv / Linear at the models' shapes (RepLKNet-31B,
//       SLaK-T, UniRepLKNet-T MLPs, batch 1 and 8), with the fused epilogues of ConvNeXt-style
//       blocks; peers: oneDNN matmul (src [N*H*W, Ci] row-major = channels-last, weights `any`)
//       and oneDNN 1x1 convolution (all formats `any`: oneDNN picks nChw16c), each with the same
//       post-ops (eltwise gelu_erf, binary_mul per channel, sum).
//   conv/<shape>   stems and down-sampling convs; peer: oneDNN convolution, formats `any`.
//   op/<name>      memory-bound ops (LayerNorm, GELU, add, BatchNorm affine, GRN, pool), GB/s.
// Each iteration times the lkc call, then the peers' calls (alternating which goes first), so a
// neighbour's load phases hit all of them alike; ratios are medians of the per-iteration pairs.
// The FMA peak is measured at start and at the end (both printed: a drop means the machine was
// busy), with the load average.
//
// Own flags: --shapes=full|quick (quick: the three issue shapes at batch 1).
// Defaults differ from Google Benchmark's: --benchmark_min_time=0.2 --benchmark_repetitions=3.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "benchmarks/fma_peak.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "runtime/ops.h"

namespace {

using dnnl::memory;
using lkc::ops::BlockedTensor;
using Tag = memory::format_tag;

struct Options {
    std::string shapes = "full";
    double peak_start = 0, peak_end = 0;
    double peak_1t = 0;  // one thread, at start: 2 threads should give ~2x on an idle machine
    std::string load_start, load_end;
} g_opt;

std::string loadavg() {
    std::ifstream f("/proc/loadavg");
    std::string a, b, c;
    f >> a >> b >> c;
    return a + " " + b + " " + c;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds(const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

lkc::Tensor random_tensor(const lkc::Shape& s, uint32_t seed, float scale = 1.0f) {
    lkc::Tensor t(lkc::DType::F32, s);
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(g);
    return t;
}

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
    std::vector<float> v(n);
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    for (float& x : v) x = u(g);
    return v;
}

// ---- oneDNN peers ------------------------------------------------------------------------------

struct Onednn {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    dnnl::primitive prim;
    std::unordered_map<int, memory> args;
    std::string impl;
    void run() {
        prim.execute(strm, args);
        strm.wait();
    }
    // A memory of desc md filled by reordering random data from the plain desc `plain`.
    memory filled(const memory::desc& md, const memory::desc& plain, uint32_t seed, float scale) {
        memory m(md, eng);
        std::vector<float> v = random_vector(plain.get_size() / sizeof(float), seed, scale);
        memory user(plain, eng, v.data());
        dnnl::reorder(user, m).execute(strm, user, m);
        strm.wait();
        return m;
    }
};

enum class Epi { None, Gelu, ScaleRes };

dnnl::primitive_attr epilogue_attr(Epi e, const memory::desc& scale_md) {
    dnnl::primitive_attr attr;
    dnnl::post_ops po;
    if (e == Epi::Gelu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
    if (e == Epi::ScaleRes) {
        po.append_binary(dnnl::algorithm::binary_mul, scale_md);
        po.append_sum(1.0f);
    }
    attr.set_post_ops(po);
    return attr;
}

std::unique_ptr<Onednn> onednn_matmul(int m, int k, int n, Epi e) {
    auto p = std::make_unique<Onednn>();
    const auto f32 = memory::data_type::f32;
    const memory::desc src({m, k}, f32, Tag::ab), dst({m, n}, f32, Tag::ab);
    const memory::desc wei_any({k, n}, f32, Tag::any), wei_plain({k, n}, f32, Tag::ab);
    const memory::desc bias({1, n}, f32, Tag::ab), scale({1, n}, f32, Tag::ab);
    dnnl::matmul::desc d(src, wei_any, bias, dst);
    dnnl::matmul::primitive_desc pd(d, epilogue_attr(e, scale), p->eng);
    p->prim = dnnl::matmul(pd);
    p->impl = pd.impl_info_str();
    p->args[DNNL_ARG_SRC] = p->filled(src, src, 1, 1.0f);
    p->args[DNNL_ARG_WEIGHTS] = p->filled(pd.weights_desc(), wei_plain, 2, 0.05f);
    p->args[DNNL_ARG_BIAS] = p->filled(bias, bias, 3, 0.1f);
    p->args[DNNL_ARG_DST] = p->filled(dst, dst, 4, 0.1f);
    if (e == Epi::ScaleRes) {
        p->args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
            p->filled(scale, scale, 5, 1e-3f);
    }
    return p;
}

std::unique_ptr<Onednn> onednn_conv(int nb, int ci, int co, int h, int w, int kh, int kw, int s,
                                    int pad, Epi e) {
    auto p = std::make_unique<Onednn>();
    const auto f32 = memory::data_type::f32;
    const int oh = (h + 2 * pad - kh) / s + 1, ow = (w + 2 * pad - kw) / s + 1;
    const memory::desc src_any({nb, ci, h, w}, f32, Tag::any),
        src_plain({nb, ci, h, w}, f32, Tag::nchw);
    const memory::desc wei_any({co, ci, kh, kw}, f32, Tag::any),
        wei_plain({co, ci, kh, kw}, f32, Tag::oihw);
    const memory::desc dst_any({nb, co, oh, ow}, f32, Tag::any),
        dst_plain({nb, co, oh, ow}, f32, Tag::nchw);
    const memory::desc bias({co}, f32, Tag::x), scale({1, co, 1, 1}, f32, Tag::nchw);
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, src_any, wei_any, bias,
                                      dst_any, {s, s}, {pad, pad}, {pad, pad});
    dnnl::convolution_forward::primitive_desc pd(d, epilogue_attr(e, scale), p->eng);
    p->prim = dnnl::convolution_forward(pd);
    p->impl = pd.impl_info_str();
    p->args[DNNL_ARG_SRC] = p->filled(pd.src_desc(), src_plain, 1, 1.0f);
    p->args[DNNL_ARG_WEIGHTS] = p->filled(pd.weights_desc(), wei_plain, 2, 0.05f);
    p->args[DNNL_ARG_BIAS] = p->filled(bias, bias, 3, 0.1f);
    p->args[DNNL_ARG_DST] = p->filled(pd.dst_desc(), dst_plain, 4, 0.1f);
    if (e == Epi::ScaleRes) {
        p->args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
            p->filled(scale, scale, 5, 1e-3f);
    }
    return p;
}

// ---- Rows --------------------------------------------------------------------------------------

struct Impl {
    std::string name, detail;
    std::function<void()> run;
};

struct Row {
    std::string name, group;   // group: gemm | conv | op
    bool issue_shape = false;  // one of the issue's GEMM target shapes
    double flops = 0;          // useful FLOPs per call (0: memory-bound row)
    double bytes = 0;          // bytes read + written per call
    std::function<std::vector<Impl>()> make;
    std::vector<Impl> impls;  // [0] = lkc
    std::string error;
    std::vector<std::vector<double>> times;   // per impl, every timed call
    std::vector<std::vector<double>> ratios;  // per peer: lkc / peer per iteration
};
std::vector<std::unique_ptr<Row>> g_rows;

void run_row(benchmark::State& state, Row& row) {
    if (row.impls.empty() && row.error.empty()) {
        try {
            row.impls = row.make();
            for (Impl& i : row.impls) i.run();  // warm-up (first-touch, packing, JIT caches)
        } catch (const std::exception& e) {
            row.error = e.what();
        }
        row.times.assign(row.impls.size(), {});
        row.ratios.assign(row.impls.size(), {});
    }
    if (!row.error.empty()) {
        state.SkipWithError(row.error.c_str());
        return;
    }
    std::string label = row.impls[0].detail;
    for (size_t i = 1; i < row.impls.size(); ++i)
        label += " | " + row.impls[i].name + ": " + row.impls[i].detail;
    state.SetLabel(label);
    std::vector<std::vector<double>> t(row.impls.size());
    size_t it = 0;
    for (auto _ : state) {
        std::vector<double> now(row.impls.size());
        const bool peers_first = (it++ % 2) == 1;
        if (peers_first)
            for (size_t i = 1; i < row.impls.size(); ++i) now[i] = seconds(row.impls[i].run);
        now[0] = seconds(row.impls[0].run);
        if (!peers_first)
            for (size_t i = 1; i < row.impls.size(); ++i) now[i] = seconds(row.impls[i].run);
        state.SetIterationTime(now[0]);
        for (size_t i = 0; i < now.size(); ++i) {
            t[i].push_back(now[i]);
            row.times[i].push_back(now[i]);
            if (i > 0) row.ratios[i].push_back(now[0] / now[i]);
        }
    }
    const double med = median(t[0]);
    state.counters["median_ms"] = med * 1e3;
    if (row.flops > 0) {
        state.counters["GFLOPs"] = row.flops / med * 1e-9;
        state.counters["pct_peak"] = 100.0 * row.flops / med * 1e-9 / g_opt.peak_start;
    }
    if (row.bytes > 0) state.counters["GBps"] = row.bytes / med * 1e-9;
    for (size_t i = 1; i < t.size(); ++i) {
        std::vector<double> r;
        for (size_t k = 0; k < t[0].size(); ++k) r.push_back(t[0][k] / t[i][k]);
        state.counters["ratio_vs_" + row.impls[i].name] = median(r);
        state.counters[row.impls[i].name + "_ms"] = median(t[i]) * 1e3;
    }
}

struct GemmShape {
    int n, ci, co, hw;
    bool issue;
};

void add_gemm(const GemmShape& s, Epi e) {
    auto row = std::make_unique<Row>();
    const char* suffix = e == Epi::Gelu ? ":gelu" : e == Epi::ScaleRes ? ":scale_res" : "";
    row->name = "gemm/n" + std::to_string(s.n) + "h" + std::to_string(s.hw) + "w" +
                std::to_string(s.hw) + ":" + std::to_string(s.ci) + "->" + std::to_string(s.co) +
                suffix;
    row->group = "gemm";
    row->issue_shape = s.issue && e == Epi::None;
    const double m = double(s.n) * s.hw * s.hw;
    row->flops = 2.0 * m * s.ci * s.co;
    row->bytes = 4.0 * m * (s.ci + s.co) + 4.0 * s.ci * s.co;
    row->make = [s, e] {
        std::vector<Impl> v;
        auto x = std::make_shared<BlockedTensor>(
            lkc::ops::to_blocked_tensor(random_tensor({s.n, s.ci, s.hw, s.hw}, 1)));
        auto y =
            std::make_shared<BlockedTensor>(lkc::ops::make_blocked_tensor(s.n, s.co, s.hw, s.hw));
        auto r = std::make_shared<BlockedTensor>(
            lkc::ops::to_blocked_tensor(random_tensor({s.n, s.co, s.hw, s.hw}, 4, 0.1f)));
        const lkc::Tensor bias = random_tensor({s.co}, 3, 0.1f);
        auto w = std::make_shared<lkc::ops::PackedLinear>(
            lkc::ops::pack_linear(random_tensor({s.co, s.ci}, 2, 0.05f), &bias));
        auto sc = std::make_shared<lkc::ops::ChannelVector>(
            lkc::ops::pack_channels(random_tensor({s.co}, 5, 1e-3f), "gamma"));
        lkc::ops::Epilogue epi;
        epi.act = e == Epi::Gelu ? lkc::ops::Act::Gelu : lkc::ops::Act::None;
        if (e == Epi::ScaleRes) epi.residual = r.get(), epi.scale = sc.get();
        v.push_back({"lkc", lkc::ops::gemm_kernel_name(*x, *w, lkc::Device::Cpu),
                     [x, w, y, r, sc, epi] { lkc::ops::gemm(*x, *w, epi, *y, lkc::Device::Cpu); }});
        std::shared_ptr<Onednn> mm = onednn_matmul(s.n * s.hw * s.hw, s.ci, s.co, e);
        v.push_back({"matmul", mm->impl, [mm] { mm->run(); }});
        std::shared_ptr<Onednn> cv = onednn_conv(s.n, s.ci, s.co, s.hw, s.hw, 1, 1, 1, 0, e);
        v.push_back({"conv1x1", cv->impl, [cv] { cv->run(); }});
        return v;
    };
    g_rows.push_back(std::move(row));
}

struct ConvShape {
    const char* what;
    int n, ci, co, hw, k, s, pad;
};

void add_conv(const ConvShape& s) {
    auto row = std::make_unique<Row>();
    row->name = std::string("conv/") + s.what + ":n" + std::to_string(s.n) + "h" +
                std::to_string(s.hw) + ":" + std::to_string(s.ci) + "->" + std::to_string(s.co) +
                ":k" + std::to_string(s.k) + "s" + std::to_string(s.s) + "p" +
                std::to_string(s.pad);
    row->group = "conv";
    const int o = (s.hw + 2 * s.pad - s.k) / s.s + 1;
    row->flops = 2.0 * s.n * o * o * s.co * s.ci * s.k * s.k;
    row->make = [s] {
        std::vector<Impl> v;
        auto x = std::make_shared<BlockedTensor>(
            lkc::ops::to_blocked_tensor(random_tensor({s.n, s.ci, s.hw, s.hw}, 1)));
        const lkc::Tensor bias = random_tensor({s.co}, 3, 0.1f);
        auto w = std::make_shared<lkc::ops::PackedConv2d>(lkc::ops::pack_conv2d(
            random_tensor({s.co, s.ci, s.k, s.k}, 2, 0.05f), &bias, {s.s, s.pad, s.pad, 1, 1}));
        auto y = std::make_shared<BlockedTensor>(
            lkc::ops::make_blocked_tensor(s.n, s.co, w->out_h(s.hw), w->out_w(s.hw)));
        v.push_back({"lkc", "ops_conv2d",
                     [=] { lkc::ops::conv2d(*x, *w, lkc::ops::Act::None, *y, lkc::Device::Cpu); }});
        std::shared_ptr<Onednn> cv =
            onednn_conv(s.n, s.ci, s.co, s.hw, s.hw, s.k, s.k, s.s, s.pad, Epi::None);
        v.push_back({"onednn", cv->impl, [cv] { cv->run(); }});
        return v;
    };
    g_rows.push_back(std::move(row));
}

void add_op(const std::string& name, int n, int c, int hw, double bytes_per_elem,
            std::function<std::function<void()>(std::shared_ptr<BlockedTensor>,
                                                std::shared_ptr<BlockedTensor>)>
                f) {
    auto row = std::make_unique<Row>();
    row->name = "op/" + name + ":n" + std::to_string(n) + "c" + std::to_string(c) + "h" +
                std::to_string(hw) + "w" + std::to_string(hw);
    row->group = "op";
    row->bytes = bytes_per_elem * 4.0 * n * c * hw * hw;
    row->make = [=] {
        auto x = std::make_shared<BlockedTensor>(
            lkc::ops::to_blocked_tensor(random_tensor({n, c, hw, hw}, 1)));
        auto y = std::make_shared<BlockedTensor>(lkc::ops::make_blocked_tensor(n, c, hw, hw));
        return std::vector<Impl>{{"lkc", name, f(x, y)}};
    };
    g_rows.push_back(std::move(row));
}

void add_rows() {
    const bool quick = g_opt.shapes == "quick";
    // The issue's shapes (RepLKNet-31B stage 1 / 3 / 4 MLP expansion), then the other MLP halves
    // and the SLaK-T / UniRepLKNet-T stage-1 MLPs.
    std::vector<GemmShape> shapes = {
        {1, 128, 512, 56, true}, {1, 512, 2048, 14, true}, {1, 1024, 4096, 7, true}};
    if (!quick) {
        shapes.push_back({8, 128, 512, 56, true});
        shapes.push_back({8, 512, 2048, 14, true});
        shapes.push_back({8, 1024, 4096, 7, true});
        for (int nb : {1, 8}) {
            for (const GemmShape& s : std::vector<GemmShape>{{nb, 512, 128, 56, false},
                                                             {nb, 256, 1024, 28, false},
                                                             {nb, 1024, 256, 28, false},
                                                             {nb, 2048, 512, 14, false},
                                                             {nb, 4096, 1024, 7, false},
                                                             {nb, 96, 384, 56, false},
                                                             {nb, 384, 96, 56, false},
                                                             {nb, 80, 320, 56, false}})
                shapes.push_back(s);
        }
    }
    for (const GemmShape& s : shapes) add_gemm(s, Epi::None);
    // Fused epilogues of a ConvNeXt-style MLP (fc1 + GELU, fc2 * gamma + x).
    add_gemm({1, 128, 512, 56, false}, Epi::Gelu);
    add_gemm({1, 512, 128, 56, false}, Epi::ScaleRes);
    if (!quick) {
        add_gemm({1, 1024, 4096, 7, false}, Epi::Gelu);
        add_gemm({1, 4096, 1024, 7, false}, Epi::ScaleRes);
    }
    // Stems and down-sampling.
    add_conv({"stem3x3", 1, 3, 64, 224, 3, 2, 1});
    add_conv({"stem4x4", 1, 3, 96, 224, 4, 4, 0});
    add_conv({"down2x2", 1, 96, 192, 56, 2, 2, 0});
    add_conv({"down3x3", 1, 80, 160, 56, 3, 2, 1});
    if (!quick) {
        add_conv({"stem3x3b", 1, 40, 80, 112, 3, 2, 1});
        add_conv({"down3x3", 1, 320, 640, 14, 3, 2, 1});
        add_conv({"down3x3", 8, 80, 160, 56, 3, 2, 1});
    }
    // Memory-bound ops (bytes = elements x 4 x (reads + writes)).
    using P = std::shared_ptr<BlockedTensor>;
    for (int c : {128, 512}) {
        const int hw = c == 128 ? 56 : 14;
        auto ln = std::make_shared<lkc::ops::LayerNormParams>(
            lkc::ops::pack_layer_norm(random_tensor({c}, 7), random_tensor({c}, 8), 1e-6));
        add_op("layer_norm", 1, c, hw, 2,
               [ln](P x, P y) { return [=] { lkc::ops::layer_norm(*x, *ln, *y); }; });
        add_op("gelu", 1, 4 * c, hw, 2,
               [](P x, P y) { return [=] { lkc::ops::unary(lkc::ops::Unary::Gelu, *x, *y); }; });
        add_op("add", 1, c, hw, 3, [](P x, P y) {
            return [=] { lkc::ops::binary(lkc::ops::Binary::Add, *x, *x, *y); };
        });
        auto bn = std::make_shared<lkc::ops::ChannelAffine>(
            lkc::ops::layer_scale_affine(random_tensor({c}, 9)));
        add_op("affine_relu", 1, c, hw, 2, [bn](P x, P y) {
            return [=] { lkc::ops::affine(*x, *bn, lkc::ops::Act::Relu, *y); };
        });
        auto gp = std::make_shared<lkc::ops::GrnParams>(
            lkc::ops::pack_grn(random_tensor({4 * c}, 10), nullptr, 1e-6));
        add_op("grn", 1, 4 * c, hw, 3,
               [gp](P x, P y) { return [=] { lkc::ops::grn(*x, *gp, *y); }; });
    }
}

// ---- Summary -----------------------------------------------------------------------------------

void print_summary(FILE* out) {
    std::fprintf(out,
                 "\nFMA peak %.1f GFLOP/s at start, %.1f at the end (2 threads, %s); load average "
                 "%s at start, %s at the end\n",
                 g_opt.peak_start, g_opt.peak_end, lkc::bench::fma_peak_isa(),
                 g_opt.load_start.c_str(), g_opt.load_end.c_str());
    const double scaling = g_opt.peak_1t > 0 ? g_opt.peak_start / g_opt.peak_1t : 0;
    std::fprintf(out, "1-thread FMA peak %.1f GFLOP/s: 2 threads got %.2fx%s\n", g_opt.peak_1t,
                 scaling,
                 scaling < 1.8 ? " -- the machine was busy (another process used a core): "
                                 "%peak is relative to what 2 threads got then, not to 2 idle cores"
                               : "");
    std::fprintf(out,
                 "%%peak = useful GFLOP/s / start peak; ratio = lkc time / peer time, median of "
                 "interleaved pairs (< 1: lkc faster)\n\n");
    std::fprintf(out, "%-44s %9s %6s %9s %6s %9s %6s %8s %8s\n", "row", "lkc ms", "%peak", "matmul",
                 "%peak", "conv/dnn", "%peak", "/matmul", "/conv");
    std::vector<double> issue_pct, issue_ratio;
    for (const auto& r : g_rows) {
        if (r->group == "op") continue;
        if (!r->error.empty()) {
            std::fprintf(out, "%-44s ERROR %s\n", r->name.c_str(), r->error.c_str());
            continue;
        }
        if (r->times.empty() || r->times[0].empty()) continue;
        const double t = median(r->times[0]);
        const double pct = 100.0 * r->flops / t * 1e-9 / g_opt.peak_start;
        std::string cells;
        char buf[128];
        double best_ratio = 1e30;
        for (size_t i = 1; i < r->impls.size(); ++i) {
            const double tp = median(r->times[i]);
            std::snprintf(buf, sizeof buf, " %9.3f %6.1f", tp * 1e3,
                          100.0 * r->flops / tp * 1e-9 / g_opt.peak_start);
            cells += buf;
            best_ratio = std::min(best_ratio, median(r->ratios[i]));
        }
        if (r->impls.size() == 2) cells = std::string(17, ' ') + cells;  // conv rows: one peer
        std::string ratios;
        for (size_t i = 1; i < r->impls.size(); ++i) {
            std::snprintf(buf, sizeof buf, " %8.3f", median(r->ratios[i]));
            ratios += buf;
        }
        if (r->impls.size() == 2) ratios = std::string(9, ' ') + ratios;
        std::fprintf(out, "%-44s %9.3f %6.1f%s%s\n", r->name.c_str(), t * 1e3, pct, cells.c_str(),
                     ratios.c_str());
        if (r->issue_shape) {
            issue_pct.push_back(pct);
            issue_ratio.push_back(best_ratio);
        }
    }
    std::fprintf(out, "\n%-44s %9s %9s\n", "memory-bound op", "lkc ms", "GB/s");
    for (const auto& r : g_rows) {
        if (r->group != "op" || r->times.empty() || r->times[0].empty()) continue;
        const double t = median(r->times[0]);
        std::fprintf(out, "%-44s %9.3f %9.1f\n", r->name.c_str(), t * 1e3, r->bytes / t * 1e-9);
    }
    if (!issue_pct.empty()) {
        const double mn = *std::min_element(issue_pct.begin(), issue_pct.end());
        const double worst = *std::max_element(issue_ratio.begin(), issue_ratio.end());
        std::fprintf(
            out,
            "\nGEMM target (issue shapes 56x56x128->512, 14x14x512->2048, 7x7x1024->4096, "
            "N 1 and 8): min %.1f %% of the FMA peak (target >= 70 %%: %s); worst ratio vs "
            "the faster oneDNN peer %.3f\n",
            mn, mn >= 70.0 ? "PASS" : "MISS", worst);
    }
}

// libgomp reads OMP_* when it is loaded and Halide reads HL_NUM_THREADS when its pool starts: set
// what is unset and re-execute once (as bench_dwconv2d does).
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
                 "bench_ops: warning: could not re-execute with the thread environment (%s)\n",
                 std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
    ensure_thread_environment(argv);
    std::vector<char*> args;
    std::vector<std::string> added;
    bool min_time = false, reps = false;
    for (int i = 0; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--shapes=", 0) == 0) {
            g_opt.shapes = a.substr(9);
            if (g_opt.shapes != "full" && g_opt.shapes != "quick") {
                std::fprintf(stderr, "bench_ops: --shapes must be full or quick, got '%s'\n",
                             g_opt.shapes.c_str());
                return 2;
            }
            continue;
        }
        min_time = min_time || a.rfind("--benchmark_min_time", 0) == 0;
        reps = reps || a.rfind("--benchmark_repetitions", 0) == 0;
        args.push_back(argv[i]);
    }
    if (!min_time) added.push_back("--benchmark_min_time=0.2");
    if (!reps) added.push_back("--benchmark_repetitions=3");
    added.push_back("--benchmark_report_aggregates_only=true");
    for (std::string& s : added) args.push_back(s.data());
    int nargs = static_cast<int>(args.size());
    args.push_back(nullptr);
    benchmark::Initialize(&nargs, args.data());
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return 2;

    g_opt.load_start = loadavg();
    g_opt.peak_1t = lkc::bench::measure_fma_peak_gflops(1);
    g_opt.peak_start = lkc::bench::measure_fma_peak_gflops(2);
    std::fprintf(stderr, "bench_ops: FMA peak %.1f GFLOP/s (%s, 2 threads), load average %s\n",
                 g_opt.peak_start, lkc::bench::fma_peak_isa(), g_opt.load_start.c_str());
    benchmark::AddCustomContext("lkc_fma_peak_gflops", std::to_string(g_opt.peak_start));
    add_rows();
    for (const auto& r : g_rows) {
        Row* row = r.get();
        benchmark::RegisterBenchmark(row->name.c_str(),
                                     [row](benchmark::State& s) { run_row(s, *row); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    benchmark::RunSpecifiedBenchmarks();
    g_opt.load_end = loadavg();
    g_opt.peak_end = lkc::bench::measure_fma_peak_gflops(2);
    print_summary(stdout);
    benchmark::Shutdown();
    return 0;
}
