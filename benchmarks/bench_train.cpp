// Training steps with the trainer (issue 6 targets), 2 threads:
//  1. per depth-wise layer, forward vs backward (data + weight) time inside real training steps:
//     medians over --steps steps after warm-up, (fwd + bwd) / fwd against the <= 3.5x target,
//     with the kernels that ran and how they were chosen;
//     and, per block, each pass of the fused branch layer vs one layer per branch;
//  2. the whole step, dense vs --sparsity with SLaK's per-weight masks (ERK densities) and with
//     lane-row masks (ERK, and uniform densities: row-mask depth-wise kernels, linears on their
//     kept blocks), in rounds of --steps steps each that rotate which goes first, so machine
//     drift hits all four; the ratio per round and its median.
// Inputs are random (N(0,1) images, uniform labels): step time does not depend on the values.
//
//   bench_train [--models=slak-fmnist,replknet-fmnist] [--sizes=32,64] [--batch=64]
//               [--steps=20] [--warmup=5] [--rounds=5] [--sparsity=0.4] [--csv=FILE]
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
#include "graph/models/models.h"
#include "graph/train/trainer.h"
#include "graph/weights.h"
#include "runtime/dw_train.h"

namespace {

using namespace lkc;

using lkc::bench::median;
using lkc::bench::split;

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

struct Batch {
    Tensor x;
    std::vector<int32_t> y;
};

Batch random_batch(const graph::Graph& g, uint64_t seed) {
    Batch b;
    b.x = Tensor(DType::F32, g.tensor(g.inputs[0]).shape);
    std::mt19937_64 r(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0; i < b.x.numel(); ++i) b.x.data<float>()[i] = nd(r);
    for (int64_t i = 0; i < b.x.dim(0); ++i) b.y.push_back(int32_t(r() % 10));
    return b;
}

graph::Graph model(const std::string& name, int size, int batch) {
    graph::ModelOptions mo;
    mo.num_classes = 10;
    mo.image_size = size;
    mo.in_chans = 1;
    mo.batch = batch;
    graph::Graph g = graph::build_model(name, mo);
    graph::init_weights(g, 1);
    return g;
}

train::TrainOptions options(int64_t steps, double sparsity) {
    train::TrainOptions o;
    o.total_steps = steps;
    o.warmup_steps = 10;
    o.sparsity = sparsity;
    o.prune_every = 0;  // the step itself; prune-and-regrow is timed separately in the runs
    return o;
}

bool depthwise(const std::string& op) {
    return op == "dwconv2d" || op == "dwconv2d_multi" || op == "dwconv2d_sparse" ||
           op == "shiftwise";
}

// A block's train-form branches (stride-1 dense depth-wise nodes reading one tensor): each pass
// of the fused row-table layer vs one dense layer per branch, minima of 8 interleaved runs (ms).
void branch_passes(const graph::Graph& g, std::ofstream& out, const std::string& name, int size,
                   int batch) {
    std::map<int, std::vector<const graph::Node*>> by_input;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::DwConv2d && n.attrs.stride == 1)
            by_input[n.inputs[0]].push_back(&n);
    bool header = false;
    for (const auto& [in, nodes] : by_input) {
        if (nodes.size() < 2) continue;
        const Shape& xs = g.tensor(in).shape;
        const int N = int(xs[0]), C = int(xs[1]), H = int(xs[2]), W = int(xs[3]);
        std::vector<Branch> br;
        std::string label;
        for (const auto* n : nodes) {
            const Shape& ws = g.param(n->param("weight")).shape;
            br.push_back({int(ws[2]), int(ws[3]), n->attrs.dilation});
            label +=
                (label.empty() ? "" : "+") + std::to_string(ws[2]) + "x" + std::to_string(ws[3]);
        }
        DwTrainLayer fused(N, C, H, W, 1, br);
        std::vector<std::unique_ptr<DwTrainLayer>> each;
        for (const Branch& b : br)
            each.push_back(std::make_unique<DwTrainLayer>(N, C, H, W, 1, std::vector<Branch>{b}));
        std::vector<float> w(size_t(C) * 63 * 63, 0.01f), dw(size_t((C + 15) / 16) * 16 * 63 * 63);
        std::vector<const float*> wp(br.size(), w.data());
        std::vector<float*> dwp(br.size(), dw.data());
        fused.set_weights(wp, {});
        for (auto& l : each) l->set_weights({w.data()}, {});
        Blocked x = make_blocked(N, C, H, W), dx = make_blocked(N, C, H, W);
        Stacked yf = fused.make_outputs();
        std::vector<Stacked> ye;
        for (auto& l : each) ye.push_back(l->make_outputs());
        double tf[3] = {1e30, 1e30, 1e30}, te[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r < 9; ++r) {
            double t0 = now_ms();
            fused.forward(x, yf);
            double t1 = now_ms();
            fused.backward_data(yf, dx);
            double t2 = now_ms();
            fused.backward_weight(x, yf, dwp, {});
            double t3 = now_ms();
            double e[3] = {0, 0, 0};
            for (size_t i = 0; i < each.size(); ++i) {
                const double u0 = now_ms();
                each[i]->forward(x, ye[i]);
                const double u1 = now_ms();
                each[i]->backward_data(ye[i], dx);
                const double u2 = now_ms();
                each[i]->backward_weight(x, ye[i], {dw.data()}, {});
                const double u3 = now_ms();
                e[0] += u1 - u0, e[1] += u2 - u1, e[2] += u3 - u2;
            }
            if (r == 0) continue;  // warm-up
            const double f[3] = {t1 - t0, t2 - t1, t3 - t2};
            for (int k = 0; k < 3; ++k)
                tf[k] = std::min(tf[k], f[k]), te[k] = std::min(te[k], e[k]);
        }
        if (!header) {
            std::printf(
                "  block branches, fused layer vs one layer each (min of 8, ms): fwd / bwd_data / "
                "bwd_weight\n");
            header = true;
        }
        std::printf(
            "    %-16s %dx%d c%-4d fused %.3f / %.3f / %.3f   separate %.3f / %.3f / %.3f\n",
            label.c_str(), H, W, C, tf[0], tf[1], tf[2], te[0], te[1], te[2]);
        if (out)
            out << name << ',' << size << ',' << batch << ",branches," << label << "@" << H << "x"
                << W << "c" << C << ",fused/separate," << (tf[0] + tf[1] + tf[2]) << ','
                << (te[0] + te[1] + te[2]) << ','
                << (tf[0] + tf[1] + tf[2]) / (te[0] + te[1] + te[2])
                << ",\"fused ms, separate ms (fwd+bwd)\"\n";
    }
}

