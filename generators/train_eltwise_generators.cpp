// Backward of the element-wise and data-movement ops (runtime/ops.h) on the blocked layout
// (ops_algorithm.h). Every output writes its padding lanes (channels >= C) as zero.
//
//   train_unary_bwd      dx = f'(v) dy: ReLU (v = x or y), GELU (v = x, erf form), sigmoid
//                        (v = y: y (1 - y); or v = x).
//   train_binary_bwd     gradient of one operand of y = a + b or y = a * b with numpy
//                        broadcasting: d(a) = sum over the extents a broadcasts along of
//                        dy (add) or dy * b (mul); the output has a's shape (e.g. SE's
//                        [N, C, 1, 1] operand: the sum over H, W of dy * x).
//   train_channel_reduce per channel over all pixels of all images: s = sum a and
//                        p = sum a * (b - shift[c]): bias gradients (s of dy), the affine /
//                        layer-scale gradients (dshift = s of dy, dscale = p of dy and x).
//   train_avgpool_bwd    dx[n, c, h, w] = dy[n, c] / (H W).
//   train_select_bwd     dx[:, c] = sum over k with index[k] = c of dy[:, k] (gather form: the
//                        runner inverts the index into a table of the k's per c, -1 padded).
//   train_channel_slice  y = x[:, offset : offset + C]: concat's backward (split).
#include "generators/train_algorithm.h"
#include "schedules/train_eltwise_schedule.h"

namespace lkc::gen::train {
namespace {

using ops::channel_of;
using ops::constrain_blocked;
using ops::estimate_blocked;

void schedule_pointwise(Func out, const sched::Specialisations& spec, const Target& t) {
    if (t.has_gpu_feature()) {
        sched::schedule_pointwise_gpu(out, spec, t);
    } else {
        sched::schedule_pointwise_cpu(out, spec, t);
    }
}

class TrainUnaryBwd : public Generator<TrainUnaryBwd> {
  public:
    Input<Buffer<float, 5>> value{"value"};  // x or y (see the op), blocked
    Input<Buffer<float, 5>> grad{"grad"};    // dy, like value
    Input<int> op{"op", kGradRelu, kGradRelu, kGradSigmoidX};
    Input<int> channels{"channels", 16, 1, 1 << 24};
    Output<Buffer<float, 5>> output{"output"};  // dx, like value

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr v = value(ci, x, y, cb, n), g = grad(ci, x, y, cb, n);
        Expr s = ops::sigmoid(v);
        Expr d =
            select(op == kGradRelu, select(v > 0.0f, g, 0.0f), op == kGradGelu, gelu_grad(v) * g,
                   op == kGradSigmoid, v * (1.0f - v) * g, s * (1.0f - s) * g);
        output(ci, x, y, cb, n) = select(channel_of(ci, cb) < channels, d, 0.0f);
        constrain_blocked(value);
        constrain_blocked(grad);
        constrain_blocked(output);
        estimate_blocked(value, 56, 56, 8);
        estimate_blocked(grad, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        op.set_estimate(kGradGelu);
        channels.set_estimate(128);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{op == kGradRelu, op == kGradGelu, op == kGradSigmoid}},
                           get_target());
    }
};

class TrainBinaryBwd : public Generator<TrainBinaryBwd> {
  public:
    Input<Buffer<float, 5>> grad{"grad"};    // dy, blocked, y's shape
    Input<Buffer<float, 5>> other{"other"};  // the other operand (mul), broadcastable to y
    Input<int> op{"op", kBinaryAdd, kBinaryAdd, kBinaryMul};
    // Extents this operand is summed over (y's extent / its own: 1 or y's) along W, H, N.
    Input<int> rw{"rw", 1, 1, 1 << 24};
    Input<int> rh{"rh", 1, 1, 1 << 24};
    Input<int> rn{"rn", 1, 1, 1 << 24};
    Input<bool> lane_sum{"lane_sum", false};          // this operand has one channel, y has C
    Input<bool> other_lane0{"other_lane0", false};    // the other operand has one channel
    Input<int> channels{"channels", 16, 1, 1 << 24};  // y's C
    Output<Buffer<float, 5>> output{"output"};        // d(operand), the operand's shape

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr YB = grad.dim(3).extent();
        // (x, y, n offsets, lane, block) summed; the channel part only for lane_sum.
        RDom r(0, rw, 0, rh, 0, rn, 0, select(lane_sum, kLanes, 1), 0, select(lane_sum, YB, 1),
               "r");
        Expr gx = x + r[0], gy = y + r[1], gn = n + r[2];
        Expr gl = select(lane_sum, r[3], ci), gb = select(lane_sum, r[4], cb);
        Expr g = grad(gl, gx, gy, gb, gn);
        Expr o = other(select(other_lane0, 0, gl), min(gx, other.dim(1).extent() - 1),
                       min(gy, other.dim(2).extent() - 1), min(gb, other.dim(3).extent() - 1),
                       min(gn, other.dim(4).extent() - 1));
        // Padding lanes of dy are zero, so they add nothing whatever `other` holds there.
        Func acc("acc");
        acc(ci, x, y, cb, n) = 0.0f;
        acc(ci, x, y, cb, n) += select(op == kBinaryAdd, g, g * o);
        Expr real = select(lane_sum, ci == 0 && cb == 0, channel_of(ci, cb) < channels);
        output(ci, x, y, cb, n) = select(real, acc(ci, x, y, cb, n), 0.0f);

