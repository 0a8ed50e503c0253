// Training forms and backward passes of the normalisations and the loss (semantics of
// graph/ir.h and runtime/ops.h), on the blocked layout (ops_algorithm.h). M = N H W pixels.
//
//   train_bn_fwd         BatchNorm2d in training mode: per channel over (N, H, W)
//                        mean = sum x / M, var = sum (x - mean)^2 / M (biased, two passes),
//                        rstd = 1 / sqrt(var + eps), y = (x - mean) rstd gamma + beta; writes the
//                        saved mean / rstd for the backward and the running statistics
//                        running = (1 - momentum) running + momentum * stat, with the unbiased
//                        variance var M / (M - 1) (PyTorch).
//   train_bn_bwd         x^ = (x - mean) rstd: dbeta = sum dy, dgamma = sum dy x^,
//                        dx = gamma rstd (dy - dbeta / M - x^ dgamma / M).
//   train_layernorm_bwd  per pixel over its C channels (ops::layer_norm): with g = dy weight,
//                        dx = rstd (g - mean_c g - x^ mean_c (g x^)); dweight = sum dy x^,
//                        dbias = sum dy over all pixels.
//   train_grn_bwd        GRN (graph/ir.h): G = ||x[n, c]||_2, D = mean_c G + eps, Nx = G / D,
//                        A = sum_p dy x, T = sum_c gamma A G:
//                        dx = (gamma Nx + 1) dy + x / G (gamma A / D - T / (C D^2)),
//                        dgamma = sum_n Nx A, dbeta = sum dy.
//   train_xent           softmax cross-entropy with label smoothing eps over K classes, logits
//                        [N, K] (blocked, W = H = 1): target t = (1 - eps) onehot + eps / K,
//                        loss[n] = lse - (1 - eps) z[label] - eps / K sum_k z[k],
//                        dlogits = (softmax - t) / N (the gradient of the batch mean),
//                        correct[n] = (first argmax == label).
// Parameter-gradient outputs can accumulate (g += ...; the runner passes g as the prior).
#include <limits>

#include "generators/train_algorithm.h"
#include "schedules/train_eltwise_schedule.h"

namespace lkc::gen::train {
namespace {

using ops::channel_of;
using ops::constrain_blocked;
using ops::estimate_blocked;

struct Sched {
    const Target& t;
    bool gpu() const { return t.has_gpu_feature(); }
    void pointwise(Func f, const sched::Specialisations& spec = {}) const {
        gpu() ? sched::schedule_pointwise_gpu(f, spec, t)
              : sched::schedule_pointwise_cpu(f, spec, t);
    }
    void partials(Func f) const {
        gpu() ? sched::schedule_channel_partials_gpu(f, t)
              : sched::schedule_channel_partials_cpu(f, t);
    }
    void vec(Func f) const {
        gpu() ? sched::schedule_channel_vector_gpu(f, t) : sched::schedule_channel_vector_cpu(f, t);
    }
    void per_image(Func f) const {
        gpu() ? sched::schedule_per_image_gpu(f, t) : sched::schedule_per_image_cpu(f, t);
    }
    void rows(sched::RowStats& s) const {
        gpu() ? sched::schedule_row_stats_gpu(s, t) : sched::schedule_row_stats_cpu(s, t);
    }
};

class TrainBnFwd : public Generator<TrainBnFwd> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 2>> gamma{"gamma"};  // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> beta{"beta"};
    Input<Buffer<float, 2>> running_mean{"running_mean"};
    Input<Buffer<float, 2>> running_var{"running_var"};
    Input<float> momentum{"momentum", 0.1f};
    Input<float> eps{"eps", 1e-5f};
    Input<int> channels{"channels", 16, 1, 1 << 24};
    Output<Buffer<float, 5>> output{"output"};  // y, like x
    Output<Buffer<float, 2>> save_mean{"save_mean"};
    Output<Buffer<float, 2>> save_rstd{"save_rstd"};
    Output<Buffer<float, 2>> new_mean{"new_mean"};  // may be running_mean's buffer
    Output<Buffer<float, 2>> new_var{"new_var"};    // may be running_var's buffer

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rp(0, input.dim(1).extent(), 0, input.dim(2).extent(), "rp");
        RDom rn(0, input.dim(4).extent(), "rn");
        Expr M = input.dim(1).extent() * input.dim(2).extent() * input.dim(4).extent();
        Expr inv_m = 1.0f / cast<float>(M);
        Expr real = channel_of(ci, cb) < channels;

