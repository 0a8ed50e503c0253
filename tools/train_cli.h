// `lkc train`: trains a model on Fashion-MNIST (or a directory of IDX files) with
// graph/train/loop.h; progress on stderr, a CSV log, checkpoints and --resume, the test-split
// evaluation at the end.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "graph/train/loop.h"

namespace lkc::cli {

struct TrainArgs {
    train::RunOptions run;
    std::string data = "fashion-mnist", device = "cpu", log, checkpoint, mask_init = "erk",
                export_deploy, fuse = "measure", mask_structure = "weight";
    int64_t checkpoint_every = 0, eval_every = 0, stop_after = 0;
    int eval_limit = 0;
    double time_limit_s = 0;
    bool resume = false, quiet = false, profile = false, no_flip = false;
    CLI::App* cmd = nullptr;
};

void register_train(CLI::App& app, TrainArgs& a);
// Runs `train` if parsed; -1 otherwise.
int run_train(TrainArgs& a);

}  // namespace lkc::cli
