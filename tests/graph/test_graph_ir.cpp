// IR structure and shape inference: every error names the node, the tensor or parameter, and the
// expected vs actual value.
#include <gtest/gtest.h>

#include <string>

#include "graph/builder.h"
#include "graph/inspect.h"
#include "graph/models/models.h"

namespace lkc {
namespace graph {
namespace {

#define EXPECT_HAS(msg, sub)                                 \
    EXPECT_NE(std::string(msg).find(sub), std::string::npos) \
        << "message:  " << (msg) << "\nexpected: " << (sub)

// Message of the GraphError `f` throws; fails the test if it throws nothing.
template <typename F>
std::string error_of(F f) {
    try {
        f();
    } catch (const GraphError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a GraphError";
    return "";
}

ModelOptions tiny() {
    ModelOptions o;
    o.image_size = 32;
    o.num_classes = 10;
    return o;
}

TEST(GraphIR, WrongConvWeightNamesNodeParameterAndShapes) {
    Graph g = build_model("replknet-31b");
    g.params.at("stages.0.blocks.0.pw1.conv.weight").shape = {128, 64, 1, 1};
    std::string m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "node 'stages.0.blocks.0.pw1.conv' (conv2d)");
    EXPECT_HAS(m, "parameter 'stages.0.blocks.0.pw1.conv.weight' has shape [128, 64, 1, 1]");
    EXPECT_HAS(m, "expected [Co, 128, kh, kw]");
    EXPECT_HAS(m, "'stages.0.blocks.0.prelkb_bn' [1, 128, 56, 56]");
}

TEST(GraphIR, WrongBatchNormParameter) {
    Graph g = build_model("unireplknet-test", tiny());
    g.params.at("stages.0.0.norm.running_var").shape = {15};
    std::string m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "node 'stages.0.0.norm' (batch_norm)");
    EXPECT_HAS(m, "parameter 'stages.0.0.norm.running_var' has shape [15], expected [16]");
    EXPECT_HAS(m, "one per channel of 'stages.0.0.dwconv'");
}

TEST(GraphIR, DepthWiseKernelChecks) {
    Graph g = build_model("slak-test", tiny());
    g.params.at("stages.0.0.large_kernel.LoRA1.conv.weight").shape = {15, 1, 12, 5};
    std::string m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "node 'stages.0.0.large_kernel.LoRA1.conv' (dwconv2d)");
    EXPECT_HAS(m, "kernel 12x5: depth-wise kernels must be odd");
    g.params.at("stages.0.0.large_kernel.LoRA1.conv.weight").shape = {16, 1, 13, 5};
    m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "has shape [16, 1, 13, 5], expected [15, 1, Kh, Kw]");
}

TEST(GraphIR, LinearAndScaleChecks) {
    Graph g = build_model("slak-test", tiny());
    g.params.at("stages.1.0.pwconv2.weight").shape = {31, 120};
    std::string m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "node 'stages.1.0.pwconv2' (linear)");
    EXPECT_HAS(m, "has shape [31, 120], expected [out, 124]");
    Graph h = build_model("slak-test", tiny());
    h.params.at("stages.1.0.gamma").shape = {30};
    m = error_of([&] { validate(h); });
    EXPECT_HAS(m, "node 'stages.1.0.gamma' (scale)");
    EXPECT_HAS(m, "expected 31 elements, one per channel");
}

TEST(GraphIR, BroadcastMismatch) {
    GraphBuilder b("t");
    int x = b.input("a", {1, 2, 4, 4});
    int y = b.input("b", {1, 3, 4, 4});
    std::string m = error_of([&] { b.binary(OpKind::Add, "sum", x, y); });
    EXPECT_HAS(m, "node 'sum' (add)");
    EXPECT_HAS(m, "inputs 'a' [1, 2, 4, 4] and 'b' [1, 3, 4, 4] do not broadcast");
    EXPECT_HAS(m, "dim 1 is 2 vs 3 (expected equal or 1)");
    int z = b.input("c", {1, 2, 1, 1});
    EXPECT_EQ(b.desc(b.binary(OpKind::Mul, "scale", x, z)).shape, (Shape{1, 2, 4, 4}));
    int nc = b.input("d", {1, 2}, Layout::NC);
    m = error_of([&] { b.binary(OpKind::Add, "bad", x, nc); });
    EXPECT_HAS(m, "must have the same rank and layout");
}