        Func part1("part1"), sum1("sum1"), part2("part2"), sum2("sum2"), stat("stat");
        part1(ci, cb, n) = 0.0f;
        part1(ci, cb, n) += input(ci, rp.x, rp.y, cb, n);
        sum1(ci, cb) = 0.0f;
        sum1(ci, cb) += part1(ci, cb, rn);
        Expr mean = sum1(ci, cb) * inv_m;
        Expr d = input(ci, rp.x, rp.y, cb, n) - mean;
        part2(ci, cb, n) = 0.0f;
        part2(ci, cb, n) += d * d;
        sum2(ci, cb) = 0.0f;
        sum2(ci, cb) += part2(ci, cb, rn);
        Expr var = sum2(ci, cb) * inv_m;
        Expr rstd = 1.0f / sqrt(var + eps);
        // (mean, rstd * gamma) once per channel.
        stat(ci, cb) = {mean, rstd * gamma(ci, cb), select(real, rstd, 0.0f), var};

        output(ci, x, y, cb, n) =
            (input(ci, x, y, cb, n) - stat(ci, cb)[0]) * stat(ci, cb)[1] + beta(ci, cb);
        save_mean(ci, cb) = stat(ci, cb)[0];
        save_rstd(ci, cb) = stat(ci, cb)[2];
        Expr unbiased = cast<float>(M) / cast<float>(max(M - 1, 1));
        new_mean(ci, cb) = (1.0f - momentum) * running_mean(ci, cb) + momentum * stat(ci, cb)[0];
        new_var(ci, cb) =
            (1.0f - momentum) * running_var(ci, cb) + momentum * (stat(ci, cb)[3] * unbiased);

        constrain_blocked(input);
        constrain_blocked(output);
        for (auto* p : {&gamma, &beta, &running_mean, &running_var}) constrain_channels(*p);
        for (auto* p : {&save_mean, &save_rstd, &new_mean, &new_var}) constrain_channels(*p);
        estimate_blocked(input, 56, 56, 8, 8);
        estimate_blocked(output, 56, 56, 8, 8);
        for (auto* p : {&gamma, &beta, &running_mean, &running_var})
            p->set_estimates({{0, kLanes}, {0, 8}});
        for (auto* p : {&save_mean, &save_rstd, &new_mean, &new_var})
            p->set_estimates({{0, kLanes}, {0, 8}});
        momentum.set_estimate(0.1f);
        eps.set_estimate(1e-5f);
        channels.set_estimate(128);
        if (using_autoscheduler()) return;
        const Sched s{get_target()};
        s.partials(part1);
        s.partials(part2);
        for (Func f : {sum1, sum2, stat}) s.vec(f);
        for (Func f : {Func(save_mean), Func(save_rstd), Func(new_mean), Func(new_var)}) s.vec(f);
        s.pointwise(output);
    }
};

