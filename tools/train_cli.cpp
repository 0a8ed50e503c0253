#include "tools/train_cli.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "graph/weights.h"
#include "runtime/device.h"
#include "runtime/safetensors.h"

namespace lkc::cli {

namespace {

std::string hms(double s) {
    const long t = long(std::lround(s));
    char b[32];
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    return b;
}

}  // namespace

void register_train(CLI::App& app, TrainArgs& a) {
    train::RunOptions& r = a.run;
    a.cmd =
        app.add_subcommand("train", "train a model on Fashion-MNIST (or IDX files in a directory)");
    a.cmd->add_option("--model", r.model, "model (slak-fmnist, replknet-fmnist, any lkc model)")
        ->capture_default_str();
    a.cmd
        ->add_option("--data", a.data,
                     "fashion-mnist (the Debian package dataset-fashion-mnist) or a directory with "
                     "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
        ->capture_default_str();
    a.cmd->add_option("--steps", r.steps, "optimizer steps (the schedule's length)")
        ->capture_default_str();
    a.cmd->add_option("--batch", r.batch, "micro-batch")->capture_default_str();
    a.cmd->add_option("--grad-accum", r.train.grad_accum, "micro-batches per optimizer step")
        ->capture_default_str();
    a.cmd->add_option("--size", r.image_size, "image size the 28x28 images are resized to")
        ->capture_default_str();
    a.cmd->add_option("--in-chans", r.in_chans, "input channels (the grey image replicated)")
        ->capture_default_str();
    a.cmd->add_option("--optimizer", r.train.optimizer, "adamw | sgd")->capture_default_str();
    a.cmd->add_option("--lr", r.train.lr, "peak learning rate")->capture_default_str();
    a.cmd->add_option("--min-lr", r.train.min_lr, "cosine floor")->capture_default_str();
    a.cmd->add_option("--weight-decay", r.train.weight_decay, "none on 1-D parameters")
        ->capture_default_str();
    a.cmd->add_option("--momentum", r.train.momentum, "SGD momentum")->capture_default_str();
    a.cmd->add_option("--warmup", r.train.warmup_steps, "linear warm-up steps")
        ->capture_default_str();
    a.cmd->add_option("--label-smoothing", r.train.label_smoothing, "cross-entropy smoothing")
        ->capture_default_str();
    a.cmd
        ->add_option("--drop-path", r.train.drop_path,
                     "stochastic depth: the last block's rate, rising linearly from 0 at the "
                     "first")
        ->capture_default_str();
    a.cmd->add_option("--ema", r.train.ema_decay, "EMA decay of the weights (0: off)")
        ->capture_default_str();
    a.cmd
        ->add_option("--sparsity", r.train.sparsity,
                     "dynamic sparsity: the fraction of conv / linear weights masked (0: dense)")
        ->capture_default_str();
    a.cmd
        ->add_option("--prune-every", r.train.prune_every,
                     "prune-and-regrow every U steps (0: fixed masks)")
        ->capture_default_str();
    a.cmd->add_option("--prune-rate", r.train.prune_rate, "initial prune rate (cosine-decayed)")
        ->capture_default_str();
    a.cmd->add_option("--mask-init", a.mask_init, "uniform | erk | snip")->capture_default_str();
    a.cmd
        ->add_option("--mask-structure", a.mask_structure,
                     "weight (SLaK, per weight) | lane-rows (depth-wise: per 16-channel block "
                     "and kernel row, the kernels skip pruned rows; linears: whole 16-channel "
                     "blocks, the GEMMs run on the kept ones)")
        ->check(CLI::IsMember({"weight", "lane-rows"}))
        ->capture_default_str();
    a.cmd->add_option("--seed", r.train.seed, "initialisation, data order, masks")
        ->capture_default_str();
    a.cmd->add_option("--weights", r.weights, "initial weights (safetensors, official names)");
    a.cmd
        ->add_option("--device", a.device,
                     "cpu (the training kernels' GPU schedules are not wired yet)")
        ->capture_default_str();
    a.cmd->add_option("--log", a.log, "CSV log: one row per step (appended on --resume)");
    a.cmd->add_option("--checkpoint", a.checkpoint, "checkpoint file, written atomically");
    a.cmd
        ->add_option("--checkpoint-every", a.checkpoint_every,
                     "steps between checkpoints (0: at the end)")
        ->capture_default_str();
    a.cmd->add_flag("--resume", a.resume, "continue from --checkpoint");
    a.cmd
        ->add_option("--eval-every", a.eval_every,
                     "evaluate on the test split every N steps (0: at the end)")
        ->capture_default_str();
    a.cmd
        ->add_option("--eval-limit", a.eval_limit,
                     "evaluate on the first N test images (0: all 10000)")
        ->capture_default_str();
    a.cmd->add_option("--stop-after", a.stop_after,
                      "stop after N steps of this invocation (resume later)");
    a.cmd->add_option("--time-limit", a.time_limit_s,
                      "stop (checkpoint, evaluate) after S seconds of training");
    a.cmd->add_option("--save-weights", a.export_deploy,
                      "write the trained train-form weights (official names) for lkc run / export");
    a.cmd->add_flag("--no-flip", a.no_flip, "no random horizontal flips");
    a.cmd
        ->add_option("--fuse-branches", a.fuse,
                     "a block's depth-wise branches as one fused layer: measure | always | never")
        ->check(CLI::IsMember({"measure", "always", "never"}))
        ->capture_default_str();
    a.cmd->add_flag("--recompute", r.train.recompute,
                    "recompute GELU / ReLU outputs in the backward instead of keeping them");
    a.cmd->add_flag("--profile", a.profile, "per-layer forward / backward times of the last step");
    a.cmd->add_flag("--quiet,-q", a.quiet, "no progress bar");
}

int run_train(TrainArgs& a) {
    if (!a.cmd || !a.cmd->parsed()) return -1;
    train::RunOptions& r = a.run;
    if (parse_device(a.device) != Device::Cpu)
        throw std::invalid_argument(
            "lkc train: --device " + a.device +
            ": training runs on the CPU (the training kernels' GPU schedules "
            "are compiled, the trainer does not dispatch to them yet)");
    if (a.resume && a.checkpoint.empty())
        throw std::invalid_argument("lkc train: --resume needs --checkpoint FILE");
    r.flip = !a.no_flip;
    r.train.mask_init = train::parse_mask_init(a.mask_init);
    r.train.mask_structure = train::parse_mask_structure(a.mask_structure);
    r.train.fuse_branches = a.fuse == "always"  ? train::TrainOptions::Fuse::Always
                            : a.fuse == "never" ? train::TrainOptions::Fuse::Never
                                                : train::TrainOptions::Fuse::Measure;
    const std::string dir = a.data == "fashion-mnist" ? train::kFashionMnistDir : a.data;
    const train::Dataset data = train::load_idx_dataset(dir, a.data);
    std::fprintf(stderr, "lkc train: %s from %s: %d train / %d test images %dx%d\n", a.data.c_str(),
                 dir.c_str(), data.train.count, data.test.count, data.train.rows, data.train.cols);
    train::TrainingRun run(data, r);
    if (a.resume) {
        run.resume(a.checkpoint);
        std::fprintf(stderr, "lkc train: resumed %s at step %lld\n", a.checkpoint.c_str(),
                     static_cast<long long>(run.steps_done()));
    } else if (r.weights.empty()) {
        std::fprintf(stderr, "lkc train: %s initialised from seed %llu\n", r.model.c_str(),
                     static_cast<unsigned long long>(r.train.seed));
    }
    if (r.train.sparsity > 0 && r.train.mask_init == train::MaskInit::Snip && !a.resume) {
        // SNIP scores from one batch of the training split.
        std::vector<int> idx;
        std::vector<int32_t> labels;
        for (int i = 0; i < r.batch; ++i) {
            idx.push_back(i);
            labels.push_back(data.train.labels[size_t(i)]);
        }
        run.trainer().init_masks_snip(train::make_batch(data.train, idx, r.image_size, r.in_chans),
                                      labels);
    }
    std::fprintf(
        stderr, "lkc train: %s, batch %d x %d, %lld steps, %s lr %g, sparsity %g; state %.1f MiB\n",
        r.model.c_str(), r.batch, r.train.grad_accum, static_cast<long long>(r.steps),
        r.train.optimizer.c_str(), r.train.lr, r.train.sparsity,
        run.trainer().peak_bytes() / 1048576.0);
    std::fprintf(stderr, "lkc train: memory: %s\n", run.trainer().memory_summary().c_str());

    std::FILE* log = nullptr;
    if (!a.log.empty()) {
        const bool fresh = !a.resume || !std::filesystem::exists(a.log);
        log = std::fopen(a.log.c_str(), fresh ? "w" : "a");
        if (!log) throw std::runtime_error("cannot open log " + a.log);
        if (fresh)
            std::fprintf(log,
                         "step,epoch,loss,train_acc,lr,ms,img_per_s,elapsed_s,pruned,test_acc\n");
    }
    const int64_t start = run.steps_done();
    int64_t end = r.steps;
    if (a.stop_after > 0) end = std::min(end, start + a.stop_after);
    auto save = [&] {
        if (a.checkpoint.empty()) return;
        run.save(a.checkpoint);
    };
    const auto t0 = std::chrono::steady_clock::now();
    double elapsed = 0, loss_avg = 0, acc_avg = 0;
    const int per_step = r.batch * r.train.grad_accum;
    int64_t done = start;
    while (done < end) {
        const train::StepLog s = run.step();
        done = s.step;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double k = done - start == 1 ? 1.0 : 0.05;  // smoothed for the bar
        loss_avg += k * (s.loss - loss_avg);
        acc_avg += k * (s.accuracy - acc_avg);
        double test_acc = -1;
        if (a.eval_every > 0 && done % a.eval_every == 0 && done < end) {
            const train::EvalResult e = run.evaluate(a.eval_limit);
            test_acc = e.accuracy();
            if (!a.quiet)
                std::fprintf(stderr, "\n  eval at step %lld: test accuracy %.4f (%d images)\n",
                             static_cast<long long>(done), test_acc, e.samples);
        }
        const double ips = (done - start) * per_step / elapsed;
        if (log) {
            std::fprintf(log, "%lld,%d,%.6f,%.4f,%.6g,%.2f,%.1f,%.2f,%lld,%s\n",
                         static_cast<long long>(done), s.epoch, s.loss, s.accuracy, s.lr, s.ms,
                         per_step * 1000.0 / s.ms, elapsed, static_cast<long long>(s.pruned),
                         test_acc >= 0 ? std::to_string(test_acc).c_str() : "");
            std::fflush(log);
        }
        if (!a.quiet) {
            const double eta = (end - done) * elapsed / double(done - start);
            std::fprintf(
                stderr,
                "\r[%lld/%lld] epoch %d loss %.4f acc %.3f lr %.2e %.0f img/s elapsed %s ETA %s   ",
                static_cast<long long>(done), static_cast<long long>(r.steps), s.epoch, loss_avg,
                acc_avg, s.lr, ips, hms(elapsed).c_str(), hms(eta).c_str());
        }
        if (a.checkpoint_every > 0 && done % a.checkpoint_every == 0) save();
        if (a.time_limit_s > 0 && elapsed >= a.time_limit_s) {
            if (!a.quiet)
                std::fprintf(stderr, "\nlkc train: time limit %.0f s reached at step %lld\n",
                             a.time_limit_s, static_cast<long long>(done));
            break;
        }
    }
    if (!a.quiet) std::fprintf(stderr, "\n");
    if (log) std::fclose(log);
    save();
    if (!a.checkpoint.empty())
        std::printf("checkpoint: %s (step %lld)\n", a.checkpoint.c_str(),
                    static_cast<long long>(done));
    if (!a.export_deploy.empty()) {
        const graph::Graph g = run.trainer().model(r.train.ema_decay > 0);
        write_safetensors(a.export_deploy, graph::state_dict(g),
                          {{"model", g.model}, {"form", "train"}});
        std::printf(
            "weights: %s (train form; lkc export --deploy --model %s --size %d --classes 10 "
            "--in-chans %d)\n",
            a.export_deploy.c_str(), r.model.c_str(), r.image_size, r.in_chans);
    }
    if (a.profile) {
        std::printf(
            "per-node time of the last micro-batch (ms): forward, backward, backward/forward\n");
        run.trainer().set_timing(true);
        run.step();
        run.trainer().set_timing(false);
        for (const auto& t : run.trainer().last_times())
            if (t.fwd_ms + t.bwd_ms > 0.05)
                std::printf("  %-40s %-18s %8.3f %8.3f %6.2f  %s\n", t.name.c_str(), t.op.c_str(),
                            t.fwd_ms, t.bwd_ms, t.fwd_ms > 0 ? t.bwd_ms / t.fwd_ms : 0.0,
                            t.kernels.c_str());
    }
    const int64_t steps_run = done - start;
    std::printf("trained %lld steps in %.1f s (%.1f img/s, %.1f ms/step)\n",
                static_cast<long long>(steps_run), elapsed,
                steps_run * per_step / std::max(elapsed, 1e-9),
                1000.0 * elapsed / std::max<int64_t>(steps_run, 1));
    const train::EvalResult e = run.evaluate(a.eval_limit, r.train.ema_decay > 0);
    std::printf("test accuracy %.4f (%d / %d), test loss %.4f, evaluated in %.1f s\n", e.accuracy(),
                e.correct, e.samples, e.loss, e.ms / 1000);
    if (log) {
        log = std::fopen(a.log.c_str(), "a");
        if (log) {
            std::fprintf(log, "%lld,,,,,,,%.2f,,%.4f\n", static_cast<long long>(done), elapsed,
                         e.accuracy());
            std::fclose(log);
        }
    }
    return 0;
}

}  // namespace lkc::cli
