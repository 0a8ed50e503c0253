// Parameter and MAC counts of the full-size models against the published figures, and the
// per-layer counting rules (graph/cost.h).
//
// The published "FLOPs" of RepLKNet and UniRepLKNet are multiply-accumulate counts of the deploy
// (re-parameterised) form, and their parameter counts are deploy-form counts too: UniRepLKNet-T
// deploy has 31,037,980 parameters ("31M") and 4.90 G MACs ("4.9G"), the train form 31,693,420
// and 5.00 G. SLaK's published 30M / 5.0G count only unpruned weights; its dense figures (50M /
// 8.7G, quoted in the ShiftwiseConv paper) are compared here. Tolerances: parameters within 1.5 %
// (figures are given to 2-3 significant digits), MACs within 1 % (largest deviation measured:
// RepLKNet-31B, 15.35 G vs 15.3 G, +0.35 %).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "graph/cost.h"
#include "graph/models/models.h"
#include "graph/node_workload.h"

namespace lkc {
namespace graph {
namespace {

struct Published {
    const char* model;
    int image_size;
    bool deploy;      // which form the figure counts
    double params_m;  // millions
    double gmacs;     // billions of multiply-accumulates ("GFLOPs" in the papers)
};

const Published kPublished[] = {
    // RepLKNet README / paper table
    {"replknet-31b", 224, true, 79, 15.3},
    {"replknet-31b", 384, true, 79, 45.1},
    {"replknet-31l", 384, true, 172, 96.0},
    {"replknet-xl", 320, true, 335, 128.7},
    // SLaK-T dense ("30/50 M, 5.0/8.7 G" in the ShiftwiseConv paper; only form)
    {"slak-t", 224, false, 50.7, 8.7},
    // UniRepLKNet README (ImageNet-1K at 224, ImageNet-22K models at 384)
    {"unireplknet-a", 224, true, 4.4, 0.6},
    {"unireplknet-f", 224, true, 6.2, 0.9},
    {"unireplknet-p", 224, true, 10.7, 1.6},
    {"unireplknet-n", 224, true, 18.3, 2.8},
    {"unireplknet-t", 224, true, 31, 4.9},
    {"unireplknet-s", 224, true, 56, 9.1},
    {"unireplknet-s", 384, true, 56, 26.7},
    {"unireplknet-b", 384, true, 98, 47.2},
    {"unireplknet-l", 384, true, 218, 105.4},
    {"unireplknet-xl", 384, true, 386, 187},
};

// Relative tolerance for a MAC figure printed with one decimal (+-0.05 G), at least 1 %.
double mac_tolerance(double published) { return std::max(0.01, 0.05 / published); }

class PublishedCounts : public ::testing::TestWithParam<Published> {};

TEST_P(PublishedCounts, MatchWithinTolerance) {
    const Published& p = GetParam();
    ModelOptions o;
    o.image_size = p.image_size;
    o.deploy = p.deploy;
    Graph g = build_model(p.model, o);
    const double params_m = static_cast<double>(count_params(g).parameters) / 1e6;
    const double gmacs = total_cost(g).macs / 1e9;
    EXPECT_NEAR(params_m / p.params_m, 1.0, 0.015) << params_m << " M parameters";
    EXPECT_NEAR(gmacs / p.gmacs, 1.0, mac_tolerance(p.gmacs)) << gmacs << " G MACs";
}

INSTANTIATE_TEST_SUITE_P(Graph, PublishedCounts, ::testing::ValuesIn(kPublished),
                         [](const auto& info) {
                             std::string n = info.param.model;
                             for (char& c : n) c = c == '-' ? '_' : c;
                             return n + "_" + std::to_string(info.param.image_size);
                         });

TEST(GraphCounts, ExactTrainFormCounts) {
    // official_param_names.md section 0.
    EXPECT_EQ(count_params(build_model("replknet-31b")).parameters, 79864168);
    EXPECT_EQ(count_params(build_model("unireplknet-t")).parameters, 31693420);
    EXPECT_EQ(count_params(build_model("slak-t")).parameters, 50703838);
    EXPECT_EQ(count_params(build_model("shiftwise-t")).parameters, 31790260);
    // The deploy form drops the merged branches' parameters.
    ModelOptions d;
    d.deploy = true;
    EXPECT_EQ(count_params(build_model("unireplknet-t", d)).parameters, 31037980);
    EXPECT_EQ(count_params(build_model("replknet-31b", d)).parameters, 79527272);
}

TEST(GraphCounts, HandCountedLayers) {
    Graph g = build_model("replknet-31b");
    auto cost_of = [&](const std::string& name) {
        for (const Node& n : g.nodes) {
            if (n.name == name) return node_cost(g, n);
        }
        ADD_FAILURE() << "no node " << name;
        return NodeCost{};
    };
    // conv 3x3 s2, 3 -> 128, 224 -> 112: 128 * 3*3*3 * 112*112
    EXPECT_EQ(cost_of("stem.0.conv").macs, 128.0 * 27 * 112 * 112);
    // useful: rows/cols 0 of the top-left output read padding for tap 0 only
    EXPECT_EQ(cost_of("stem.0.conv").useful_macs, 128.0 * 3 * (3 * 112 - 1) * (3 * 112 - 1));
    // 31x31 DW on 56x56, 128 channels
    NodeCost lk = cost_of("stages.0.blocks.0.large_kernel.lkb_origin.conv");
    EXPECT_EQ(lk.macs, 128.0 * 56 * 56 * 31 * 31);
    EXPECT_LT(lk.useful_macs, lk.macs);
    EXPECT_EQ(lk.flops(), 2 * lk.macs);
    // ConvFFN 1x1 128 -> 512 on 56x56
    EXPECT_EQ(cost_of("stages.0.blocks.1.pw1.conv").macs, 512.0 * 128 * 56 * 56);
    EXPECT_EQ(cost_of("head").macs, 1000.0 * 1024);
    EXPECT_EQ(cost_of("stages.0.blocks.0.prelkb_bn").macs, 0.0);
    EXPECT_EQ(cost_of("stages.0.blocks.0.prelkb_bn").elementwise, 2.0 * 128 * 56 * 56);
}

TEST(GraphCounts, DepthWiseCountsAgreeWithWorkloads) {
    // Every depth-wise layer of one model per family: node_cost vs Workload's nominal / useful.
    for (const char* name : {"replknet-31b", "slak-t", "unireplknet-t", "shiftwise-t"}) {
        SCOPED_TRACE(name);
        Graph g = build_model(name);
        int checked = 0;
        for (const Node& n : g.nodes) {
            auto w = node_workload(g, n);
            if (!w) continue;
            const NodeCost c = node_cost(g, n);
            EXPECT_DOUBLE_EQ(c.macs, w->nominal_flops() / 2) << n.name;
            EXPECT_DOUBLE_EQ(c.useful_macs, w->useful_flops() / 2) << n.name;
            ++checked;
        }
        EXPECT_GT(checked, 10);
    }
}

TEST(GraphCounts, ScalesWithBatch) {
    ModelOptions o;
    o.batch = 8;
    const double one = total_cost(build_model("unireplknet-a")).macs;
    EXPECT_DOUBLE_EQ(total_cost(build_model("unireplknet-a", o)).macs, 8 * one);
    Graph g = build_model("unireplknet-a");
    set_batch(g, 8);
    EXPECT_DOUBLE_EQ(total_cost(g).macs, 8 * one);
}

TEST(GraphCounts, ValidTaps1d) {
    // 3 taps, pad 1, stride 1 over 4 pixels: 3*4 - 2 border taps
    EXPECT_EQ(valid_taps_1d(4, 4, 3, 1, 1, 1), 10);
    // stride 2: outputs 0, 1 read rows -1..1 and 1..3 -> 2 + 3
    EXPECT_EQ(valid_taps_1d(4, 2, 3, 2, 1, 1), 5);
    // kernel wider than the map: 31 taps on 14 pixels, every output reads all 14
    EXPECT_EQ(valid_taps_1d(14, 14, 31, 1, 1, 15), 14 * 14);
    // dilation 2, 3 taps, pad 2, 5 pixels
    int64_t brute = 0;
    for (int o = 0; o < 5; ++o) {
        for (int t = 0; t < 3; ++t) {
            int i = o + 2 * t - 2;
            brute += (i >= 0 && i < 5);
        }
    }
    EXPECT_EQ(valid_taps_1d(5, 5, 3, 1, 2, 2), brute);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