class TrainBnBwd : public Generator<TrainBnBwd> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x
    Input<Buffer<float, 5>> grad{"grad"};    // dy, like x
    Input<Buffer<float, 2>> gamma{"gamma"};
    Input<Buffer<float, 2>> save_mean{"save_mean"};
    Input<Buffer<float, 2>> save_rstd{"save_rstd"};
    Input<Buffer<float, 2>> prior_dgamma{"prior_dgamma"};
    Input<Buffer<float, 2>> prior_dbeta{"prior_dbeta"};
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 5>> output{"output"};  // dx, like x
    Output<Buffer<float, 2>> dgamma{"dgamma"};
    Output<Buffer<float, 2>> dbeta{"dbeta"};

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rp(0, input.dim(1).extent(), 0, input.dim(2).extent(), "rp");
        RDom rn(0, input.dim(4).extent(), "rn");
        Expr M = input.dim(1).extent() * input.dim(2).extent() * input.dim(4).extent();
        Expr inv_m = 1.0f / cast<float>(M);
        Expr g = grad(ci, rp.x, rp.y, cb, n);
        Expr d = input(ci, rp.x, rp.y, cb, n) - save_mean(ci, cb);
        Func part("part"), sums("sums"), coef("coef");
        part(ci, cb, n) = {0.0f, 0.0f};
        part(ci, cb, n) = {part(ci, cb, n)[0] + g, part(ci, cb, n)[1] + g * d};
        sums(ci, cb) = {0.0f, 0.0f};
        sums(ci, cb) = {sums(ci, cb)[0] + part(ci, cb, rn)[0],
                        sums(ci, cb)[1] + part(ci, cb, rn)[1]};
        Expr rstd = save_rstd(ci, cb);
        // dx = a (dy - c1 - (x - mean) c2)
        coef(ci, cb) = {gamma(ci, cb) * rstd, sums(ci, cb)[0] * inv_m,
                        rstd * rstd * sums(ci, cb)[1] * inv_m};
        output(ci, x, y, cb, n) =
            coef(ci, cb)[0] * (grad(ci, x, y, cb, n) - coef(ci, cb)[1] -
                               (input(ci, x, y, cb, n) - save_mean(ci, cb)) * coef(ci, cb)[2]);
        dbeta(ci, cb) = select(accumulate, prior_dbeta(ci, cb), 0.0f) + sums(ci, cb)[0];
        dgamma(ci, cb) = select(accumulate, prior_dgamma(ci, cb), 0.0f) + sums(ci, cb)[1] * rstd;

        constrain_blocked(input);
        constrain_blocked(grad);
        constrain_blocked(output);
        for (auto* p : {&gamma, &save_mean, &save_rstd, &prior_dgamma, &prior_dbeta})
            constrain_channels(*p);
        constrain_channels(dgamma);
        constrain_channels(dbeta);
        estimate_blocked(input, 56, 56, 8, 8);
        estimate_blocked(grad, 56, 56, 8, 8);
        estimate_blocked(output, 56, 56, 8, 8);
        for (auto* p : {&gamma, &save_mean, &save_rstd, &prior_dgamma, &prior_dbeta})
            p->set_estimates({{0, kLanes}, {0, 8}});
        dgamma.set_estimates({{0, kLanes}, {0, 8}});
        dbeta.set_estimates({{0, kLanes}, {0, 8}});
        accumulate.set_estimate(false);
        if (using_autoscheduler()) return;
        const Sched s{get_target()};
        s.partials(part);
        for (Func f : {sums, coef, Func(dgamma), Func(dbeta)}) s.vec(f);
        s.pointwise(output);
    }
};

class TrainLayerNormBwd : public Generator<TrainLayerNormBwd> {
  public:
    Input<Buffer<float, 5>> input{"input"};    // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 5>> grad{"grad"};      // dy, like x
    Input<Buffer<float, 2>> weight{"weight"};  // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> prior_dweight{"prior_dweight"};
    Input<Buffer<float, 2>> prior_dbias{"prior_dbias"};
    Input<int> channels{"channels", 16, 1, 1 << 24};
    Input<float> eps{"eps", 1e-6f};
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 5>> output{"output"};  // dx, like x
    Output<Buffer<float, 2>> dweight{"dweight"};
    Output<Buffer<float, 2>> dbias{"dbias"};

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rb(0, input.dim(3).extent(), "rb");
        RDom rl(0, kLanes, "rl");
        Expr inv_c = 1.0f / cast<float>(channels);
        auto real = [&](const Expr& l, const Expr& b) { return channel_of(l, b) < channels; };