TEST(GraphIR, LayoutAndRankChecks) {
    GraphBuilder b("t");
    int x = b.input("x", {1, 8}, Layout::NC);
    std::string m = error_of([&] { b.dwconv("dw", x, 3, 3, 1, 1, false); });
    EXPECT_HAS(m, "node 'dw' (dwconv2d): input tensor 'x' has layout NC, expected NCHW");
    int y = b.input("y", {1, 8, 4}, Layout::NCHW);
    m = error_of([&] { b.avg_pool("pool", y, false); });
    EXPECT_HAS(m, "input tensor 'y' has shape [1, 8, 4] but layout NCHW needs rank 4");
}

TEST(GraphIR, ConvOutputTooSmall) {
    GraphBuilder b("t");
    int x = b.input("x", {1, 3, 2, 2});
    std::string m = error_of([&] { b.conv2d("conv", x, 4, 4, 4, 4, 0, 0, 1, true); });
    EXPECT_HAS(m, "node 'conv' (conv2d): input tensor 'x' [1, 3, 2, 2] is smaller than the 4x4");
}

TEST(GraphIR, ChannelSelectIndexRange) {
    GraphBuilder b("t");
    int x = b.input("x", {1, 3, 2, 2});
    Tensor idx(DType::I32, {2});
    idx.data<int32_t>()[0] = 1;
    idx.data<int32_t>()[1] = 3;
    std::string key = b.constant("idx", idx);
    std::string m = error_of([&] { b.channel_select("sel", x, key); });
    EXPECT_HAS(m, "constant 'idx'[1] = 3 is outside [0, 3) (channels of 'x')");
}

TEST(GraphIR, ShiftWiseTableShapes) {
    Graph g = build_model("shiftwise-test", tiny());
    g.constants.at("stages.0.0.large_kernel.loras.slot_v") = Tensor(DType::I32, {4, 12, 4});
    std::string m = error_of([&] { validate(g); });
    EXPECT_HAS(m, "node 'stages.0.0.large_kernel.loras' (shiftwise)");
    EXPECT_HAS(m,
               "constant 'stages.0.0.large_kernel.loras.slot_v' is I32 [4, 12, 4], expected I32 "
               "[4, 12, 5]");
    Graph h = build_model("shiftwise-test", tiny());
    h.params.at("stages.0.0.large_kernel.LoRAs.1.weight").shape = {60, 1, 5, 5};
    m = error_of([&] { validate(h); });
    EXPECT_HAS(
        m, "expected [60, 1, 3, 3] or [12, 5, 3, 3] (C = 12 input channels, nk = ceil(K/k) = 5)");
}

