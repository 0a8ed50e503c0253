// The `lkc` command line. Results go to stdout, progress and errors to stderr.
//
//   lkc op <workload> --inputs IN.safetensors --outputs OUT.safetensors [--device cpu|opencl|cuda]
//          [--kernel NAME] [--repeat K] [--verbose]
//   lkc example <workload> -o IN.safetensors [--seed N] [--density D] [--optional]
//          valid random inputs (names/shapes of runtime/op_inputs.h)
//   lkc kernels [--workload WL [--device D]]   list the variants, or rank them for a workload
//   lkc tune <workload>... [--shapes F] [--device D] [--budget S] [--records F] [--seed N]
//   lkc tune best|distill|compare ...          records -> tables; tuned vs autoschedulers
//   lkc run --model NAME [--weights W] --input IMG [--batch N] [--train-form] ...
//   lkc inspect --model NAME [--size S] [--batch N] [--deploy]
//   lkc compile --model NAME [--weights W] [--target host|...] [--batch N] -o OUT/
//   lkc version
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <vector>

#include "CLI/CLI.hpp"
#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/dwconv2d_sparse.h"
#include "runtime/dwconv2d_taps.h"
#include "runtime/op_inputs.h"
#include "runtime/op_runner.h"
#include "runtime/reference_ops.h"
#include "runtime/registry.h"
#include "runtime/safetensors.h"
#include "runtime/schedule_selection.h"
#include "runtime/workload.h"
#include "tools/compile_cli.h"
#include "tools/run_cli.h"
#include "tools/train_cli.h"
#include "tools/tune_cli.h"

#ifndef LKC_VERSION
#define LKC_VERSION "0.0.0"
#endif

namespace {

struct OpArgs {
    std::string workload, inputs, outputs, device = "cpu", kernel;
    std::vector<std::string> records;
    bool no_records = false;
    int repeat = 1;
    bool verbose = false;
    bool check = false;
    bool all_taps = false;
};

// One line per output: shape, mean, min, max and the first values.
void print_summary(const std::string& name, const lkc::Tensor& t) {
    const float* p = t.data<float>();
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < t.numel(); ++i) {
        sum += p[i];
        lo = std::min<double>(lo, p[i]);
        hi = std::max<double>(hi, p[i]);
    }
    std::printf("  %-3s %-20s mean %+.5f  min %+.4f  max %+.4f  first [", name.c_str(),
                lkc::shape_to_string(t.shape()).c_str(), t.numel() ? sum / t.numel() : 0.0, lo, hi);
    for (int64_t i = 0; i < std::min<int64_t>(4, t.numel()); ++i)
        std::printf("%s%+.4f", i ? ", " : "", p[i]);
    std::printf("%s]\n", t.numel() > 4 ? ", ..." : "");
}

// --check: compares with the naive double-precision reference; the bound is 1e-5 x the sum of
// |terms| per element (fp32 rounding of a K*K-term sum). Returns false when outside it.
bool check_against_reference(const lkc::Workload& w, const std::map<std::string, lkc::Tensor>& in,
                             const std::map<std::string, lkc::Tensor>& out) {
    const auto ref = lkc::ref::op_reference(w, in);
    const auto mag = lkc::ref::op_reference(w, in, /*absolute=*/true);
    bool ok = true;
    for (const auto& [name, want] : ref) {
        const float* got = out.at(name).data<float>();
        double worst = 0, worst_rel = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            const double err = std::fabs(got[i] - want[i]);
            worst = std::max(worst, err);
            worst_rel = std::max(worst_rel, err / (mag.at(name)[i] + 1e-30));
        }
        const bool pass = worst_rel <= 1e-5;
        ok = ok && pass;
        std::printf(
            "  check %-3s vs double reference: max |err| %.3g, max |err|/sum|terms| %.3g "
            "(bound 1e-5): %s\n",
            name.c_str(), worst, worst_rel, pass ? "ok" : "FAILED");
    }
    return ok;
}