        // Per-pixel statistics, as the forward computes them (two passes over the channels).
        Func lp1("lp1"), tot1("tot1"), lp2("lp2"), tot2("tot2"), lp3("lp3"), tot3("tot3");
        lp1(ci, x, y, n) = 0.0f;
        lp1(ci, x, y, n) += input(ci, x, y, rb, n);
        tot1(x, y, n) = 0.0f;
        tot1(x, y, n) += lp1(rl, x, y, n);
        Expr mean = tot1(x, y, n) * inv_c;
        auto dev = [&](const Expr& l, const Expr& b) {
            return select(real(l, b), input(l, x, y, b, n) - mean, 0.0f);
        };
        lp2(ci, x, y, n) = 0.0f;
        lp2(ci, x, y, n) += dev(ci, rb) * dev(ci, rb);
        tot2(x, y, n) = 0.0f;
        tot2(x, y, n) += lp2(rl, x, y, n);
        Expr rstd = 1.0f / sqrt(tot2(x, y, n) * inv_c + eps);
        Expr g_b = grad(ci, x, y, rb, n) * weight(ci, rb);
        lp3(ci, x, y, n) = {0.0f, 0.0f};
        lp3(ci, x, y, n) = {lp3(ci, x, y, n)[0] + g_b,
                            lp3(ci, x, y, n)[1] + g_b * dev(ci, rb) * rstd};
        tot3(x, y, n) = {0.0f, 0.0f};
        tot3(x, y, n) = {tot3(x, y, n)[0] + lp3(rl, x, y, n)[0],
                         tot3(x, y, n)[1] + lp3(rl, x, y, n)[1]};
        Func stats("stats");  // (mean, rstd, mean_c g, mean_c g x^)
        stats(x, y, n) = {mean, rstd, tot3(x, y, n)[0] * inv_c, tot3(x, y, n)[1] * inv_c};

        auto xhat = [&](const Expr& xx, const Expr& yy) {
            return select(real(ci, cb), input(ci, xx, yy, cb, n) - stats(xx, yy, n)[0], 0.0f) *
                   stats(xx, yy, n)[1];
        };
        Expr g = grad(ci, x, y, cb, n) * weight(ci, cb);
        output(ci, x, y, cb, n) = select(
            real(ci, cb),
            stats(x, y, n)[1] * (g - stats(x, y, n)[2] - xhat(x, y) * stats(x, y, n)[3]), 0.0f);

        RDom rp(0, input.dim(1).extent(), 0, input.dim(2).extent(), "rp");
        RDom rn(0, input.dim(4).extent(), "rn");
        Func part("part"), sums("sums");
        Expr gp = grad(ci, rp.x, rp.y, cb, n);
        part(ci, cb, n) = {0.0f, 0.0f};
        part(ci, cb, n) = {part(ci, cb, n)[0] + gp * xhat(rp.x, rp.y), part(ci, cb, n)[1] + gp};
        dweight(ci, cb) = select(accumulate, prior_dweight(ci, cb), 0.0f);
        dweight(ci, cb) += part(ci, cb, rn)[0];
        dbias(ci, cb) = select(accumulate, prior_dbias(ci, cb), 0.0f);
        dbias(ci, cb) += part(ci, cb, rn)[1];

        constrain_blocked(input);
        constrain_blocked(grad);
        constrain_blocked(output);
        for (auto* p : {&weight, &prior_dweight, &prior_dbias}) constrain_channels(*p);
        constrain_channels(dweight);
        constrain_channels(dbias);
        estimate_blocked(input, 56, 56, 8, 8);
        estimate_blocked(grad, 56, 56, 8, 8);
        estimate_blocked(output, 56, 56, 8, 8);
        for (auto* p : {&weight, &prior_dweight, &prior_dbias})
            p->set_estimates({{0, kLanes}, {0, 8}});
        dweight.set_estimates({{0, kLanes}, {0, 8}});
        dbias.set_estimates({{0, kLanes}, {0, 8}});
        channels.set_estimate(128);
        eps.set_estimate(1e-6f);
        accumulate.set_estimate(false);
        if (using_autoscheduler()) return;
        const Sched s{get_target()};
        sched::RowStats rs;
        rs.stats = stats;
        rs.lane_partials = {lp1, lp2, lp3};
        rs.totals = {tot1, tot2, tot3};
        rs.rb = rb;
        rs.rl = rl;
        s.rows(rs);
        s.pointwise(output);
        s.partials(part);
        s.vec(dweight);
        s.vec(dbias);
    }
};

