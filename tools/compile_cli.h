// `lkc compile`: a standalone AOT inference binary (plus a static library and a C header for
// embedding) for one model. docs/aot.md.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace lkc::cli {

struct CompileArgs {
    std::string model, weights, target = "host", out;
    int batch = 1, size = 224, classes = 1000;
    uint64_t seed = 0;
    std::vector<std::string> records;
    bool no_records = false, embed_weights = false, verbose = false;
    CLI::App* cmd = nullptr;
};

void register_compile(CLI::App& app, CompileArgs& a);
int run_compile(const CompileArgs& a);  // -1 if not parsed

}  // namespace lkc::cli
