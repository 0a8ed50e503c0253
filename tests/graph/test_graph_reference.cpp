// The double-precision reference executor: hand-computed one-node graphs, cross-checks against
// the op references of runtime/ (shift-wise, multi-branch, sparse), and every tiny model
// (deterministic, finite, non-trivial, batch-consistent, fast), plus RepLKNet train form vs its
// deploy form with weights merged by runtime/reparam.h.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "graph/builder.h"
#include "graph/models/models.h"
#include "graph/reference_executor.h"
#include "graph/weights.h"
#include "runtime/op_inputs.h"
#include "runtime/reference_ops.h"
#include "runtime/reparam.h"

namespace lkc {
namespace graph {
namespace {

Tensor f32(Shape shape, const std::vector<float>& v) {
    Tensor t(DType::F32, std::move(shape));
    EXPECT_EQ(static_cast<size_t>(t.numel()), v.size());
    std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
    return t;
}

// Deterministic values in [-1, 1).
Tensor random_f32(Shape shape, uint32_t seed) {
    Tensor t(DType::F32, std::move(shape));
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < t.numel(); ++i) {
        s = s * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>((s >> 8) * (2.0 / 16777216.0) - 1.0);
    }
    return t;
}

std::vector<double> values(const Tensor& t) {
    const double* p = t.data<double>();
    return std::vector<double>(p, p + t.numel());
}

void set_value(Graph& g, const std::string& key, Tensor t) {
    g.params.at(key).value = std::move(t);
}

// One-node graph builder: input "x" of `shape`, returns the graph after `body` adds nodes.
template <typename F>
Graph one_node(Shape shape, Layout layout, F body) {
    GraphBuilder b("one_node");
    int x = b.input("x", std::move(shape), layout);
    b.output(body(b, x));
    return b.finish();
}

std::vector<double> run1(const Graph& g, const Tensor& x) {
    ReferenceResult r = run_reference(g, {{"x", x}});
    return values(r.outputs.begin()->second);
}

TEST(GraphReference, Conv2dByHand) {
    Graph g = one_node({1, 1, 3, 3}, Layout::NCHW, [](GraphBuilder& b, int x) {
        return b.conv2d("conv", x, 1, 3, 3, 1, 1, 1, 1, true);
    });
    set_value(g, "conv.weight", f32({1, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 1, 1, 1}));
    set_value(g, "conv.bias", f32({1}, {0.5f}));
    std::vector<double> y = run1(g, f32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(y[4], 45.5);                 // centre: sum of all nine + bias
    EXPECT_EQ(y[0], 1 + 2 + 4 + 5 + 0.5);  // corner: four taps inside the image
    EXPECT_EQ(y[5], 2 + 3 + 5 + 6 + 8 + 9 + 0.5);
}

TEST(GraphReference, StridedGroupedConvByHand) {
    // 2 groups, stride 2, no padding: each output channel sees one input channel.
    Graph g = one_node({1, 2, 4, 4}, Layout::NCHW, [](GraphBuilder& b, int x) {
        return b.conv2d("conv", x, 2, 2, 2, 2, 0, 0, 2, false);
    });
    set_value(g, "conv.weight", f32({2, 1, 2, 2}, {1, 0, 0, 0, 0, 0, 0, 2}));
    std::vector<float> xv(32);
    for (int i = 0; i < 32; ++i) xv[i] = static_cast<float>(i);
    std::vector<double> y = run1(g, f32({1, 2, 4, 4}, xv));
    ASSERT_EQ(y.size(), 8u);
    // channel 0 picks x[0, 2i, 2j]; channel 1 picks 2 * x[1, 2i+1, 2j+1]
    EXPECT_EQ(y[0], 0);
    EXPECT_EQ(y[1], 2);
    EXPECT_EQ(y[3], 10);
    EXPECT_EQ(y[4], 2 * (16 + 5));
    EXPECT_EQ(y[7], 2 * (16 + 15));
}

TEST(GraphReference, NormsAndActivationsByHand) {
    // BatchNorm: (3 - 1) / sqrt(4) * 2 + 1 = 3 with var + eps = 4.
    Graph bn = one_node({1, 1, 1, 1}, Layout::NCHW,
                        [](GraphBuilder& b, int x) { return b.batch_norm("bn", x, 0.5); });
    set_value(bn, "bn.weight", f32({1}, {2}));
    set_value(bn, "bn.bias", f32({1}, {1}));
    set_value(bn, "bn.running_mean", f32({1}, {1}));
    set_value(bn, "bn.running_var", f32({1}, {3.5f}));
    set_value(bn, "bn.num_batches_tracked", Tensor(DType::I64, {}));
    EXPECT_EQ(run1(bn, f32({1, 1, 1, 1}, {3}))[0], 3.0);

    // LayerNorm over 2 channels of one pixel: (1, 3) -> (-1, 1) / sqrt(1 + eps).
    Graph ln = one_node({1, 2, 1, 1}, Layout::NCHW,
                        [](GraphBuilder& b, int x) { return b.layer_norm("ln", x, 0.25); });
    set_value(ln, "ln.weight", f32({2}, {1, 2}));
    set_value(ln, "ln.bias", f32({2}, {0, 10}));
    std::vector<double> y = run1(ln, f32({1, 2, 1, 1}, {1, 3}));
    EXPECT_DOUBLE_EQ(y[0], -1 / std::sqrt(1.25));
    EXPECT_DOUBLE_EQ(y[1], 2 / std::sqrt(1.25) + 10);

    // GRN: channel 0 = (3, 4) has ||.|| 5, channel 1 = (0, 0) has 0; mean 2.5, eps 0.5:
    // N = (5/3, 0); y0 = (1 * 5/3 + 1) * x + 0.5, y1 = x + 0.25.
    Graph grn = one_node({1, 2, 1, 2}, Layout::NCHW,
                         [](GraphBuilder& b, int x) { return b.grn("grn", x, 0.5); });
    set_value(grn, "grn.gamma", f32({1, 1, 1, 2}, {1, 1}));
    set_value(grn, "grn.beta", f32({1, 1, 1, 2}, {0.5f, 0.25f}));
    y = run1(grn, f32({1, 2, 1, 2}, {3, 4, 0, 0}));
    EXPECT_DOUBLE_EQ(y[0], (5.0 / 3 + 1) * 3 + 0.5);
    EXPECT_DOUBLE_EQ(y[1], (5.0 / 3 + 1) * 4 + 0.5);
    EXPECT_DOUBLE_EQ(y[2], 0.25);

    Graph gelu = one_node({1, 3}, Layout::NC,
                          [](GraphBuilder& b, int x) { return b.unary(OpKind::Gelu, "gelu", x); });
    y = run1(gelu, f32({1, 3}, {1, 0, -1}));
    EXPECT_NEAR(y[0], 0.8413447460685429, 1e-15);  // Phi(1)
    EXPECT_EQ(y[1], 0.0);
    EXPECT_NEAR(y[2], -0.15865525393145707, 1e-15);

    Graph sm = one_node({1, 2}, Layout::NC, [](GraphBuilder& b, int x) {
        return b.unary(OpKind::Softmax, "softmax", x);
    });
    y = run1(sm, f32({1, 2}, {0, std::log(3.0f)}));
    EXPECT_NEAR(y[0], 0.25, 1e-7);
    EXPECT_NEAR(y[1], 0.75, 1e-7);
}

TEST(GraphReference, SEPiecesSelectConcatPermute) {
    // x * sigmoid(mean): broadcast [1,2,2,2] * [1,2,1,1].
    Graph g = one_node({1, 2, 2, 2}, Layout::NCHW, [](GraphBuilder& b, int x) {
        int p = b.avg_pool("pool", x, true);
        int s = b.unary(OpKind::Sigmoid, "sigmoid", p);
        return b.binary(OpKind::Mul, "mul", x, s);
    });
    std::vector<double> y = run1(g, f32({1, 2, 2, 2}, {1, 1, 1, 1, 0, 0, 2, 2}));
    const double s0 = 1 / (1 + std::exp(-1.0)), s1 = s0;  // both channel means are 1
    EXPECT_DOUBLE_EQ(y[0], s0);
    EXPECT_DOUBLE_EQ(y[6], 2 * s1);

    // select channels (2, 0) and concat with the input: 5 channels.
    GraphBuilder b("select");
    int x = b.input("x", {1, 3, 1, 1});
    Tensor idx(DType::I32, {2});
    idx.data<int32_t>()[0] = 2;
    idx.data<int32_t>()[1] = 0;
    std::string key = b.constant("idx", idx);
    int s = b.channel_select("select", x, key);
    int c = b.concat("concat", {s, x});
    Node perm;
    perm.op = OpKind::Permute;
    perm.name = "permute";
    perm.inputs = {c};
    perm.attrs.perm = {0, 2, 3, 1};
    int p = b.add1(perm);
    b.output(b.flatten("flatten", p));
    Graph sg = b.finish();
    EXPECT_EQ(sg.tensor(p).layout, Layout::NHWC);
    y = run1(sg, f32({1, 3, 1, 1}, {10, 20, 30}));
    EXPECT_EQ(y, (std::vector<double>{30, 10, 10, 20, 30}));
}

// LayerNorm -> GRN -> Linear -> Scale -> BatchNorm -> Softmax on the channel axis.
int channel_chain(GraphBuilder& b, int x) {
    x = b.layer_norm("ln", x);
    x = b.grn("grn", x);
    x = b.linear("fc", x, 5, true);
    x = b.scale("gamma", "gamma", x);
    x = b.batch_norm("bn", x);
    return b.unary(OpKind::Softmax, "softmax", x);
}

int permute(GraphBuilder& b, const std::string& name, int x, std::vector<int> perm) {
    Node p;
    p.op = OpKind::Permute;
    p.name = name;
    p.inputs = {x};
    p.attrs.perm = std::move(perm);
    return b.add1(p);
}

TEST(GraphReference, ChannelOpsOnEveryLayout) {
    // The same channel-wise chain on NCHW and on NHWC (between permutes) gives the same numbers.
    const Shape xs = {2, 3, 2, 3};
    Tensor x = random_f32(xs, 7);
    Graph nchw = one_node(xs, Layout::NCHW, channel_chain);
    Graph nhwc = one_node(xs, Layout::NCHW, [](GraphBuilder& b, int x) {
        int y = channel_chain(b, permute(b, "to_nhwc", x, {0, 2, 3, 1}));
        EXPECT_EQ(b.desc(y).layout, Layout::NHWC);
        return permute(b, "to_nchw", y, {0, 3, 1, 2});
    });
    init_weights(nchw, 3, InitMode::Test);
    init_weights(nhwc, 3, InitMode::Test);
    std::vector<double> a = run1(nchw, x), c = run1(nhwc, x);
    ASSERT_EQ(a.size(), c.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], c[i], 1e-15) << i;

    // Linear by hand for one output: y[0, 1, 0, 1] = b[1] + sum_c w[1, c] x[0, c, 0, 1].
    Graph fc = one_node({1, 3, 2, 2}, Layout::NCHW,
                        [](GraphBuilder& b, int x) { return b.linear("fc", x, 2, true); });
    init_weights(fc, 3, InitMode::Test);
    Tensor x2 = random_f32({1, 3, 2, 2}, 8);
    const float* w = fc.params.at("fc.weight").value.data<float>();
    const float* bb = fc.params.at("fc.bias").value.data<float>();
    const float* xv = x2.data<float>();
    double expect = bb[1] + double(w[3]) * xv[1] + double(w[4]) * xv[5] + double(w[5]) * xv[9];
    EXPECT_DOUBLE_EQ(run1(fc, x2)[4 + 1], expect);
}

// Small-integer inputs make float sums exact, so the op references (which read F32) must agree
// with the graph executor exactly.
Tensor small_ints(Shape shape, uint32_t seed, int lo, int hi) {
    Tensor t(DType::F32, std::move(shape));
    uint32_t s = seed;
    for (int64_t i = 0; i < t.numel(); ++i) {
        s = s * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>(lo + static_cast<int>((s >> 16) % (hi - lo + 1)));
    }
    return t;
}

TEST(GraphReference, ShiftWiseMatchesOpReference) {
    const Workload w = parse_workload("shiftwise:fwd:n2c5h9w7:K13k3g3");
    std::map<std::string, Tensor> in = make_example_inputs(w, 11, true);
    // The graph: ShiftWise with two paths whose sum is the op's w.
    GraphBuilder b("sw");
    int x = b.input("x", in.at("x").shape());
    Node n;
    n.op = OpKind::ShiftWise;
    n.name = "sw";
    n.inputs = {x};
    n.attrs.big_k = 13;
    n.attrs.small_k = 3;
    n.params["weight0"] = b.param("w0", {25, 1, 3, 3}, ParamInit::Weight);
    n.params["weight1"] = b.param("w1", {5, 5, 3, 3}, ParamInit::Weight);
    n.consts["slot_h"] = b.constant("slot_h", in.at("slot_h"));
    n.consts["slot_v"] = b.constant("slot_v", in.at("slot_v"));
    n.consts["ident"] = b.constant("ident", in.at("ident"));
    std::vector<int> ys = b.add(n, {"yh", "yv", "ys"});
    for (int y : ys) b.output(y);
    Graph g = b.finish();
    Tensor w0 = small_ints({25, 1, 3, 3}, 5, -1, 1);
    Tensor w1(DType::F32, {5, 5, 3, 3});
    for (int64_t i = 0; i < w1.numel(); ++i) {
        w1.data<float>()[i] = in.at("w").data<float>()[i] - w0.data<float>()[i];
    }
    set_value(g, "w0", w0);
    set_value(g, "w1", w1);
    ReferenceResult r = run_reference(g, {{"x", in.at("x")}});
    auto expect = ref::op_reference(w, in);
    for (const char* name : {"yh", "yv", "ys"}) {
        SCOPED_TRACE(name);
        EXPECT_EQ(values(r.outputs.at(std::string("sw.") + name)), expect.at(name));
    }
}

TEST(GraphReference, MultiAndSparseMatchSeparateConvs) {
    // dwconv2d_multi (51x5 + 5x51 + 5x5 style, small) == sum of the three DwConv2d nodes.
    const Shape xs = {2, 3, 9, 11};
    GraphBuilder b("multi");
    int x = b.input("x", xs);
    Node m;
    m.op = OpKind::DwConv2dMulti;
    m.name = "multi";
    m.inputs = {x};
    m.attrs.dilations = {1, 1, 2};
    m.params["weight0"] = b.param("a.weight", {3, 1, 7, 3}, ParamInit::Weight);
    m.params["weight1"] = b.param("b.weight", {3, 1, 3, 7}, ParamInit::Weight);
    m.params["weight2"] = b.param("c.weight", {3, 1, 3, 3}, ParamInit::Weight);
    m.params["bias"] = b.param("bias", {3}, ParamInit::Bias);
    b.output(b.add1(m));
    Graph multi = b.finish();
    init_weights(multi, 5, InitMode::Test);

    GraphBuilder s("separate");
    int y = s.input("x", xs);
    int a0 = s.dwconv("a", y, 7, 3, 1, 1, false);
    int a1 = s.dwconv("b", y, 3, 7, 1, 1, false);
    int a2 = s.dwconv("c", y, 3, 3, 1, 2, true);
    s.output(s.binary(OpKind::Add, "add2", s.binary(OpKind::Add, "add1", a0, a1), a2));
    Graph sep = s.finish();
    for (const char* k : {"a.weight", "b.weight", "c.weight"}) {
        set_value(sep, k, multi.params.at(k).value);
    }
    set_value(sep, "c.bias", multi.params.at("bias").value);
    Tensor xin = random_f32(xs, 3);
    std::vector<double> p = run1(multi, xin), q = run1(sep, xin);
    ASSERT_EQ(p.size(), q.size());
    for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], q[i], 1e-12) << i;