class TrainGrnBwd : public Generator<TrainGrnBwd> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<float, 5>> grad{"grad"};    // dy, like x
    Input<Buffer<float, 2>> gamma{"gamma"};  // (16, ceil(C/16)), zero-padded
    Input<Buffer<float, 2>> prior_dgamma{"prior_dgamma"};
    Input<Buffer<float, 2>> prior_dbeta{"prior_dbeta"};
    Input<int> channels{"channels", 16, 1, 1 << 24};
    Input<float> eps{"eps", 1e-6f};
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 5>> output{"output"};  // dx, like x
    Output<Buffer<float, 2>> dgamma{"dgamma"};
    Output<Buffer<float, 2>> dbeta{"dbeta"};

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rp(0, input.dim(1).extent(), 0, input.dim(2).extent(), "rp");
        RDom rc(0, kLanes, 0, input.dim(3).extent(), "rc");
        RDom rn(0, input.dim(4).extent(), "rn");
        Expr C = cast<float>(channels);
        Expr xv = input(ci, rp.x, rp.y, cb, n), gv = grad(ci, rp.x, rp.y, cb, n);
        Func part("part");  // per (channel, image): sum x^2, sum dy x, sum dy
        part(ci, cb, n) = {0.0f, 0.0f, 0.0f};
        part(ci, cb, n) = {part(ci, cb, n)[0] + xv * xv, part(ci, cb, n)[1] + gv * xv,
                           part(ci, cb, n)[2] + gv};
        Func tot("tot");  // per image: sum_c G, sum_c gamma A G
        Expr Gr = sqrt(part(rc.x, rc.y, n)[0]);
        tot(n) = {0.0f, 0.0f};
        tot(n) = {tot(n)[0] + Gr, tot(n)[1] + gamma(rc.x, rc.y) * part(rc.x, rc.y, n)[1] * Gr};
        Func fac("fac");  // dx = f1 dy + f2 x; also Nx A for dgamma
        Expr G = sqrt(part(ci, cb, n)[0]), A = part(ci, cb, n)[1];
        Expr D = tot(n)[0] / C + eps;
        Expr nx = G / D;
        Expr f2 = select(G > 0.0f, (gamma(ci, cb) * A / D - tot(n)[1] / (C * D * D)) / G, 0.0f);
        fac(ci, cb, n) = {gamma(ci, cb) * nx + 1.0f, f2, nx * A};
        output(ci, x, y, cb, n) =
            fac(ci, cb, n)[0] * grad(ci, x, y, cb, n) + fac(ci, cb, n)[1] * input(ci, x, y, cb, n);
        dgamma(ci, cb) = select(accumulate, prior_dgamma(ci, cb), 0.0f);
        dgamma(ci, cb) += fac(ci, cb, rn)[2];
        dbeta(ci, cb) = select(accumulate, prior_dbeta(ci, cb), 0.0f);
        dbeta(ci, cb) += part(ci, cb, rn)[2];

        constrain_blocked(input);
        constrain_blocked(grad);
        constrain_blocked(output);
        for (auto* p : {&gamma, &prior_dgamma, &prior_dbeta}) constrain_channels(*p);
        constrain_channels(dgamma);
        constrain_channels(dbeta);
        estimate_blocked(input, 56, 56, 20, 8);
        estimate_blocked(grad, 56, 56, 20, 8);
        estimate_blocked(output, 56, 56, 20, 8);
        for (auto* p : {&gamma, &prior_dgamma, &prior_dbeta})
            p->set_estimates({{0, kLanes}, {0, 20}});
        dgamma.set_estimates({{0, kLanes}, {0, 20}});
        dbeta.set_estimates({{0, kLanes}, {0, 20}});
        channels.set_estimate(320);
        eps.set_estimate(1e-6f);
        accumulate.set_estimate(false);
        if (using_autoscheduler()) return;
        const Sched s{get_target()};
        s.partials(part);
        s.per_image(tot);
        s.partials(fac);
        s.pointwise(output);
        s.vec(dgamma);
        s.vec(dbeta);
    }
};