TEST(GraphIR, StructureErrors) {
    Graph g = build_model("slak-test", tiny());
    // out of topological order
    Graph a = g;
    std::swap(a.nodes[2], a.nodes[3]);
    std::string m = error_of([&] { validate(a); });
    EXPECT_HAS(m, "is not produced by an earlier node nor a graph input");
    // missing parameter
    Graph b = g;
    b.params.erase("stages.0.0.norm.bias");
    m = error_of([&] { validate(b); });
    EXPECT_HAS(m,
               "node 'stages.0.0.norm' (layer_norm): parameter 'stages.0.0.norm.bias' (role "
               "'bias') is not in the graph");
    // a parameter nobody uses
    Graph c = g;
    c.params["stray.weight"] = Param{{3}, DType::F32, false, ParamInit::Zeros, 0, Tensor()};
    m = error_of([&] { validate(c); });
    EXPECT_HAS(m, "parameter 'stray.weight' is not used by any node");
    // stored shape that inference disagrees with
    Graph d = g;
    d.tensors[static_cast<size_t>(d.tensor_id("stages.0.0.act"))].shape[1] = 7;
    m = error_of([&] { validate(d); });
    EXPECT_HAS(m, "output tensor 'stages.0.0.act' is stored as [1, 7, 8, 8]");
    EXPECT_HAS(m, "shape inference gives [1, 60, 8, 8]");
    // duplicate names
    GraphBuilder e("t");
    int x = e.input("x", {1, 2, 2, 2});
    e.unary(OpKind::Relu, "r", x);
    m = error_of([&] { e.unary(OpKind::Relu, "r", x); });
    EXPECT_HAS(m, "node 'r' already exists");
    m = error_of([&] { e.param("p", {1}, ParamInit::Zeros), e.param("p", {1}, ParamInit::Zeros); });
    EXPECT_HAS(m, "parameter 'p' is registered twice");
    // unexpected role
    Graph f = g;
    f.nodes[1].params["gamma"] = "stages.0.0.gamma";
    m = error_of([&] { validate(f); });
    EXPECT_HAS(m, "has unexpected parameter role 'gamma'");
    EXPECT_HAS(error_of([&] { g.tensor_id("nope"); }), "has no tensor named 'nope'");
    EXPECT_HAS(error_of([&] { g.nodes[0].param("nope"); }), "has no parameter for role 'nope'");
}

TEST(GraphIR, ReinferShapesAfterInputChange) {
    Graph g = build_model("unireplknet-test", tiny());
    g.tensors[static_cast<size_t>(g.inputs[0])].shape = {3, 3, 64, 64};
    infer_shapes(g);
    validate(g);
    EXPECT_EQ(g.tensor(g.tensor_id("stages.1.0.residual")).shape, (Shape{3, 32, 8, 8}));
    EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{3, 10}));
    set_batch(g, 1);
    EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{1, 10}));
    EXPECT_THROW(set_batch(g, 0), GraphError);
}

TEST(GraphIR, OpNamesRoundTrip) {
    for (OpKind op : {OpKind::Conv2d,         OpKind::DwConv2d,      OpKind::DwConv2dMulti,
                      OpKind::DwConv2dSparse, OpKind::ShiftWise,     OpKind::Linear,
                      OpKind::BatchNorm,      OpKind::LayerNorm,     OpKind::Grn,
                      OpKind::Gelu,           OpKind::Relu,          OpKind::Sigmoid,
                      OpKind::Softmax,        OpKind::Add,           OpKind::Mul,
                      OpKind::Scale,          OpKind::GlobalAvgPool, OpKind::ChannelSelect,
                      OpKind::Concat,         OpKind::Permute,       OpKind::Flatten}) {
        EXPECT_EQ(op_from_name(op_name(op)), op);
    }
    EXPECT_HAS(error_of([] { op_from_name("conv3d"); }), "unknown op 'conv3d'; known ops: conv2d");
}

TEST(GraphIR, InspectText) {
    Graph g = build_model("replknet-31b");
    std::string t = inspect_text(g);
    EXPECT_HAS(t, "model replknet-31b");
    EXPECT_HAS(t, "input  x [1,3,224,224] NCHW F32");
    EXPECT_HAS(t, "parameters 79,864,168 in 562 tensors");
    EXPECT_HAS(t, "1171 state_dict keys");
    EXPECT_HAS(t, "MACs 15.43 G (FLOPs = 2 x MACs = 30.86 G)");
    EXPECT_HAS(t, "stages.0.blocks.0.large_kernel.lkb_origin.conv");
    EXPECT_HAS(t, "dwconv2d:fwd:n1c128h56w56:k31x31:f32");
    // one line per node after the header
    size_t lines = 0;
    for (char c : t) lines += c == '\n';
    EXPECT_GT(lines, g.nodes.size());
    EXPECT_EQ(group_thousands(1234567), "1,234,567");
    EXPECT_EQ(si_number(15.3e9), "15.30 G");
}

}  // namespace
}  // namespace graph
}  // namespace lkc
