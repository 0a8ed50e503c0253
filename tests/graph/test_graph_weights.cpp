// Weight loading (missing / unexpected / mis-shaped / wrong-dtype tensors, all reported by name in
// one error), prefix and deploy-form hints, ShiftwiseConv tables in files, and init_weights.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "graph/models/models.h"
#include "graph/reference_executor.h"
#include "graph/weights.h"
#include "runtime/safetensors.h"

namespace lkc {
namespace graph {
namespace {

namespace fs = std::filesystem;

#define EXPECT_HAS(msg, sub)                                 \
    EXPECT_NE(std::string(msg).find(sub), std::string::npos) \
        << "message:  " << (msg) << "\nexpected: " << (sub)

class GraphWeights : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("lkc_graph_weights_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // Writes `tensors` and returns the WeightsError message of loading them into `g`.
    std::string load_error(Graph& g, const std::map<std::string, Tensor>& tensors) {
        const std::string p = path("w.safetensors");
        write_safetensors(p, tensors);
        try {
            load_weights(g, p);
        } catch (const WeightsError& e) {
            const std::string m = e.what();
            EXPECT_HAS(m, "weights '" + p + "' do not fit model '" + g.model + "'");
            return m;
        }
        ADD_FAILURE() << "expected a WeightsError";
        return "";
    }
    fs::path dir_;
};

ModelOptions tiny(int classes = 10) {
    ModelOptions o;
    o.image_size = 32;
    o.num_classes = classes;
    return o;
}

std::map<std::string, Tensor> initialised(const std::string& model, uint64_t seed,
                                          ModelOptions o = tiny()) {
    Graph g = build_model(model, o);
    init_weights(g, seed, InitMode::Test);
    return state_dict(g);
}

bool equal(const Tensor& a, const Tensor& b) {
    return a.dtype() == b.dtype() && a.shape() == b.shape() &&
           std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST_F(GraphWeights, RoundTripThroughSafetensors) {
    for (const char* model : {"replknet-test", "slak-test", "unireplknet-test", "shiftwise-test"}) {
        SCOPED_TRACE(model);
        Graph a = build_model(model, tiny());
        init_weights(a, 7, InitMode::Test);
        const std::string p = path(std::string(model) + ".safetensors");
        write_safetensors(p, state_dict(a));
        Graph b = build_model(model, tiny());
        EXPECT_FALSE(b.has_values());
        load_weights(b, p);
        ASSERT_TRUE(b.has_values());
        for (const auto& kv : a.params) {
            EXPECT_TRUE(equal(kv.second.value, b.params.at(kv.first).value)) << kv.first;
        }
        Tensor x(DType::F32, {1, 3, 32, 32});
        for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 7) - 3;
        EXPECT_TRUE(equal(run_reference(a, {{"x", x}}).outputs.at("head"),
                          run_reference(b, {{"x", x}}).outputs.at("head")));
    }
}

TEST_F(GraphWeights, EveryProblemIsListedByName) {
    std::map<std::string, Tensor> t = initialised("replknet-test", 1);
    t.erase("stages.0.blocks.0.prelkb_bn.weight");                                // missing
    t.erase("head.bias");                                                         // missing
    t["stages.0.blocks.0.extra.weight"] = Tensor(DType::F32, {3});                // unexpected
    t["stages.0.blocks.1.pw1.conv.weight"] = Tensor(DType::F32, {64, 16, 3, 3});  // mis-shaped
    t["stem.0.bn.num_batches_tracked"] = Tensor(DType::F32, {});                  // wrong dtype
    t["stem.0.conv.weight"] = Tensor(DType::F16, {16, 3, 3, 3});                  // wrong dtype
    Graph g = build_model("replknet-test", tiny());
    std::string m = load_error(g, t);
    EXPECT_HAS(m, "2 missing, 1 unexpected, 3 mis-shaped or wrong dtype");
    EXPECT_HAS(m, "missing: stages.0.blocks.0.prelkb_bn.weight F32 [16]");
    EXPECT_HAS(m, "missing: head.bias F32 [10]");
    EXPECT_HAS(m, "unexpected: stages.0.blocks.0.extra.weight F32 [3]");
    EXPECT_HAS(m,
               "mis-shaped: stages.0.blocks.1.pw1.conv.weight is F32 [64, 16, 3, 3], expected "
               "F32 [64, 16, 1, 1]");
    EXPECT_HAS(m, "mis-shaped: stem.0.bn.num_batches_tracked is F32 [], expected I64 []");
    EXPECT_HAS(m,
               "mis-shaped: stem.0.conv.weight is F16 [16, 3, 3, 3], expected F32 [16, 3, 3, 3]");
    EXPECT_FALSE(g.has_values());  // nothing was loaded
    for (const auto& kv : g.params) EXPECT_TRUE(kv.second.value.empty()) << kv.first;
}

TEST_F(GraphWeights, LongListsAreCappedAndPrefixesExplained) {
    // A DataParallel-style 'module.' prefix on every name: reported, not stripped.
    std::map<std::string, Tensor> t, prefixed = initialised("slak-test", 2);
    for (auto& kv : prefixed) t["module." + kv.first] = kv.second;
    Graph g = build_model("slak-test", tiny());
    std::string m = load_error(g, t);
    const size_t n = g.params.size();
    EXPECT_HAS(m, std::to_string(n) + " missing, " + std::to_string(n) + " unexpected");
    size_t lines = 0;
    for (size_t p = m.find("\n  missing: "); p != std::string::npos; p = m.find("\n  ", p + 1)) {
        if (m.compare(p, 11, "\n  missing:") == 0 || m.compare(p, 14, "\n  unexpected:") == 0) {
            ++lines;
        }
    }
    EXPECT_EQ(lines, 20u);
    EXPECT_HAS(m, "... and " + std::to_string(2 * n - 20) + " more");
    EXPECT_HAS(m, "hint: " + std::to_string(n) +
                      " unexpected names are model names with a "
                      "'module.' prefix; the official code never writes it");
}

TEST_F(GraphWeights, HeadSizeAndDeployFormHints) {
    Graph g = build_model("unireplknet-test", tiny(12));
    std::string m = load_error(g, initialised("unireplknet-test", 3, tiny(10)));
    EXPECT_HAS(m,
               "mis-shaped: head.weight is F32 [10, 32], expected F32 [12, 32] (the "
               "checkpoint's head has 10 classes: build the model with num_classes = 10)");
    ModelOptions d = tiny();
    d.deploy = true;
    Graph train = build_model("unireplknet-test", tiny());
    m = load_error(train, initialised("unireplknet-test", 3, d));
    EXPECT_HAS(m, "belong to a re-parameterised (deploy) model");
    // The old-code trap: a bias on the 3x3 DW convs of the train form.
    std::map<std::string, Tensor> old = initialised("unireplknet-test", 3);
    old["stages.0.0.dwconv.bias"] = Tensor(DType::F32, {16});
    Graph train2 = build_model("unireplknet-test", tiny());
    m = load_error(train2, old);
    EXPECT_HAS(m, "0 missing, 1 unexpected, 0 mis-shaped");
    EXPECT_HAS(m, "unexpected: stages.0.0.dwconv.bias F32 [16]");
    EXPECT_HAS(m, "comes from older UniRepLKNet code");
    // The deploy form loads into a deploy-form graph.
    Graph deploy = build_model("unireplknet-test", d);
    load_state_dict(deploy, initialised("unireplknet-test", 3, d), "memory");
    EXPECT_TRUE(deploy.has_values());
}

TEST_F(GraphWeights, ShiftWiseTablesInTheFileMustMatch) {
    Graph g = build_model("shiftwise-test", tiny());
    std::map<std::string, Tensor> t = initialised("shiftwise-test", 4);
    // A converter may add the official tables (section 4.3); equal ones are accepted.
    for (const char* k :
         {"stages.0.0.large_kernel.ghost", "stages.0.0.large_kernel.rep",
          "stages.0.0.large_kernel.loras.pad_hv", "stages.0.0.large_kernel.loras.idx_identit",
          "stages.0.0.large_kernel.loras.idx_out"}) {
        t[k] = g.constants.at(k);
    }
    const std::string p = path("sw.safetensors");
    write_safetensors(p, t);
    load_weights(g, p);
    EXPECT_TRUE(g.has_values());
    // A table that differs is reported.
    Tensor bad(DType::I32, g.constants.at("stages.0.0.large_kernel.ghost").shape());
    t["stages.0.0.large_kernel.ghost"] = bad;
    Graph h = build_model("shiftwise-test", tiny());
    std::string m = load_error(h, t);
    EXPECT_HAS(m,
               "mis-shaped: stages.0.0.large_kernel.ghost is I32 [4], expected the rebuilt "
               "index table (I32 [4], official_param_names.md section 4.3): values or shape "
               "differ");
}

TEST_F(GraphWeights, FileErrorsAreSafetensorsErrors) {
    Graph g = build_model("slak-test", tiny());
    EXPECT_THROW(load_weights(g, path("does_not_exist.safetensors")), SafetensorsError);
}

TEST(GraphInit, DeterministicPerNameAndOfficialValues) {
    Graph a = build_model("unireplknet-test", tiny());
    Graph b = build_model("unireplknet-test", tiny());
    init_weights(a, 5, InitMode::Test);
    init_weights(b, 5, InitMode::Test);
    for (const auto& kv : a.params) {
        EXPECT_TRUE(equal(kv.second.value, b.params.at(kv.first).value)) << kv.first;
    }
    // The same name gets the same values in another model (per-name streams).
    Graph c = build_model("unireplknet-test", tiny(20));
    init_weights(c, 5, InitMode::Test);
    EXPECT_TRUE(equal(a.params.at("stages.0.0.dwconv.weight").value,
                      c.params.at("stages.0.0.dwconv.weight").value));
    init_weights(b, 6, InitMode::Test);
    EXPECT_FALSE(equal(a.params.at("stages.0.0.dwconv.weight").value,
                       b.params.at("stages.0.0.dwconv.weight").value));

    init_weights(a, 5, InitMode::Official);
    auto first = [&](const std::string& k) { return a.params.at(k).value.data<float>()[0]; };
    EXPECT_EQ(first("stages.0.0.norm.running_var"), 1.0f);
    EXPECT_EQ(first("stages.0.0.norm.running_mean"), 0.0f);
    EXPECT_EQ(first("stages.0.0.norm.weight"), 1.0f);
    EXPECT_EQ(first("stages.0.0.gamma"), 1e-6f);
    EXPECT_EQ(first("stages.0.0.act.1.gamma"), 0.0f);
    EXPECT_EQ(first("norm.weight"), 1.0f);
    EXPECT_EQ(first("head.bias"), 0.0f);
    EXPECT_EQ(a.params.at("stages.0.0.norm.num_batches_tracked").value.data<int64_t>()[0], 0);
    const Tensor& w = a.params.at("head.weight").value;
    double s = 0;
    for (int64_t i = 0; i < w.numel(); ++i) s += double(w.data<float>()[i]) * w.data<float>()[i];
    EXPECT_NEAR(std::sqrt(s / w.numel()), 0.02, 0.004);
}

TEST(GraphInit, StateDictNeedsValues) {
    Graph g = build_model("slak-test", tiny());
    EXPECT_THROW(state_dict(g), GraphError);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