class TrainXent : public Generator<TrainXent> {
  public:
    Input<Buffer<float, 5>> logits{"logits"};    // blocked (16, 1, 1, ceil(K/16), N)
    Input<Buffer<int32_t, 1>> labels{"labels"};  // [N], values in [0, K) (checked by the runner)
    Input<int> channels{"channels", 16, 1, 1 << 24};  // K
    Input<float> smoothing{"smoothing", 0.0f};
    Output<Buffer<float, 5>> dlogits{"dlogits"};    // like logits
    Output<Buffer<float, 1>> loss{"loss"};          // [N], per sample
    Output<Buffer<int32_t, 1>> correct{"correct"};  // [N], 1 if the first argmax is the label

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        RDom rb(0, logits.dim(3).extent(), "rb");
        RDom rl(0, kLanes, "rl");
        const float lowest = -std::numeric_limits<float>::infinity();
        Expr K = channels;
        Expr Kf = cast<float>(K);
        auto real = [&](const Expr& l, const Expr& b) { return channel_of(l, b) < K; };
        auto z = [&](const Expr& l, const Expr& b) { return logits(l, 0, 0, b, n); };

        Func lpm("lpm"), mx("mx"), lps("lps"), tots("tots"), stats("stats");
        lpm(ci, n) = lowest;
        lpm(ci, n) = max(lpm(ci, n), select(real(ci, rb), z(ci, rb), lowest));
        mx(n) = lowest;
        mx(n) = max(mx(n), lpm(rl, n));
        // Lane partials over blocks: sum exp(z - max), sum z, first index of the max.
        Expr zb = z(ci, rb);
        lps(ci, n) = {0.0f, 0.0f, K};
        lps(ci, n) = {
            lps(ci, n)[0] + select(real(ci, rb), exp(zb - mx(n)), 0.0f),
            lps(ci, n)[1] + select(real(ci, rb), zb, 0.0f),
            min(lps(ci, n)[2], select(real(ci, rb) && zb == mx(n), channel_of(ci, rb), K))};
        tots(n) = {0.0f, 0.0f, K};
        tots(n) = {tots(n)[0] + lps(rl, n)[0], tots(n)[1] + lps(rl, n)[1],
                   min(tots(n)[2], lps(rl, n)[2])};
        // (max, 1 / sum exp, log-sum-exp, sum z, argmax)
        stats(n) = {mx(n), 1.0f / tots(n)[0], mx(n) + log(tots(n)[0]), tots(n)[1], tots(n)[2]};

        Expr lab = clamp(labels(n), 0, K - 1);
        Expr zl = logits(lab % kLanes, 0, 0, lab / kLanes, n);
        loss(n) = stats(n)[2] - (1.0f - smoothing) * zl - smoothing / Kf * stats(n)[3];
        correct(n) = select(stats(n)[4] == lab, 1, 0);

        Expr k = channel_of(ci, cb);
        Expr p = exp(logits(ci, x, y, cb, n) - stats(n)[0]) * stats(n)[1];
        Expr t = select(k == lab, 1.0f - smoothing, 0.0f) + smoothing / Kf;
        Expr inv_n = 1.0f / cast<float>(logits.dim(4).extent());
        dlogits(ci, x, y, cb, n) = select(real(ci, cb), (p - t) * inv_n, 0.0f);

        constrain_blocked(logits);
        constrain_blocked(dlogits);
        logits.dim(1).set_extent(1);
        logits.dim(2).set_extent(1);
        labels.dim(0).set_min(0);
        loss.dim(0).set_min(0);
        correct.dim(0).set_min(0);
        estimate_blocked(logits, 1, 1, 63, 32);
        estimate_blocked(dlogits, 1, 1, 63, 32);
        labels.set_estimates({{0, 32}});
        loss.set_estimates({{0, 32}});
        correct.set_estimates({{0, 32}});
        channels.set_estimate(1000);
        smoothing.set_estimate(0.1f);
        if (using_autoscheduler()) return;
        const Sched s{get_target()};
        sched::RowStats rs;
        rs.stats = stats;
        rs.lane_partials = {lpm, lps};
        rs.totals = {mx, tots};
        rs.rb = rb;
        rs.rl = rl;
        s.rows(rs);
        s.pointwise(dlogits);
        if (s.gpu()) {
            Var no("no"), ni("ni");
            for (Func f : {Func(loss), Func(correct)})
                f.gpu_tile(n, no, ni, 16, TailStrategy::GuardWithIf);
        }
    }
};

}  // namespace
}  // namespace lkc::gen::train

HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainBnFwd, train_bn_fwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainBnBwd, train_bn_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainLayerNormBwd, train_layernorm_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainGrnBwd, train_grn_bwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainXent, train_xent)