    // dwconv2d_sparse == dwconv2d with the masked weight.
    GraphBuilder sb("sparse");
    int z = sb.input("x", xs);
    Node sp;
    sp.op = OpKind::DwConv2dSparse;
    sp.name = "sparse";
    sp.inputs = {z};
    sp.attrs.stride = 2;
    sp.params["weight"] = sb.param("w", {3, 1, 5, 5}, ParamInit::Weight);
    Tensor mask = small_ints({3, 1, 5, 5}, 9, 0, 1);
    sp.consts["mask"] = sb.constant("mask", mask);
    sb.output(sb.add1(sp));
    Graph sparse = sb.finish();
    init_weights(sparse, 6, InitMode::Test);
    Graph dense = one_node(xs, Layout::NCHW, [](GraphBuilder& b, int x) {
        return b.dwconv("d", x, 5, 5, 2, 1, false);
    });
    Tensor wm(DType::F32, {3, 1, 5, 5});
    for (int64_t i = 0; i < wm.numel(); ++i) {
        wm.data<float>()[i] = sparse.params.at("w").value.data<float>()[i] * mask.data<float>()[i];
    }
    set_value(dense, "d.weight", wm);
    EXPECT_EQ(run1(sparse, xin), run1(dense, xin));
}

class TinyModel : public ::testing::TestWithParam<const char*> {};

