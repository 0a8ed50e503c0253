// The op-level references and input contract: tensor names and shapes per workload, validation of
// masks and shift tables, example inputs, dwconv2d_multi / dwconv2d_sparse against the dense
// reference, and the literal shiftwise reference (hand-computed cases, adjoint identities).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/op_inputs.h"
#include "runtime/reference_dwconv.h"
#include "runtime/reference_ops.h"

namespace lkc {
namespace {

using Vec = std::vector<double>;
using Inputs = std::map<std::string, Tensor>;
using Shapes = std::map<std::string, Shape>;

Tensor f32(const Shape& shape, const Vec& v) {
    Tensor t(DType::F32, shape);
    EXPECT_EQ(size_t(t.numel()), v.size());
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
}

Tensor i32(const Shape& shape, const std::vector<int32_t>& v) {
    Tensor t(DType::I32, shape);
    EXPECT_EQ(size_t(t.numel()), v.size());
    std::copy(v.begin(), v.end(), t.data<int32_t>());
    return t;
}

Vec vec(const Tensor& t) { return Vec(t.data<float>(), t.data<float>() + t.numel()); }

double dot(const Vec& a, const Vec& b) {
    EXPECT_EQ(a.size(), b.size());
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

double abs_dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::fabs(a[i] * b[i]);
    return s;
}

void expect_near_vec(const Vec& got, const Vec& want, double tol, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << what << " at " << i;
    }
}

// Expects `f` to throw std::invalid_argument whose message contains every string of `parts`.
template <typename F>
void expect_error(F f, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        for (const std::string& p : parts) {
            EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
        }
        return;
    }
    ADD_FAILURE() << "no std::invalid_argument thrown";
}

// ---------------------------------------------------------------------------------------------
// Names and shapes

TEST(OpInputs, DwConv2dShapes) {
    Workload w = parse_workload("dwconv2d:fwd:n2c3h9w8:k5x3:s2");
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", {2, 3, 9, 8}}, {"w", {3, 1, 5, 3}}}));
    EXPECT_EQ(op_optional_inputs(w), (Shapes{{"b", {3}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"y", {2, 3, 5, 4}}}));
    w.pass = Pass::BwdData;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"dy", {2, 3, 5, 4}}, {"w", {3, 1, 5, 3}}}));
    EXPECT_EQ(op_optional_inputs(w), Shapes{});
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dx", {2, 3, 9, 8}}}));
    w.pass = Pass::BwdWeight;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", {2, 3, 9, 8}}, {"dy", {2, 3, 5, 4}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dw", {3, 1, 5, 3}}, {"db", {3}}}));
}

TEST(OpInputs, MultiShapes) {
    Workload w = parse_workload("dwconv2d_multi:fwd:n1c5h7w6:b5x3d1,3x5d2:s2");
    EXPECT_EQ(op_input_shapes(w),
              (Shapes{{"x", {1, 5, 7, 6}}, {"w0", {5, 1, 5, 3}}, {"w1", {5, 1, 3, 5}}}));
    EXPECT_EQ(op_optional_inputs(w), (Shapes{{"b", {5}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"y", {1, 5, 4, 3}}}));
    w.pass = Pass::BwdData;
    EXPECT_EQ(op_input_shapes(w),
              (Shapes{{"dy", {1, 5, 4, 3}}, {"w0", {5, 1, 5, 3}}, {"w1", {5, 1, 3, 5}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dx", {1, 5, 7, 6}}}));
    w.pass = Pass::BwdWeight;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", {1, 5, 7, 6}}, {"dy", {1, 5, 4, 3}}}));
    EXPECT_EQ(op_output_shapes(w),
              (Shapes{{"dw0", {5, 1, 5, 3}}, {"dw1", {5, 1, 3, 5}}, {"db", {5}}}));
}

TEST(OpInputs, SparseShapes) {
    Workload w = parse_workload("dwconv2d_sparse:fwd:n1c2h6w5:k3x5:d2");
    const Shape k{2, 1, 3, 5};
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", {1, 2, 6, 5}}, {"w", k}, {"mask", k}}));
    EXPECT_EQ(op_optional_inputs(w), (Shapes{{"b", {2}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"y", {1, 2, 6, 5}}}));
    w.pass = Pass::BwdData;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"dy", {1, 2, 6, 5}}, {"w", k}, {"mask", k}}));
    w.pass = Pass::BwdWeight;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", {1, 2, 6, 5}}, {"dy", {1, 2, 6, 5}}, {"mask", k}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dw", k}, {"db", {2}}}));
}

