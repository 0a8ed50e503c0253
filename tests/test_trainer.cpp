// The trainer (graph/train/trainer.h) and training runs (graph/train/loop.h): gradients of each
// tiny model family against central finite differences of the training-mode loss, BN running
// statistics, masks after steps, checkpoint resume equality, a short real run whose loss falls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "graph/builder.h"
#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/train/loop.h"
#include "graph/train/trainer.h"
#include "graph/weights.h"

using namespace lkc;
using namespace lkc::train;
namespace fs = std::filesystem;

namespace {

graph::Graph tiny(const std::string& name, int batch = 2, int size = 32) {
    graph::ModelOptions o;
    o.num_classes = 5;
    o.image_size = size;
    o.batch = batch;
    graph::Graph g = graph::build_model(name, o);
    graph::init_weights(g, 7, graph::InitMode::Test);
    return g;
}

Tensor random_input(const graph::Graph& g, uint64_t seed) {
    Tensor x(DType::F32, g.tensor(g.inputs[0]).shape);
    std::mt19937_64 r(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = nd(r);
    return x;
}

double value_at(const graph::Graph& g, const std::string& key, int64_t i) {
    const Tensor& t = g.params.at(key).value;
    return t.dtype() == DType::F32 ? double(t.data<float>()[i]) : t.data<double>()[i];
}

// g with parameter `key`[i] moved by `delta`, in a tensor of its own (Tensor copies share data).
graph::Graph perturbed(const graph::Graph& g, const std::string& key, int64_t i, double delta) {
    graph::Graph out = g;
    const Tensor& t = g.params.at(key).value;
    Tensor f(DType::F32, t.shape());
    for (int64_t k = 0; k < t.numel(); ++k) f.data<float>()[k] = float(value_at(g, key, k));
    f.data<float>()[i] = float(value_at(g, key, i) + delta);
    out.params.at(key).value = f;
    return out;
}

// SGD with lr L, no momentum / decay / warm-up: one step moves every weight by -L * dL/dw.
TrainOptions plain_sgd(double lr, double drop_path = 0,
                       TrainOptions::Fuse fuse = TrainOptions::Fuse::Measure) {
    TrainOptions o;
    o.drop_path = drop_path;
    o.fuse_branches = fuse;
    o.optimizer = "sgd";
    o.lr = o.min_lr = lr;
    o.momentum = 0;
    o.weight_decay = 0;
    o.warmup_steps = 0;
    o.total_steps = 1;
    o.label_smoothing = 0.1;
    return o;
}

// Each trainer draws the same drop-path samples at its first step (same seed).
double loss_at(const graph::Graph& g, const Tensor& x, const std::vector<int32_t>& y,
               double drop_path = 0, TrainOptions::Fuse fuse = TrainOptions::Fuse::Measure) {
    Trainer t(g, plain_sgd(1.0, drop_path, fuse));
    return t.step(x, y).loss;
}

}  // namespace

class TrainerGradients : public ::testing::TestWithParam<std::string> {};

// Analytic gradient (from one SGD step with lr 1e4: g = (w0 - w1) / 1e4) vs the central
// difference of the training-mode loss (BN batch statistics, label smoothing 0.1) at the largest-
// gradient and one random coordinate of every learned tensor. eps 1e-3; tolerance
// 4e-2 |g| + 1e-3: f32 loss noise ~1e-6 over 2 eps, curvature of GELU / BN over eps.
void check_gradients(const graph::Graph& g, const std::string& model, int batch, double drop_path,
                     TrainOptions::Fuse fuse = TrainOptions::Fuse::Measure) {
    const Tensor x = random_input(g, 3);
    std::vector<int32_t> y;
    for (int i = 0; i < batch; ++i) y.push_back((2 * i + 1) % 5);
    const double L = 1e4;
    Trainer t(g, plain_sgd(L, drop_path, fuse));
    t.step(x, y);
    const graph::Graph after = t.model();
    const CheckpointData st = t.state();
    std::mt19937_64 r(11);
    int checked = 0, bad = 0;
    for (const auto& [key, p] : g.params) {
        if (p.buffer || !st.tensors.count("opt.mom." + key)) continue;
        const Tensor& w1 = after.params.at(key).value;
        const int64_t n = w1.numel();
        std::vector<double> grad(static_cast<size_t>(n));
        int64_t best = 0;
        for (int64_t i = 0; i < n; ++i) {
            grad[size_t(i)] = (value_at(g, key, i) - double(w1.data<float>()[i])) / L;
            if (std::fabs(grad[size_t(i)]) > std::fabs(grad[size_t(best)])) best = i;
        }
        for (int64_t i : {best, int64_t(r() % uint64_t(n))}) {
            const double eps = 1e-3;
            const double fd = (loss_at(perturbed(g, key, i, eps), x, y, drop_path, fuse) -
                               loss_at(perturbed(g, key, i, -eps), x, y, drop_path, fuse)) /
                              (2 * eps);
            const double an = grad[size_t(i)];
            ++checked;
            if (std::fabs(fd - an) > 4e-2 * std::fabs(an) + 1e-3) {
                ++bad;
                ADD_FAILURE() << model << " drop path " << drop_path << " "
                              << " " << key << "[" << i << "]: analytic " << an
                              << ", finite difference " << fd;
            }
        }
    }
    EXPECT_GT(checked, 10);
    EXPECT_EQ(bad, 0);
}

void check_gradients(const std::string& model, int batch, double drop_path,
                     TrainOptions::Fuse fuse = TrainOptions::Fuse::Measure) {
    check_gradients(tiny(model, batch), model, batch, drop_path, fuse);
}

TEST_P(TrainerGradients, MatchFiniteDifferences) { check_gradients(GetParam(), 2, 0.0); }

// Every block's branches in one fused row-table layer (the measured choice picks separate layers
// on this machine, so that path is forced here): slices of the stacked outputs, per-branch
// weights / biases, zero-filled gradients of branches nothing reads.
TEST_P(TrainerGradients, FusedBranchesMatchFiniteDifferences) {
    check_gradients(GetParam(), 2, 0.0, TrainOptions::Fuse::Always);
}

// Softmax over channels (an executor op no model uses): x -> 5x5 depth-wise -> BN -> softmax
// -> pool -> linear head, 21 channels (16-lane padding).
TEST(TrainerGradients, SoftmaxMatchesFiniteDifferences) {
    graph::GraphBuilder b("softmax-test");
    int x = b.input("x", {2, 21, 6, 6});
    x = b.dwconv("dw", x, 5, 5, 1, 1, true);
    x = b.batch_norm("bn", x);
    x = b.unary(graph::OpKind::Softmax, "softmax", x);
    x = b.avg_pool("pool", x, false);
    b.output(b.linear("head", x, 5, true));
    graph::Graph g = b.finish();
    graph::init_weights(g, 7, graph::InitMode::Test);
    check_gradients(g, "softmax-test", 2, 0.0);
}

// Drop path on: the same per-sample draws in every trainer (seeded), so the loss is a function of
// the weights and its gradient goes through x + scale_n * y. Batch 6 with rates up to 0.6: some
// samples are dropped (the loss differs from the run without drop path).
TEST(TrainerDropPath, GradientsMatchFiniteDifferences) {
    for (const char* model : {"slak-test", "unireplknet-test"}) {
        const graph::Graph g = tiny(model, 6);
        const Tensor x = random_input(g, 3);
        const std::vector<int32_t> y = {1, 3, 0, 2, 4, 1};
        EXPECT_NE(loss_at(g, x, y, 0.6), loss_at(g, x, y, 0.0)) << model;
        check_gradients(model, 6, 0.6);
    }
}

TEST(TrainerDropPath, RatesRiseLinearlyOverTheBlocks) {
    const graph::Graph g = tiny("slak-test");
    Trainer t(g, plain_sgd(1.0, 0.3));
    const auto r = t.drop_path_rates();
    ASSERT_GE(r.size(), 2u);
    for (size_t k = 0; k < r.size(); ++k)
        EXPECT_NEAR(r[k].second, 0.3 * double(k) / double(r.size() - 1), 1e-12) << r[k].first;
    EXPECT_THROW(Trainer(g, plain_sgd(1.0, 1.0)), std::invalid_argument);
    // RepLKNet: a stage block's RepLKBlock (blocks.2j) and ConvFFN (blocks.2j+1) share one rate,
    // as in the official model.
    const graph::Graph rg = tiny("replknet-test");
    const auto rr = Trainer(rg, plain_sgd(1.0, 0.3)).drop_path_rates();
    ASSERT_GE(rr.size(), 4u);
    ASSERT_EQ(rr.size() % 2, 0u);
    const size_t blocks = rr.size() / 2;
    for (size_t j = 0; j < blocks; ++j) {
        EXPECT_EQ(rr[2 * j].second, rr[2 * j + 1].second) << rr[2 * j].first;
        EXPECT_NEAR(rr[2 * j].second, 0.3 * double(j) / double(blocks - 1), 1e-12);
    }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, TrainerGradients,
                         ::testing::Values("replknet-test", "slak-test", "unireplknet-test",
                                           "shiftwise-test"),
                         [](const auto& info) {
                             std::string s = info.param;
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

// BN running statistics after one step: (1 - 0.1) * initial + 0.1 * batch statistic (unbiased
// variance), the batch statistic computed here in double from the train-form reference executor's
// input to that BN (the first BN sees conv(x) whose weights the step has not yet changed).
TEST(Trainer, BatchNormRunningStatistics) {
    graph::Graph g = tiny("replknet-test", 4);
    const Tensor x = random_input(g, 5);
    // The first BatchNorm and its input tensor.
    const graph::Node* bn = nullptr;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::BatchNorm) {
            bn = &n;
            break;
        }
    ASSERT_NE(bn, nullptr);
    graph::Graph probe = g;
    probe.outputs = {bn->inputs[0]};
    graph::ExecOptions eo;
    eo.deploy = false;
    graph::Executor ex(probe, eo);
    const Tensor in = ex.run({{"x", x}}).begin()->second;
    Trainer t(g, plain_sgd(0.0));
    t.step(x, {0, 1, 2, 3});
    const graph::Graph after = t.model();
    const int64_t N = in.dim(0), C = in.dim(1), HW = in.dim(2) * in.dim(3);
    auto val = [](const Tensor& v, int64_t c) {
        return v.dtype() == DType::F32 ? double(v.data<float>()[c]) : v.data<double>()[c];
    };
    for (int64_t c = 0; c < C; ++c) {
        double s = 0, s2 = 0;
        for (int64_t b = 0; b < N; ++b)
            for (int64_t k = 0; k < HW; ++k) s += in.data<float>()[(b * C + c) * HW + k];
        const double mean = s / double(N * HW);
        for (int64_t b = 0; b < N; ++b)
            for (int64_t k = 0; k < HW; ++k) {
                const double d = in.data<float>()[(b * C + c) * HW + k] - mean;
                s2 += d * d;
            }
        const double var = s2 / double(N * HW - 1);
        const double rm0 = val(g.params.at(bn->param("running_mean")).value, c);
        const double rv0 = val(g.params.at(bn->param("running_var")).value, c);
        const double rm = val(after.params.at(bn->param("running_mean")).value, c);
        const double rv = val(after.params.at(bn->param("running_var")).value, c);
        EXPECT_NEAR(rm, 0.9 * rm0 + 0.1 * mean, 1e-5 * (1 + std::fabs(rm))) << "channel " << c;
        EXPECT_NEAR(rv, 0.9 * rv0 + 0.1 * var, 1e-5 * (1 + std::fabs(rv))) << "channel " << c;
    }
}

// Masked weights stay zero through steps and prune-and-regrow keeps each layer's count.
// The depth-wise kernel choices (fused / own layer / sparse kernels) travel in the checkpoint: a
// trainer loading one runs what it says, here every masked layer forced onto the sparse kernels;
// its next loss agrees with the writer's (dense kernels on the same masked weights) to 1e-5.
TEST(Trainer, KernelChoicesComeBackFromTheCheckpoint) {
    const graph::Graph g = tiny("slak-test", 4);
    const Tensor x = random_input(g, 5);
    const std::vector<int32_t> y = {0, 1, 2, 3};
    TrainOptions o = plain_sgd(0.01);
    o.sparsity = 0.4;
    Trainer a(g, o);
    a.step(x, y);
    CheckpointData st = a.state();
    Tensor& layout = st.tensors.at("train.dw_layout");
    ASSERT_EQ(layout.numel(), int64_t(g.nodes.size()));
    int forced = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const graph::Node& n = g.nodes[i];
        if (n.op != graph::OpKind::DwConv2d) continue;
        EXPECT_GE(layout.data<int64_t>()[i], 0) << n.name << " was not settled at the first step";
        if (a.masks().masks().count(n.param("weight"))) {
            layout.data<int64_t>()[i] = 2;
            ++forced;
        }
    }
    ASSERT_GT(forced, 0);
    // The forced nodes leave their layers: their measured variants no longer apply.
    st.tensors.erase("train.dw_variants");
    Trainer b(g, o);
    b.load_state(st);
    const Tensor back = b.state().tensors.at("train.dw_layout");
    for (int64_t i = 0; i < layout.numel(); ++i)
        EXPECT_EQ(back.data<int64_t>()[i], layout.data<int64_t>()[i]) << g.nodes[size_t(i)].name;
    bool sparse_ran = false;
    const double la = a.step(x, y).loss, lb = b.step(x, y).loss;
    for (const auto& t : b.last_times())
        sparse_ran = sparse_ran || t.kernels.rfind("sparse kernels", 0) == 0;
    EXPECT_TRUE(sparse_ran);
    EXPECT_NEAR(la, lb, 1e-5 * std::fabs(la));
    Tensor bad(DType::I64, {3});
    st.tensors["train.dw_layout"] = bad;
    Trainer c(g, o);
    EXPECT_THROW(c.load_state(st), std::runtime_error);
    // Codes out of range, or "sparse kernels" for a node without a mask, or a choice for a node
    // that is not depth-wise: refused, naming the node.
    for (int64_t code : {int64_t(5), int64_t(2), int64_t(0)}) {
        Tensor copy(DType::I64, back.shape());  // the valid layout read back above
        std::copy(back.data<int64_t>(), back.data<int64_t>() + back.numel(), copy.data<int64_t>());
        // 5: a depth-wise node; 2: an unmasked depth-wise node if any, else any other node;
        // 0: a node that is not depth-wise.
        size_t at = g.nodes.size();
        for (size_t i = 0; i < g.nodes.size() && at == g.nodes.size(); ++i) {
            const graph::Node& n = g.nodes[i];
            const bool dw = n.op == graph::OpKind::DwConv2d;
            const bool masked = dw && a.masks().masks().count(n.param("weight"));
            if ((code == 5 && dw) || (code == 2 && dw && !masked) || (code == 0 && !dw)) at = i;
        }
        for (size_t i = 0; i < g.nodes.size() && at == g.nodes.size(); ++i)
            if (g.nodes[i].op != graph::OpKind::DwConv2d) at = i;
        ASSERT_LT(at, g.nodes.size());
        copy.data<int64_t>()[at] = code;
        st.tensors["train.dw_layout"] = copy;
        Trainer e(g, o);
        try {
            e.load_state(st);
            ADD_FAILURE() << "code " << code << " at node '" << g.nodes[at].name << "' accepted";
        } catch (const std::runtime_error& err) {
            EXPECT_NE(std::string(err.what()).find("'" + g.nodes[at].name + "'"), std::string::npos)
                << err.what();
        }
    }
}

// AdamW lr 0.01, sparsity 0.4 with lane-row masks, pruning every 2 of 8 steps.
TrainOptions lane_rows_adamw() {
    TrainOptions o = plain_sgd(0.01);
    o.optimizer = "adamw";
    o.sparsity = 0.4;
    o.mask_structure = MaskStructure::LaneRows;
    o.prune_every = 2;
    o.total_steps = 8;
    return o;
}

// Lane-row masks: the masked depth-wise layers run one layer each with their row mask; the
// row-mask kernels forced through the checkpoint (train.dw_variants) give the loss of the
// variants without a mask (pruned rows are zero weights either way) within 1e-5, and the masks
// stay whole rows through pruning. A malformed variants table is refused, naming the line.
TEST(Trainer, LaneRowMasksRunTheRowMaskKernels) {
    const graph::Graph g = tiny("slak-test", 4);
    const Tensor x = random_input(g, 5);
    const std::vector<int32_t> y = {0, 1, 2, 3};
    TrainOptions o = lane_rows_adamw();
    Trainer a(g, o);
    int lane_row_keys = 0;
    for (const auto& [key, mk] : a.masks().masks())
        if (a.masks().lane_rows(key)) {
            a.masks().row_flags(key);  // uniform
            ++lane_row_keys;
        }
    ASSERT_GT(lane_row_keys, 0);
    a.step(x, y);
    CheckpointData st = a.state();
    const Tensor& vt = st.tensors.at("train.dw_variants");
    std::istringstream in(std::string(vt.data<uint8_t>(), vt.data<uint8_t>() + vt.numel()));
    std::string line, text;
    int forced = 0;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        size_t node;
        std::string fw, bd, bw;
        ASSERT_TRUE(bool(f >> node >> fw >> bd >> bw)) << line;
        const graph::Node& n = g.nodes[node];
        if (n.has_param("weight") && a.masks().lane_rows(n.param("weight"))) {
            fw = "dwconv2d_fwd_rows_t14c5_cpu";
            bd = "dwconv2d_bwd_data_rows_t14c5_ns_cpu";
            bw = "dwconv2d_bwd_weight_rows_t5c8_cpu";
            ++forced;
        }
        text += std::to_string(node) + " " + fw + " " + bd + " " + bw + "\n";
    }
    ASSERT_EQ(forced, lane_row_keys);
    auto put = [&](const std::string& t) {
        Tensor u(DType::U8, {int64_t(t.size())});
        std::copy(t.begin(), t.end(), u.data<uint8_t>());
        st.tensors["train.dw_variants"] = u;
    };
    if (!std::getenv("NOPUT")) put(text);
    Trainer b(g, o);
    b.load_state(st);
    for (int s = 0; s < 4; ++s) {
        const double la = a.step(x, y).loss, lb = b.step(x, y).loss;
        EXPECT_NEAR(la, lb, 1e-5 * std::fabs(la)) << "step " << s + 2;
    }
    int rows_ran = 0;
    for (const auto& t : b.last_times()) rows_ran += t.kernels.find("_rows_") != std::string::npos;
    EXPECT_EQ(rows_ran, lane_row_keys);
    for (const auto& [key, mk] : b.masks().masks())
        if (b.masks().lane_rows(key)) EXPECT_NO_THROW(b.masks().row_flags(key)) << key;
    const graph::Graph now = b.model();
    for (const auto& [key, mk] : b.masks().masks())
        for (int64_t i = 0; i < mk.numel(); ++i)
            if (mk.data<float>()[i] == 0.f)
                ASSERT_EQ(now.params.at(key).value.data<float>()[i], 0.f);
    for (const std::string bad : {std::string("0 a b\n"), std::string("100000 a b c\n"),
                                  text.substr(0, text.find(' ')) + " no_such_kernel b c\n"}) {
        put(bad);
        Trainer e(g, o);
        try {
            e.load_state(st);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::runtime_error& err) {
            EXPECT_NE(std::string(err.what()).find("train.dw_variants line 1"), std::string::npos)
                << err.what();
        }
    }
}

