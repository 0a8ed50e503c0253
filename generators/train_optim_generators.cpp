// Optimizers and gradient helpers over flat f32 buffers [numel] (one call per parameter tensor,
// or one per group packed into one buffer: every element is independent). The state is updated
// in place: the runner passes the same buffer as input and output (each output element depends
// only on the same element of the inputs, and the Tuple outputs store all their values after
// loading the inputs).
//
//   train_adamw     PyTorch AdamW: g = grad * grad_scale; p *= decay (= 1 - lr wd);
//                   m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
//                   p -= step_size m / (sqrt(v) inv_sqrt_bc2 + eps), with
//                   step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t) (the
//                   runner computes them in double from the step number t).
//   train_sgd       PyTorch SGD: g = grad * grad_scale + wd p; with momentum mu:
//                   buf = g on the first step, else mu buf + (1 - dampening) g;
//                   g = g + mu buf (Nesterov) or buf; p -= lr g. mu = 0: plain SGD (buf kept).
//   train_ema       ema = decay ema + (1 - decay) w.
//   train_axpby     y = a x + b y (a term with a zero factor is not evaluated: zeroing a
//                   buffer holding NaN gives 0): scale, zero, accumulate gradients.
//   train_mask_mul  w = w * mask (0 where mask is 0, whatever w holds): dynamic sparsity.
#include "generators/train_algorithm.h"
#include "schedules/train_eltwise_schedule.h"

namespace lkc::gen::train {
namespace {

void schedule_flat(Func out, const sched::Specialisations& spec, const Target& t) {
    if (t.has_gpu_feature()) {
        sched::schedule_flat_gpu(out, spec, t);
    } else {
        sched::schedule_flat_cpu(out, spec, t);
    }
}

// The buffers of a Tuple output share the first one's min and extent (Halide).
template <typename O>
void constrain_tuple_output(O& out, int numel_estimate) {
    std::vector<OutputImageParam> bufs = Func(out).output_buffers();
    bufs[0].dim(0).set_min(0);
    bufs[0].set_estimates({{0, numel_estimate}});
    for (OutputImageParam p : bufs) p.dim(0).set_stride(1);
}

constexpr int kEstimate = 1 << 20;

class TrainAdamw : public Generator<TrainAdamw> {
  public:
    Input<Buffer<float, 1>> param{"param"};
    Input<Buffer<float, 1>> grad{"grad"};
    Input<Buffer<float, 1>> m{"m"};
    Input<Buffer<float, 1>> v{"v"};
    Input<float> step_size{"step_size"};        // lr / (1 - beta1^t)
    Input<float> inv_sqrt_bc2{"inv_sqrt_bc2"};  // 1 / sqrt(1 - beta2^t)
    Input<float> beta1{"beta1"};
    Input<float> beta2{"beta2"};
    Input<float> eps{"eps"};
    Input<float> decay{"decay"};  // 1 - lr * weight_decay
    Input<float> grad_scale{"grad_scale"};
    Output<Buffer<void, 1>> out{"out", {Float(32), Float(32), Float(32)}};  // (param, m, v)

    void generate() {
        Var i("i");
        Expr g = grad(i) * grad_scale;
        Expr m1 = beta1 * m(i) + (1.0f - beta1) * g;
        Expr v1 = beta2 * v(i) + (1.0f - beta2) * g * g;
        Expr p1 = param(i) * decay - step_size * m1 / (sqrt(v1) * inv_sqrt_bc2 + eps);
        out(i) = {p1, m1, v1};
        for (auto* b : {&param, &grad, &m, &v}) {
            constrain_flat(*b);
            b->set_estimates({{0, kEstimate}});
        }
        constrain_tuple_output(out, kEstimate);
        for (auto* s : {&step_size, &inv_sqrt_bc2, &beta1, &beta2, &eps, &decay, &grad_scale})
            s->set_estimate(0.9f);
        if (using_autoscheduler()) return;
        schedule_flat(out, {}, get_target());
    }
};

class TrainSgd : public Generator<TrainSgd> {
  public:
    Input<Buffer<float, 1>> param{"param"};
    Input<Buffer<float, 1>> grad{"grad"};
    Input<Buffer<float, 1>> buf{"buf"};  // momentum buffer
    Input<float> lr{"lr"};
    Input<float> momentum{"momentum"};
    Input<float> dampening{"dampening"};
    Input<float> weight_decay{"weight_decay"};
    Input<float> grad_scale{"grad_scale"};
    Input<bool> nesterov{"nesterov", false};
    Input<bool> first_step{"first_step", false};
    Output<Buffer<void, 1>> out{"out", {Float(32), Float(32)}};  // (param, buf)