// Each stride-1 dense depth-wise layer with a random lane-row mask of the given density (rows of
// 16-channel blocks, weights of pruned rows 0): each pass with the mask (the fastest variant
// including the row-mask ones) vs without (the fastest variant), both chosen by
// DwTrainLayer::measure_variants, then minima of 8 interleaved runs (ms).
void row_mask_passes(const graph::Graph& g, std::ofstream& out, const std::string& name, int size,
                     int batch, double density) {
    std::printf(
        "  lane-row masks at density %.2f, fastest variants with vs without the mask (min "
        "of 8, ms): fwd / bwd_data / bwd_weight\n",
        density);
    std::mt19937 gen(11);
    std::set<std::string> seen;
    for (const auto& n : g.nodes) {
        if (n.op != graph::OpKind::DwConv2d || n.attrs.stride != 1) continue;
        const Shape& xs = g.tensor(n.inputs[0]).shape;
        const Shape& ws = g.param(n.param("weight")).shape;
        const int N = int(xs[0]), C = int(xs[1]), H = int(xs[2]), W = int(xs[3]);
        const int kh = int(ws[2]), kw = int(ws[3]);
        char label[64];
        std::snprintf(label, sizeof label, "%dx%d d%d %dx%d c%d", kh, kw, n.attrs.dilation, H, W,
                      C);
        if (!seen.insert(label).second) continue;
        const Branch br{kh, kw, n.attrs.dilation};
        DwTrainLayer dense(N, C, H, W, 1, {br}), rows(N, C, H, W, 1, {br});
        const int CB = (C + 15) / 16;
        std::vector<uint8_t> mask(size_t(CB) * kh);
        std::bernoulli_distribution keep(density);
        int kept = 0;
        for (auto& m : mask) kept += (m = keep(gen));
        std::vector<float> w(size_t(C) * kh * kw), dw(w.size());
        for (int c = 0; c < C; ++c)
            for (int u = 0; u < kh; ++u)
                for (int v = 0; v < kw; ++v)
                    w[size_t((c * kh + u) * kw + v)] = mask[size_t((c / 16) * kh + u)] * 0.01f;
        dense.set_weights({w.data()}, {});
        rows.set_weights({w.data()}, {});
        rows.set_row_mask(mask);
        Blocked x = make_blocked(N, C, H, W), dx = make_blocked(N, C, H, W);
        x.fill(0.5f);
        dense.measure_variants(x);
        rows.measure_variants(x);
        Stacked yd = dense.make_outputs(), yr = rows.make_outputs();
        double td[3] = {1e30, 1e30, 1e30}, tr[3] = {1e30, 1e30, 1e30};
        auto run = [&](DwTrainLayer& l, Stacked& y, double* t) {
            const double t0 = now_ms();
            l.forward(x, y);
            const double t1 = now_ms();
            l.backward_data(y, dx);
            const double t2 = now_ms();
            l.backward_weight(x, y, {dw.data()}, {});
            const double t3 = now_ms();
            const double f[3] = {t1 - t0, t2 - t1, t3 - t2};
            for (int k = 0; k < 3; ++k) t[k] = std::min(t[k], f[k]);
        };
        for (int r = 0; r < 9; ++r) {
            double skip[3] = {1e30, 1e30, 1e30};
            run(dense, yd, r ? td : skip);
            run(rows, yr, r ? tr : skip);
        }
        const double sd = td[0] + td[1] + td[2], sr = tr[0] + tr[1] + tr[2];
        std::printf(
            "    %-22s rows kept %5.1f %%   masked %.3f / %.3f / %.3f   dense %.3f / %.3f / "
            "%.3f   (f+b) ratio %.2f\n      %s\n",
            label, 100.0 * kept / double(mask.size()), tr[0], tr[1], tr[2], td[0], td[1], td[2],
            sr / sd, rows.kernel_names().c_str());
        if (out)
            out << name << ',' << size << ',' << batch << ",row_masks," << label << ",masked/dense,"
                << sr << ',' << sd << ',' << sr / sd << ",\"masked ms, dense ms (fwd+bwd)\"\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> models = {"slak-fmnist", "replknet-fmnist"};
    std::vector<int> sizes = {32, 64};
    int batch = 64, steps = 20, warmup = 5, rounds = 5;
    double sparsity = 0.4;
    std::string csv;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&](const char* k) -> const char* {
            const size_t n = std::strlen(k);
            return a.compare(0, n, k) == 0 ? a.c_str() + n : nullptr;
        };
        if (const char* v = val("--models=")) {
            models = split(v);
        } else if (const char* v = val("--sizes=")) {
            sizes.clear();
            for (const auto& s : split(v)) sizes.push_back(std::atoi(s.c_str()));
        } else if (const char* v = val("--batch=")) {
            batch = std::atoi(v);
        } else if (const char* v = val("--steps=")) {
            steps = std::atoi(v);
        } else if (const char* v = val("--warmup=")) {
            warmup = std::atoi(v);
        } else if (const char* v = val("--rounds=")) {
            rounds = std::atoi(v);
        } else if (const char* v = val("--sparsity=")) {
            sparsity = std::atof(v);
        } else if (const char* v = val("--csv=")) {
            csv = v;
        } else {
            std::fprintf(stderr,
                         "usage: bench_train [--models=a,b] [--sizes=32,64] [--batch=N] "
                         "[--steps=N] [--warmup=N] [--rounds=N] [--sparsity=S] [--csv=FILE]\n");
            return 2;
        }
    }
    if (batch < 1 || steps < 1 || rounds < 1 || warmup < 0 || sparsity <= 0 || sparsity >= 1) {
        std::fprintf(stderr,
                     "bench_train: batch, steps, rounds >= 1; warmup >= 0; 0 < sparsity < 1\n");
        return 2;
    }
    std::ofstream out;
    if (!csv.empty()) {
        out.open(csv);
        if (!out) {
            std::fprintf(stderr, "bench_train: cannot write %s\n", csv.c_str());
            return 2;
        }
        out << "model,size,batch,section,name,op,fwd_ms,bwd_ms,ratio,kernels\n";
    }
    struct Acc {
        int layers = 0, within = 0;
        double log_sum = 0;
    } large, small;
    for (const std::string& name : models) {
        for (int size : sizes) {
            const graph::Graph g = model(name, size, batch);
            const Batch b = random_batch(g, 3);
            const int64_t total = int64_t(warmup + steps + rounds * steps * 2);

            // 1. Per depth-wise layer inside dense training steps.
            train::Trainer dense(g, options(total, 0));
            for (int s = 0; s < warmup; ++s) dense.step(b.x, b.y);
            dense.set_timing(true);
            std::map<std::string, std::vector<double>> fwd, bwd;
            std::vector<train::Trainer::NodeTime> last;
            for (int s = 0; s < steps; ++s) {
                dense.step(b.x, b.y);
                last = dense.last_times();
                for (const auto& t : last) {
                    fwd[t.name].push_back(t.fwd_ms);
                    bwd[t.name].push_back(t.bwd_ms);
                }
            }
            dense.set_timing(false);
            std::printf(
                "\n%s %dx%d batch %d: depth-wise layers, medians of %d training steps (ms)\n",
                name.c_str(), size, size, batch, steps);
            std::printf("  %-42s %8s %8s %9s  %s\n", "layer", "fwd", "bwd", "(f+b)/f", "kernels");
            for (const auto& t : last) {
                if (!depthwise(t.op)) continue;
                const double f = median(fwd[t.name]), bw = median(bwd[t.name]);
                if (t.kernels.rfind("in the fused layer", 0) == 0) continue;  // timed there
                const double ratio = (f + bw) / f;
                // Large-kernel layers (the target's): a kernel extent >= 13.
                int k = 0;
                for (const auto& n : g.nodes)
                    if (n.name == t.name && n.has_param("weight")) {
                        const Shape& ws = g.param(n.param("weight")).shape;
                        if (ws.size() == 4) k = int(std::max(ws[2], ws[3]));
                    }
                Acc& acc = k >= 13 ? large : small;
                ++acc.layers;
                acc.within += ratio <= 3.5;
                acc.log_sum += std::log(ratio);
                std::printf("  %-42s %8.3f %8.3f %8.2fx  %s\n", t.name.c_str(), f, bw, ratio,
                            t.kernels.c_str());
                if (out)
                    out << name << ',' << size << ',' << batch << ",layer," << t.name << ',' << t.op
                        << ',' << f << ',' << bw << ',' << ratio << ",\"" << t.kernels << "\"\n";
            }

            branch_passes(g, out, name, size, batch);
            row_mask_passes(g, out, name, size, batch, 1.0 - sparsity);

            // 2. Dense vs sparse steps (SLaK per-weight masks; lane-row masks, whose depth-wise
            // layers skip pruned rows and whose linears run on the kept blocks, with ERK and
            // with uniform densities), in rounds that rotate which trainer goes first: no order
            // bias.
            train::TrainOptions ow = options(total, sparsity), orow = ow, ouni = ow;
            orow.mask_structure = train::MaskStructure::LaneRows;
            ouni.mask_structure = train::MaskStructure::LaneRows;
            ouni.mask_init = train::MaskInit::Uniform;
            train::Trainer sparse(g, ow), rows(g, orow), uni(g, ouni);
            for (int s = 0; s < warmup; ++s)
                sparse.step(b.x, b.y), rows.step(b.x, b.y), uni.step(b.x, b.y);
            constexpr int K = 4;
            train::Trainer* tr[K] = {&dense, &sparse, &rows, &uni};
            const char* tag[K] = {"weight masks (ERK)", "lane-rows masks (ERK)",
                                  "lane-rows masks (uniform)"};
            std::vector<double> all[K], ratio[K];
            for (int r = 0; r < rounds; ++r) {
                double med[K];
                for (int k = 0; k < K; ++k) {
                    const int which = (r + k) % K;
                    std::vector<double> t;
                    for (int s = 0; s < steps; ++s) {
                        const double t0 = now_ms();
                        tr[which]->step(b.x, b.y);
                        t.push_back(now_ms() - t0);
                    }
                    med[which] = median(t);
                    all[which].push_back(med[which]);
                }
                for (int k = 1; k < K; ++k) ratio[k].push_back(med[k] / med[0]);
                if (out)
                    out << name << ',' << size << ',' << batch << ",step,round" << r << ",step,"
                        << med[0] << ',' << med[1] << ',' << med[2] << ',' << med[3]
                        << ",\"dense ms, sparse (weight ERK) ms, sparse (lane-rows ERK) ms, "
                           "sparse (lane-rows uniform) ms\"\n";
            }
            std::printf("  step: dense %.2f ms (medians of %d rounds x %d steps)\n", median(all[0]),
                        rounds, steps);
            for (int k = 1; k < K; ++k) {
                std::printf("  sparsity %.2f, %s: %.2f ms; sparse / dense per round:", sparsity,
                            tag[k - 1], median(all[k]));
                for (double v : ratio[k]) std::printf(" %.3f", v);
                std::printf("; median %.3f\n", median(ratio[k]));
                int sp = 0, rm = 0, dn = 0, cg = 0, dg = 0;
                for (const auto& t : tr[k]->last_times()) {
                    if (t.op == "linear" || (t.op == "conv2d" && t.kernels.rfind("gemm", 0) == 0))
                        (t.kernels.find(" blocks") != std::string::npos &&
                                 t.kernels.find("dense; lane blocks") == std::string::npos
                             ? cg
                             : dg) += 1;
                    if (!depthwise(t.op)) continue;
                    if (t.kernels.rfind("sparse kernels", 0) == 0) {
                        ++sp;
                    } else if (t.kernels.find("_rows_") != std::string::npos) {
                        ++rm;
                    } else {
                        ++dn;
                    }
                }
                std::printf(
                    "    depth-wise layers: %d on the per-channel sparse kernels, %d with row-mask "
                    "kernels, %d on dense kernels (masked weights); 1x1 / linear layers: %d on "
                    "their kept blocks, %d dense\n",
                    sp, rm, dn, cg, dg);
            }
        }
    }
    for (const auto& [what, a] : {std::make_pair("large-kernel (extent >= 13)", large),
                                  std::make_pair("other depth-wise", small)})
        if (a.layers)
            std::printf("(fwd + bwd) / fwd over %d %s layers: geomean %.2fx, %d within 3.5x\n",
                        a.layers, what, std::exp(a.log_sum / a.layers), a.within);
    return 0;
}
