// Model builders vs the official state_dicts (shared/reference/official_param_names.md): key-set
// hashes, key and tensor counts, parameter counts, spot shapes, the ShiftwiseConv index tables,
// and the model registry.
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <set>
#include <string>

#include "graph/cost.h"
#include "graph/models/models.h"
#include "graph/sha256.h"
#include "graph/shiftwise_tables.h"
#include "graph/weights.h"

namespace lkc {
namespace graph {
namespace {

struct Official {
    const char* model;
    bool deploy;
    const char* names_sha;
    const char* shapes_sha;
    size_t keys, param_tensors, buffer_tensors, nbt;
    int64_t param_elements;
};

// official_param_names.md sections 0 and 6.
const Official kOfficial[] = {
    {"replknet-31b", false, "e12a97119636afcd3ed49c0c11d2e977394da8aababce9d84c4242e401ca44c7",
     "1cc6a72110e0b4a44afe0486b9fce3e89bea6f97108916ebc2d04c09392de3cc", 1171, 562, 609, 203,
     79864168},
    {"replknet-31b", true, "470253a9e059e0cbd676d69edc7183a014d1843caa3b5bcd761f400839b7d952",
     "9e9d4bf049277b97e32b2f32a20abfa95e5bc8ad330cabea64f9eda8ee478d78", 931, 466, 465, 155,
     79527272},
    {"slak-t", false, "7cc67b35de32c7dd7b12d3b0c56241b9fe90e11846a92f0fe7977c1f9ed56112",
     "71f1a495e183b7487ae654d67a2deab9b9ef838b196932318f1fa196bb5e49d2", 470, 308, 162, 54,
     50703838},
    {"unireplknet-t", false, "754596723547b786cc227eef5803b2e20fe31f7ac14b30f38318857145bbe90b",
     "025287ed5f67874ce8146898542ca16c028af86f1816bb642005ce6bfa95cb80", 1116, 684, 432, 144,
     31693420},
    {"unireplknet-t", true, "eebbad51150ac0016de9ea0b29c5502d6b5e12622b44cdb477163a8da661b4ed",
     "3c5d9bbf48b035f708ffaf83bd87322b879398871104bcd323ecd7cc7db5b832", 321, 321, 0, 0, 31037980},
    {"shiftwise-t", false, "e59b5dbab9cbedfbdd4cbae2491bb2e129e9b8cd53b86428599c9eaa20e13e26",
     "d09ab90a361738a62ee821337e8471f8d40eedea7c82c1de2501de00902e0952", 1023, 618, 405, 135,
     31790260},
    {"shiftwise-t", true, "ccc8f504b80ac9ed74aebcb6602c6b817f91812f9fcc8ce4f9e593c0a8ce4419",
     "c77c7d237cc959bee961727465560a328c0481aae386675916dd1255df4f9612", 996, 591, 405, 135,
     31002670},
};

Graph build(const Official& o) {
    ModelOptions opt;
    opt.deploy = o.deploy;
    return build_model(o.model, opt);
}

class OfficialModel : public ::testing::TestWithParam<Official> {};

TEST_P(OfficialModel, KeySetHashesMatch) {
    const Official& o = GetParam();
    Graph g = build(o);
    EXPECT_EQ(state_dict_names_sha256(g), o.names_sha);
    EXPECT_EQ(state_dict_shapes_sha256(g), o.shapes_sha);
}

TEST_P(OfficialModel, KeyAndTensorCounts) {
    const Official& o = GetParam();
    Graph g = build(o);
    EXPECT_EQ(g.params.size(), o.keys);
    size_t params = 0, buffers = 0, nbt = 0;
    for (const auto& kv : g.params) {
        (kv.second.buffer ? buffers : params)++;
        const std::string nbt_suffix = ".num_batches_tracked";
        if (kv.first.size() > nbt_suffix.size() &&
            kv.first.compare(kv.first.size() - nbt_suffix.size(), nbt_suffix.size(), nbt_suffix) ==
                0) {
            ++nbt;
            EXPECT_EQ(kv.second.dtype, DType::I64) << kv.first;
            EXPECT_TRUE(kv.second.shape.empty()) << kv.first;
        } else {
            EXPECT_EQ(kv.second.dtype, DType::F32) << kv.first;
        }
    }
    EXPECT_EQ(params, o.param_tensors);
    EXPECT_EQ(buffers, o.buffer_tensors);
    EXPECT_EQ(nbt, o.nbt);
    EXPECT_EQ(count_params(g).parameters, o.param_elements);
}

INSTANTIATE_TEST_SUITE_P(Graph, OfficialModel, ::testing::ValuesIn(kOfficial),
                         [](const auto& info) {
                             std::string n = info.param.model;
                             for (char& c : n) c = c == '-' ? '_' : c;
                             return n + (info.param.deploy ? "_deploy" : "_train");
                         });

Shape shape_of(const Graph& g, const std::string& key) { return g.param(key).shape; }

TEST(GraphModels, RepLKNetSpotShapes) {
    Graph g = build_model("replknet-31b");
    EXPECT_EQ(shape_of(g, "stages.0.blocks.0.large_kernel.lkb_origin.conv.weight"),
              (Shape{128, 1, 31, 31}));
    EXPECT_EQ(shape_of(g, "stages.0.blocks.0.large_kernel.small_conv.conv.weight"),
              (Shape{128, 1, 5, 5}));
    EXPECT_EQ(shape_of(g, "stages.0.blocks.1.pw1.conv.weight"), (Shape{512, 128, 1, 1}));
    EXPECT_EQ(shape_of(g, "stages.3.blocks.2.large_kernel.lkb_origin.conv.weight"),
              (Shape{1024, 1, 13, 13}));
    EXPECT_EQ(shape_of(g, "stages.3.blocks.3.pw1.conv.weight"), (Shape{4096, 1024, 1, 1}));
    EXPECT_EQ(shape_of(g, "transitions.2.1.conv.weight"), (Shape{1024, 1, 3, 3}));
    EXPECT_TRUE(shape_of(g, "stages.3.blocks.3.pw2.bn.num_batches_tracked").empty());
    EXPECT_EQ(shape_of(g, "head.weight"), (Shape{1000, 1024}));
    ModelOptions o;
    o.num_classes = 21841;
    EXPECT_EQ(shape_of(build_model("replknet-31b", o), "head.weight"), (Shape{21841, 1024}));
}

TEST(GraphModels, RepLKNetXLHasNoSmallKernelAndWiderDW) {
    Graph g = build_model("replknet-xl");
    EXPECT_EQ(g.params.count("stages.0.blocks.0.large_kernel.small_conv.conv.weight"), 0u);
    EXPECT_EQ(shape_of(g, "stages.0.blocks.0.large_kernel.lkb_origin.conv.weight"),
              (Shape{384, 1, 27, 27}));
    EXPECT_EQ(shape_of(g, "stages.0.blocks.0.pw1.conv.weight"), (Shape{384, 256, 1, 1}));
}

TEST(GraphModels, SLaKSpotShapes) {
    Graph g = build_model("slak-t");
    EXPECT_EQ(shape_of(g, "stages.0.0.large_kernel.LoRA1.conv.weight"), (Shape{124, 1, 51, 5}));
    EXPECT_EQ(shape_of(g, "stages.3.2.large_kernel.LoRA2.conv.weight"), (Shape{998, 1, 5, 13}));
    EXPECT_EQ(shape_of(g, "stages.3.2.pwconv2.weight"), (Shape{998, 3992}));
    EXPECT_EQ(shape_of(g, "downsample_layers.0.0.weight"), (Shape{124, 3, 4, 4}));
    EXPECT_EQ(shape_of(g, "downsample_layers.1.1.weight"), (Shape{249, 124, 2, 2}));
    EXPECT_EQ(shape_of(g, "downsample_layers.1.0.weight"), (Shape{124}));  // LN first
}

TEST(GraphModels, UniRepLKNetSpotShapes) {
    Graph g = build_model("unireplknet-t");
    EXPECT_EQ(shape_of(g, "stages.0.0.dwconv.weight"), (Shape{80, 1, 3, 3}));
    EXPECT_EQ(shape_of(g, "stages.1.0.dwconv.dil_conv_k7_2.weight"), (Shape{160, 1, 7, 7}));
    EXPECT_EQ(shape_of(g, "stages.2.1.dwconv.weight"), (Shape{320, 1, 3, 3}));
    EXPECT_EQ(shape_of(g, "stages.3.2.dwconv.lk_origin.weight"), (Shape{640, 1, 13, 13}));
    EXPECT_EQ(shape_of(g, "stages.3.2.act.1.beta"), (Shape{1, 1, 1, 2560}));
    EXPECT_EQ(shape_of(g, "stages.3.2.gamma"), (Shape{640}));
    EXPECT_EQ(g.params.count("stages.0.0.dwconv.bias"), 0u);  // no bias in train form
    EXPECT_EQ(g.params.count("stages.0.0.pwconv2.0.bias"), 0u);
}

TEST(GraphModels, ShiftWiseSpotShapesAndConstants) {
    Graph g = build_model("shiftwise-t");
    EXPECT_EQ(shape_of(g, "stages.0.0.large_kernel.LoRAs.0.weight"), (Shape{1020, 1, 3, 3}));
    EXPECT_EQ(shape_of(g, "stages.0.0.large_kernel.bn_lora1.running_var"), (Shape{60}));
    EXPECT_EQ(shape_of(g, "stages.3.2.large_kernel.LoRAs.1.weight"), (Shape{2460, 1, 3, 3}));
    EXPECT_EQ(shape_of(g, "stages.3.2.large_kernel.bn_small.weight"), (Shape{492}));
    // The tables are constants, not parameters.
    EXPECT_EQ(g.params.count("stages.0.0.large_kernel.ghost"), 0u);
    ASSERT_EQ(g.constants.count("stages.0.0.large_kernel.ghost"), 1u);
    EXPECT_EQ(g.constants.at("stages.1.2.large_kernel.loras.pad_hv").shape(), (Shape{2074, 8}));
    EXPECT_EQ(g.constants.at("stages.2.0.large_kernel.loras.slot_h").shape(), (Shape{4, 246, 16}));
}

// First 16 hex digits of sha256 over little-endian int32 bytes (official_param_names.md 6).
std::string table_hash(const std::vector<int32_t>& v) {
    return sha256_hex(v.data(), v.size() * sizeof(int32_t)).substr(0, 16);
}

TEST(GraphModels, ShiftWiseTablesMatchOfficialHashes) {
    struct Row {
        int c, k;
        const char *ghost, *rep, *pad_hv, *idx_identit, *idx_out;
    };
    const Row rows[] = {
        {80, 51, "9a7fabca1fc03aa8", "452a73223426bb0c", "7b1af47f2d063b04", "accb8f227c3249df",
         "d0c6e17d19e955e1"},
        {160, 49, "f45aabf24ecaaa06", "08b905d18491669d", "bb639b7b0a185ebb", "73332a77f65c147a",
         "1659131d71ae88e9"},
        {320, 47, "f7606cec09971df4", "33b99dc4490c5f7c", "a3a088303253f7fc", "5c415c541afd679e",
         "2c736c5e34857d1d"},
        {640, 13, "74c216c609cd53da", "bfaa1afb88fdccc4", "0e5df4a19684b69f", "44b3049d89a10084",
         "58d9cc773618a710"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE("C=" + std::to_string(r.c) + " K=" + std::to_string(r.k));
        ShiftwiseTables t = make_shiftwise_tables(r.c, r.k);
        EXPECT_EQ(table_hash(t.ghost), r.ghost);
        EXPECT_EQ(table_hash(t.rep), r.rep);
        EXPECT_EQ(table_hash(t.pad_hv), r.pad_hv);
        EXPECT_EQ(table_hash(t.idx_identit), r.idx_identit);
        EXPECT_EQ(table_hash(t.idx_out), r.idx_out);
    }
}

TEST(GraphModels, ShiftWiseTablesSpotValuesAndSlotForm) {
    ShiftwiseTables t = make_shiftwise_tables(80, 51);
    EXPECT_EQ(t.rep_n, 60);
    EXPECT_EQ(t.ghost_n, 20);
    EXPECT_EQ(t.nk, 17);
    EXPECT_EQ(t.ghost, (std::vector<int32_t>{4,  8,  9,  23, 29, 31, 37, 43, 44, 53,
                                             58, 59, 62, 64, 69, 72, 75, 77, 78, 79}));
    EXPECT_EQ(std::vector<int32_t>(t.pad_hv.begin(), t.pad_hv.begin() + 8),
              (std::vector<int32_t>{14, -13, 5, 5, -19, -19, 11, 17}));
    EXPECT_EQ(std::vector<int32_t>(t.pad_hv.begin() + 8, t.pad_hv.begin() + 16),
              (std::vector<int32_t>{17, 20, -25, 23, 14, 20, 17, 2}));
    EXPECT_EQ(std::vector<int32_t>(t.idx_identit.begin(), t.idx_identit.begin() + 8),
              (std::vector<int32_t>{0, 12, 4, 13, 30, 29, 21, 24}));
    ShiftwiseTables t3 = make_shiftwise_tables(640, 13);
    EXPECT_EQ(std::vector<int32_t>(t3.pad_hv.begin(), t3.pad_hv.begin() + 8),
              (std::vector<int32_t>{1, -2, -8, -8, -8, -5, -2, -5}));
    EXPECT_EQ(std::vector<int32_t>(t3.idx_identit.begin(), t3.idx_identit.begin() + 4),
              (std::vector<int32_t>{0, 3, 1, 0}));
    // lkc form: slot tables are permutations per (q, r) and reproduce pad_hv through real_pad.
    for (const ShiftwiseTables* tt : {&t, &t3}) {
        const int R = tt->rep_n, nk = tt->nk, Q = tt->groups;
        for (int q = 0; q < Q; ++q) {
            for (int r = 0; r < R; ++r) {
                std::set<int> seen_h, seen_v;
                for (int j = 0; j < nk; ++j) {
                    const size_t i = (static_cast<size_t>(q) * R + r) * nk + j;
                    seen_h.insert(tt->slot_h[i]);
                    seen_v.insert(tt->slot_v[i]);
                    const size_t row = (static_cast<size_t>(r) * nk + j) * 2 * Q;
                    EXPECT_EQ(tt->real_pad[tt->slot_h[i]], tt->pad_hv[row + q]);
                    EXPECT_EQ(tt->real_pad[tt->slot_v[i]], tt->pad_hv[row + Q + q]);
                }
                EXPECT_EQ(seen_h.size(), static_cast<size_t>(nk));
                EXPECT_EQ(seen_v.size(), static_cast<size_t>(nk));
                EXPECT_EQ(tt->ident[static_cast<size_t>(q) * R + r] + r * nk,
                          tt->idx_identit[static_cast<size_t>(r) * Q + q]);
            }
        }
    }
}

TEST(GraphModels, ModelNamesRoundTrip) {
    std::vector<std::string> names = model_names();
    const std::vector<std::string> expected = {
        "replknet-31b",  "replknet-31l",  "replknet-xl",   "replknet-test",  "replknet-fmnist",
        "slak-t",        "slak-s",        "slak-b",        "slak-test",      "slak-fmnist",
        "unireplknet-a", "unireplknet-f", "unireplknet-p", "unireplknet-n",  "unireplknet-t",
        "unireplknet-s", "unireplknet-b", "unireplknet-l", "unireplknet-xl", "unireplknet-test",
        "shiftwise-t",   "shiftwise-s",   "shiftwise-test"};
    EXPECT_EQ(names, expected);
    for (const std::string& n : names) {
        SCOPED_TRACE(n);
        EXPECT_EQ(canonical_model_name(n), n);
        std::string upper = n;
        for (char& c : upper) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
        EXPECT_EQ(canonical_model_name(upper), n);
        Graph g = build_model(n);
        EXPECT_EQ(g.model, n);
        EXPECT_NO_THROW(validate(g));
        ASSERT_EQ(g.inputs.size(), 1u);
        ASSERT_EQ(g.outputs.size(), 1u);
        EXPECT_EQ(g.tensor(g.inputs[0]).name, "x");
        EXPECT_EQ(g.tensor(g.outputs[0]).name, "head");
        const bool test_variant = n.size() > 5 && n.compare(n.size() - 5, 5, "-test") == 0;
        ModelOptions o;
        if (test_variant) {
            o.image_size = 32;
            o.num_classes = 10;
            o.batch = 2;
        }
        Graph h = build_model(n, o);
        EXPECT_EQ(h.tensor(h.outputs[0]).shape, (Shape{o.batch, o.num_classes}));
        EXPECT_EQ(model_info(n).name, n);
    }
}

TEST(GraphModels, UnknownModelListsKnownNames) {
    try {
        build_model("replknet-31x");
        FAIL() << "expected GraphError";
    } catch (const GraphError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("unknown model 'replknet-31x'"), std::string::npos) << m;
        for (const std::string& n : model_names()) {
            EXPECT_NE(m.find(n), std::string::npos) << n << " missing from: " << m;
        }
    }
}

TEST(GraphModels, BadOptionsAreRejected) {
    ModelOptions o;
    o.batch = 0;
    EXPECT_THROW(build_model("slak-test", o), GraphError);
    ModelOptions d;
    d.deploy = true;
    EXPECT_THROW(build_model("slak-t", d), GraphError);  // SLaK has no deploy form
}

}  // namespace
}  // namespace graph
}  // namespace lkc