int run_op(const OpArgs& a) {
    const lkc::Workload w = lkc::parse_workload(a.workload);
    const lkc::Device dev = lkc::parse_device(a.device);
    if (a.repeat < 1) throw std::invalid_argument("--repeat must be >= 1");
    lkc::SafetensorsFile in = lkc::read_safetensors(a.inputs);
    if (a.no_records) {
        lkc::disable_schedules();
    } else {
        lkc::use_schedules(a.records);
        for (const std::string& p : lkc::schedule_problems())
            std::fprintf(stderr, "lkc op: tuning records: skipped %s\n", p.c_str());
    }

    std::unique_ptr<lkc::OpRunner> runner_ptr = lkc::make_runner(w, dev, a.kernel);
    lkc::OpRunner& runner = *runner_ptr;
    if (a.all_taps) {
        auto* sparse = dynamic_cast<lkc::SparseDwConv2dRunner*>(&runner);
        if (!sparse) throw std::invalid_argument("--all-taps applies to dwconv2d_sparse only");
        sparse->set_all_taps(true);
    }
    runner.set_inputs(in.tensors);
    if (a.verbose) {
        const lkc::Selection sel = runner.selection();
        std::cerr << "lkc op: " << lkc::to_string(w) << " on " << lkc::device_name(dev)
                  << ", kernel " << runner.kernel_name() << " (" << sel.how
                  << (sel.source.empty() ? "" : ", from " + sel.source) << ")";
        if (auto* dense = dynamic_cast<lkc::DwConv2dRunner*>(&runner))
            std::cerr << ", tile " << dense->kernel().tile << ", chunk " << dense->kernel().chunk;
        auto* taps = dynamic_cast<lkc::TapsRunner*>(&runner);
        if (taps && taps->runs_merged()) {
            std::cerr << ", merged dense kernel (cheaper than the taps plan for this map)";
        } else if (taps) {
            const lkc::TapPlan& p = taps->plan();
            std::cerr << ", " << p.distinct_taps() << " distinct taps in " << p.entries()
                      << " runs (" << p.slots() << " weight slots)";
        }
        std::cerr << "\n";
        const auto sources = lkc::schedule_sources();
        std::cerr << "lkc op: tuning sources:";
        for (const std::string& s : sources) std::cerr << " " << s;
        std::cerr << (sources.empty() ? " none" : "") << "\n";
    }
    std::vector<double> times;
    for (int i = 0; i < a.repeat; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        runner.run();
        runner.sync();
        auto t1 = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::map<std::string, lkc::Tensor> out = runner.outputs();
    // Bias is optional: the reference and the outputs treat a missing b as zeros.
    lkc::write_safetensors(a.outputs, out,
                           {{"workload", lkc::to_string(w)},
                            {"kernel", runner.kernel_name()},
                            {"device", lkc::device_name(dev)}});
    std::sort(times.begin(), times.end());
    const double med = times[times.size() / 2];
    std::printf(
        "%s  device=%s  kernel=%s  median=%.3f ms over %d run(s)  %.1f GFLOP/s nominal, "
        "%.1f useful\n",
        lkc::to_string(w).c_str(), lkc::device_name(dev), runner.kernel_name().c_str(), med * 1e3,
        a.repeat, w.nominal_flops() / med * 1e-9, w.useful_flops() / med * 1e-9);
    for (const auto& [name, t] : out) print_summary(name, t);
    std::printf("  written to %s\n", a.outputs.c_str());
    bool ok = true;
    if (a.check) {
        if (a.all_taps) {
            // The all-positions gradient is the dense one: check against the dense reference.
            lkc::Workload dense = w;
            dense.op = lkc::Op::DwConv2d;
            auto dense_in = in.tensors;
            dense_in.erase("mask");
            ok = check_against_reference(dense, dense_in, out);
        } else {
            ok = check_against_reference(w, in.tensors, out);
        }
    }
    lkc::release_device(dev);
    return ok ? 0 : 3;
}

int write_example(const std::string& workload, const std::string& path, uint32_t seed,
                  double density, bool optional) {
    const lkc::Workload w = lkc::parse_workload(workload);
    const auto in = lkc::make_example_inputs(w, seed, /*small_int=*/false, density, optional);
    lkc::write_safetensors(path, in,
                           {{"workload", lkc::to_string(w)}, {"seed", std::to_string(seed)}});
    std::printf("wrote %s:", path.c_str());
    for (const auto& [name, t] : in)
        std::printf(" %s %s", name.c_str(), lkc::shape_to_string(t.shape()).c_str());
    std::printf("\n");
    return 0;
}

// Without a workload: every compiled variant. With one: the variants that can run it on the
// device, their estimated cost and the one select_kernel picks.
int list_kernels(const std::string& workload, const std::string& device) {
    if (workload.empty()) {
        std::printf("%-36s %-8s %-5s %-6s %-7s %-6s\n", "kernel", "device", "tile", "chunk",
                    "pixels", "stage");
        for (const auto& k : lkc::all_kernels()) {
            std::printf("%-36s %-8s %-5d %-6d %-7s %-6s\n", k.name, lkc::device_name(k.device),
                        k.tile, k.chunk, k.pixels ? "yes" : "no", k.stage ? "yes" : "no");
        }
        return 0;
    }
    const lkc::Workload w = lkc::parse_workload(workload);
    const lkc::Device d = lkc::parse_device(device);
    const lkc::KernelInfo& chosen = lkc::select_kernel(w, d);
    std::printf("%s on %s: variants by estimated cost (lower is faster)\n",
                lkc::to_string(w).c_str(), lkc::device_name(d));
    std::vector<std::pair<double, const lkc::KernelInfo*>> ranked;
    for (const auto& k : lkc::all_kernels())
        if (k.device == d && lkc::kernel_supports(k, w))
            ranked.push_back({lkc::estimated_cost(k, w), &k});
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [cost, k] : ranked)
        std::printf("  %s %-36s %.4g\n", k == &chosen ? "*" : " ", k->name, cost);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"lkc: large-kernel convolution compiler and runtime"};
    app.require_subcommand(1);

    OpArgs op;
    CLI::App* op_cmd =
        app.add_subcommand("op", "run one kernel on tensors from a safetensors file");
    op_cmd
        ->add_option("workload", op.workload,
                     "workload string, e.g. dwconv2d:fwd:n1c128h56w56:k31x31:f32")
        ->required();
    op_cmd
        ->add_option("--inputs", op.inputs,
                     "input tensors (x, w, w0.., b, mask, dy, dyh.., slot_h, slot_v, ident, ah, "
                     "av, as; see docs/workloads.md)")
        ->required();
    op_cmd->add_option("--outputs", op.outputs, "output file (y | yh, yv, ys | dx | dw, dw0.., db)")
        ->required();
    op_cmd->add_option("--device", op.device, "cpu | opencl | cuda")->capture_default_str();
    op_cmd->add_option("--kernel", op.kernel, "force a kernel variant (see `lkc kernels`)");
    op_cmd->add_option("--repeat", op.repeat, "run the kernel K times and report the median")
        ->capture_default_str();
    op_cmd->add_flag("--verbose,-v", op.verbose, "say which kernel variant runs and why");
    op_cmd->add_option("--records", op.records,
                       "tuning records to choose kernels from (repeatable; default: the built-in "
                       "tables plus " +
                           lkc::default_user_records_path() + ")");
    op_cmd->add_flag("--no-records", op.no_records, "hand-default kernels only");
    op_cmd->add_flag("--all-taps", op.all_taps,
                     "dwconv2d_sparse bwd_weight: gradient at every kernel position (growth)");
    op_cmd->add_flag("--check", op.check,
                     "compare with the naive double-precision reference (exit 3 if outside bound)");

    std::string ex_workload, ex_out;
    uint32_t ex_seed = 1;
    double ex_density = 0.5;
    bool ex_optional = false;
    CLI::App* ex_cmd = app.add_subcommand(
        "example", "write valid random inputs (tensors, masks, slot tables) for a workload");
    ex_cmd->add_option("workload", ex_workload, "workload string")->required();
    ex_cmd->add_option("-o,--output", ex_out, "safetensors file to write")->required();
    ex_cmd->add_option("--seed", ex_seed, "random seed")->capture_default_str();
    ex_cmd->add_option("--density", ex_density, "dwconv2d_sparse: mask density per channel")
        ->capture_default_str();
    ex_cmd->add_flag("--optional", ex_optional,
                     "include optional inputs (b; shiftwise ah, av, as, b: fused inference)");

    std::string k_workload, k_device = "cpu";
    CLI::App* k_cmd = app.add_subcommand("kernels", "list the compiled kernel variants");
    k_cmd->add_option("--workload", k_workload, "rank the variants for this workload");
    k_cmd->add_option("--device", k_device, "cpu | opencl | cuda (with --workload)")
        ->capture_default_str();
    app.add_subcommand("version", "print the lkc version");
    lkc::cli::TuneArgs tune_args;
    lkc::cli::register_tune(app, tune_args);
    lkc::cli::RunArgs run_args;
    lkc::cli::register_run(app, run_args);
    lkc::cli::CompileArgs compile_args;
    lkc::cli::register_compile(app, compile_args);
    lkc::cli::TrainArgs train_args;
    lkc::cli::register_train(app, train_args);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        if (app.got_subcommand("op")) return run_op(op);
        if (app.got_subcommand("example"))
            return write_example(ex_workload, ex_out, ex_seed, ex_density, ex_optional);
        if (app.got_subcommand("kernels")) return list_kernels(k_workload, k_device);
        int rc = lkc::cli::run_tune(tune_args);
        if (rc >= 0) return rc;
        rc = lkc::cli::run_run(run_args);
        if (rc >= 0) return rc;
        rc = lkc::cli::run_compile(compile_args);
        if (rc >= 0) return rc;
        rc = lkc::cli::run_train(train_args);
        if (rc >= 0) return rc;
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
