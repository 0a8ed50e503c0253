// The fast graph executor (graph/executor.h) against the naive double-precision executor
// (graph/reference_executor.h): every family's tiny model, train form run as given and deploy
// form after the passes, batch 1 and 2, random weights where every branch contributes
// (InitMode::Test). Tolerance: max |fast - ref| <= 1e-4 * max |ref| (fp32 accumulation over
// every layer vs double). Also: determinism (bitwise), input errors, the memory plan verifies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/passes/memory_plan.h"
#include "graph/reference_executor.h"
#include "graph/serialize.h"
#include "graph/weights.h"

namespace lkc::graph {
namespace {

Tensor random_input(const Shape& s, uint32_t seed) {
    Tensor t(DType::F32, s);
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-1.5f, 1.5f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(g);
    return t;
}

struct Diff {
    double max_abs = 0, max_ref = 0;
};
Diff diff(const Tensor& fast, const Tensor& ref) {
    Diff d;
    const float* a = fast.data<float>();
    const double* b = ref.data<double>();
    for (int64_t i = 0; i < ref.numel(); ++i) {
        d.max_abs = std::max(d.max_abs, std::fabs(a[i] - b[i]));
        d.max_ref = std::max(d.max_ref, std::fabs(b[i]));
    }
    return d;
}

std::vector<std::string> tiny_models() {
    std::vector<std::string> v;
    for (const std::string& n : model_names())
        if (n.size() > 5 && n.substr(n.size() - 5) == "-test") v.push_back(n);
    return v;
}

class Tiny : public testing::TestWithParam<std::string> {};

TEST_P(Tiny, MatchesDoubleReferenceTrainAndDeploy) {
    for (int batch : {1, 2}) {
        ModelOptions mo;
        mo.batch = batch;
        mo.image_size = 32;
        mo.num_classes = 10;
        Graph g = build_model(GetParam(), mo);
        init_weights(g, 11, InitMode::Test);
        const Tensor x = random_input(g.tensor(g.inputs[0]).shape, 5 + batch);
        const Tensor want = run_reference(g, {{"x", x}}).outputs.at("head");
        for (bool deploy : {false, true}) {
            ExecOptions eo;
            eo.deploy = deploy;
            eo.no_records = true;
            Executor ex(g, eo);
            EXPECT_TRUE(passes::plan_errors(ex.graph(), ex.plan()).empty());
            const auto got = ex.run({{"x", x}});
            ASSERT_TRUE(got.count("head"));
            ASSERT_EQ(got.at("head").shape(), want.shape());
            const Diff d = diff(got.at("head"), want);
            EXPECT_GT(d.max_ref, 0.0);
            EXPECT_LE(d.max_abs, 1e-4 * d.max_ref)
                << GetParam() << " batch " << batch << (deploy ? " deploy" : " train form")
                << ": max |diff| " << d.max_abs << ", max |ref| " << d.max_ref;
            // Deterministic: a second run gives the same bits.
            const auto again = ex.run({{"x", x}});
            EXPECT_EQ(
                std::memcmp(again.at("head").raw(), got.at("head").raw(), got.at("head").nbytes()),
                0);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Models, Tiny, testing::ValuesIn(tiny_models()),
                         [](const testing::TestParamInfo<std::string>& i) {
                             std::string s = i.param;
                             for (char& c : s)
                                 if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                             return s;
                         });

// The full-size configurations (every stage, every kernel size: 31/29/27/13, 51/49/47/13, the
// DRB and shift-wise layers) at 64x64 input so the double reference stays cheap: deploy form
// against the train-form reference.
TEST(Executor, FullSizeModelsAt64MatchTheReference) {
    for (const char* m : {"replknet-31b", "slak-t", "unireplknet-t", "shiftwise-t"}) {
        ModelOptions mo;
        mo.image_size = 64;
        mo.num_classes = 100;
        Graph g = build_model(m, mo);
        init_weights(g, 3, InitMode::Test);
        const Tensor x = random_input(g.tensor(g.inputs[0]).shape, 9);
        const Tensor want = run_reference(g, {{"x", x}}).outputs.at("head");
        ExecOptions eo;
        eo.no_records = true;
        Executor ex(g, eo);
        const Diff d = diff(ex.run({{"x", x}}).at("head"), want);
        EXPECT_GT(d.max_ref, 0.0) << m;
        EXPECT_LE(d.max_abs, 1e-4 * d.max_ref)
            << m << ": max |diff| " << d.max_abs << ", max |ref| " << d.max_ref;
    }
}

// A deployed graph survives JSON + values (what lkc compile ships): validate() passes and the
// executor gives the same bits.
TEST(Executor, SerializedDeployedGraphRunsTheSame) {
    for (const std::string& m : tiny_models()) {
        ModelOptions mo;
        mo.image_size = 32;
        mo.num_classes = 10;
        Graph g = build_model(m, mo);
        init_weights(g, 4, InitMode::Test);
        ExecOptions eo;
        eo.no_records = true;
        Executor a(g, eo);
        const Graph& d = a.graph();
        Graph back = graph_from_json(graph_to_json(d));
        set_graph_values(back, graph_values(d));
        EXPECT_NO_THROW(validate(back)) << m;
        ExecOptions eo2 = eo;
        eo2.deploy = false;  // already deployed
        Executor b(back, eo2);
        const Tensor x = random_input(g.tensor(g.inputs[0]).shape, 2);
        const Tensor ya = a.run({{"x", x}}).at("head"), yb = b.run({{"x", x}}).at("head");
        EXPECT_EQ(std::memcmp(ya.raw(), yb.raw(), ya.nbytes()), 0) << m;
    }
    EXPECT_THROW(graph_from_json("{\"format\": 9}"), GraphError);
    EXPECT_THROW(graph_from_json("not json"), GraphError);
}

TEST(Executor, InputErrorsAreNamed) {
    ModelOptions mo;
    mo.image_size = 32;
    mo.num_classes = 10;
    Graph g = build_model(tiny_models().at(0), mo);
    EXPECT_THROW(Executor(g, {}), GraphError);  // no weights yet
    init_weights(g, 1);
    ExecOptions eo;
    eo.no_records = true;
    Executor ex(g, eo);
    try {
        ex.run({{"x", Tensor(DType::F32, {1, 3, 31, 32})}});
        FAIL() << "wrong input shape accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("[1, 3, 32, 32]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ex.run({}), std::invalid_argument);
}

}  // namespace
}  // namespace lkc::graph
