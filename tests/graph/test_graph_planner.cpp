// The memory planner (graph/passes/memory_plan.h): on every full-size model at 224 (batch 1 and
// 8) and every tiny model, deployed by the passes, the verifier accepts the plan and the arena
// peak is at most 1.2x the sequential minimum (both printed); a randomized test corrupts plans
// and checks that the verifier agrees with a brute-force overlap check; graph inputs / outputs
// and in-place ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "graph/builder.h"
#include "graph/models/models.h"
#include "graph/passes/passes.h"

namespace lkc {
namespace graph {
namespace {

using passes::MemoryPlan;

double mib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

Graph deployed(const std::string& model, int batch, int image) {
    ModelOptions o;
    o.batch = batch;
    o.image_size = image;
    if (model.find("-test") != std::string::npos) o.num_classes = 10;
    return passes::deploy(build_model(model, o));
}

struct PlanCase {
    const char* model;
    int batch;
    int image;
};

class PlannerModels : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlannerModels, VerifiedAndWithin20PercentOfTheSequentialMinimum) {
    const PlanCase& c = GetParam();
    const Graph g = deployed(c.model, c.batch, c.image);
    const MemoryPlan p = passes::plan_memory(g);
    passes::verify_plan(g, p);
    EXPECT_LE(static_cast<double>(p.arena_bytes),
              1.2 * static_cast<double>(p.sequential_min_bytes));
    // Without in-place reuse the planner alone must be within the bound too.
    passes::PlanOptions no_in_place;
    no_in_place.in_place = false;
    const MemoryPlan q = passes::plan_memory(g, no_in_place);
    passes::verify_plan(g, q);
    EXPECT_EQ(q.sequential_min_bytes, p.sequential_min_bytes);
    EXPECT_LE(static_cast<double>(q.arena_bytes),
              1.2 * static_cast<double>(q.sequential_min_bytes));
    int in_place = 0;
    for (int s : p.in_place_of) in_place += s >= 0;
    // The train form, unfused and plain, planned the same way.
    ModelOptions o;
    o.batch = c.batch;
    o.image_size = c.image;
    if (std::string(c.model).find("-test") != std::string::npos) o.num_classes = 10;
    const Graph train = build_model(c.model, o);
    const MemoryPlan t = passes::plan_memory(train);
    passes::verify_plan(train, t);
    EXPECT_LE(static_cast<double>(t.arena_bytes),
              1.2 * static_cast<double>(t.sequential_min_bytes));
    std::printf(
        "%-16s batch %d: deployed %4zu tensors: arena %lld B = %.2f MiB, sequential min %lld B = "
        "%.2f MiB (%.3fx; %d in place; without in-place %.2f MiB, %.3fx) | train form, plain "
        "storage: %.2f / %.2f MiB\n",
        c.model, c.batch, g.tensors.size(), static_cast<long long>(p.arena_bytes),
        mib(p.arena_bytes), static_cast<long long>(p.sequential_min_bytes),
        mib(p.sequential_min_bytes), double(p.arena_bytes) / double(p.sequential_min_bytes),
        in_place, mib(q.arena_bytes), double(q.arena_bytes) / double(q.sequential_min_bytes),
        mib(t.arena_bytes), mib(t.sequential_min_bytes));
    RecordProperty("arena_bytes", std::to_string(p.arena_bytes));
    RecordProperty("sequential_min_bytes", std::to_string(p.sequential_min_bytes));
}

const PlanCase kCases[] = {
    {"replknet-31b", 1, 224}, {"replknet-31b", 8, 224},    {"slak-t", 1, 224},
    {"slak-t", 8, 224},       {"unireplknet-t", 1, 224},   {"unireplknet-t", 8, 224},
    {"shiftwise-t", 1, 224},  {"shiftwise-t", 8, 224},     {"replknet-test", 1, 32},
    {"slak-test", 1, 32},     {"unireplknet-test", 1, 32}, {"shiftwise-test", 1, 32},
    {"replknet-test", 2, 32}, {"shiftwise-test", 2, 32},
};

INSTANTIATE_TEST_SUITE_P(Planner, PlannerModels, ::testing::ValuesIn(kCases), [](const auto& info) {
    std::string n = info.param.model;
    for (char& ch : n) ch = ch == '-' ? '_' : ch;
    return n + "_b" + std::to_string(info.param.batch);
});

// Independent of the planner: do two tensors, live at the same step, share bytes?
bool brute_force_conflict(const Graph& g, const MemoryPlan& p) {
    std::vector<int> first(g.tensors.size(), -2), last(g.tensors.size(), -2);
    for (int t : g.inputs) first[size_t(t)] = -1;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int t : g.nodes[i].outputs) first[size_t(t)] = int(i);
    }
    last = first;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int t : g.nodes[i].inputs) last[size_t(t)] = std::max(last[size_t(t)], int(i));
    }
    for (int t : g.outputs) last[size_t(t)] = int(g.nodes.size());
    for (size_t a = 0; a < g.tensors.size(); ++a) {
        for (size_t b = a + 1; b < g.tensors.size(); ++b) {
            if (p.offset[a] < 0 || p.offset[b] < 0) continue;
            if (last[a] < first[b] || last[b] < first[a]) continue;
            const int64_t ea = p.offset[a] + passes::storage_bytes(g.tensors[a]);
            const int64_t eb = p.offset[b] + passes::storage_bytes(g.tensors[b]);
            if (p.offset[a] < eb && p.offset[b] < ea) {
                // Allowed only for a declared in-place pair at one offset.
                const bool pair = (p.in_place_of[b] == int(a) || p.in_place_of[a] == int(b)) &&
                                  p.offset[a] == p.offset[b];
                if (!pair) return true;
            }
        }
    }
    return false;
}

