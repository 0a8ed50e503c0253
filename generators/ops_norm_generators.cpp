// Reductions on blocked activations (layout: ops_algorithm.h), semantics of graph/ir.h:
//
//   ops_layernorm  per pixel over its C channels (all channel blocks of the pixel): mean,
//                  biased variance, y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
//   ops_softmax    per pixel over its C channels: y = exp(x - max) / sum exp(x - max).
//   ops_grn        GRN: G[n,c] = ||x[n,c,:,:]||_2, Nx = G / (mean_c G + eps),
//                  y = (gamma[c] * Nx + 1) * x + beta[c].
//   ops_avgpool    global average pool: y[n, c, 0, 0] = mean over H, W of x[n, c].
//
// Padding lanes (channels >= C) are zero on input; the channel reductions mask them (variance,
// max, exp sum) and every output writes them as zero (weight / bias / gamma / beta are
// zero-padded by the runner).
#include "generators/ops_algorithm.h"
#include "schedules/ops_eltwise_schedule.h"

namespace lkc::gen::ops {
namespace {

class OpsLayerNorm : public Generator<OpsLayerNorm> {
  public:
    Input<Buffer<float, 5>> input{"input"};           // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 2>> weight{"weight"};         // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> bias{"bias"};             // (16, ceil(C/16)), zero-padded
    Input<int> channels{"channels", 16, 1, 1 << 24};  // C
    Input<float> eps{"eps", 1e-6f};
    Output<Buffer<float, 5>> output{"output"};  // y, like x

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rb(0, input.dim(3).extent(), "rb");
        RDom rl(0, kLanes, "rl");
        Expr inv_c = 1.0f / cast<float>(channels);
        Expr real = channel_of(ci, cb) < channels;

        Func s1("s1"), total1("total1"), s2("s2"), total2("total2"), d("d"), mean("mean"),
            rstd("rstd");
        s1(ci, x, y, n) = 0.0f;
        s1(ci, x, y, n) += input(ci, x, y, rb, n);
        total1(x, y, n) = 0.0f;
        total1(x, y, n) += s1(rl, x, y, n);
        mean(x, y, n) = total1(x, y, n) * inv_c;
        d(ci, x, y, cb, n) = select(real, input(ci, x, y, cb, n) - mean(x, y, n), 0.0f);
        s2(ci, x, y, n) = 0.0f;
        s2(ci, x, y, n) += d(ci, x, y, rb, n) * d(ci, x, y, rb, n);
        total2(x, y, n) = 0.0f;
        total2(x, y, n) += s2(rl, x, y, n);
        // Once per pixel, not per channel block (a sqrt and a division per vector cost more
        // than the rest of the op).
        rstd(x, y, n) = 1.0f / sqrt(total2(x, y, n) * inv_c + eps);
        output(ci, x, y, cb, n) =
            d(ci, x, y, cb, n) * rstd(x, y, n) * weight(ci, cb) + bias(ci, cb);

        constrain_blocked(input);
        constrain_blocked(output);
        constrain_channels(weight);
        constrain_channels(bias);
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 56, 56, 8);
        weight.set_estimates({{0, kLanes}, {0, 8}});
        bias.set_estimates({{0, kLanes}, {0, 8}});
        channels.set_estimate(128);
        eps.set_estimate(1e-6f);
        if (using_autoscheduler()) return;
        sched::ChannelStatsStages s;
        s.output = output;
        s.lane_partials = {s1, s2};
        s.totals = {total1, total2};
        s.per_pixel = {mean, rstd};
        s.rb = rb;
        s.rl = rl;
        if (get_target().has_gpu_feature()) {
            sched::schedule_channel_stats_gpu(s, get_target());
        } else {
            sched::schedule_channel_stats_cpu(s, get_target());
        }
    }
};

class OpsSoftmax : public Generator<OpsSoftmax> {
  public:
    Input<Buffer<float, 5>> input{"input"};           // x, blocked (16, W, H, ceil(C/16), N)
    Input<int> channels{"channels", 16, 1, 1 << 24};  // C
    Output<Buffer<float, 5>> output{"output"};        // y, like x

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rb(0, input.dim(3).extent(), "rb");
        RDom rl(0, kLanes, "rl");
        Expr real = channel_of(ci, cb) < channels;
        Expr real_b = channel_of(ci, rb) < channels;
        const float lowest = -std::numeric_limits<float>::infinity();