TEST(OpInputs, ShiftwiseShapes) {
    Workload w = parse_workload("shiftwise:fwd:n2c3h6w7:K13k3g4");  // nk = 5
    const Shape x{2, 3, 6, 7}, tab{4, 3, 5}, id{4, 3}, k{3, 5, 3, 3};
    EXPECT_EQ(op_input_shapes(w),
              (Shapes{{"x", x}, {"w", k}, {"slot_h", tab}, {"slot_v", tab}, {"ident", id}}));
    EXPECT_EQ(op_optional_inputs(w), (Shapes{{"ah", {3}}, {"av", {3}}, {"as", {3}}, {"b", {3}}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"yh", x}, {"yv", x}, {"ys", x}}));
    w.pass = Pass::BwdData;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"dyh", x},
                                          {"dyv", x},
                                          {"dys", x},
                                          {"w", k},
                                          {"slot_h", tab},
                                          {"slot_v", tab},
                                          {"ident", id}}));
    EXPECT_EQ(op_optional_inputs(w), Shapes{});
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dx", x}}));
    w.pass = Pass::BwdWeight;
    EXPECT_EQ(op_input_shapes(w), (Shapes{{"x", x},
                                          {"dyh", x},
                                          {"dyv", x},
                                          {"dys", x},
                                          {"slot_h", tab},
                                          {"slot_v", tab},
                                          {"ident", id}}));
    EXPECT_EQ(op_output_shapes(w), (Shapes{{"dw", k}}));
    // nk * k != K: K=7, k=5 -> nk = 2.
    EXPECT_EQ(op_input_shapes(parse_workload("shiftwise:fwd:n1c1h4w4:K7k5g1")).at("w"),
              (Shape{1, 2, 5, 5}));
}

// ---------------------------------------------------------------------------------------------
// Example inputs

TEST(OpInputs, ExampleMasksHaveExactTapCounts) {
    struct Case {
        const char* wl;
        double density;
        int taps;
    };
    // round(density * Kh * Kw), at least 1 (lround: halves away from zero).
    const Case cases[] = {{"dwconv2d_sparse:fwd:n1c7h4w4:k5x5", 0.5, 13},
                          {"dwconv2d_sparse:fwd:n1c7h4w4:k5x5", 0.3, 8},
                          {"dwconv2d_sparse:fwd:n1c7h4w4:k5x5", 0.0, 1},
                          {"dwconv2d_sparse:fwd:n1c7h4w4:k5x5", 1.0, 25},
                          {"dwconv2d_sparse:bwd_weight:n1c5h4w4:k3x7", 0.25, 5},
                          {"dwconv2d_sparse:bwd_data:n1c3h4w4:k1x1", 0.2, 1}};
    for (const Case& c : cases) {
        const Workload w = parse_workload(c.wl);
        const Inputs in = make_example_inputs(w, 7, false, c.density);
        const std::vector<uint8_t> m = read_mask(w, in.at("mask"));
        const size_t taps = size_t(w.kh) * w.kw;
        std::set<std::vector<uint8_t>> patterns;
        for (int ch = 0; ch < w.c; ++ch) {
            std::vector<uint8_t> row(m.begin() + ch * taps, m.begin() + (ch + 1) * taps);
            EXPECT_EQ(std::count(row.begin(), row.end(), 1), c.taps) << c.wl << " channel " << ch;
            patterns.insert(row);
        }
        if (c.taps > 1 && size_t(c.taps) < taps) {
            EXPECT_GT(patterns.size(), 1u) << c.wl << ": every channel has the same pattern";
        }
    }
    expect_error(
        [] {
            make_example_inputs(parse_workload("dwconv2d_sparse:fwd:n1c1h4w4:k3x3"), 1, false, 1.5);
        },
        {"density 1.5"});
}