        constrain_blocked(grad);
        constrain_blocked(other);
        constrain_blocked(output);
        estimate_blocked(grad, 56, 56, 8);
        estimate_blocked(other, 1, 1, 8);
        estimate_blocked(output, 56, 56, 8);
        op.set_estimate(kBinaryMul);
        rw.set_estimate(1);
        rh.set_estimate(1);
        rn.set_estimate(1);
        lane_sum.set_estimate(false);
        other_lane0.set_estimate(false);
        channels.set_estimate(128);
        if (using_autoscheduler()) return;
        // Same shape (rw = rh = rn = 1): element-wise; otherwise a sum per output vector.
        sched::Specialisations spec = {{rw == 1 && rh == 1 && rn == 1 && !lane_sum && !other_lane0},
                                       {op == kBinaryAdd}};
        std::vector<RVar> rv = {r[0], r[1], r[2], r[3], r[4]};
        if (get_target().has_gpu_feature()) {
            sched::schedule_gather_sum_gpu(output, acc, rv, spec, get_target());
        } else {
            sched::schedule_gather_sum_cpu(output, acc, rv, spec, get_target());
        }
    }
};

class TrainChannelReduce : public Generator<TrainChannelReduce> {
  public:
    Input<Buffer<float, 5>> a{"a"};              // blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 5>> b{"b"};              // like a; read only if has_b
    Input<Buffer<float, 2>> shift{"shift"};      // (16, ceil(C/16)); read only if has_b
    Input<Buffer<float, 2>> prior_s{"prior_s"};  // like sum; read only if accumulate
    Input<Buffer<float, 2>> prior_p{"prior_p"};  // like prod; read only if accumulate
    Input<bool> has_b{"has_b", false};
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 2>> sum{"sum"};    // (16, ceil(C/16)): sum a
    Output<Buffer<float, 2>> prod{"prod"};  // (16, ceil(C/16)): sum a * (b - shift); 0 without b

    void generate() {
        Var ci("ci"), cb("cb"), n("n");
        RDom rp(0, a.dim(1).extent(), 0, a.dim(2).extent(), "rp");
        RDom rn(0, a.dim(4).extent(), "rn");
        Expr av = a(ci, rp.x, rp.y, cb, n);
        Expr pv = select(has_b, av * (b(ci, rp.x, rp.y, cb, n) - shift(ci, cb)), 0.0f);
        Func part("part");
        part(ci, cb, n) = {0.0f, 0.0f};
        part(ci, cb, n) = {part(ci, cb, n)[0] + av, part(ci, cb, n)[1] + pv};
        sum(ci, cb) = select(accumulate, prior_s(ci, cb), 0.0f);
        sum(ci, cb) += part(ci, cb, rn)[0];
        prod(ci, cb) = select(accumulate, prior_p(ci, cb), 0.0f);
        prod(ci, cb) += part(ci, cb, rn)[1];

        constrain_blocked(a);
        constrain_blocked(b);
        for (auto* p : {&shift, &prior_s, &prior_p}) constrain_channels(*p);
        constrain_channels(sum);
        constrain_channels(prod);
        estimate_blocked(a, 56, 56, 8, 8);
        estimate_blocked(b, 56, 56, 8, 8);
        for (auto* p : {&shift, &prior_s, &prior_p}) p->set_estimates({{0, kLanes}, {0, 8}});
        sum.set_estimates({{0, kLanes}, {0, 8}});
        prod.set_estimates({{0, kLanes}, {0, 8}});
        has_b.set_estimate(true);
        accumulate.set_estimate(false);
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_channel_partials_gpu(part, get_target());
            sched::schedule_channel_vector_gpu(sum, get_target());
            sched::schedule_channel_vector_gpu(prod, get_target());
        } else {
            sched::schedule_channel_partials_cpu(part, get_target());
            sched::schedule_channel_vector_cpu(sum, get_target());
            sched::schedule_channel_vector_cpu(prod, get_target());
        }
        // Without b (a bias gradient) the product is not computed.
        part.update(0).specialize(has_b);
    }
};