// Lane-block masked Linears (mask structure lane-rows) run their GEMMs on the kept blocks: the
// pruned terms are exact zeros, so the losses and every trained parameter (biases of pruned
// output rows included) are bitwise those of dense GEMMs on the masked weights, over 6 AdamW
// steps of 2 micro-batches with pruning; both axes occur; the measured choice (3 dense
// micro-batches, then 3 compact) changes nothing either and is decided after 6; the masks stay
// whole blocks.
TEST(Trainer, LaneBlockLinearsMatchDenseGemmsOnMaskedWeights) {
    const graph::Graph g = tiny("slak-test", 4);
    const Tensor x = random_input(g, 6);
    const std::vector<int32_t> y = {0, 1, 2, 3};
    TrainOptions o = lane_rows_adamw();
    o.mask_init = MaskInit::Uniform;
    o.grad_accum = 2;  // the compact weight gradient accumulates onto the running sum
    TrainOptions od = o, om = o;
    o.compact_gemm = TrainOptions::Compact::Always;
    od.compact_gemm = TrainOptions::Compact::Never;
    om.compact_gemm = TrainOptions::Compact::Measure;
    Trainer a(g, o), b(g, od), c(g, om);
    int out_axis = 0, in_axis = 0;
    for (const auto& [key, mk] : a.masks().masks())
        if (a.masks().lane_blocks(key)) {
            const std::vector<uint8_t> f = a.masks().block_flags(key);
            if (std::count(f.begin(), f.end(), uint8_t(0)) == 0) continue;
            (a.masks().lane_axis(key) == LaneAxis::Out ? out_axis : in_axis) += 1;
        }
    ASSERT_GT(out_axis, 0);
    ASSERT_GT(in_axis, 0);
    int64_t moved = 0;
    for (int s = 0; s < 6; ++s) {
        const StepResult ra = a.step(x, y), rb = b.step(x, y), rc = c.step(x, y);
        EXPECT_EQ(ra.loss, rb.loss) << "step " << s + 1;
        EXPECT_EQ(rc.loss, rb.loss) << "step " << s + 1;
        moved += ra.pruned;
    }
    EXPECT_GT(moved, 0);
    int compact = 0, decided = 0;
    for (const auto& t : a.last_times())
        compact += t.kernels.find(" blocks (always)") != std::string::npos;
    for (const auto& t : c.last_times())
        decided += t.kernels.find(" blocks (") != std::string::npos &&
                   t.kernels.find("vs dense") != std::string::npos;
    EXPECT_EQ(compact, out_axis + in_axis);
    EXPECT_EQ(decided, out_axis + in_axis);
    for (const auto& t : b.last_times())
        EXPECT_EQ(t.kernels.find(" blocks"), std::string::npos) << t.name << ": " << t.kernels;
    const graph::Graph ga = a.model(), gb = b.model(), gc = c.model();
    for (const auto& [key, p] : gb.params) {
        const Tensor& v = p.value;
        if (v.dtype() != DType::F32) continue;
        for (const graph::Graph* other : {&ga, &gc}) {
            const Tensor& u = other->params.at(key).value;
            for (int64_t i = 0; i < v.numel(); ++i)
                ASSERT_EQ(u.data<float>()[i], v.data<float>()[i]) << key << " element " << i;
        }
    }
    for (const auto& [key, mk] : a.masks().masks())
        if (a.masks().lane_blocks(key)) EXPECT_NO_THROW(a.masks().block_flags(key)) << key;
}

