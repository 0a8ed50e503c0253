// Element-wise and data-movement ops on blocked activations (layout: ops_algorithm.h). Each
// writes the padding channels of its output as zero.
//
//   ops_affine   y = act(x * scale[c] + shift[c]), act in {none, ReLU, GELU}: inference
//                BatchNorm (scale, shift precomputed by the runner), layer scale (shift 0), bias.
//   ops_unary    y = f(x), f in {ReLU, GELU (erf), sigmoid}.
//   ops_binary   y = a + b or a * b with numpy broadcasting: every extent of a and b equals the
//                output's or is 1 (e.g. [N,C,H,W] * [N,C,1,1], the SE channel scale); a channel
//                extent of 1 broadcasts that operand's channel 0 to every channel.
//   ops_select   y[:, k] = x[:, index[k]] (ShiftwiseConv's rep / ghost channel selection).
//   ops_concat   y = [a, b] along channels.
#include "generators/ops_algorithm.h"
#include "schedules/ops_eltwise_schedule.h"

namespace lkc::gen::ops {
namespace {

// Unary op codes; runtime/ops.h `Unary` has the same values.
constexpr int kUnaryRelu = 0;
constexpr int kUnaryGelu = 1;
constexpr int kUnarySigmoid = 2;

// Binary op codes; runtime/ops.h `Binary` has the same values.
constexpr int kBinaryAdd = 0;
constexpr int kBinaryMul = 1;

void schedule_pointwise(Func out, const sched::Specialisations& spec, const Target& t) {
    if (t.has_gpu_feature()) {
        sched::schedule_pointwise_gpu(out, spec, t);
    } else {
        sched::schedule_pointwise_cpu(out, spec, t);
    }
}

class OpsAffine : public Generator<OpsAffine> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 2>> scale{"scale"};  // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> shift{"shift"};  // (16, ceil(C/16)), zero-padded
    Input<int> act{"act", kActNone, kActNone, kActGelu};
    Output<Buffer<float, 5>> output{"output"};  // y, like x

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        output(ci, x, y, cb, n) =
            apply_act(act, input(ci, x, y, cb, n) * scale(ci, cb) + shift(ci, cb));
        constrain_blocked(input);
        constrain_blocked(output);
        constrain_channels(scale);
        constrain_channels(shift);
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        scale.set_estimates({{0, kLanes}, {0, 8}});
        shift.set_estimates({{0, kLanes}, {0, 8}});
        act.set_estimate(kActNone);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{act == kActNone, act == kActRelu}}, get_target());
    }
};

class OpsUnary : public Generator<OpsUnary> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<int> op{"op", kUnaryRelu, kUnaryRelu, kUnarySigmoid};
    Input<int> channels{"channels", 16, 1, 1 << 24};  // C: lanes >= C are written as 0
    Output<Buffer<float, 5>> output{"output"};        // y, like x

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr v = input(ci, x, y, cb, n);
        Expr f = select(op == kUnaryRelu, max(v, 0.0f), op == kUnaryGelu, gelu(v), sigmoid(v));
        output(ci, x, y, cb, n) = select(channel_of(ci, cb) < channels, f, 0.0f);
        constrain_blocked(input);
        constrain_blocked(output);
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        op.set_estimate(kUnaryGelu);
        channels.set_estimate(128);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{op == kUnaryRelu, op == kUnaryGelu}}, get_target());
    }
};

