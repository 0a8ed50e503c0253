// `lkc run` (whole-network inference with the graph executor) and `lkc inspect` (the graph, its
// FLOPs, parameters and planned memory).
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace lkc::cli {

struct RunArgs {
    std::string model, weights, input, output, device = "cpu";
    int batch = 0;  // 0: the input's batch (1 for an image)
    int size = 224, classes = 1000, repeat = 10, in_chans = 3;
    uint64_t seed = 0;
    bool train_form = false, deploy = false, verbose = false, profile = false, no_records = false;
    bool check_finite = false;
    std::vector<std::string> records;
    // inspect
    bool inspect_deploy = false, inspect_nodes = true, inspect_workloads = false;
    // export
    std::string export_out, family;
    bool export_onnx = false, export_deploy = false, export_official = false;
    CLI::App *run = nullptr, *inspect = nullptr, *exp = nullptr;
};

void register_run(CLI::App& app, RunArgs& a);
// Runs `run` or `inspect` if parsed; -1 otherwise.
int run_run(const RunArgs& a);

}  // namespace lkc::cli