TEST(Trainer, MasksHoldThroughStepsAndPruning) {
    const graph::Graph g = tiny("slak-test");
    TrainOptions o = plain_sgd(0.05);
    o.optimizer = "adamw";
    o.sparsity = 0.4;
    o.prune_every = 2;
    o.total_steps = 6;
    Trainer t(g, o);
    ASSERT_FALSE(t.masks().empty());
    std::map<std::string, int64_t> kept;
    for (const auto& [key, m] : t.masks().masks()) kept[key] = t.masks().kept(key);
    int64_t moved = 0;
    for (int s = 0; s < 6; ++s) {
        moved += t.step(random_input(g, 100 + s), {s % 5, (s + 2) % 5}).pruned;
        const graph::Graph now = t.model();
        for (const auto& [key, m] : t.masks().masks()) {
            EXPECT_EQ(t.masks().kept(key), kept[key]) << key;
            const Tensor& w = now.params.at(key).value;
            for (int64_t i = 0; i < w.numel(); ++i)
                if (m.data<float>()[i] == 0.f)
                    ASSERT_EQ(w.data<float>()[i], 0.f) << key << "[" << i << "]";
        }
    }
    EXPECT_GT(moved, 0);
}

namespace {

Dataset small_fashion_mnist(int train_count) {
    Dataset d = load_idx_dataset(kFashionMnistDir);
    d.train.count = train_count;
    d.train.images.resize(size_t(train_count) * 28 * 28);
    d.train.labels.resize(size_t(train_count));
    d.test.count = 256;
    d.test.images.resize(256 * 28 * 28);
    d.test.labels.resize(256);
    return d;
}

RunOptions small_run(int64_t steps, double sparsity) {
    RunOptions r;
    r.model = "slak-test";
    r.batch = 16;
    r.steps = steps;
    r.train.lr = 2e-3;
    r.train.warmup_steps = 2;
    r.train.sparsity = sparsity;
    r.train.prune_every = sparsity > 0 ? 3 : 0;
    r.train.ema_decay = 0.9;
    r.train.drop_path = 0.2;  // its RNG stream is checkpointed too
    return r;
}

}  // namespace