TEST(Planner, VerifierRejectsCorruptedPlans) {
    std::mt19937 rng(1234);
    for (const char* m : {"replknet-test", "slak-test", "unireplknet-test", "shiftwise-test"}) {
        const Graph g = deployed(m, 1, 32);
        const MemoryPlan p = passes::plan_memory(g);
        ASSERT_TRUE(passes::plan_errors(g, p).empty()) << m;
        ASSERT_FALSE(brute_force_conflict(g, p)) << m;
        std::vector<int> first, last;
        passes::tensor_lifetimes(g, &first, &last);
        const int nt = static_cast<int>(g.tensors.size());
        int rejected = 0, accepted = 0;
        for (int trial = 0; trial < 300; ++trial) {
            MemoryPlan c = p;
            const int kind = trial % 5;
            const int a = std::uniform_int_distribution<int>(0, nt - 1)(rng);
            if (kind == 0) {
                // Move a onto a random tensor live at the same time.
                std::vector<int> live;
                for (int b = 0; b < nt; ++b) {
                    if (b != a && !(last[size_t(a)] < first[size_t(b)] ||
                                    last[size_t(b)] < first[size_t(a)])) {
                        live.push_back(b);
                    }
                }
                if (live.empty()) continue;
                const int b = live[std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng)];
                c.offset[size_t(a)] = c.offset[size_t(b)];
                c.in_place_of[size_t(a)] = -1;
                c.in_place_of[size_t(b)] =
                    c.in_place_of[size_t(b)] == a ? -1 : c.in_place_of[size_t(b)];
            } else if (kind == 1) {
                // A random aligned offset anywhere in the arena (may or may not conflict).
                const int64_t slots = std::max<int64_t>(1, c.arena_bytes / 64);
                c.offset[size_t(a)] =
                    64 * std::uniform_int_distribution<int64_t>(0, slots - 1)(rng);
                c.arena_bytes = 0;
                for (int t = 0; t < nt; ++t) {
                    if (c.offset[size_t(t)] >= 0) {
                        c.arena_bytes =
                            std::max(c.arena_bytes, c.offset[size_t(t)] + c.bytes[size_t(t)]);
                    }
                }
                // Keep declared in-place pairs consistent so only overlaps decide.
                for (int t = 0; t < nt; ++t) {
                    if (c.in_place_of[size_t(t)] == a || t == a) c.in_place_of[size_t(t)] = -1;
                }
                const bool conflict = brute_force_conflict(g, c);
                const bool ok = passes::plan_errors(g, c).empty();
                EXPECT_EQ(ok, !conflict) << m << " trial " << trial;
                (ok ? accepted : rejected)++;
                continue;
            } else if (kind == 2) {
                c.offset[size_t(a)] += 32;  // misaligned
            } else if (kind == 3) {
                c.bytes[size_t(a)] -= 64;  // slot too short
                if (c.bytes[size_t(a)] >= passes::storage_bytes(g.tensors[size_t(a)])) continue;
            } else {
                // A bogus in-place declaration: a tensor that is no input of the producer.
                const int b = (a + 1) % nt;
                if (p.in_place_of[size_t(a)] == b) continue;
                c.in_place_of[size_t(a)] = b;
            }
            EXPECT_FALSE(passes::plan_errors(g, c).empty())
                << m << " trial " << trial << " kind " << kind;
            EXPECT_THROW(passes::verify_plan(g, c), GraphError);
            ++rejected;
        }
        EXPECT_GT(rejected, 100) << m;
        RecordProperty(std::string(m) + "_accepted_random_moves", accepted);
    }
}