class TrainAvgPoolBwd : public Generator<TrainAvgPoolBwd> {
  public:
    Input<Buffer<float, 5>> grad{"grad"};       // dy, blocked (16, 1, 1, ceil(C/16), N)
    Output<Buffer<float, 5>> output{"output"};  // dx, blocked (16, W, H, ceil(C/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr inv = 1.0f / cast<float>(output.dim(1).extent() * output.dim(2).extent());
        output(ci, x, y, cb, n) = grad(ci, 0, 0, cb, n) * inv;
        constrain_blocked(grad);
        constrain_blocked(output);
        grad.dim(1).set_extent(1);
        grad.dim(2).set_extent(1);
        estimate_blocked(grad, 1, 1, 48);
        estimate_blocked(output, 7, 7, 48);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {}, get_target());
    }
};

class TrainSelectBwd : public Generator<TrainSelectBwd> {
  public:
    Input<Buffer<float, 5>> grad{"grad"};  // dy, blocked, K channels
    // (16 * ceil(C/16), M): the k's with index[k] = c for each input channel c, -1 padded.
    Input<Buffer<int32_t, 2>> table{"table"};
    Output<Buffer<float, 5>> output{"output"};  // dx, blocked, C channels

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom r(0, table.dim(1).extent(), "r");
        Expr k = table(channel_of(ci, cb), r);
        Expr kc = unsafe_promise_clamped(max(k, 0), 0, grad.dim(3).extent() * kLanes - 1);
        Func acc("acc");
        acc(ci, x, y, cb, n) = 0.0f;
        acc(ci, x, y, cb, n) += select(k >= 0, grad(kc % kLanes, x, y, kc / kLanes, n), 0.0f);
        output(ci, x, y, cb, n) = acc(ci, x, y, cb, n);
        constrain_blocked(grad);
        constrain_blocked(output);
        table.dim(0).set_min(0).set_stride(1);
        table.dim(1).set_min(0);
        estimate_blocked(grad, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        table.set_estimates({{0, 128}, {0, 2}});
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_gather_sum_gpu(output, acc, {r.x}, {}, get_target());
        } else {
            sched::schedule_gather_sum_cpu(output, acc, {r.x}, {}, get_target());
        }
    }
};

class TrainChannelSlice : public Generator<TrainChannelSlice> {
  public:
    Input<Buffer<float, 5>> input{"input"};           // blocked, >= offset + C channels
    Input<int> offset{"offset", 0, 0, 1 << 24};       // first channel taken
    Input<int> channels{"channels", 16, 1, 1 << 24};  // C
    Output<Buffer<float, 5>> output{"output"};        // blocked, C channels

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr k = channel_of(ci, cb);
        Expr IB = input.dim(3).extent();
        Expr src = clamp(k + offset, 0, IB * kLanes - 1);
        Expr aligned_v = input(ci, x, y, clamp(cb + offset / kLanes, 0, IB - 1), n);
        Expr general_v = input(src % kLanes, x, y, src / kLanes, n);
        Expr aligned = offset % kLanes == 0;
        output(ci, x, y, cb, n) = select(k < channels, select(aligned, aligned_v, general_v), 0.0f);
        constrain_blocked(input);
        constrain_blocked(output);
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 56, 56, 4);
        offset.set_estimate(64);
        channels.set_estimate(64);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{aligned}}, get_target());
    }
};

}  // namespace
}  // namespace lkc::gen::train

HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainUnaryBwd, train_unary_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainBinaryBwd, train_binary_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainChannelReduce, train_channel_reduce)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainAvgPoolBwd, train_avgpool_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainSelectBwd, train_select_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainChannelSlice, train_channel_slice)