class OpsBinary : public Generator<OpsBinary> {
  public:
    Input<Buffer<float, 5>> a{"a"};  // blocked; every extent equals the output's or is 1
    Input<Buffer<float, 5>> b{"b"};  // blocked; same rule
    Input<int> op{"op", kBinaryAdd, kBinaryAdd, kBinaryMul};
    Input<int> channels{"channels", 16, 1, 1 << 24};  // output C
    Input<bool> a_lane0{"a_lane0", false};            // a has one channel: broadcast it to all
    Input<bool> b_lane0{"b_lane0", false};            // b has one channel: broadcast it to all
    Output<Buffer<float, 5>> output{"output"};        // blocked (16, W, H, ceil(C/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        // Extent-1 dims read index 0 (min with extent - 1 is the identity otherwise).
        auto at = [&](Input<Buffer<float, 5>>& in, const Expr& lane0) {
            return in(select(lane0, 0, ci), min(x, in.dim(1).extent() - 1),
                      min(y, in.dim(2).extent() - 1), min(cb, in.dim(3).extent() - 1),
                      min(n, in.dim(4).extent() - 1));
        };
        Expr u = at(a, a_lane0), v = at(b, b_lane0);
        Expr r = select(op == kBinaryAdd, u + v, u * v);
        // Only a broadcast channel can make padding lanes non-zero; mask them then.
        output(ci, x, y, cb, n) =
            select(a_lane0 || b_lane0, select(channel_of(ci, cb) < channels, r, 0.0f), r);
        constrain_blocked(a);
        constrain_blocked(b);
        constrain_blocked(output);
        estimate_blocked(a, 56, 56, 8);
        estimate_blocked(b, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        op.set_estimate(kBinaryAdd);
        channels.set_estimate(128);
        a_lane0.set_estimate(false);
        b_lane0.set_estimate(false);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{!a_lane0 && !b_lane0}, {op == kBinaryAdd}}, get_target());
    }
};

class OpsSelect : public Generator<OpsSelect> {
  public:
    Input<Buffer<float, 5>> input{"input"};     // x, blocked, C channels
    Input<Buffer<int32_t, 1>> index{"index"};   // [K], values in [0, C) (checked by the runner)
    Output<Buffer<float, 5>> output{"output"};  // y, blocked (16, W, H, ceil(K/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr K = index.dim(0).extent();
        Expr k = channel_of(ci, cb);
        Expr c =
            unsafe_promise_clamped(index(min(k, K - 1)), 0, input.dim(3).extent() * kLanes - 1);
        output(ci, x, y, cb, n) = select(k < K, input(c % kLanes, x, y, c / kLanes, n), 0.0f);
        constrain_blocked(input);
        constrain_blocked(output);
        index.dim(0).set_min(0);
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        index.set_estimates({{0, 128}});
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {}, get_target());
    }
};

class OpsConcat : public Generator<OpsConcat> {
  public:
    Input<Buffer<float, 5>> a{"a"};  // blocked, Ca channels
    Input<Buffer<float, 5>> b{"b"};  // blocked, Cb channels, same N, H, W
    Input<int> a_channels{"a_channels", 16, 1, 1 << 24};
    Input<int> b_channels{"b_channels", 16, 1, 1 << 24};
    Input<bool> aligned{"aligned", true};       // Ca % 16 == 0: whole-block copies
    Output<Buffer<float, 5>> output{"output"};  // blocked (16, W, H, ceil((Ca+Cb)/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr k = channel_of(ci, cb);
        Expr ab = a.dim(3).extent(), bb = b.dim(3).extent();
        // Aligned: output block cb is a's block cb or b's block cb - Ca/16.
        Expr from_a = a(ci, x, y, min(cb, ab - 1), n);
        Expr from_b = b(ci, x, y, clamp(cb - a_channels / kLanes, 0, bb - 1), n);
        Expr aligned_v = select(cb < ab, from_a, from_b);
        // Unaligned: per-lane source channel.
        Expr kb = clamp(k - a_channels, 0, b_channels - 1);
        Expr ka = min(k, a_channels - 1);
        Expr general_v = select(k < a_channels, a(ka % kLanes, x, y, ka / kLanes, n),
                                b(kb % kLanes, x, y, kb / kLanes, n));
        output(ci, x, y, cb, n) =
            select(k < a_channels + b_channels, select(aligned, aligned_v, general_v), 0.0f);
        constrain_blocked(a);
        constrain_blocked(b);
        constrain_blocked(output);
        estimate_blocked(a, 56, 56, 4);
        estimate_blocked(b, 56, 56, 4);
        estimate_blocked(output, 56, 56, 8);
        a_channels.set_estimate(64);
        b_channels.set_estimate(64);
        aligned.set_estimate(true);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{aligned}}, get_target());
    }
};

}  // namespace
}  // namespace lkc::gen::ops

HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsAffine, ops_affine)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsUnary, ops_unary)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsBinary, ops_binary)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsSelect, ops_select)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsConcat, ops_concat)