// An interrupted run resumed from its checkpoint gives bitwise the same losses as one that was
// not interrupted (same data order, flips, masks, optimizer and EMA state, BN statistics, and the
// same depth-wise kernels: the fused-vs-separate and sparse-vs-dense choices are measured at the
// first step and stored in the checkpoint). The uninterrupted run writes the checkpoint at step 4
// and goes on; a second run resumes from it.
TEST(TrainingRun, ResumeMatchesUninterruptedRun) {
    if (!fs::exists(kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    const Dataset d = small_fashion_mnist(80);  // 5 batches: the run crosses an epoch
    for (int config = 0; config < 3; ++config) {
        const double sparsity = config == 0 ? 0.0 : 0.4;
        RunOptions r = small_run(8, sparsity);
        if (config == 2) r.train.mask_structure = MaskStructure::LaneRows;
        // Dense: every layer's measured variants (train.dw_variants) must come back too.
        if (config == 0) r.train.measure_variants = true;
        std::vector<double> straight, resumed;
        const std::string ck = (fs::temp_directory_path() / "lkc_test_resume.safetensors").string();
        {
            TrainingRun a(d, r);
            for (int s = 0; s < 8; ++s) {
                straight.push_back(a.step().loss);
                if (s == 3) a.save(ck);
            }
        }
        {
            TrainingRun b(d, r);
            b.resume(ck);
            EXPECT_EQ(b.steps_done(), 4);
            for (int s = 0; s < 4; ++s) resumed.push_back(b.step().loss);
        }
        fs::remove(ck);
        if (sparsity == 0) {
            // And against a separate uninterrupted run (no measured choice left: fixed layers),
            // which also shows that writing the checkpoint changes nothing.
            RunOptions fixed = r;
            fixed.train.fuse_branches = TrainOptions::Fuse::Never;
            fixed.train.measure_variants = false;
            std::vector<double> other, second;
            {
                TrainingRun a(d, fixed);
                for (int s = 0; s < 8; ++s) other.push_back(a.step().loss);
            }
            {
                TrainingRun a(d, fixed);
                for (int s = 0; s < 4; ++s) second.push_back(a.step().loss);
                a.save(ck);
            }
            {
                TrainingRun b(d, fixed);
                b.resume(ck);
                for (int s = 0; s < 4; ++s) second.push_back(b.step().loss);
            }
            fs::remove(ck);
            EXPECT_EQ(other, second) << "a run interrupted at step 4 vs one that was not";
        }
        ASSERT_EQ(resumed.size(), 4u);
        for (size_t i = 0; i < resumed.size(); ++i)
            EXPECT_EQ(straight[i + 4], resumed[i])
                << "sparsity " << sparsity << (config == 2 ? " lane rows" : "") << " step "
                << i + 5;
    }
}

TEST(TrainingRun, ResumeRejectsAnotherConfiguration) {
    if (!fs::exists(kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    const Dataset d = small_fashion_mnist(64);
    const std::string ck = (fs::temp_directory_path() / "lkc_test_resume2.safetensors").string();
    TrainingRun(d, small_run(4, 0)).save(ck);
    RunOptions other = small_run(4, 0);
    other.batch = 8;
    try {
        TrainingRun(d, other).resume(ck);
        ADD_FAILURE() << "resume with another batch did not throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("batch 16"), std::string::npos) << e.what();
    }
    fs::remove(ck);
}

// 100 steps on real Fashion-MNIST images: the mean loss of the last 10 steps is well below the
// first 10 (~ln 10 = 2.30 at the start), and the trained model beats chance (0.1) on the test
// images.
TEST(TrainingRun, ShortRunLearns) {
    if (!fs::exists(kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    const Dataset d = small_fashion_mnist(2000);
    RunOptions r = small_run(100, 0);
    r.train.ema_decay = 0;
    TrainingRun run(d, r);
    std::vector<double> loss;
    for (int s = 0; s < 100; ++s) loss.push_back(run.step().loss);
    double first = 0, last = 0;
    for (int i = 0; i < 10; ++i) {
        first += loss[size_t(i)] / 10;
        last += loss[size_t(90 + i)] / 10;
    }
    EXPECT_LT(last, first - 0.4) << "first 10 steps " << first << ", last 10 " << last;
    const EvalResult e = run.evaluate();
    EXPECT_EQ(e.samples, 256);
    EXPECT_GT(e.accuracy(), 0.4);
}
