// `lkc tune`, `lkc tune best`, `lkc tune distill` and the hidden `lkc tune-worker`.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace lkc::cli {

struct TuneArgs {
    std::vector<std::string> workloads;
    std::string shapes, device = "cpu", records, strategy = "model";
    double budget = 60;
    uint64_t seed = 1;
    int max_trials = 0;
    bool no_final = false, quiet = false;
    // best / distill
    std::string best_workload, out_file, out_dir, device_id;
    // compare
    std::vector<std::string> cmp_workloads;
    std::string cmp_shapes, csv, autoschedulers, vs;
    CLI::App *tune = nullptr, *best = nullptr, *distill = nullptr, *worker = nullptr,
             *compare = nullptr;
};

// Adds the subcommands to app.
void register_tune(CLI::App& app, TuneArgs& a);

// Runs the tune subcommand that was parsed; returns -1 if none was.
int run_tune(const TuneArgs& a);

}  // namespace lkc::cli