        Func m1("m1"), mx("mx"), s1("s1"), total("total"), e("e");
        m1(ci, x, y, n) = lowest;
        m1(ci, x, y, n) = max(m1(ci, x, y, n), select(real_b, input(ci, x, y, rb, n), lowest));
        mx(x, y, n) = lowest;
        mx(x, y, n) = max(mx(x, y, n), m1(rl, x, y, n));
        e(ci, x, y, cb, n) = select(real, exp(input(ci, x, y, cb, n) - mx(x, y, n)), 0.0f);
        s1(ci, x, y, n) = 0.0f;
        s1(ci, x, y, n) += e(ci, x, y, rb, n);
        total(x, y, n) = 0.0f;
        total(x, y, n) += s1(rl, x, y, n);
        Func inv("inv");
        inv(x, y, n) = 1.0f / total(x, y, n);
        output(ci, x, y, cb, n) = e(ci, x, y, cb, n) * inv(x, y, n);

        constrain_blocked(input);
        constrain_blocked(output);
        estimate_blocked(input, 1, 1, 63);
        estimate_blocked(output, 1, 1, 63);
        channels.set_estimate(1000);
        if (using_autoscheduler()) return;
        sched::ChannelStatsStages s;
        s.output = output;
        s.lane_partials = {m1, s1};
        s.totals = {mx, total};
        s.per_pixel = {inv};
        s.rb = rb;
        s.rl = rl;
        if (get_target().has_gpu_feature()) {
            sched::schedule_channel_stats_gpu(s, get_target());
        } else {
            sched::schedule_channel_stats_cpu(s, get_target());
        }
    }
};

class OpsGrn : public Generator<OpsGrn> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 2>> gamma{"gamma"};  // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> beta{"beta"};    // (16, ceil(C/16)), zero-padded (zeros: no beta)
    Input<int> channels{"channels", 16, 1, 1 << 24};  // C
    Input<float> eps{"eps", 1e-6f};
    Output<Buffer<float, 5>> output{"output"};  // y, like x

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rp(0, input.dim(1).extent(), 0, input.dim(2).extent(), "rp");
        RDom rc(0, kLanes, 0, input.dim(3).extent(), "rc");
        Func sum("sumsq"), total("total"), factor("factor");
        sum(ci, cb, n) = 0.0f;
        sum(ci, cb, n) += input(ci, rp.x, rp.y, cb, n) * input(ci, rp.x, rp.y, cb, n);
        total(n) = 0.0f;
        total(n) += sqrt(sum(rc.x, rc.y, n));  // padding lanes: sqrt(0) = 0
        Expr nx = sqrt(sum(ci, cb, n)) / (total(n) / cast<float>(channels) + eps);
        factor(ci, cb, n) = gamma(ci, cb) * nx + 1.0f;
        output(ci, x, y, cb, n) = factor(ci, cb, n) * input(ci, x, y, cb, n) + beta(ci, cb);

        constrain_blocked(input);
        constrain_blocked(output);
        constrain_channels(gamma);
        constrain_channels(beta);
        estimate_blocked(input, 56, 56, 20);
        estimate_blocked(output, 56, 56, 20);
        gamma.set_estimates({{0, kLanes}, {0, 20}});
        beta.set_estimates({{0, kLanes}, {0, 20}});
        channels.set_estimate(320);
        eps.set_estimate(1e-6f);
        if (using_autoscheduler()) return;
        sched::PixelStatsStages s;
        s.output = output;
        s.sum = sum;
        s.rp = rp;
        s.total = total;
        s.rc = rc;
        s.factor = factor;
        if (get_target().has_gpu_feature()) {
            sched::schedule_pixel_stats_gpu(s, get_target());
        } else {
            sched::schedule_pixel_stats_cpu(s, get_target());
        }
    }
};

class OpsAvgPool : public Generator<OpsAvgPool> {
  public:
    Input<Buffer<float, 5>> input{"input"};     // x, blocked (16, W, H, ceil(C/16), N)
    Output<Buffer<float, 5>> output{"output"};  // y, blocked (16, 1, 1, ceil(C/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr W = input.dim(1).extent(), H = input.dim(2).extent();
        RDom rp(0, W, 0, H, "rp");
        Func sum("sum");
        sum(ci, cb, n) = 0.0f;
        sum(ci, cb, n) += input(ci, rp.x, rp.y, cb, n);
        output(ci, x, y, cb, n) = sum(ci, cb, n) / cast<float>(W * H);

        constrain_blocked(input);
        constrain_blocked(output);
        output.dim(1).set_extent(1);
        output.dim(2).set_extent(1);
        estimate_blocked(input, 7, 7, 64);
        estimate_blocked(output, 1, 1, 64);
        if (using_autoscheduler()) return;
        sched::PixelStatsStages s;
        s.output = output;
        s.sum = sum;
        s.rp = rp;
        if (get_target().has_gpu_feature()) {
            sched::schedule_pixel_stats_gpu(s, get_target());
        } else {
            sched::schedule_pixel_stats_cpu(s, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen::ops

HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsLayerNorm, ops_layernorm)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsSoftmax, ops_softmax)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsGrn, ops_grn)
HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsAvgPool, ops_avgpool)