ModelOptions tiny_options(int batch) {
    ModelOptions o;
    o.image_size = 32;
    o.num_classes = 10;
    o.batch = batch;
    return o;
}

TEST_P(TinyModel, DeterministicFiniteNonTrivialAndFast) {
    Graph g = build_model(GetParam(), tiny_options(2));
    init_weights(g, 42, InitMode::Test);
    Tensor x = random_f32({2, 3, 32, 32}, 1);
    auto t0 = std::chrono::steady_clock::now();
    ReferenceResult r1 = run_reference(g, {{"x", x}});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ReferenceResult r2 = run_reference(g, {{"x", x}});
    std::vector<double> y = values(r1.outputs.at("head"));
    ASSERT_EQ(y.size(), 20u);
    EXPECT_EQ(y, values(r2.outputs.at("head")));  // deterministic
    double mean = 0, var = 0, diff = 0;
    for (double v : y) {
        EXPECT_TRUE(std::isfinite(v));
        mean += v / 20;
    }
    for (size_t i = 0; i < 20; ++i) {
        var += (y[i] - mean) * (y[i] - mean) / 20;
        if (i < 10) diff = std::max(diff, std::abs(y[i] - y[i + 10]));
    }
    EXPECT_GT(std::sqrt(var), 1e-3) << "logits are (nearly) constant";
    EXPECT_GT(diff, 1e-6) << "the two images give the same logits";
    EXPECT_LT(seconds, 2.0);
    RecordProperty("seconds", std::to_string(seconds));

    // Batch consistency: image 1 alone gives row 1 of the batch-2 result.
    Graph g1 = build_model(GetParam(), tiny_options(1));
    for (auto& kv : g1.params) kv.second.value = g.params.at(kv.first).value;
    Tensor x1(DType::F32, {1, 3, 32, 32});
    std::memcpy(x1.data<float>(), x.data<float>() + 3 * 32 * 32, 3 * 32 * 32 * sizeof(float));
    std::vector<double> y1 = values(run_reference(g1, {{"x", x1}}).outputs.at("head"));
    for (size_t i = 0; i < 10; ++i) EXPECT_NEAR(y1[i], y[10 + i], 1e-12 * (1 + std::abs(y1[i])));

    // Official init runs too (outputs finite).
    init_weights(g, 42, InitMode::Official);
    for (double v : values(run_reference(g, {{"x", x}}).outputs.at("head"))) {
        EXPECT_TRUE(std::isfinite(v));
    }
}

