// dwconv2d_sparse kernels (per-channel tap lists) on the CPU against the naive double-precision
// reference with the masked weights (ref::op_reference: the dense op with w*mask; dw masked),
// every pass, densities 0.3 / 0.6 / 1.0, odd channel counts, kernels larger than the map, strips,
// stride 2 and dilation; the all-taps weight gradient against the dense gradient; every CPU
// variant; finite differences; the preparation step; bad inputs. Tolerances as in
// kernel_harness.h: exact on small-integer data, |err| <= 1e-5 * sum|terms| + 1e-6 on floats.
#include <gtest/gtest.h>

#include <cstdio>

#include "runtime/dwconv2d_sparse.h"
#include "runtime/reference_ops.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

// Shapes: SLaK's 124 and small odd channel counts (7, 19), kernels larger than the map (31x31 on
// 7x7, 63x63 on 11x11, 51x51 on 14x14), the 51x5 / 5x51 strips, dilation 2, stride 2, the
// 56x56 and 14x14 maps of the targets, 1x1.
const char* kShapes[] = {
    "n1c124h14w14:k13x13", "n1c7h7w7:k31x31",     "n2c19h15w13:k51x5",     "n1c19h13w15:k5x51",
    "n1c16h20w21:k7x7:d2", "n1c17h15w13:k7x7:s2", "n1c9h16w17:k7x7:s2:d2", "n1c12h56w56:k31x31",
    "n1c6h28w28:k51x51",   "n1c9h14w14:k31x31",   "n2c8h9w10:k1x1",        "n1c5h11w11:k63x63",
    "n2c7h9w23:k5x51:s2",  "n1c11h21w19:k3x3:d3", "n3c5h6w7:k9x9",
};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};
const double kDensities[] = {0.3, 0.6, 1.0};

std::string case_name(const testing::TestParamInfo<std::string>& info) {
    std::string n = info.param;
    for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    return n;
}

std::map<std::string, Tensor> run_sparse(const Workload& w, const std::map<std::string, Tensor>& in,
                                         const std::string& kernel = "", bool all_taps = false,
                                         std::string* used = nullptr) {
    SparseDwConv2dRunner r(w, Device::Cpu, kernel);
    if (all_taps) r.set_all_taps(true);
    r.set_inputs(in);
    r.run();
    if (used) *used = r.kernel_name();
    return r.outputs();
}

// Sets the mask of channel 0 to a single tap (the centre), so every case has a one-tap channel.
void single_tap_channel(const Workload& w, std::map<std::string, Tensor>& in) {
    float* m = in.at("mask").data<float>();
    const int K = w.kh * w.kw;
    for (int k = 0; k < K; ++k) m[k] = 0.0f;
    m[(w.kh / 2) * w.kw + w.kw / 2] = 1.0f;
}

void expect_matches(const Workload& w, const std::map<std::string, Tensor>& in,
                    const std::map<std::string, Tensor>& out, bool exact, const std::string& what) {
    const auto want = ref::op_reference(w, in);
    const auto mag = ref::op_reference(w, in, /*absolute=*/true);
    ASSERT_EQ(out.size(), want.size()) << what;
    for (const auto& [name, ref] : want) {
        ASSERT_TRUE(out.count(name)) << what << ": no output " << name;
        const Mismatch m = compare(out.at(name), ref, exact ? nullptr : &mag.at(name), 1e-5);
        EXPECT_EQ(m.count, 0u) << what << ": output " << name << " differs at " << m.count << " of "
                               << ref.size() << " elements; worst at " << m.worst_at << ": got "
                               << m.got << ", want " << m.want;
    }
}

std::vector<std::string> all_cases() {
    std::vector<std::string> v;
    for (const char* p : kPasses)
        for (const char* s : kShapes) v.push_back(std::string("dwconv2d_sparse:") + p + ":" + s);
    return v;
}

class SparseCpu : public testing::TestWithParam<std::string> {};

TEST_P(SparseCpu, ExactOnSmallIntegers) {
    const Workload w = parse_workload(GetParam());
    for (double d : kDensities) {
        auto in = make_example_inputs(w, 7, /*small_int=*/true, d, /*with_optional=*/true);
        if (d < 1.0) single_tap_channel(w, in);
        std::string used;
        const auto out = run_sparse(w, in, "", false, &used);
        expect_matches(w, in, out, true, GetParam() + " density " + std::to_string(d) + " " + used);
    }
}

