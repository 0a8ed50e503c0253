// The graph executor's depth-wise layers (runtime/layers.h) on blocked buffers against the
// double-precision reference of the same op (runtime/reference_ops.h): every family's forward,
// exact on small-integer data; padding lanes written as zero; shape errors named.
#include <gtest/gtest.h>

#include "runtime/layers.h"
#include "runtime/op_inputs.h"
#include "runtime/reference_ops.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

std::map<std::string, Tensor> params_of(const std::map<std::string, Tensor>& in) {
    std::map<std::string, Tensor> p = in;
    p.erase("x");
    return p;
}

void check_layer(const std::string& wl, bool optional) {
    const Workload w = parse_workload(wl);
    const auto in = make_example_inputs(w, 5, /*small_int=*/true, 0.5, optional);
    auto layer = make_dw_layer(w, Device::Cpu, params_of(in));
    const Blocked x = to_blocked(in.at("x"));
    const auto want = ref::op_reference(w, in);
    if (want.count("y")) {
        Blocked y = make_blocked(w.n, w.c, w.out_h(), w.out_w());
        y.fill(123.0f);  // every element must be written
        layer->run(x, y);
        const Mismatch m = compare(from_blocked(y, w.c), want.at("y"), nullptr, 0);
        EXPECT_EQ(m.count, 0u) << wl << " (" << layer->kernel_name() << "): " << m.count
                               << " differ, worst at " << m.worst_at << ": " << m.got << " vs "
                               << m.want;
        for (int c = w.c; c < (w.c + 15) / 16 * 16; ++c)
            EXPECT_EQ(y(c % 16, 0, 0, c / 16, 0), 0.0f) << wl << " padding lane " << c;
    } else {
        // Shift-wise train form: three outputs.
        std::vector<Blocked> ys;
        for (int i = 0; i < 3; ++i) ys.push_back(make_blocked(w.n, w.c, w.h, w.w));
        layer->run(x, {&ys[0], &ys[1], &ys[2]});
        const char* names[] = {"yh", "yv", "ys"};
        for (int i = 0; i < 3; ++i) {
            const Mismatch m =
                compare(from_blocked(ys[size_t(i)], w.c), want.at(names[i]), nullptr, 0);
            EXPECT_EQ(m.count, 0u) << wl << " output " << names[i];
        }
        Blocked y = make_blocked(w.n, w.c, w.h, w.w);
        EXPECT_THROW(layer->run(x, y), std::invalid_argument);
    }
}

TEST(DwLayers, EveryFamilyForwardExact) {
    for (const char* wl :
         {"dwconv2d:fwd:n2c20h13w11:k7x7", "dwconv2d:fwd:n1c124h14w14:k31x31",
          "dwconv2d:fwd:n1c33h15w17:k3x3:s2", "dwconv2d:fwd:n1c16h28w28:k7x7:d3",
          "dwconv2d_multi:fwd:n1c124h20w19:b13x5d1,5x13d1,5x5d1",
          "dwconv2d_multi:fwd:n2c20h15w15:b13x13d1,5x5d1,7x7d2,3x3d3",
          "dwconv2d_sparse:fwd:n1c19h14w14:k13x13", "dwconv2d_sparse:fwd:n2c9h13w15:k7x7:s2"})
        for (bool optional : {false, true}) check_layer(wl, optional);
    // Shift-wise: fused inference form (one output) and the train form (three).
    check_layer("shiftwise:fwd:n1c20h15w15:K13k3g4", true);
    check_layer("shiftwise:fwd:n2c7h11w13:K7k3g2", false);
}

TEST(DwLayers, ShapeAndParameterErrorsAreNamed) {
    const Workload w = parse_workload("dwconv2d:fwd:n1c20h13w11:k7x7");
    auto in = make_example_inputs(w, 1, true);
    auto bad = params_of(in);
    bad["w"] = Tensor(DType::F32, {20, 1, 5, 5});
    try {
        make_dw_layer(w, Device::Cpu, bad);
        FAIL() << "wrong weight shape accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("[20, 1, 7, 7]"), std::string::npos) << e.what();
    }
    bad = params_of(in);
    bad["bogus"] = Tensor(DType::F32, {1});
    EXPECT_THROW(make_dw_layer(w, Device::Cpu, bad), std::invalid_argument);
    auto layer = make_dw_layer(w, Device::Cpu, params_of(in));
    Blocked x = make_blocked(1, 20, 12, 11), y = make_blocked(1, 20, 13, 11);
    try {
        layer->run(x, y);
        FAIL() << "wrong input extents accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("(16, 11, 13, 2, 1)"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_dw_layer(parse_workload("dwconv2d:bwd_data:n1c20h13w11:k7x7"), Device::Cpu,
                               params_of(in)),
                 std::invalid_argument);
}

}  // namespace
}  // namespace lkc::test
