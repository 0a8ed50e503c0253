// The graph passes (graph/passes): every tiny model's train form against the passes' deploy forms
// (each alternative form forced through the cost callback) on the double-precision reference
// executor, each pass on small hand-built graphs (BN folding exact on small integers), the
// official deploy forms' parameter counts, layouts, epilogues, naming and purity.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>

#include "graph/builder.h"
#include "graph/cost.h"
#include "graph/models/models.h"
#include "graph/passes/passes.h"
#include "graph/reference_executor.h"
#include "graph/weights.h"

namespace lkc {
namespace graph {
namespace {

using passes::DeployForm;
using passes::DeployOptions;

ModelOptions tiny(int batch = 2) {
    ModelOptions o;
    o.image_size = 32;
    o.num_classes = 10;
    o.batch = batch;
    return o;
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

Tensor small_ints(Shape shape, uint32_t seed, int lo, int hi) {
    Tensor t(DType::F32, std::move(shape));
    uint32_t s = seed;
    for (int64_t i = 0; i < t.numel(); ++i) {
        s = s * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>(lo + static_cast<int>((s >> 16) % (hi - lo + 1)));
    }
    return t;
}

void set(Graph& g, const std::string& key, const std::vector<float>& v) {
    Param& p = g.params.at(key);
    Tensor t(DType::F32, p.shape);
    ASSERT_EQ(static_cast<size_t>(t.numel()), v.size()) << key;
    std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
    p.value = t;
}

void set_ints(Graph& g, const std::string& key, uint32_t seed, int lo, int hi) {
    g.params.at(key).value = small_ints(g.params.at(key).shape, seed, lo, hi);
}

std::vector<double> values(const Tensor& t) {
    const double* p = t.data<double>();
    return std::vector<double>(p, p + t.numel());
}

// The graph's outputs (concatenated in order) on the reference executor, after lowering
// epilogues, fused shift-wise nodes and reorders.
std::vector<double> run(const Graph& g, const Tensor& x) {
    Graph l = passes::lower_for_reference(g);
    ReferenceResult r = run_reference(l, {{g.tensor(g.inputs[0]).name, x}});
    std::vector<double> all;
    for (int t : g.outputs) {
        std::vector<double> v = values(r.outputs.at(g.tensor(t).name));
        all.insert(all.end(), v.begin(), v.end());
    }
    return all;
}

// max |a - b| / max |a|.
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    EXPECT_EQ(a.size(), b.size());
    double scale = 0, err = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        scale = std::max(scale, std::abs(a[i]));
        err = std::max(err, std::abs(a[i] - b[i]));
    }
    return scale > 0 ? err / scale : err;
}

uint64_t fnv(const void* p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    const unsigned char* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

// Everything a pass could change, as text (values hashed).
std::string fingerprint(const Graph& g) {
    std::ostringstream s;
    s << g.model << "\n";
    for (const TensorDesc& t : g.tensors) {
        s << "T " << t.name << shape_to_string(t.shape) << dtype_name(t.dtype)
          << layout_name(t.layout) << layout_name(t.storage) << "\n";
    }
    for (const Node& n : g.nodes) {
        s << "N " << op_name(n.op) << " " << n.name << " in";
        for (int t : n.inputs) s << " " << t;
        s << " out";
        for (int t : n.outputs) s << " " << t;
        for (const auto& kv : n.params) s << " p:" << kv.first << "=" << kv.second;
        for (const auto& kv : n.consts) s << " c:" << kv.first << "=" << kv.second;
        const Attrs& a = n.attrs;
        s << " a:" << a.stride << "," << a.dilation << "," << a.pad_h << "," << a.pad_w << ","
          << a.groups << "," << a.eps << "," << a.keepdims << "," << a.big_k << "," << a.small_k;
        for (int d : a.dilations) s << " d" << d;
        for (int d : a.perm) s << " q" << d;
        for (const Epilogue& e : a.epilogues) {
            s << " e:" << epilogue_name(e.op) << "," << e.name << "," << e.input << "," << e.eps;
        }
        s << "\n";
    }
    for (int t : g.inputs) s << "I " << t << "\n";
    for (int t : g.outputs) s << "O " << t << "\n";
    for (const auto& kv : g.params) {
        const Param& p = kv.second;
        s << "P " << kv.first << shape_to_string(p.shape) << dtype_name(p.dtype) << p.buffer
          << int(p.init) << p.fan_in << " "
          << (p.value.empty() ? 0 : fnv(p.value.raw(), p.value.nbytes())) << "\n";
    }
    for (const auto& kv : g.constants) {
        s << "C " << kv.first << " " << fnv(kv.second.raw(), kv.second.nbytes()) << "\n";
    }
    return s.str();
}

int count_op(const Graph& g, OpKind op) {
    int n = 0;
    for (const Node& x : g.nodes) n += x.op == op ? 1 : 0;
    return n;
}

const Node& node(const Graph& g, const std::string& name) {
    for (const Node& n : g.nodes) {
        if (n.name == name) return n;
    }
    throw GraphError("test: no node '" + name + "'");
}

// A cost callback that makes `op` the cheapest form.
passes::CostFn prefer(Op op) {
    return [op](const Workload& w) { return w.op == op ? 0.0 : 1.0; };
}

// ---- every tiny model: train form vs deploy forms -------------------------------------------

struct Config {
    const char* name;
    std::function<DeployOptions(const std::string& family)> options;
};

DeployOptions forced(Op op, bool full) {
    DeployOptions o;
    o.reparameterize.cost = prefer(op);
    o.reparameterize.sparse_max_density = 1.0;  // every merged kernel is a sparse candidate
    o.fuse = full;
    o.layouts = full;
    return o;
}

const Config kConfigs[] = {
    {"default_full", [](const std::string&) { return DeployOptions{}; }},
    {"default_unfused",
     [](const std::string&) {
         DeployOptions o;
         o.fuse = false;
         o.layouts = false;
         return o;
     }},
    {"dense", [](const std::string&) { return forced(Op::DwConv2d, true); }},
    {"multi", [](const std::string&) { return forced(Op::DwConv2dMulti, true); }},
    {"sparse", [](const std::string&) { return forced(Op::DwConv2dSparse, true); }},
    {"shiftwise", [](const std::string&) { return forced(Op::ShiftWise, true); }},
    {"official",
     [](const std::string& family) {
         return family == "slak" ? forced(Op::DwConv2d, false)
                                 : passes::official_deploy_options(family);
     }},
};

class TinyDeploy : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(TinyDeploy, TrainFormEqualsDeployForm) {
    const std::string model = std::get<0>(GetParam());
    const Config& cfg = kConfigs[std::get<1>(GetParam())];
    const std::string family = model_info(model).family;
    Graph train = build_model(model, tiny(2));
    init_weights(train, 42, InitMode::Test);
    const std::string before = fingerprint(train);
    DeployOptions o = cfg.options(family);
    std::vector<passes::FormChoice> report;
    o.reparameterize.report = &report;
    Graph d = passes::deploy(train, o);
    EXPECT_EQ(fingerprint(train), before) << "deploy changed its input graph";
    validate(d);
    ASSERT_TRUE(d.has_values());

    Tensor x = random_f32({2, 3, 32, 32}, 5);
    const std::vector<double> a = values(run_reference(train, {{"x", x}}).outputs.at("head"));
    const double err = rel_err(a, run(d, x));
    EXPECT_LT(err, 1e-4) << model << " / " << cfg.name;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", err);
    RecordProperty("relative_error", buf);

    // What each configuration must have produced.
    const int bns = count_op(d, OpKind::BatchNorm);
    const std::string c = cfg.name;
    if (c == "default_unfused" || c == "dense" || c == "multi" || c == "sparse" ||
        c == "shiftwise" || c == "default_full") {
        // Left: BNs that follow no conv / Linear (RepLKNet's head norm after the residual add,
        // ShiftWise's block norm after the concat); fused ones became epilogues.
        // Fused graphs: RepLKNet's head norm is an epilogue of the last pw2 conv (after its
        // residual add).
        const int expect = family == "shiftwise"                            ? 2
                           : family == "replknet" && c == "default_unfused" ? 1
                                                                            : 0;
        EXPECT_EQ(bns, expect) << c;
        EXPECT_EQ(count_op(d, OpKind::Scale), 0) << "layer scales are folded";
    }
    if (c == "multi" && family != "unireplknet") {
        EXPECT_GT(count_op(d, OpKind::DwConv2dMulti), 0);
    }
    if (c == "multi" && family == "unireplknet") {
        EXPECT_EQ(count_op(d, OpKind::DwConv2dMulti), 2);  // the two DRBs
    }
    if (c == "sparse") {
        EXPECT_EQ(count_op(d, OpKind::DwConv2d), 0) << "every dw conv became sparse";
        EXPECT_GT(count_op(d, OpKind::DwConv2dSparse), 0);
    }
    if (c == "shiftwise" && family == "shiftwise") {
        int fused = 0;
        for (const Node& n : d.nodes) fused += n.op == OpKind::ShiftWise && n.has_param("ah");
        EXPECT_EQ(fused, 2);
    }
    if (c == "dense") {
        EXPECT_EQ(count_op(d, OpKind::DwConv2dMulti), 0);
        EXPECT_EQ(count_op(d, OpKind::ShiftWise), 0);
        EXPECT_EQ(count_op(d, OpKind::DwConv2dSparse), 0);
    }
    if (std::string(cfg.name).find("default") == 0 || c == "dense" || c == "multi" ||
        c == "sparse" || c == "shiftwise") {
        // One choice per merged layer: RepLKNet 2, SLaK 2, UniRepLKNet 2 DRBs, ShiftWise 2.
        int merged = 0;
        for (const auto& fc : report) merged += fc.node.find(".reparam") != std::string::npos;
        EXPECT_EQ(merged, 2);
    }
    if (o.layouts) {
        EXPECT_EQ(count_op(d, OpKind::Reorder), 2) << "only the image and the logits convert";
        for (const TensorDesc& t : d.tensors) EXPECT_NE(t.storage, Layout::Any) << t.name;
    }
    if (o.fuse) {
        // An elementwise node is left only where no conv / Linear alone produces its input
        // (UniRepLKNet's and ShiftWise's stem GELU after a LayerNorm).
        std::vector<int> producer(d.tensors.size(), -1), uses(d.tensors.size(), 0);
        for (size_t i = 0; i < d.nodes.size(); ++i) {
            for (int t : d.nodes[i].outputs) producer[size_t(t)] = int(i);
            for (int t : d.nodes[i].inputs) ++uses[size_t(t)];
        }
        int left = 0;
        for (const Node& n : d.nodes) {
            if (n.op != OpKind::Relu && n.op != OpKind::Gelu && n.op != OpKind::Sigmoid) continue;
            ++left;
            const int p = producer[size_t(n.inputs[0])];
            ASSERT_GE(p, 0);
            const OpKind po = d.nodes[size_t(p)].op;
            EXPECT_TRUE(uses[size_t(n.inputs[0])] > 1 ||
                        !(po == OpKind::Conv2d || po == OpKind::Linear || po == OpKind::DwConv2d))
                << n.name << " was not fused into " << d.nodes[size_t(p)].name;
        }
        EXPECT_EQ(left, family == "unireplknet" || family == "shiftwise" ? 1 : 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Passes, TinyDeploy,
                         ::testing::Combine(::testing::Values("replknet-test", "slak-test",
                                                              "unireplknet-test", "shiftwise-test"),
                                            ::testing::Range(0, 7)),
                         [](const auto& info) {
                             std::string n = std::get<0>(info.param);
                             for (char& c : n) c = c == '-' ? '_' : c;
                             return n + "_" + kConfigs[std::get<1>(info.param)].name;
                         });

// ---- BN folding -----------------------------------------------------------------------------

// BN with running_var 3.75 and eps 0.25: sqrt(var + eps) = 2, so t = gamma / 2 is exact and
// every folded value is a small integer (or half-integer): the outputs agree exactly.
void exact_bn(Graph& g, const std::string& bn, int64_t c, uint32_t seed) {
    std::vector<float> gamma, var(static_cast<size_t>(c), 3.75f);
    for (int64_t i = 0; i < c; ++i) gamma.push_back(static_cast<float>(2 * ((i % 3) - 1) + 4));
    set(g, bn + ".weight", gamma);
    set(g, bn + ".running_var", var);
    set_ints(g, bn + ".bias", seed, -3, 3);
    set_ints(g, bn + ".running_mean", seed + 1, -2, 2);
}

TEST(PassesFoldBatchNorm, ExactOnSmallIntegersForEveryProducer) {
    GraphBuilder b("fold");
    int x = b.input("x", {1, 4, 6, 6});
    int c = b.batch_norm("c.bn", b.conv2d("c.conv", x, 4, 3, 3, 1, 1, 1, 2, true), 0.25);
    int d = b.batch_norm("d.bn", b.dwconv("d.conv", c, 5, 3, 1, 2, false), 0.25);
    Node m;  // multi-branch 3x3 + 5x5 (d2)
    m.op = OpKind::DwConv2dMulti;
    m.name = "m.conv";
    m.inputs = {d};
    m.attrs.dilations = {1, 2};
    m.params["weight0"] = b.param("m.conv.w0", {4, 1, 3, 3}, ParamInit::Weight);
    m.params["weight1"] = b.param("m.conv.w1", {4, 1, 5, 5}, ParamInit::Weight);
    int mm = b.batch_norm("m.bn", b.add1(m), 0.25);
    Tensor mask = small_ints({4, 1, 3, 3}, 3, 0, 1);
    Node s;
    s.op = OpKind::DwConv2dSparse;
    s.name = "s.conv";
    s.inputs = {mm};
    s.params["weight"] = b.param("s.conv.weight", {4, 1, 3, 3}, ParamInit::Weight);
    s.consts["mask"] = b.constant("s.mask", mask);
    int ss = b.batch_norm("s.bn", b.add1(s), 0.25);
    int l = b.batch_norm("l.bn", b.linear("l.fc", ss, 4, true), 0.25);
    b.output(l);
    Graph g = b.finish();
    init_weights(g, 1, InitMode::Test);
    for (auto& kv : g.params) {
        if (kv.first.find("weight") != std::string::npos ||
            kv.first.find(".w") != std::string::npos)
            set_ints(g, kv.first, uint32_t(kv.first.size()), -2, 2);
        if (kv.first.find(".bias") != std::string::npos) set_ints(g, kv.first, 7, -3, 3);
    }
    for (const char* bn : {"c.bn", "d.bn", "m.bn", "s.bn", "l.bn"}) exact_bn(g, bn, 4, 11);

    const std::string before = fingerprint(g);
    Graph f = passes::fold_batch_norm(g);
    EXPECT_EQ(fingerprint(g), before);
    EXPECT_EQ(count_op(f, OpKind::BatchNorm), 0);
    Tensor xv = small_ints({1, 4, 6, 6}, 5, -2, 2);
    EXPECT_EQ(run(g, xv), run(f, xv));  // exact

    // Naming: "<producer>+<bn>", new keys under the fused node, output tensor = the BN's.
    const Node& fc = node(f, "c.conv+bn");
    EXPECT_EQ(fc.param("weight"), "c.conv+bn.weight");
    EXPECT_EQ(fc.param("bias"), "c.conv+bn.bias");
    EXPECT_EQ(f.tensor(fc.outputs[0]).name, "c.bn");
    EXPECT_EQ(node(f, "m.conv+bn").param("weight1"), "m.conv+bn.weight1");
    EXPECT_EQ(node(f, "s.conv+bn").constant("mask"), "s.mask");  // unchanged: same key
    EXPECT_EQ(node(f, "l.fc+bn").param("bias"), "l.fc+bn.bias");
    EXPECT_EQ(f.params.count("c.conv.weight"), 0u) << "official key must not change meaning";
    EXPECT_EQ(f.tensor(f.outputs[0]).name, "l.bn");
    // Idempotent.
    EXPECT_EQ(fingerprint(passes::fold_batch_norm(f)), fingerprint(f));
}

TEST(PassesFoldBatchNorm, IntoFollowingUnpaddedConvAndLinear) {
    // Every BN reads the graph input, so none can go into a producer.
    GraphBuilder b("pre");
    int x = b.input("x", {2, 3, 4, 4});
    int r = b.conv2d("pw", b.batch_norm("prebn", x, 0.25), 6, 1, 1, 1, 0, 0, 1, false);
    int k = b.conv2d("k2", b.batch_norm("prebn2", x, 0.25), 6, 2, 2, 2, 0, 0, 3, true);
    int pad = b.conv2d("padded", b.batch_norm("prebn3", x, 0.25), 6, 3, 3, 1, 1, 1, 1, true);
    b.output(b.binary(OpKind::Add, "sum", r, pad));
    b.output(k);
    Graph g = b.finish();
    init_weights(g, 2, InitMode::Test);
    for (const char* w : {"pw.weight", "k2.weight", "k2.bias", "padded.weight", "padded.bias"}) {
        set_ints(g, w, 3, -2, 2);
    }
    exact_bn(g, "prebn", 3, 1);
    exact_bn(g, "prebn2", 3, 2);
    exact_bn(g, "prebn3", 3, 3);
    Graph f = passes::fold_batch_norm(g);
    // The BN before the padded 3x3 conv stays (zero padding would be normalised too).
    EXPECT_EQ(count_op(f, OpKind::BatchNorm), 1);
    EXPECT_EQ(node(f, "pw+prebn").param("bias"), "pw+prebn.bias");
    EXPECT_NO_THROW(node(f, "k2+prebn2"));
    Tensor xv = small_ints({2, 3, 4, 4}, 9, -3, 3);
    EXPECT_EQ(run(g, xv), run(f, xv));

    passes::FoldOptions no;
    no.into_consumer = false;
    EXPECT_EQ(count_op(passes::fold_batch_norm(g, no), OpKind::BatchNorm), 3);
}

TEST(PassesFoldBatchNorm, SharedOutputsFiltersAndShapeOnly) {
    // The conv's output is also read by the add: its BN cannot be folded.
    GraphBuilder b("shared");
    int x = b.input("x", {1, 2, 4, 4});
    int c = b.dwconv("c", x, 3, 3, 1, 1, false);
    int n = b.batch_norm("bn", c);
    b.output(b.binary(OpKind::Add, "add", c, n));
    Graph g = b.finish();
    EXPECT_EQ(count_op(passes::fold_batch_norm(g), OpKind::BatchNorm), 1);

    // accept filter; shape-only graphs give shape-only parameters.
    Graph m = build_model("replknet-test", tiny(1));
    passes::FoldOptions none;
    none.accept = [](const Graph&, const Node&, const Node&) { return false; };
    EXPECT_EQ(fingerprint(passes::fold_batch_norm(m, none)), fingerprint(m));
    Graph f = passes::fold_batch_norm(m);
    EXPECT_EQ(count_op(f, OpKind::BatchNorm), 1);  // the head norm after the residual add
    for (const auto& kv : f.params) EXPECT_TRUE(kv.second.value.empty()) << kv.first;

    // Half-materialised: an error naming the parameter without a value.
    init_weights(m, 1, InitMode::Test);
    m.params.at("stem.0.bn.running_var").value = Tensor();
    try {
        (void)passes::fold_batch_norm(m);
        FAIL() << "expected GraphError";
    } catch (const GraphError& e) {
        EXPECT_NE(std::string(e.what()).find("stem.0.bn.running_var"), std::string::npos)
            << e.what();
    }
}

// ---- structural re-parameterisation on hand-built layers -------------------------------------

// x -> sum of BN(dw(x)) over the branches (kh, kw, dilation).
Graph branches(const std::vector<std::array<int, 3>>& br, Shape xs, bool sparse_first = false) {
    GraphBuilder b("branches");
    int x = b.input("x", xs);
    int y = -1;
    for (size_t i = 0; i < br.size(); ++i) {
        const std::string m = "lk.b" + std::to_string(i);
        int z;
        if (i == 0 && sparse_first) {
            Node s;
            s.op = OpKind::DwConv2dSparse;
            s.name = m + ".conv";
            s.inputs = {x};
            s.params["weight"] =
                b.param(m + ".conv.weight", {xs[1], 1, br[i][0], br[i][1]}, ParamInit::Weight);
            // Keep one tap in four.
            Tensor mask(DType::U8, {xs[1], 1, br[i][0], br[i][1]});
            for (int64_t q = 0; q < mask.numel(); ++q) mask.data<uint8_t>()[q] = q % 4 == 0;
            s.consts["mask"] = b.constant(m + ".mask", mask);
            z = b.add1(s);
        } else {
            z = b.dwconv(m + ".conv", x, br[i][0], br[i][1], 1, br[i][2], false);
        }
        z = b.batch_norm(m + ".bn", z);
        y = y < 0 ? z : b.binary(OpKind::Add, "lk.add" + std::to_string(i), y, z);
    }
    b.output(b.unary(OpKind::Relu, "act", y));
    Graph g = b.finish();
    init_weights(g, 3, InitMode::Test);
    return g;
}

Graph fold_reparam(const Graph& g, passes::ReparamOptions r) {
    return passes::reparameterize(passes::fold_batch_norm(g), r);
}

TEST(PassesReparam, RepLKNetPairEveryForm) {
    Graph g = branches({{{7, 7, 1}}, {{3, 3, 1}}}, {2, 5, 9, 9});
    Tensor x = random_f32({2, 5, 9, 9}, 1);
    const std::vector<double> ref = run(g, x);
    for (auto f : {std::make_pair(Op::DwConv2d, OpKind::DwConv2d),
                   std::make_pair(Op::DwConv2dMulti, OpKind::DwConv2dMulti),
                   std::make_pair(Op::DwConv2dSparse, OpKind::DwConv2dSparse)}) {
        passes::ReparamOptions o;
        o.cost = prefer(f.first);
        o.sparse_max_density = 1.0;
        Graph d = fold_reparam(g, o);
        ASSERT_EQ(count_op(d, f.second), 1) << op_name(f.second);
        EXPECT_EQ(d.nodes.size(), 2u);  // merged conv + relu
        EXPECT_EQ(d.nodes[0].name, "lk.reparam");
        EXPECT_EQ(d.tensor(d.nodes[0].outputs[0]).name, "lk.add1");
        EXPECT_LT(rel_err(ref, run(d, x)), 1e-6) << op_name(f.second);
    }
    // Default cost (useful FLOPs): dense 7x7 beats 7x7 + 3x3.
    std::vector<passes::FormChoice> rep;
    passes::ReparamOptions o;
    o.report = &rep;
    Graph d = fold_reparam(g, o);
    EXPECT_EQ(d.nodes[0].op, OpKind::DwConv2d);
    EXPECT_EQ(d.params.at("lk.reparam.weight").shape, (Shape{5, 1, 7, 7}));
    ASSERT_EQ(rep.size(), 1u);
    EXPECT_EQ(rep[0].chosen, DeployForm::Dense);
    ASSERT_EQ(rep[0].candidates.size(), 2u);  // dense, multi (density 1: no sparse)
    EXPECT_EQ(rep[0].candidates[0].workload, "dwconv2d:fwd:n2c5h9w9:k7x7:f32");
    EXPECT_EQ(rep[0].candidates[1].workload, "dwconv2d_multi:fwd:n2c5h9w9:b7x7d1,3x3d1:f32");
    EXPECT_LT(rep[0].candidates[0].cost, rep[0].candidates[1].cost);
}

TEST(PassesReparam, SLaKStripsEveryFormAndSparseByDefaultOnLargeKernels) {
    Graph g = branches({{{13, 5, 1}}, {{5, 13, 1}}, {{5, 5, 1}}}, {1, 3, 16, 16});
    Tensor x = random_f32({1, 3, 16, 16}, 2);
    const std::vector<double> ref = run(g, x);
    for (Op op : {Op::DwConv2d, Op::DwConv2dMulti, Op::DwConv2dSparse}) {
        passes::ReparamOptions o;
        o.cost = prefer(op);
        o.sparse_max_density = 1.0;
        Graph d = fold_reparam(g, o);
        EXPECT_LT(rel_err(ref, run(d, x)), 1e-6) << op_name(op);
        if (op == Op::DwConv2d) {
            EXPECT_EQ(d.params.at("lk.reparam.weight").shape, (Shape{3, 1, 13, 13}));
        }
        if (op == Op::DwConv2dSparse) {
            // The mask is the cross: 13*5 + 5*13 - 5*5 taps per channel.
            const Tensor& m = d.constants.at("lk.reparam.mask");
            int64_t ones = 0;
            for (int64_t q = 0; q < m.numel(); ++q) ones += m.data<uint8_t>()[q];
            EXPECT_EQ(ones, 3 * (65 + 65 - 25));
        }
    }
    // 51x5 + 5x51 + 5x5 on 56x56 (SLaK-T stage 1, shapes only): the cross keeps 485 of 2601 taps,
    // so the sparse kernel is a candidate and the cheapest by useful FLOPs.
    Graph big = branches({{{51, 5, 1}}, {{5, 51, 1}}, {{5, 5, 1}}}, {1, 4, 56, 56});
    for (auto& kv : big.params) kv.second.value = Tensor();
    std::vector<passes::FormChoice> rep;
    passes::ReparamOptions o;
    o.report = &rep;
    Graph d = fold_reparam(big, o);
    ASSERT_EQ(rep.size(), 1u);
    EXPECT_EQ(rep[0].chosen, DeployForm::Sparse);
    EXPECT_EQ(d.nodes[0].op, OpKind::DwConv2dSparse);
    EXPECT_TRUE(d.params.at("lk.reparam.weight").value.empty());  // shape-only stays shape-only
    std::string forms;
    for (const auto& c : rep[0].candidates) forms += std::string(deploy_form_name(c.form)) + " ";
    EXPECT_EQ(forms, "dense sparse multi ");
}

TEST(PassesReparam, MaskedBranchGivesSparseCandidate) {
    Graph g = branches({{{7, 7, 1}}, {{3, 3, 1}}}, {1, 4, 8, 8}, /*sparse_first*/ true);
    Tensor x = random_f32({1, 4, 8, 8}, 3);
    std::vector<passes::FormChoice> rep;
    passes::ReparamOptions o;
    o.report = &rep;
    o.cost = prefer(Op::DwConv2dSparse);
    Graph d = fold_reparam(g, o);
    ASSERT_EQ(rep.size(), 1u);
    EXPECT_EQ(rep[0].chosen, DeployForm::Sparse);  // a masked branch makes it a candidate
    EXPECT_EQ(d.nodes[0].op, OpKind::DwConv2dSparse);
    EXPECT_LT(rel_err(run(g, x), run(d, x)), 1e-6);
    // The mask is exactly the nonzero taps of the merged kernel.
    const Tensor& m = d.constants.at(d.nodes[0].constant("mask"));
    const Tensor& w = d.param_value(d.nodes[0], "weight");
    for (int64_t q = 0; q < m.numel(); ++q) {
        EXPECT_EQ(m.data<uint8_t>()[q] != 0, w.data<float>()[q] != 0.0f) << q;
    }
}

TEST(PassesReparam, SingleMostlyZeroDwConvBecomesSparse) {
    GraphBuilder b("zeros");
    int x = b.input("x", {1, 3, 10, 10});
    b.output(b.dwconv("dw", x, 9, 9, 1, 1, true));
    Graph g = b.finish();
    init_weights(g, 4, InitMode::Test);
    Tensor w = random_f32({3, 1, 9, 9}, 8);
    for (int64_t q = 0; q < w.numel(); ++q) {
        if (q % 5 != 0) w.data<float>()[q] = 0;
    }
    g.params.at("dw.weight").value = w;
    Graph d = passes::reparameterize(g);
    EXPECT_EQ(d.nodes[0].op, OpKind::DwConv2dSparse);
    EXPECT_EQ(d.nodes[0].param("weight"), "dw.weight");  // unchanged value, same key
    Tensor xv = random_f32({1, 3, 10, 10}, 9);
    EXPECT_LT(rel_err(run(g, xv), run(d, xv)), 1e-12);
    passes::ReparamOptions dense;
    dense.cost = prefer(Op::DwConv2d);
    EXPECT_EQ(passes::reparameterize(g, dense).nodes[0].op, OpKind::DwConv2d);
}

TEST(PassesReparam, DilatedReparamBlock) {
    Graph g = branches({{{7, 7, 1}}, {{5, 5, 1}}, {{3, 3, 2}}, {{3, 3, 3}}}, {2, 3, 12, 12});
    Tensor x = random_f32({2, 3, 12, 12}, 4);
    for (Op op : {Op::DwConv2d, Op::DwConv2dMulti}) {
        passes::ReparamOptions o;
        o.cost = prefer(op);
        Graph d = fold_reparam(g, o);
        EXPECT_LT(rel_err(run(g, x), run(d, x)), 1e-6);
        if (op == Op::DwConv2dMulti) {
            EXPECT_EQ(d.nodes[0].attrs.dilations, (std::vector<int>{1, 1, 2, 3}));
            // Unchanged folded branch weights keep their keys.
            EXPECT_EQ(d.nodes[0].param("weight0"), "lk.b0.conv+bn.weight");
        }
    }
}

// UniRepLKNet's tail: x + gamma * BN(pwconv2(GRN(GELU(pwconv1(x))))).
TEST(PassesReparam, GrnBetaBatchNormAndLayerScaleIntoSecondLinear) {
    GraphBuilder b("tail");
    int x = b.input("x", {2, 6, 3, 3});
    int y = b.linear("m.pwconv1.1", x, 12, true);
    y = b.unary(OpKind::Gelu, "m.act.0", y);
    y = b.grn("m.act.1", y);
    y = b.linear("m.pwconv2.0", y, 6, false);
    y = b.batch_norm("m.pwconv2.2", y);
    y = b.scale("m.gamma", "m.gamma", y);
    b.output(b.binary(OpKind::Add, "m.residual", x, y));
    Graph g = b.finish();
    init_weights(g, 5, InitMode::Test);
    // GRN gamma / beta are 0 in test init only if the rule says so; make them random.
    g.params.at("m.act.1.gamma").value = random_f32({1, 1, 1, 12}, 1);
    g.params.at("m.act.1.beta").value = random_f32({1, 1, 1, 12}, 2);
    Graph d = fold_reparam(g, {});
    EXPECT_EQ(count_op(d, OpKind::BatchNorm), 0);
    EXPECT_EQ(count_op(d, OpKind::Scale), 0);
    EXPECT_FALSE(node(d, "m.act.1").has_param("beta"));
    const Node& l = node(d, "m.pwconv2.0+2+act.1.beta+gamma");
    EXPECT_EQ(l.param("bias"), "m.pwconv2.0+2+act.1.beta+gamma.bias");
    Tensor xv = random_f32({2, 6, 3, 3}, 3);
    EXPECT_LT(rel_err(run(g, xv), run(d, xv)), 1e-6);
    // Parameter count: minus beta (12), BN (12 learned), gamma (6); plus the bias (6).
    EXPECT_EQ(count_params(g).parameters - count_params(d).parameters, 12 + 12 + 6 - 6);
}

// One ShiftWise layer as the model builds it (K = 7, k = 3, 2 paths, 2 groups) on 6 channels.
Graph shiftwise_layer() {
    GraphBuilder b("sw");
    int x = b.input("x", {2, 6, 9, 9});
    const int K = 7, k = 3, nk = 3, Q = 2, R = 6;
    Tensor sh(DType::I32, {Q, R, nk}), sv(DType::I32, {Q, R, nk}), id(DType::I32, {Q, R});
    for (int q = 0; q < Q; ++q)
        for (int c = 0; c < R; ++c) {
            for (int j = 0; j < nk; ++j) {
                sh.data<int32_t>()[(q * R + c) * nk + j] = (j + c + q) % nk;
                sv.data<int32_t>()[(q * R + c) * nk + j] = (2 * nk - j + c) % nk;
            }
            id.data<int32_t>()[q * R + c] = (c + q) % nk;
        }
    Node s;
    s.op = OpKind::ShiftWise;
    s.name = "lk.loras";
    s.inputs = {x};
    s.attrs.big_k = K;
    s.attrs.small_k = k;
    for (int p = 0; p < 2; ++p) {
        std::string key = "lk.LoRAs." + std::to_string(p) + ".weight";
        s.params["weight" + std::to_string(p)] = b.param(key, {R * nk, 1, k, k}, ParamInit::Weight);
    }
    s.consts["slot_h"] = b.constant("lk.slot_h", sh);
    s.consts["slot_v"] = b.constant("lk.slot_v", sv);
    s.consts["ident"] = b.constant("lk.ident", id);
    std::vector<int> y = b.add(s, {"yh", "yv", "ys"});
    int h = b.batch_norm("lk.bn_lora1", y[0]);
    int v = b.batch_norm("lk.bn_lora2", y[1]);
    int z = b.batch_norm("lk.bn_small", y[2]);
    int sum = b.binary(OpKind::Add, "lk.add_hv", h, v);
    sum = b.binary(OpKind::Add, "lk.add_small", sum, z);
    sum = b.binary(OpKind::Add, "lk.add_identity", sum, x);
    b.output(b.unary(OpKind::Gelu, "act", sum));
    Graph g = b.finish();
    init_weights(g, 6, InitMode::Test);
    return g;
}

TEST(PassesReparam, ShiftWiseEveryForm) {
    Graph g = shiftwise_layer();
    Tensor x = random_f32({2, 6, 9, 9}, 5);
    const std::vector<double> ref = run(g, x);
    const std::string before = fingerprint(g);
    for (auto f : {std::make_pair(Op::ShiftWise, OpKind::ShiftWise),
                   std::make_pair(Op::DwConv2d, OpKind::DwConv2d),
                   std::make_pair(Op::DwConv2dSparse, OpKind::DwConv2dSparse),
                   std::make_pair(Op::DwConv2dMulti, OpKind::DwConv2dMulti)}) {
        passes::ReparamOptions o;
        o.cost = prefer(f.first);
        o.sparse_max_density = 1.0;
        Graph d = passes::reparameterize(g, o);
        ASSERT_EQ(d.nodes.size(), 2u) << op_name(f.second);
        EXPECT_EQ(d.nodes[0].op, f.second);
        EXPECT_EQ(d.nodes[0].name, "lk.reparam");
        EXPECT_LT(rel_err(ref, run(d, x)), 1e-6) << op_name(f.second);
        if (f.second == OpKind::DwConv2d) {
            // nk*k = 9 > K = 7: the cross reaches -3 .. +5, centred in 11 x 11.
            EXPECT_EQ(d.param(d.nodes[0].param("weight")).shape, (Shape{6, 1, 11, 11}));
        }
        if (f.second == OpKind::ShiftWise) EXPECT_TRUE(d.nodes[0].has_param("ah"));
    }
    EXPECT_EQ(fingerprint(g), before);
    // ShiftWise_v2's own reparameterize(): the paths summed, everything else kept.
    passes::ReparamOptions paths;
    paths.shiftwise_fuse = false;
    Graph p = passes::reparameterize(g, paths);
    EXPECT_EQ(count_op(p, OpKind::BatchNorm), 3);
    EXPECT_EQ(node(p, "lk.loras").param("weight0"), "lk.loras.weight");
    EXPECT_FALSE(node(p, "lk.loras").has_param("weight1"));
    EXPECT_LT(rel_err(ref, run(p, x)), 1e-6);
}

TEST(PassesReparam, PurityAndIdempotenceOnEveryTinyModel) {
    for (const char* m : {"replknet-test", "slak-test", "unireplknet-test", "shiftwise-test"}) {
        Graph g = build_model(m, tiny(1));
        init_weights(g, 8, InitMode::Test);
        // Each pass leaves its input unchanged.
        const std::string fg = fingerprint(g);
        Graph f = passes::fold_batch_norm(g);
        const std::string ff = fingerprint(f);
        Graph r = passes::reparameterize(f);
        const std::string fr = fingerprint(r);
        Graph e = passes::fuse_epilogues(r);
        const std::string fe = fingerprint(e);
        Graph l = passes::assign_layouts(e);
        const std::string fl = fingerprint(l);
        (void)passes::lower_for_reference(l);
        (void)passes::plan_memory(l);
        EXPECT_EQ(fingerprint(g), fg) << m;
        EXPECT_EQ(fingerprint(f), ff) << m;
        EXPECT_EQ(fingerprint(r), fr) << m;
        EXPECT_EQ(fingerprint(e), fe) << m;
        EXPECT_EQ(fingerprint(l), fl) << m;
        EXPECT_EQ(fingerprint(passes::reparameterize(r)), fingerprint(r)) << m;
        EXPECT_EQ(fingerprint(passes::assign_layouts(l)), fingerprint(l)) << m;
        // Every parameter of the deployed graph that keeps an official key has its value.
        for (const auto& kv : l.params) {
            auto it = g.params.find(kv.first);
            if (it != g.params.end()) {
                EXPECT_EQ(kv.second.value.raw(), it->second.value.raw()) << kv.first;
            }
        }
    }
}

// ---- parameter counts of the official deploy forms ------------------------------------------

std::vector<Shape> sorted_shapes(const Graph& g, bool buffers) {
    std::vector<Shape> s;
    for (const auto& kv : g.params) {
        if (kv.second.buffer == buffers) s.push_back(kv.second.shape);
    }
    std::sort(s.begin(), s.end());
    return s;
}

class OfficialCounts : public ::testing::TestWithParam<std::tuple<const char*, int64_t>> {};

TEST_P(OfficialCounts, PassesGiveTheOfficialDeployParameterSet) {
    const std::string model = std::get<0>(GetParam());
    const Graph train = build_model(model);  // 224, batch 1, shapes only
    const Graph official = [&] {
        ModelOptions o;
        o.deploy = true;
        return build_model(model, o);
    }();
    Graph d = passes::deploy(train, passes::official_deploy_options(model_info(model).family));
    const ParamCount c = count_params(d), want = count_params(official);
    EXPECT_EQ(c.parameters, std::get<1>(GetParam()));
    EXPECT_EQ(c.parameters, want.parameters);
    EXPECT_EQ(c.buffers, want.buffers);
    EXPECT_EQ(c.parameter_tensors, want.parameter_tensors);
    EXPECT_EQ(c.buffer_tensors, want.buffer_tensors);
    EXPECT_EQ(sorted_shapes(d, false), sorted_shapes(official, false));
    EXPECT_EQ(total_cost(d).macs, total_cost(official).macs);
    // Under the official deploy keys: the very key set of official_param_names.md section 6.
    Graph k = passes::official_deploy_keys(d, model_info(model).family);
    EXPECT_EQ(state_dict_names_sha256(k), state_dict_names_sha256(official));
    EXPECT_EQ(state_dict_shapes_sha256(k), state_dict_shapes_sha256(official));
    // The full pipeline (every BN, fused forms) for the record.
    Graph full = passes::deploy(train);
    std::cout << model << ": train " << count_params(train).parameters << ", official deploy "
              << c.parameters << ", full passes " << count_params(full).parameters
              << " parameters (" << count_params(full).buffers << " buffer elements)\n";
}

INSTANTIATE_TEST_SUITE_P(Passes, OfficialCounts,
                         ::testing::Values(std::make_tuple("replknet-31b", int64_t(79527272)),
                                           std::make_tuple("unireplknet-t", int64_t(31037980)),
                                           std::make_tuple("shiftwise-t", int64_t(31002670))),
                         [](const auto& info) {
                             std::string n = std::get<0>(info.param);
                             for (char& c : n) c = c == '-' ? '_' : c;
                             return n;
                         });

// The forms the default cost (useful FLOPs) picks on the full-size models at 224, batch 1.
TEST(PassesReparam, DefaultFormsOnFullSizeModels) {
    for (const char* m : {"replknet-31b", "slak-t", "unireplknet-t", "shiftwise-t"}) {
        std::vector<passes::FormChoice> rep;
        passes::ReparamOptions o;
        o.report = &rep;
        Graph d = passes::reparameterize(passes::fold_batch_norm(build_model(m)), o);
        std::map<std::string, int> forms;
        for (const auto& fc : rep) ++forms[deploy_form_name(fc.chosen)];
        std::cout << m << ": " << rep.size() << " layers:";
        for (const auto& kv : forms) std::cout << " " << kv.first << " " << kv.second;
        std::cout << "; e.g. " << rep[0].node << ":";
        for (const auto& c : rep[0].candidates) {
            std::cout << " " << deploy_form_name(c.form) << " " << c.cost / 1e6 << "M";
        }
        std::cout << "\n";
        const std::string family = model_info(m).family;
        if (family == "replknet" || family == "unireplknet") {
            EXPECT_EQ(forms["dense"], static_cast<int>(rep.size())) << m;
        }
        if (family == "slak") EXPECT_GT(forms["sparse"], 0) << m;
    }
}

TEST(PassesOfficial, TinyModelsMatchTheDeployBuildersCountsAndValues) {
    for (const char* m : {"replknet-test", "unireplknet-test", "shiftwise-test"}) {
        Graph train = build_model(m, tiny(2));
        init_weights(train, 10, InitMode::Test);
        ModelOptions o = tiny(2);
        o.deploy = true;
        Graph official = build_model(m, o);
        Graph d = passes::deploy(train, passes::official_deploy_options(model_info(m).family));
        EXPECT_EQ(count_params(d).parameters, count_params(official).parameters) << m;
        EXPECT_EQ(sorted_shapes(d, false), sorted_shapes(official, false)) << m;
        Tensor x = random_f32({2, 3, 32, 32}, 6);
        const std::vector<double> a = values(run_reference(train, {{"x", x}}).outputs.at("head"));
        EXPECT_LT(rel_err(a, run(d, x)), 1e-4) << m;
        // With the official keys, the passes' weights load into the official deploy-form model
        // (same key set and shapes) and it computes the train form's logits.
        Graph k = passes::official_deploy_keys(d, model_info(m).family);
        EXPECT_EQ(state_dict_names_sha256(k), state_dict_names_sha256(official)) << m;
        EXPECT_EQ(state_dict_shapes_sha256(k), state_dict_shapes_sha256(official)) << m;
        load_state_dict(official, state_dict(k), "passes");
        const std::vector<double> b =
            values(run_reference(official, {{"x", x}}).outputs.at("head"));
        EXPECT_LT(rel_err(a, b), 1e-4) << m;
    }
    EXPECT_THROW((void)passes::official_deploy_options("slak"), GraphError);
}

// ---- epilogue fusion ------------------------------------------------------------------------

TEST(PassesEpilogues, ChainsStopAtSharedTensorsAndRespectAccept) {
    GraphBuilder b("epi");
    int x = b.input("x", {1, 4, 5, 5});
    int c = b.conv2d("c", x, 4, 3, 3, 1, 1, 1, 1, true);
    c = b.unary(OpKind::Relu, "relu", c);
    c = b.scale("ls", "ls.weight", c);
    c = b.batch_norm("bn", c);
    int r = b.binary(OpKind::Add, "res", x, c);  // residual: x produced before c
    int g1 = b.unary(OpKind::Gelu, "gelu", r);   // r is read twice: the chain stops at r
    int s = b.binary(OpKind::Add, "add2", g1, r);
    int l = b.linear("fc", s, 4, true);
    b.output(b.unary(OpKind::Sigmoid, "sig", l));
    Graph g = b.finish();
    init_weights(g, 11, InitMode::Test);
    Graph f = passes::fuse_epilogues(g);
    const Node& cn = node(f, "c");
    ASSERT_EQ(cn.attrs.epilogues.size(), 4u);
    EXPECT_EQ(cn.attrs.epilogues[0].op, EpilogueOp::Relu);
    EXPECT_EQ(cn.attrs.epilogues[1].op, EpilogueOp::Scale);
    EXPECT_EQ(cn.param("e1.weight"), "ls.weight");
    EXPECT_EQ(cn.attrs.epilogues[2].op, EpilogueOp::BatchNorm);
    EXPECT_EQ(cn.param("e2.running_var"), "bn.running_var");
    EXPECT_EQ(cn.attrs.epilogues[3].op, EpilogueOp::Add);
    EXPECT_EQ(cn.inputs[size_t(cn.attrs.epilogues[3].input)], f.tensor_id("x"));
    EXPECT_EQ(f.tensor(cn.outputs[0]).name, "res");
    EXPECT_EQ(node(f, "fc").attrs.epilogues.size(), 1u);
    EXPECT_NO_THROW(node(f, "gelu"));  // its producer (the add "res" is fused into c) is no conv
    EXPECT_EQ(f.nodes.size(), 4u);     // c, gelu, add2, fc
    Tensor xv = random_f32({1, 4, 5, 5}, 4);
    EXPECT_LT(rel_err(run(g, xv), run(f, xv)), 1e-12);

    passes::EpilogueOptions only_relu;
    only_relu.accept = [](const Node&, EpilogueOp op) { return op == EpilogueOp::Relu; };
    Graph r1 = passes::fuse_epilogues(g, only_relu);
    EXPECT_EQ(node(r1, "c").attrs.epilogues.size(), 1u);
    EXPECT_EQ(node(r1, "fc").attrs.epilogues.size(), 0u);
}

TEST(PassesEpilogues, ShapeInferenceChecksEpilogues) {
    GraphBuilder b("bad");
    int x = b.input("x", {1, 4, 5, 5});
    b.output(b.unary(OpKind::Relu, "r", b.dwconv("c", x, 3, 3, 1, 1, false)));
    Graph g = passes::fuse_epilogues(b.finish());
    Graph bad = g;
    bad.nodes[0].attrs.epilogues[0].op = EpilogueOp::Add;
    bad.nodes[0].attrs.epilogues[0].input = 3;
    try {
        validate(bad);
        FAIL() << "expected GraphError";
    } catch (const GraphError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("node 'c'"), std::string::npos) << m;
        EXPECT_NE(m.find("epilogue 0 (add 'r')"), std::string::npos) << m;
    }
    bad = g;
    bad.nodes[0].params["e0.weight"] = "c.weight";
    EXPECT_THROW(validate(bad), GraphError);
}

// ---- layouts --------------------------------------------------------------------------------

TEST(PassesLayouts, ConversionsOnlyAtTheEdgesAndAroundUnblockedOps) {
    Graph g = passes::deploy(build_model("unireplknet-test", tiny(1)));
    ASSERT_EQ(count_op(g, OpKind::Reorder), 2);
    const Node& first = g.nodes.front();
    EXPECT_EQ(first.name, "x.to_nchw16c");
    EXPECT_EQ(g.tensor(first.inputs[0]).storage, Layout::NCHW);
    EXPECT_EQ(g.tensor(first.outputs[0]).storage, Layout::Blocked16);
    EXPECT_EQ(g.tensor(first.outputs[0]).name, "x.nchw16c");
    const Node& last = g.nodes.back();
    EXPECT_EQ(last.name, "head.to_plain");
    EXPECT_EQ(g.tensor(g.outputs[0]).name, "head");
    EXPECT_EQ(g.tensor(g.outputs[0]).storage, Layout::NC);
    EXPECT_EQ(g.tensor(last.inputs[0]).name, "head.nchw16c");
    for (const TensorDesc& t : g.tensors) {
        if (t.name != "x" && t.name != "head") EXPECT_EQ(t.storage, Layout::Blocked16) << t.name;
    }

    // An op the executor has no blocked kernel for gets reorders around it.
    passes::LayoutOptions lo;
    lo.takes_blocked = [](const Graph& gg, const Node& n) {
        return n.op != OpKind::LayerNorm && passes::takes_blocked16(gg, n);
    };
    Graph h = passes::assign_layouts(passes::fuse_epilogues(build_model("slak-test", tiny(1))), lo);
    for (const Node& n : h.nodes) {
        if (n.op == OpKind::LayerNorm) {
            EXPECT_EQ(h.tensor(n.inputs[0]).storage, h.tensor(n.inputs[0]).layout) << n.name;
            EXPECT_EQ(h.tensor(n.outputs[0]).storage, h.tensor(n.outputs[0]).layout) << n.name;
        }
    }
    EXPECT_GT(count_op(h, OpKind::Reorder), 2);
    Graph hv = h;
    init_weights(hv, 1, InitMode::Test);
    Graph base = build_model("slak-test", tiny(1));
    init_weights(base, 1, InitMode::Test);
    Tensor x = random_f32({1, 3, 32, 32}, 2);
    EXPECT_LT(rel_err(run(base, x), run(hv, x)), 1e-12);

    // Permute and a spatial Flatten are not blocked; plain_io = false keeps the input blocked.
    GraphBuilder b("perm");
    int in = b.input("x", {1, 3, 2, 2});
    Node p;
    p.op = OpKind::Permute;
    p.name = "p";
    p.inputs = {b.dwconv("c", in, 3, 3, 1, 1, false)};
    p.attrs.perm = {0, 2, 3, 1};
    b.output(b.flatten("f", b.add1(p)));
    Graph pg = b.finish();
    passes::LayoutOptions blocked_io;
    blocked_io.plain_io = false;
    Graph pl = passes::assign_layouts(pg, blocked_io);
    EXPECT_EQ(pl.tensor(pl.inputs[0]).storage, Layout::Blocked16);
    EXPECT_EQ(count_op(pl, OpKind::Reorder), 1);  // c's output to plain for the permute
    EXPECT_EQ(passes::storage_bytes(pl.tensor(pl.inputs[0])), 16 * 2 * 2 * 4);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