TEST(Planner, ErrorsNameBothTensors) {
    const Graph g = deployed("replknet-test", 1, 32);
    MemoryPlan p = passes::plan_memory(g);
    // The stem conv's output and its input are live at the same step.
    const Node& stem = g.nodes.at(1);
    const int in = stem.inputs[0], out = stem.outputs[0];
    p.offset[size_t(out)] = p.offset[size_t(in)];
    p.in_place_of[size_t(out)] = -1;
    EXPECT_THROW(passes::verify_plan(g, p), GraphError);
    bool named = false;
    for (const std::string& msg : passes::plan_errors(g, p)) {
        named = named || (msg.find("'" + g.tensor(in).name + "'") != std::string::npos &&
                          msg.find("'" + g.tensor(out).name + "'") != std::string::npos &&
                          msg.find("overlap while both are live") != std::string::npos);
    }
    EXPECT_TRUE(named) << "no error names both '" << g.tensor(in).name << "' and '"
                       << g.tensor(out).name << "'";
}

TEST(Planner, GraphInputsOutputsAndInPlace) {
    const Graph g = deployed("replknet-test", 1, 32);
    const int x = g.inputs[0], y = g.outputs[0];
    passes::PlanOptions o;
    const MemoryPlan p = passes::plan_memory(g, o);
    EXPECT_EQ(p.first[size_t(x)], -1);
    EXPECT_EQ(p.last[size_t(y)], static_cast<int>(g.nodes.size()));
    EXPECT_GE(p.offset[size_t(x)], 0);
    EXPECT_EQ(p.in_place_of[size_t(x)], -1);
    // The image is never overwritten in place, even where it dies.
    for (int s : p.in_place_of) EXPECT_NE(s, x);
    o.inputs_in_arena = false;
    o.outputs_in_arena = false;
    const MemoryPlan q = passes::plan_memory(g, o);
    EXPECT_EQ(q.offset[size_t(x)], -1);
    EXPECT_EQ(q.offset[size_t(y)], -1);
    passes::verify_plan(g, q);
    EXPECT_LE(q.arena_bytes, p.arena_bytes);
    // RepLKNet's residual adds are epilogues of pw2 convs; their residual input dies there and
    // the output takes over its buffer.
    int residual_in_place = 0;
    for (size_t t = 0; t < g.tensors.size(); ++t) {
        if (p.in_place_of[t] >= 0 && g.tensors[t].name.find("residual") != std::string::npos) {
            ++residual_in_place;
        }
    }
    EXPECT_GT(residual_in_place, 0);
    // Sizes follow the blocked storage: ceil(C/16)*16*H*W*N*4, 64-aligned.
    for (size_t t = 0; t < g.tensors.size(); ++t) {
        const TensorDesc& d = g.tensors[t];
        EXPECT_EQ(p.bytes[t] % 64, 0);
        if (d.storage == Layout::Blocked16 && d.shape.size() == 4) {
            EXPECT_EQ(passes::storage_bytes(d),
                      (d.shape[1] + 15) / 16 * 16 * d.shape[2] * d.shape[3] * d.shape[0] * 4);
        }
    }
}

TEST(Planner, ChainReachesTheMinimumAndReusesBuffersInPlace) {
    // x -> dw -> relu -> relu -> relu: two buffers alternate without in-place; with it the relus
    // reuse the dw conv's buffer (x is never overwritten).
    GraphBuilder b("chain");
    int x = b.input("x", {1, 16, 8, 8});
    int c = b.dwconv("c", x, 3, 3, 1, 1, false);
    int r = b.unary(OpKind::Relu, "r1", c);
    r = b.unary(OpKind::Relu, "r2", r);
    r = b.unary(OpKind::Relu, "r3", r);
    b.output(r);
    const Graph g = b.finish();
    const int64_t one = 16 * 8 * 8 * 4;
    passes::PlanOptions o;
    o.in_place = false;
    const MemoryPlan p = passes::plan_memory(g, o);
    passes::verify_plan(g, p);
    EXPECT_EQ(p.sequential_min_bytes, 2 * one);
    EXPECT_EQ(p.arena_bytes, 2 * one);
    const MemoryPlan q = passes::plan_memory(g);
    passes::verify_plan(g, q);
    EXPECT_EQ(q.arena_bytes, 2 * one);  // x and the one buffer c, r1, r2, r3 share
    EXPECT_EQ(q.in_place_of[size_t(g.tensor_id("r3"))], g.tensor_id("r2"));
    EXPECT_EQ(q.offset[size_t(g.tensor_id("r1"))], q.offset[size_t(g.tensor_id("c"))]);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