INSTANTIATE_TEST_SUITE_P(Graph, TinyModel,
                         ::testing::Values("replknet-test", "slak-test", "unireplknet-test",
                                           "shiftwise-test"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n) c = c == '-' ? '_' : c;
                             return n;
                         });

TEST(GraphReference, KeepAllReturnsEveryTensor) {
    Graph g = build_model("slak-test", tiny_options(1));
    init_weights(g, 1, InitMode::Test);
    ReferenceOptions o;
    o.keep_all = true;
    ReferenceResult r = run_reference(g, {{"x", random_f32({1, 3, 32, 32}, 2)}}, o);
    ASSERT_EQ(r.values.size(), g.tensors.size());
    for (size_t i = 0; i < g.tensors.size(); ++i) {
        EXPECT_EQ(r.values[i].shape(), g.tensors[i].shape) << g.tensors[i].name;
    }
    EXPECT_EQ(values(r.values[static_cast<size_t>(g.outputs[0])]), values(r.outputs.at("head")));
}

TEST(GraphReference, RepLKNetTrainFormEqualsMergedDeployForm) {
    // Fold every large-kernel pair (K x K + BN, 5x5 + BN) into lkb_reparam with runtime/reparam.h;
    // all other parameters keep their names.
    Graph train = build_model("replknet-test", tiny_options(2));
    init_weights(train, 9, InitMode::Test);
    ModelOptions d = tiny_options(2);
    d.deploy = true;
    Graph deploy = build_model("replknet-test", d);
    auto bn = [&](const std::string& m) {
        reparam::BatchNorm r;
        r.gamma = train.params.at(m + ".weight").value;
        r.beta = train.params.at(m + ".bias").value;
        r.mean = train.params.at(m + ".running_mean").value;
        r.var = train.params.at(m + ".running_var").value;
        return r;
    };
    for (auto& kv : deploy.params) {
        const std::string& k = kv.first;
        const std::string suffix = ".lkb_reparam.weight";
        if (train.params.count(k)) {
            kv.second.value = train.params.at(k).value;
        } else if (k.size() > suffix.size() &&
                   k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
            const std::string lk = k.substr(0, k.size() - suffix.size());
            reparam::ConvParams big =
                reparam::fold_bn(train.params.at(lk + ".lkb_origin.conv.weight").value, Tensor(),
                                 bn(lk + ".lkb_origin.bn"));
            reparam::ConvParams small =
                reparam::fold_bn(train.params.at(lk + ".small_conv.conv.weight").value, Tensor(),
                                 bn(lk + ".small_conv.bn"));
            reparam::ConvParams merged =
                reparam::merge_branches({{big.w, big.b, 1}, {small.w, small.b, 1}});
            kv.second.value = merged.w;
            deploy.params.at(lk + ".lkb_reparam.bias").value = merged.b;
        }
    }
    ASSERT_TRUE(deploy.has_values());
    Tensor x = random_f32({2, 3, 32, 32}, 4);
    std::vector<double> a = run1(train, x), b = run1(deploy, x);
    double scale = 0;
    for (double v : a) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * scale) << i;
}

TEST(GraphReference, BadInputsAreReported) {
    Graph g = build_model("slak-test", tiny_options(1));
    EXPECT_THROW(run_reference(g, {{"x", random_f32({1, 3, 32, 32}, 1)}}),
                 GraphError);  // no values
    init_weights(g, 1);
    try {
        run_reference(g, {{"x", random_f32({1, 3, 16, 16}, 1)}});
        FAIL();
    } catch (const GraphError& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "input 'x' has shape [1, 3, 16, 16], expected [1, 3, 32, 32]"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_THROW(run_reference(g, {}), GraphError);
    EXPECT_THROW(run_reference(g, {{"x", random_f32({1, 3, 32, 32}, 1)}, {"y", Tensor()}}),
                 GraphError);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