TEST(OpInputs, ExampleInputsAreValidAndDeterministic) {
    for (const char* s : {"shiftwise:fwd:n1c5h4w6:K13k3g4", "shiftwise:bwd_weight:n2c3h3w3:K7k5g2",
                          "dwconv2d_multi:fwd:n1c3h5w5:b3x3d1,5x1d2",
                          "dwconv2d_sparse:fwd:n1c3h5w5:k3x3", "dwconv2d:bwd_data:n1c2h5w5:k3x3"}) {
        const Workload w = parse_workload(s);
        for (bool small_int : {false, true}) {
            const Inputs in = make_example_inputs(w, 11, small_int, 0.5, true);
            EXPECT_NO_THROW(check_op_inputs(w, in)) << s;
            EXPECT_NO_THROW(ref::op_reference(w, in)) << s;
            Shapes want = op_input_shapes(w);
            for (const auto& kv : op_optional_inputs(w)) want.insert(kv);
            ASSERT_EQ(in.size(), want.size()) << s;
            if (w.op == Op::ShiftWise) {
                EXPECT_NO_THROW(
                    read_shift_tables(w, in.at("slot_h"), in.at("slot_v"), in.at("ident")));
            }
            // Same seed, same bytes; another seed differs.
            const Inputs again = make_example_inputs(w, 11, small_int, 0.5, true);
            const Inputs other = make_example_inputs(w, 12, small_int, 0.5, true);
            for (const auto& [name, t] : in) {
                const Tensor& u = again.at(name);
                EXPECT_EQ(0, std::memcmp(t.raw(), u.raw(), t.nbytes())) << s << " " << name;
                if (name == "x" || name == "dyh") {
                    EXPECT_NE(0, std::memcmp(t.raw(), other.at(name).raw(), t.nbytes()));
                }
                if (t.dtype() != DType::F32) continue;
                const bool weight = name[0] == 'w';
                const bool scale = name == "b" || name == "ah" || name == "av" || name == "as";
                const double bound = !small_int ? 1.0 : weight ? 2.0 : scale ? 4.0 : 3.0;
                bool nonzero = false;
                for (double v : vec(t)) {
                    EXPECT_LE(std::fabs(v), bound) << s << " " << name;
                    if (small_int && name != "mask") {
                        EXPECT_EQ(v, std::round(v)) << name;
                    }
                    nonzero |= v != 0;
                }
                EXPECT_TRUE(nonzero) << s << " " << name;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

TEST(OpInputs, MaskErrors) {
    const Workload w = parse_workload("dwconv2d_sparse:fwd:n1c2h5w5:k3x3");
    Inputs in = make_example_inputs(w, 3);
    in["mask"] = Tensor(DType::F32, {2, 1, 3, 5});
    expect_error([&] { check_op_inputs(w, in); }, {"'mask'", "[2, 1, 3, 5]", "[2, 1, 3, 3]"});
    expect_error([&] { read_mask(w, in.at("mask")); }, {"'mask'", "[2, 1, 3, 3]"});

    Vec m(18, 1.0);
    m[15] = 0.5;  // [1,0,2,0]
    in["mask"] = f32({2, 1, 3, 3}, m);
    EXPECT_NO_THROW(check_op_inputs(w, in));  // values are not its business
    expect_error([&] { ref::op_reference(w, in); }, {"mask[1,0,2,0] = 0.5: must be 0 or 1"});

    Tensor u8(DType::U8, {2, 1, 3, 3});
    u8.data<uint8_t>()[4] = 2;  // [0,0,1,1]
    expect_error([&] { read_mask(w, u8); }, {"mask[0,0,1,1] = 2"});
    u8.data<uint8_t>()[4] = 1;
    EXPECT_EQ(read_mask(w, u8)[4], 1);
    EXPECT_EQ(read_mask(w, u8)[5], 0);

    in["mask"] = Tensor(DType::F16, {2, 1, 3, 3});
    expect_error([&] { check_op_inputs(w, in); }, {"'mask'", "F16"});
    expect_error([&] { read_mask(w, in.at("mask")); }, {"'mask'", "F16"});
}

TEST(OpInputs, ShiftTableErrors) {
    const Workload w = parse_workload("shiftwise:fwd:n1c3h4w4:K7k3g2");  // nk = 3
    const Inputs good = make_example_inputs(w, 5);
    std::vector<int32_t> perm;
    for (int r = 0; r < 6; ++r) perm.insert(perm.end(), {2, 0, 1});

    std::vector<int32_t> bad = perm;
    bad[(1 * 3 + 2) * 3 + 2] = 0;  // (g=1, c=2): 2 0 0
    expect_error(
        [&] {
            read_shift_tables(w, i32({2, 3, 3}, bad), good.at("slot_v"), good.at("ident"));
        },
        {"slot_h[g=1,c=2]", "value 0 repeated", "permutation"});
    bad = perm;
    bad[(0 * 3 + 1) * 3 + 0] = 3;
    expect_error(
        [&] {
            read_shift_tables(w, good.at("slot_h"), i32({2, 3, 3}, bad), good.at("ident"));
        },
        {"slot_v[g=0,c=1]", "value 3", "out of range 0..2"});
    bad = perm;
    bad[0] = -1;
    Inputs in = good;
    in["slot_v"] = i32({2, 3, 3}, bad);
    expect_error([&] { ref::op_reference(w, in); }, {"slot_v[g=0,c=0]", "-1"});

    expect_error(
        [&] {
            read_shift_tables(w, good.at("slot_h"), good.at("slot_v"),
                              i32({2, 3}, {0, 1, 2, 2, 5, 0}));
        },
        {"ident[g=1,c=1] = 5", "out of range 0..2"});
    expect_error(
        [&] {
            read_shift_tables(w, good.at("slot_h"), good.at("slot_v"),
                              i32({3, 2}, {0, 1, 2, 2, 1, 0}));
        },
        {"'ident'", "[3, 2]", "[2, 3]"});
    in = good;
    in["slot_h"] = f32({2, 3, 3}, Vec(18, 0.0));
    expect_error([&] { check_op_inputs(w, in); }, {"'slot_h'", "F32", "I32"});
    expect_error(
        [&] { read_shift_tables(w, in.at("slot_h"), good.at("slot_v"), good.at("ident")); },
        {"'slot_h'", "I32"});
    EXPECT_NO_THROW(read_shift_tables(w, i32({2, 3, 3}, perm), i32({2, 3, 3}, perm),
                                      i32({2, 3}, {0, 1, 2, 2, 1, 0})));
}

TEST(OpInputs, MissingExtraWrongShapeOrDtype) {
    const Workload w = parse_workload("shiftwise:fwd:n1c3h4w4:K7k3g2");
    const Inputs good = make_example_inputs(w, 5, false, 0.5, true);
    EXPECT_NO_THROW(check_op_inputs(w, good));
    EXPECT_NO_THROW(check_op_inputs(w, make_example_inputs(w, 5)));

    Inputs in = good;
    in.erase("w");
    expect_error([&] { check_op_inputs(w, in); }, {"missing", "'w'", "[3, 3, 3, 3]"});
    in = good;
    in["foo"] = Tensor(DType::F32, {1});
    expect_error([&] { ref::op_reference(w, in); },
                 {"unexpected tensor 'foo'", "expected: ident, slot_h, slot_v, w, x"});
    in = good;
    in["x"] = Tensor(DType::F32, {1, 3, 4, 5});
    expect_error([&] { check_op_inputs(w, in); }, {"'x'", "[1, 3, 4, 5]", "[1, 3, 4, 4]"});
    in = good;
    in["x"] = Tensor(DType::F64, {1, 3, 4, 4});
    expect_error([&] { check_op_inputs(w, in); }, {"'x'", "F64", "expected F32"});
    in = good;
    in.erase("av");
    expect_error([&] { check_op_inputs(w, in); }, {"incomplete", "missing av"});
    in = good;
    in["as"] = Tensor(DType::F32, {4});
    expect_error([&] { check_op_inputs(w, in); }, {"'as'", "[4]", "[3]"});

    // dwconv2d: the bias is optional, dy is not.
    const Workload d = parse_workload("dwconv2d:bwd_data:n1c2h5w5:k3x3:s2");
    Inputs din = make_example_inputs(d, 1);
    EXPECT_NO_THROW(check_op_inputs(d, din));
    din["b"] = Tensor(DType::F32, {2});
    expect_error([&] { check_op_inputs(d, din); }, {"unexpected tensor 'b'"});
    din.erase("b");
    din.erase("dy");
    expect_error([&] { check_op_inputs(d, din); }, {"missing", "'dy'", "[1, 2, 3, 3]"});
    // Multi: w1 with the shape of w0.
    const Workload m = parse_workload("dwconv2d_multi:fwd:n1c2h5w5:b3x3d1,5x1d2");
    Inputs min = make_example_inputs(m, 1);
    min["w1"] = Tensor(DType::F32, {2, 1, 3, 3});
    expect_error([&] { ref::op_reference(m, min); }, {"'w1'", "[2, 1, 5, 1]"});
}

// ---------------------------------------------------------------------------------------------
// dwconv2d_multi and dwconv2d_sparse against the dense reference

TEST(ReferenceOps, DwConv2dDelegates) {
    const Workload w = parse_workload("dwconv2d:fwd:n2c3h7w6:k3x5:s2:d2");
    const Inputs in = make_example_inputs(w, 4, false, 0.5, true);
    const auto r = ref::op_reference(w, in);
    EXPECT_EQ(r.at("y"), ref::dwconv2d_reference(w, in).at("y"));
}

TEST(ReferenceOps, MultiEqualsSumOfDenseReferences) {
    for (const char* s : {"dwconv2d_multi:fwd:n2c3h9w8:b5x3d1,3x5d2,3x3d3",
                          "dwconv2d_multi:fwd:n1c5h7w10:b7x1d1,1x7d1,3x3d2:s2",
                          "dwconv2d_multi:bwd_data:n2c3h9w8:b5x3d1,3x5d2,3x3d3",
                          "dwconv2d_multi:bwd_data:n1c5h7w10:b7x1d1,1x7d1,3x3d2:s2",
                          "dwconv2d_multi:bwd_weight:n2c3h9w8:b5x3d1,3x5d2,3x3d3",
                          "dwconv2d_multi:bwd_weight:n1c5h7w10:b7x1d1,1x7d1,3x3d2:s2"}) {
        const Workload w = parse_workload(s);
        const Inputs in = make_example_inputs(w, 21, false, 0.5, true);
        const auto r = ref::op_reference(w, in);
        const int oh = w.out_h(), ow = w.out_w();
        Vec want;
        for (size_t b = 0; b < w.branches.size(); ++b) {
            const Branch& br = w.branches[b];
            const std::string wb = "w" + std::to_string(b);
            if (w.pass == Pass::Fwd) {
                Vec y = ref::dwconv_fwd(vec(in.at("x")), vec(in.at(wb)), {}, w.n, w.c, w.h, w.w,
                                        br.kh, br.kw, w.stride, br.dilation);
                if (want.empty()) want.assign(y.size(), 0.0);
                for (size_t i = 0; i < y.size(); ++i) want[i] += y[i];
            } else if (w.pass == Pass::BwdData) {
                Vec dx = ref::dwconv_bwd_data(vec(in.at("dy")), vec(in.at(wb)), w.n, w.c, w.h, w.w,
                                              br.kh, br.kw, w.stride, br.dilation);
                if (want.empty()) want.assign(dx.size(), 0.0);
                for (size_t i = 0; i < dx.size(); ++i) want[i] += dx[i];
            } else {
                Vec dw, db;
                ref::dwconv_bwd_weight(vec(in.at("x")), vec(in.at("dy")), w.n, w.c, w.h, w.w, br.kh,
                                       br.kw, w.stride, br.dilation, &dw, &db);
                EXPECT_EQ(r.at("d" + wb), dw) << s;
                EXPECT_EQ(r.at("db"), db) << s;
            }
        }
        if (w.pass == Pass::Fwd) {
            const Vec b = vec(in.at("b"));
            for (size_t i = 0; i < want.size(); ++i) want[i] += b[i / (oh * ow) % w.c];
            expect_near_vec(r.at("y"), want, 1e-12, s);
            EXPECT_EQ(r.size(), 1u);
        } else if (w.pass == Pass::BwdData) {
            expect_near_vec(r.at("dx"), want, 1e-12, s);
            EXPECT_EQ(r.size(), 1u);
        } else {
            EXPECT_EQ(r.size(), w.branches.size() + 1);
        }
    }
}

TEST(ReferenceOps, SparseEqualsDenseWithMaskedWeights) {
    for (const char* s :
         {"dwconv2d_sparse:fwd:n2c3h7w8:k5x3:d2", "dwconv2d_sparse:fwd:n1c4h9w6:k3x7:s2",
          "dwconv2d_sparse:bwd_data:n2c3h7w8:k5x3:d2", "dwconv2d_sparse:bwd_data:n1c4h9w6:k3x7:s2",
          "dwconv2d_sparse:bwd_weight:n2c3h7w8:k5x3:d2",
          "dwconv2d_sparse:bwd_weight:n1c4h9w6:k3x7:s2"}) {
        Workload w = parse_workload(s);
        const Inputs in = make_example_inputs(w, 8, false, 0.4, true);
        const Vec mask = vec(in.at("mask"));
        Workload dense = w;
        dense.op = Op::DwConv2d;
        Inputs din = in;
        din.erase("mask");
        if (din.count("w")) {
            Vec wm = vec(din.at("w"));
            for (size_t i = 0; i < wm.size(); ++i) wm[i] *= mask[i];
            din["w"] = f32(din.at("w").shape(), wm);
        }
        const auto got = ref::op_reference(w, in);
        auto want = ref::op_reference(dense, din);
        if (w.pass == Pass::BwdWeight) {
            for (size_t i = 0; i < mask.size(); ++i) want["dw"][i] *= mask[i];
        }
        EXPECT_EQ(got, want) << s;
        // A U8 mask gives the same result.
        Inputs u8in = in;
        Tensor m8(DType::U8, in.at("mask").shape());
        for (size_t i = 0; i < mask.size(); ++i) m8.data<uint8_t>()[i] = uint8_t(mask[i]);
        u8in["mask"] = m8;
        EXPECT_EQ(ref::op_reference(w, u8in), got) << s;
    }
}

// ---------------------------------------------------------------------------------------------
// shiftwise

// One channel, 3x3 kernels; x = 1..9 on a 3x3 map, w = the kernel of test_reference_dwconv.cpp.
// nk = 1 (K = k = 3), G = 1, all tables 0: rp[0] = 1 - 0 - 2 = -1 = -e, so yh, yv and ys all read
// z[0][i+1, t+1], the plain "same" 3x3 conv: -4 8 18 / 0 24 32 / 17 24 14.
TEST(ShiftwiseReference, SingleSubKernelIsPlainConv) {
    const Workload w = parse_workload("shiftwise:fwd:n1c1h3w3:K3k3g1");
    Inputs in = {{"x", f32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9})},
                 {"w", f32({1, 1, 3, 3}, {1, 0, 2, 0, 1, 0, 3, 0, -1})},
                 {"slot_h", i32({1, 1, 1}, {0})},
                 {"slot_v", i32({1, 1, 1}, {0})},
                 {"ident", i32({1, 1}, {0})}};
    const Vec conv = {-4, 8, 18, 0, 24, 32, 17, 24, 14};
    const auto r = ref::op_reference(w, in);
    EXPECT_EQ(r.at("yh"), conv);
    EXPECT_EQ(r.at("yv"), conv);
    EXPECT_EQ(r.at("ys"), conv);
    EXPECT_EQ(r.size(), 3u);
    // y = 1*yh + 2*yv + 3*ys + 10 + x = 6*conv + 10 + x.
    in["ah"] = f32({1}, {1});
    in["av"] = f32({1}, {2});
    in["as"] = f32({1}, {3});
    in["b"] = f32({1}, {10});
    const auto y = ref::op_reference(w, in);
    ASSERT_EQ(y.size(), 1u);
    Vec want(9);
    for (int i = 0; i < 9; ++i) want[i] = 6 * conv[i] + 10 + (i + 1);
    EXPECT_EQ(y.at("y"), want);
    // absolute: |w| = 1 0 2 / 0 1 0 / 3 0 1, so y[0,0] = x00 + x11 = 6, y[2,2] = x11 + x22 = 14.
    const auto a = ref::op_reference(w, in, true);
    EXPECT_EQ(a.at("y")[0], 6 * 6 + 10 + 1);
    EXPECT_EQ(a.at("y")[8], 6 * 14 + 10 + 9);
}

// K = 5, k = 3: nk = 2, e = 1, mid = 2, rp = {2-0-2, 2-3-2} = {0, -3}; z maps 7x9 for a 5x7 image.
// x = delta at (2,3); w0 = 1..9, w1 = 10..18 (row-major). z[j][p,q] = w_j[4-p, 5-q] for
// p in 2..4, q in 3..5.
//   slot_h = {1, 0}: yh[i,t] = z0[i+1, t+3] + z1[i+1, t]   -> w0[3-i, 2-t] (t 0..2),
//                                                             w1[3-i, 5-t] (t 3..5)
//   slot_v = {0, 1}: yv[i,t] = z0[i, t+1] + z1[i+3, t+1]   -> w0[4-i, 4-t] (i 2..4),
//                                                             w1[1-i, 4-t] (i 0..1)
//   ident = 1:       ys[i,t] = z1[i+1, t+1]                -> w1[3-i, 4-t] (i 1..3, t 2..4)
TEST(ShiftwiseReference, ShiftsHandComputed) {
    const Workload w = parse_workload("shiftwise:fwd:n1c1h5w7:K5k3g1");
    Vec x(35, 0.0), wt(18);
    x[2 * 7 + 3] = 1;
    for (int i = 0; i < 18; ++i) wt[i] = i + 1;
    Inputs in = {{"x", f32({1, 1, 5, 7}, x)},
                 {"w", f32({1, 2, 3, 3}, wt)},
                 {"slot_h", i32({1, 1, 2}, {1, 0})},
                 {"slot_v", i32({1, 1, 2}, {0, 1})},
                 {"ident", i32({1, 1}, {1})}};
    const Vec yh = {0, 0, 0, 0,  0,  0,  0,  //
                    9, 8, 7, 18, 17, 16, 0,  //
                    6, 5, 4, 15, 14, 13, 0,  //
                    3, 2, 1, 12, 11, 10, 0,  //
                    0, 0, 0, 0,  0,  0,  0};
    const Vec yv = {0, 0, 15, 14, 13, 0, 0,  //
                    0, 0, 12, 11, 10, 0, 0,  //
                    0, 0, 9,  8,  7,  0, 0,  //
                    0, 0, 6,  5,  4,  0, 0,  //
                    0, 0, 3,  2,  1,  0, 0};
    const Vec ys = {0, 0, 0,  0,  0,  0, 0,  //
                    0, 0, 18, 17, 16, 0, 0,  //
                    0, 0, 15, 14, 13, 0, 0,  //
                    0, 0, 12, 11, 10, 0, 0,  //
                    0, 0, 0,  0,  0,  0, 0};
    auto r = ref::op_reference(w, in);
    EXPECT_EQ(r.at("yh"), yh);
    EXPECT_EQ(r.at("yv"), yv);
    EXPECT_EQ(r.at("ys"), ys);

    // Two groups: the same tables twice double everything; swapped tables in group 1 move the
    // sub-kernels (slot_h {0,1}: yh gains w0 at t 3..5 and w1 at t 0..2).
    const Workload w2 = parse_workload("shiftwise:fwd:n1c1h5w7:K5k3g2");
    in["slot_h"] = i32({2, 1, 2}, {1, 0, 1, 0});
    in["slot_v"] = i32({2, 1, 2}, {0, 1, 0, 1});
    in["ident"] = i32({2, 1}, {1, 1});
    r = ref::op_reference(w2, in);
    for (size_t i = 0; i < 35; ++i) {
        EXPECT_EQ(r.at("yh")[i], 2 * yh[i]);
        EXPECT_EQ(r.at("yv")[i], 2 * yv[i]);
        EXPECT_EQ(r.at("ys")[i], 2 * ys[i]);
    }
    in["slot_h"] = i32({2, 1, 2}, {1, 0, 0, 1});
    r = ref::op_reference(w2, in);
    // Group 1 alone: yh'[i,t] = z0[i+1, t] + z1[i+1, t+3].
    const Vec yh1 = {0,  0,  0,  0, 0, 0, 0,  //
                     18, 17, 16, 9, 8, 7, 0,  //
                     15, 14, 13, 6, 5, 4, 0,  //
                     12, 11, 10, 3, 2, 1, 0,  //
                     0,  0,  0,  0, 0, 0, 0};
    for (size_t i = 0; i < 35; ++i) EXPECT_EQ(r.at("yh")[i], yh[i] + yh1[i]) << i;
}

// <dyh, yh> + <dyv, yv> + <dys, ys> = <dx, x> = <dw, w> (the three passes are adjoint).
TEST(ShiftwiseReference, AdjointIdentities) {
    for (const char* s : {"shiftwise:fwd:n2c3h6w7:K13k3g4", "shiftwise:fwd:n1c2h5w9:K7k5g2",
                          "shiftwise:fwd:n1c1h4w4:K3k3g1", "shiftwise:fwd:n1c2h5w6:K51k3g1",
                          "shiftwise:fwd:n2c3h8w5:K13k5g1"}) {
        Workload w = parse_workload(s);
        const Inputs fin = make_example_inputs(w, 31);
        Workload wd = w, ww = w;
        wd.pass = Pass::BwdData;
        ww.pass = Pass::BwdWeight;
        Inputs din = make_example_inputs(wd, 32);
        din["w"] = fin.at("w");
        for (const char* t : {"slot_h", "slot_v", "ident"}) din[t] = fin.at(t);
        Inputs win = din;
        win.erase("w");
        win["x"] = fin.at("x");

        const auto y = ref::op_reference(w, fin);
        const auto ya = ref::op_reference(w, fin, true);
        const Vec dx = ref::op_reference(wd, din).at("dx");
        const Vec dw = ref::op_reference(ww, win).at("dw");
        double lhs = 0, scale = 0;
        for (const char* p : {"yh", "yv", "ys"}) {
            const Vec dy = vec(din.at(std::string("d") + p));
            lhs += dot(dy, y.at(p));
            scale += abs_dot(dy, ya.at(p));
        }
        EXPECT_GT(scale, 1.0) << s;
        EXPECT_NEAR(dot(dx, vec(fin.at("x"))), lhs, 1e-10 * scale) << s;
        EXPECT_NEAR(dot(dw, vec(fin.at("w"))), lhs, 1e-10 * scale) << s;
        // Each path alone.
        for (const char* p : {"yh", "yv", "ys"}) {
            Inputs one = din;
            for (const char* q : {"yh", "yv", "ys"}) {
                if (std::string(q) != p) {
                    one[std::string("d") + q] = Tensor(DType::F32, din.at("dyh").shape());
                }
            }
            const Vec dxp = ref::op_reference(wd, one).at("dx");
            EXPECT_NEAR(dot(dxp, vec(fin.at("x"))), dot(vec(one.at(std::string("d") + p)), y.at(p)),
                        1e-10 * scale)
                << s << " " << p;
        }
    }
}

// The fused output equals the combination of the three paths.
TEST(ShiftwiseReference, FusedOutputCombinesPaths) {
    const Workload w = parse_workload("shiftwise:fwd:n2c3h6w5:K7k3g2");
    const Inputs in = make_example_inputs(w, 41, false, 0.5, true);
    Inputs paths = in;
    for (const char* o : {"ah", "av", "as", "b"}) paths.erase(o);
    const auto p = ref::op_reference(w, paths);
    const auto r = ref::op_reference(w, in);
    ASSERT_EQ(r.size(), 1u);
    const Vec x = vec(in.at("x")), ah = vec(in.at("ah")), av = vec(in.at("av")),
              as = vec(in.at("as")), b = vec(in.at("b"));
    for (size_t i = 0; i < x.size(); ++i) {
        const size_t c = i / 30 % 3;
        EXPECT_NEAR(
            r.at("y")[i],
            ah[c] * p.at("yh")[i] + av[c] * p.at("yv")[i] + as[c] * p.at("ys")[i] + b[c] + x[i],
            1e-12);
    }
}

}  // namespace
}  // namespace lkc