    void generate() {
        Var i("i");
        Expr p = param(i);
        Expr g = grad(i) * grad_scale + weight_decay * p;
        Expr b1 = select(first_step, g, momentum * buf(i) + (1.0f - dampening) * g);
        Expr d = select(momentum == 0.0f, g, select(nesterov, g + momentum * b1, b1));
        out(i) = {p - lr * d, select(momentum == 0.0f, buf(i), b1)};
        for (auto* b : {&param, &grad, &buf}) {
            constrain_flat(*b);
            b->set_estimates({{0, kEstimate}});
        }
        constrain_tuple_output(out, kEstimate);
        for (auto* s : {&lr, &momentum, &dampening, &weight_decay, &grad_scale})
            s->set_estimate(0.9f);
        nesterov.set_estimate(false);
        first_step.set_estimate(false);
        if (using_autoscheduler()) return;
        schedule_flat(out, {{momentum != 0.0f && !first_step}}, get_target());
    }
};

class TrainEma : public Generator<TrainEma> {
  public:
    Input<Buffer<float, 1>> ema{"ema"};
    Input<Buffer<float, 1>> weight{"weight"};
    Input<float> decay{"decay"};
    Output<Buffer<float, 1>> out{"out"};  // the new ema

    void generate() {
        Var i("i");
        out(i) = decay * ema(i) + (1.0f - decay) * weight(i);
        for (auto* b : {&ema, &weight}) {
            constrain_flat(*b);
            b->set_estimates({{0, kEstimate}});
        }
        constrain_flat(out);
        out.set_estimates({{0, kEstimate}});
        decay.set_estimate(0.9999f);
        if (using_autoscheduler()) return;
        schedule_flat(out, {}, get_target());
    }
};

class TrainAxpby : public Generator<TrainAxpby> {
  public:
    Input<Buffer<float, 1>> x{"x"};
    Input<Buffer<float, 1>> y{"y"};
    Input<float> a{"a"};
    Input<float> b{"b"};
    Output<Buffer<float, 1>> out{"out"};  // a x + b y; may be y's buffer

    void generate() {
        Var i("i");
        out(i) = select(a == 0.0f, 0.0f, a * x(i)) + select(b == 0.0f, 0.0f, b * y(i));
        for (auto* p : {&x, &y}) {
            constrain_flat(*p);
            p->set_estimates({{0, kEstimate}});
        }
        constrain_flat(out);
        out.set_estimates({{0, kEstimate}});
        a.set_estimate(1.0f);
        b.set_estimate(1.0f);
        if (using_autoscheduler()) return;
        schedule_flat(out, {{a == 0.0f}, {b == 0.0f}}, get_target());
    }
};

class TrainMaskMul : public Generator<TrainMaskMul> {
  public:
    Input<Buffer<float, 1>> weight{"weight"};
    Input<Buffer<float, 1>> mask{"mask"};
    Output<Buffer<float, 1>> out{"out"};  // may be weight's buffer

    void generate() {
        Var i("i");
        out(i) = select(mask(i) != 0.0f, weight(i) * mask(i), 0.0f);
        for (auto* p : {&weight, &mask}) {
            constrain_flat(*p);
            p->set_estimates({{0, kEstimate}});
        }
        constrain_flat(out);
        out.set_estimates({{0, kEstimate}});
        if (using_autoscheduler()) return;
        schedule_flat(out, {}, get_target());
    }
};

}  // namespace
}  // namespace lkc::gen::train

HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainAdamw, train_adamw)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainSgd, train_sgd)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainEma, train_ema)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainAxpby, train_axpby)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainMaskMul, train_mask_mul)
