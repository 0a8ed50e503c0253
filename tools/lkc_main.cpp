// The `lkc` command line. Results go to stdout, progress and errors to stderr.
//
//   lkc op <workload> --inputs IN.safetensors --outputs OUT.safetensors [--device cpu|opencl|cuda]
//          [--kernel NAME] [--repeat K] [--verbose]
//   lkc kernels                      list the compiled kernel variants
//   lkc version
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "CLI/CLI.hpp"
#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/registry.h"
#include "runtime/safetensors.h"
#include "runtime/workload.h"

#ifndef LKC_VERSION
#define LKC_VERSION "0.0.0"
#endif

namespace {

struct OpArgs {
    std::string workload, inputs, outputs, device = "cpu", kernel;
    int repeat = 1;
    bool verbose = false;
};

int run_op(const OpArgs& a) {
    const lkc::Workload w = lkc::parse_workload(a.workload);
    const lkc::Device dev = lkc::parse_device(a.device);
    if (w.op != lkc::Op::DwConv2d) {
        throw std::invalid_argument(std::string("op '") + lkc::op_name(w.op) +
                                    "' has no kernels in this build yet (available: dwconv2d)");
    }
    if (a.repeat < 1) throw std::invalid_argument("--repeat must be >= 1");
    lkc::SafetensorsFile in = lkc::read_safetensors(a.inputs);

    lkc::DwConv2dRunner runner(w, dev, a.kernel);
    if (a.verbose) {
        std::cerr << "lkc op: " << lkc::to_string(w) << " on " << lkc::device_name(dev)
                  << ", kernel " << runner.kernel().name << " (tile " << runner.kernel().tile
                  << ", chunk " << runner.kernel().chunk << ", hand default)\n";
    }
    runner.set_inputs(in.tensors);
    std::vector<double> times;
    for (int i = 0; i < a.repeat; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        runner.run();
        auto t1 = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::map<std::string, lkc::Tensor> out = runner.outputs();
    lkc::write_safetensors(a.outputs, out, {{"workload", lkc::to_string(w)},
                                            {"kernel", runner.kernel().name},
                                            {"device", lkc::device_name(dev)}});
    std::sort(times.begin(), times.end());
    const double med = times[times.size() / 2];
    std::printf("%s  device=%s  kernel=%s  median=%.3f ms over %d run(s)  %.1f GFLOP/s nominal, "
                "%.1f useful\n",
                lkc::to_string(w).c_str(), lkc::device_name(dev), runner.kernel().name, med * 1e3,
                a.repeat, w.nominal_flops() / med * 1e-9, w.useful_flops() / med * 1e-9);
    for (const auto& [name, t] : out) {
        std::printf("  %s %s -> %s\n", name.c_str(), lkc::shape_to_string(t.shape()).c_str(),
                    a.outputs.c_str());
    }
    lkc::release_device(dev);
    return 0;
}

int list_kernels() {
    std::printf("%-36s %-8s %-6s %-6s\n", "kernel", "device", "tile", "chunk");
    for (const auto& k : lkc::all_kernels()) {
        std::printf("%-36s %-8s %-6d %-6d\n", k.name, lkc::device_name(k.device), k.tile,
                    k.chunk);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"lkc: large-kernel convolution compiler and runtime"};
    app.require_subcommand(1);

    OpArgs op;
    CLI::App* op_cmd = app.add_subcommand("op", "run one kernel on tensors from a safetensors file");
    op_cmd->add_option("workload", op.workload, "workload string, e.g. dwconv2d:fwd:n1c128h56w56:k31x31:f32")
        ->required();
    op_cmd->add_option("--inputs", op.inputs, "input tensors (x, w, b, dy; NCHW, weights [C,1,Kh,Kw])")
        ->required();
    op_cmd->add_option("--outputs", op.outputs, "output file (y | dx | dw, db)")->required();
    op_cmd->add_option("--device", op.device, "cpu | opencl | cuda")->capture_default_str();
    op_cmd->add_option("--kernel", op.kernel, "force a kernel variant (see `lkc kernels`)");
    op_cmd->add_option("--repeat", op.repeat, "run the kernel K times and report the median")
        ->capture_default_str();
    op_cmd->add_flag("--verbose,-v", op.verbose, "say which kernel variant runs and why");

    app.add_subcommand("kernels", "list the compiled kernel variants");
    app.add_subcommand("version", "print the lkc version");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        if (app.got_subcommand("op")) return run_op(op);
        if (app.got_subcommand("kernels")) return list_kernels();
        if (app.got_subcommand("version")) {
            std::printf("lkc %s\n", LKC_VERSION);
            return 0;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lkc: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
