// A training run over a dataset (what `lkc train` drives): the model built for the dataset's
// images, the Trainer, the epoch order and augmentation RNGs, checkpoints that carry all of it (so
// a resumed run takes the same batches and gives the same losses as an uninterrupted one) and
// evaluation on the test split with the deploy-form executor.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "graph/train/dataset.h"
#include "graph/train/trainer.h"

namespace lkc {
namespace train {

struct RunOptions {
    std::string model = "slak-fmnist";
    int image_size = 32;  // dataset images are resized to this
    int in_chans = 1;
    int batch = 64;        // micro-batch
    int64_t steps = 1000;  // optimizer steps of the whole run (the schedule's length)
    bool flip = true;      // random horizontal flips
    std::string weights;   // optional initial weights (safetensors, official names)
    TrainOptions train;    // total_steps is set from `steps`
};

struct StepLog {
    int64_t step = 0;  // optimizer steps done after this one
    int epoch = 0;
    double loss = 0, accuracy = 0, lr = 0;
    int64_t pruned = 0;
    double ms = 0;  // wall time of the step
};

struct EvalResult {
    int samples = 0, correct = 0;
    double loss = 0;  // mean cross-entropy (no smoothing)
    double ms = 0;
    double accuracy() const { return samples ? double(correct) / samples : 0; }
};

class TrainingRun {
  public:
    // Builds `o.model` for the dataset (classes, image size, channels, batch), initialises it
    // (o.weights or the seed) and the trainer. Throws GraphError / invalid_argument on bad options.
    TrainingRun(const Dataset& data, const RunOptions& o);
    ~TrainingRun();

    // Restores everything from a checkpoint written by save(); the model, image size, channels and
    // batch must match (the error names the field).
    void resume(const std::string& path);
    // One optimizer step (grad_accum micro-batches).
    StepLog step();
    // Atomic checkpoint (graph/train/checkpoint.h).
    void save(const std::string& path) const;
    // Accuracy on the first `limit` test images (0: all) with the trained model (EMA weights if
    // kept and `ema`), through the deploy passes and the fast executor.
    EvalResult evaluate(int limit = 0, bool ema = false) const;

    int64_t steps_done() const;
    Trainer& trainer();
    const RunOptions& options() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace train
}  // namespace lkc