TEST_P(SparseCpu, RandomFloatsWithinRoundingBound) {
    const Workload w = parse_workload(GetParam());
    for (double d : {0.3, 1.0}) {
        const auto in = make_example_inputs(w, 11, /*small_int=*/false, d, true);
        expect_matches(w, in, run_sparse(w, in), false,
                       GetParam() + " density " + std::to_string(d));
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, SparseCpu, testing::ValuesIn(all_cases()), case_name);

// The all-taps weight gradient equals the dense weight gradient at every position (growth
// criteria), whatever the mask.
TEST(SparseCpuAllTaps, EqualsDenseGradient) {
    for (const char* s : {"n1c19h15w13:k7x7", "n2c7h9w23:k5x51:s2", "n1c12h56w56:k31x31",
                          "n1c5h7w7:k31x31", "n1c9h16w17:k7x7:d2"}) {
        const Workload w = parse_workload(std::string("dwconv2d_sparse:bwd_weight:") + s);
        Workload dense = w;
        dense.op = Op::DwConv2d;
        const auto in = make_example_inputs(w, 3, /*small_int=*/true, 0.3);
        const auto out = run_sparse(w, in, "", /*all_taps=*/true);
        const auto want = ref::dwconv2d_reference(dense, {{"x", in.at("x")}, {"dy", in.at("dy")}});
        for (const char* name : {"dw", "db"}) {
            const Mismatch m = compare(out.at(name), want.at(name), nullptr, 0);
            EXPECT_EQ(m.count, 0u) << s << ": all-taps " << name << " differs at " << m.count
                                   << " elements (got " << m.got << ", want " << m.want << ")";
        }
        // Masked mode on the same inputs: zeros exactly where the mask is 0.
        const auto masked = run_sparse(w, in);
        const float* mk = in.at("mask").data<float>();
        const float* dw = masked.at("dw").data<float>();
        for (int64_t i = 0; i < in.at("mask").numel(); ++i)
            if (mk[i] == 0.0f) ASSERT_EQ(dw[i], 0.0f) << s << " at " << i;
    }
}

// Every CPU variant (not only the one the registry picks).
TEST(SparseCpuVariants, EveryVariantExact) {
    const char* shapes[] = {"n1c9h14w14:k31x31", "n2c5h12w20:k5x51", "n1c7h30w29:k7x7:s2",
                            "n1c6h56w56:k51x51"};
    int checked = 0;
    for (const KernelInfo& k : all_kernels()) {
        if (k.device != Device::Cpu) continue;
        if (k.kind != KernelKind::SparseFwd && k.kind != KernelKind::SparseWgrad) continue;
        for (const char* p : kPasses)
            for (const char* s : shapes) {
                const Workload w = parse_workload(std::string("dwconv2d_sparse:") + p + ":" + s);
                if (!kernel_supports(k, w)) continue;
                const auto in = make_example_inputs(w, 5, true, 0.6, true);
                expect_matches(w, in, run_sparse(w, in, k.name), true,
                               std::string(k.name) + " on " + to_string(w));
                ++checked;
            }
    }
    EXPECT_GT(checked, 0);
}

// Finite differences: L(x, w) = <fwd(x, w*mask), dy> is linear in x and in w, so a central
// difference with step 0.5 has no truncation error; the directional derivative must match <dx,
// dir> and <dw, dir_w*mask> + <db, dir_b> (the sparse gradient is zero off the mask).
double dot(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += double(a.data<float>()[i]) * b.data<float>()[i];
    return s;
}

Tensor axpy(const Tensor& a, double alpha, const Tensor& d) {
    Tensor r(DType::F32, a.shape());
    for (int64_t i = 0; i < a.numel(); ++i)
        r.data<float>()[i] = float(a.data<float>()[i] + alpha * d.data<float>()[i]);
    return r;
}

TEST(SparseCpuFiniteDiff, BackwardMatchesDirectionalDerivative) {
    for (const char* s : {"n1c5h9w8:k5x5", "n2c3h7w9:k7x3:s2", "n1c4h11w10:k5x5:d2"}) {
        const Workload fwd = parse_workload(std::string("dwconv2d_sparse:fwd:") + s);
        Workload bd = fwd, bw = fwd;
        bd.pass = Pass::BwdData;
        bw.pass = Pass::BwdWeight;
        auto in = make_example_inputs(fwd, 21, false, 0.5, true);
        const auto dirs = make_example_inputs(fwd, 22, false, 0.5, true);
        const auto dys = make_example_inputs(bd, 23, false, 0.5);
        const Tensor& dy = dys.at("dy");
        auto loss = [&](const Tensor& x, const Tensor& wt, const Tensor& b) {
            auto i2 = in;
            i2["x"] = x;
            i2["w"] = wt;
            i2["b"] = b;
            return dot(run_sparse(fwd, i2).at("y"), dy);
        };
        const double h = 0.5;
        const Tensor& x = in.at("x");
        const Tensor& wt = in.at("w");
        const Tensor& b = in.at("b");
        const auto dx = run_sparse(bd, {{"dy", dy}, {"w", wt}, {"mask", in.at("mask")}}).at("dx");
        const double fd_x =
            (loss(axpy(x, h, dirs.at("x")), wt, b) - loss(axpy(x, -h, dirs.at("x")), wt, b)) /
            (2 * h);
        EXPECT_NEAR(dot(dx, dirs.at("x")), fd_x, 1e-4 * (1 + std::fabs(fd_x))) << s;
        const auto g = run_sparse(bw, {{"x", x}, {"dy", dy}, {"mask", in.at("mask")}});
        const double fd_w = (loss(x, axpy(wt, h, dirs.at("w")), axpy(b, h, dirs.at("b"))) -
                             loss(x, axpy(wt, -h, dirs.at("w")), axpy(b, -h, dirs.at("b")))) /
                            (2 * h);
        // The loss sees w*mask: its derivative along dir_w is <dw_dense, dir_w*mask> = <dw, dir_w>
        // with dw zero off the mask.
        const double an_w = dot(g.at("dw"), dirs.at("w")) + dot(g.at("db"), dirs.at("b"));
        EXPECT_NEAR(an_w, fd_w, 1e-4 * (1 + std::fabs(fd_w))) << s;
    }
}

// The preparation step: one entry per mask non-zero that can reach the image, offsets within the
// pads, entries sorted within each column-skip segment, starts consistent.
TEST(SparseTables, ListsMaskNonZerosThatReachTheImage) {
    const Workload w = parse_workload("dwconv2d_sparse:fwd:n1c6h7w7:k31x31");
    auto in = make_example_inputs(w, 4, true, 0.6);
    const auto mask = read_mask(w, in.at("mask"));
    SparseLayout L;
    L.tile = 8;
    L.chunk = 7;
    L.copies = 2;
    L.segments = 0;
    const SparseTables t = build_sparse_tables(w, L, mask, in.at("w").data<float>());
    for (int c = 0; c < w.c; ++c) {
        int want = 0;  // taps within 6 rows and columns of the centre reach a 7x7 map
        for (int u = 0; u < 31; ++u)
            for (int v = 0; v < 31; ++v)
                want += mask[(size_t(c) * 31 + u) * 31 + v] && std::abs(u - 15) <= 6 &&
                        std::abs(v - 15) <= 6;
        EXPECT_EQ(t.count[size_t(c)], want) << "channel " << c;
        for (int e = 0; e < t.count[size_t(c)]; ++e) {
            const int32_t* f = &t.taps[4 * (size_t(c) * t.max_taps + size_t(e))];
            EXPECT_LE(std::abs(f[2]), t.pad_y);
            const int pos = t.position[size_t(c) * t.max_taps + size_t(e)];
            const int oy = pos / 31 - 15, ox = pos % 31 - 15;
            EXPECT_LE(std::abs(ox), t.pad_x);
            EXPECT_EQ(f[2], oy);
            // Two copies: the even-vector offset is oy * row_pitch + ox + b0 * (pitch - 8).
            const int b0 = (ox >= 0 ? ox / 8 : -((-ox + 7) / 8)) & 1;
            EXPECT_EQ(f[0], oy * t.row_pitch + ox + b0 * (t.pitch - 8));
            EXPECT_EQ(f[1], oy * t.row_pitch + ox + (1 - b0) * (t.pitch - 8));
            EXPECT_EQ(t.weights[size_t(c) * t.max_taps + size_t(e)],
                      in.at("w").data<float>()[size_t(c) * 961 + size_t(pos)]);
        }
    }
    EXPECT_LE(t.pad_x, 6);
    EXPECT_LE(t.pad_y, 6);
    EXPECT_EQ(t.starts.size(), size_t(2 * t.pad_y + 2) * 1 * w.c);
}

TEST(SparseTables, AllTapsListsEveryPosition) {
    const Workload w = parse_workload("dwconv2d_sparse:bwd_weight:n1c3h9w9:k5x5");
    SparseLayout L;
    L.chunk = 12;
    L.copies = 3;
    const SparseTables t = build_sparse_tables(w, L, {}, nullptr, /*all_taps=*/true);
    for (int c = 0; c < 3; ++c) EXPECT_EQ(t.count[size_t(c)], 25);
    EXPECT_EQ(t.max_taps % 12, 0);
}

// A mask with a zero channel gives y = b there and dw = 0.
TEST(SparseCpuEdge, EmptyChannel) {
    const Workload w = parse_workload("dwconv2d_sparse:fwd:n1c3h8w8:k5x5");
    auto in = make_example_inputs(w, 8, true, 0.5, true);
    float* m = in.at("mask").data<float>();
    for (int k = 0; k < 25; ++k) m[25 + k] = 0.0f;  // channel 1 empty
    const auto out = run_sparse(w, in);
    expect_matches(w, in, out, true, "empty channel");
    const float* y = out.at("y").data<float>();
    for (int i = 0; i < 64; ++i) EXPECT_EQ(y[64 + i], in.at("b").data<float>()[1]);
}

// Bad inputs are rejected with messages naming the tensor and what was expected.
TEST(SparseCpuErrors, BadMaskAndOptions) {
    const Workload w = parse_workload("dwconv2d_sparse:fwd:n1c4h8w8:k5x5");
    auto in = make_example_inputs(w, 1, true, 0.5);
    SparseDwConv2dRunner r(w, Device::Cpu);
    {
        auto bad = in;
        bad["mask"] = Tensor(DType::F32, {4, 1, 5, 3});
        try {
            r.set_inputs(bad);
            FAIL() << "a mask of the wrong shape was accepted";
        } catch (const std::invalid_argument& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find("mask"), std::string::npos) << msg;
            EXPECT_NE(msg.find("[4, 1, 5, 5]"), std::string::npos) << msg;
        }
    }
    {
        auto bad = in;
        bad.at("mask").data<float>()[7] = 0.5f;
        try {
            r.set_inputs(bad);
            FAIL() << "a mask value of 0.5 was accepted";
        } catch (const std::invalid_argument& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find("0.5"), std::string::npos) << msg;
            EXPECT_NE(msg.find("mask[0,0,1,2]"), std::string::npos) << msg;
        }
    }
    {
        auto bad = in;
        bad.erase("mask");
        EXPECT_THROW(r.set_inputs(bad), std::invalid_argument);
    }
    EXPECT_THROW(r.set_all_taps(true), std::invalid_argument);  // only bwd_weight
    EXPECT_THROW(r.run(), std::logic_error);                    // no inputs yet
    EXPECT_THROW(SparseDwConv2dRunner(parse_workload("dwconv2d:fwd:n1c4h8w8:k5x5"), Device::Cpu),
                 std::invalid_argument);
    EXPECT_THROW(SparseDwConv2dRunner(w, Device::Cpu, "dwconv2d_fwd_t14c8_cpu"),
                 std::invalid_argument);
}

// fill_random gives the requested density per channel and a working run.
TEST(SparseCpuRandom, FillRandomDensity) {
    const Workload w = parse_workload("dwconv2d_sparse:bwd_weight:n1c10h14w14:k31x31");
    SparseDwConv2dRunner r(w, Device::Cpu);
    r.set_density(0.3);
    r.fill_random(42);
    r.run();
    const auto out = r.outputs();
    const float* dw = out.at("dw").data<float>();
    for (int c = 0; c < 10; ++c) {
        int nz = 0;
        for (int k = 0; k < 961; ++k) nz += dw[c * 961 + k] != 0.0f;
        EXPECT_LE(nz, 288) << "channel " << c;  // round(0.3 * 961)
        EXPECT_GT(nz, 100) << "channel " << c;
    }
    EXPECT_THROW(r.set_density(1.5), std::invalid_argument);
}

}  // namespace
}  // namespace lkc::test
