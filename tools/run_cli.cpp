#include "tools/run_cli.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <set>

#include "graph/cost.h"
#include "graph/executor.h"
#include "graph/inspect.h"
#include "graph/models/models.h"
#include "graph/onnx_export.h"
#include "graph/passes/memory_plan.h"
#include "graph/passes/pipeline.h"
#include "graph/weights.h"
#include "runtime/image.h"
#include "runtime/safetensors.h"

namespace lkc::cli {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// The network input: an image (PNG / PPM, preprocessed as the official evaluation does) repeated
// `batch` times, or the tensor "x" of a safetensors file.
Tensor load_input(const RunArgs& a, int* batch) {
    if (ends_with(a.input, ".safetensors")) {
        SafetensorsFile f = read_safetensors(a.input);
        auto it = f.tensors.find("x");
        if (it == f.tensors.end()) {
            throw std::invalid_argument(a.input + ": no tensor 'x' (expected [N, 3, " +
                                        std::to_string(a.size) + ", " + std::to_string(a.size) +
                                        "] f32)");
        }
        const Tensor& x = it->second;
        if (x.dtype() != DType::F32 || x.ndim() != 4 || x.dim(1) != 3) {
            throw std::invalid_argument(a.input + ": tensor 'x' is " + dtype_name(x.dtype()) + " " +
                                        shape_to_string(x.shape()) + ", expected F32 [N, 3, H, W]");
        }
        if (a.batch && a.batch != x.dim(0)) {
            throw std::invalid_argument(a.input + ": 'x' has batch " + std::to_string(x.dim(0)) +
                                        " but --batch " + std::to_string(a.batch) + " was given");
        }
        *batch = int(x.dim(0));
        return x;
    }
    Preprocess p;
    p.size = a.size;
    const Tensor one = preprocess(read_image(a.input), p);
    *batch = a.batch ? a.batch : 1;
    Tensor x(DType::F32, {*batch, 3, a.size, a.size});
    for (int b = 0; b < *batch; ++b)
        std::copy(one.data<float>(), one.data<float>() + one.numel(),
                  x.data<float>() + size_t(b) * one.numel());
    return x;
}

void print_top5(const Tensor& logits) {
    const int n = int(logits.dim(0)), k = int(logits.dim(1));
    for (int b = 0; b < n; ++b) {
        const float* l = logits.data<float>() + size_t(b) * k;
        const float mx = *std::max_element(l, l + k);
        double z = 0;
        for (int i = 0; i < k; ++i) z += std::exp(double(l[i]) - mx);
        std::vector<int> idx(static_cast<size_t>(k), 0);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + std::min(5, k), idx.end(),
                          [&](int x, int y) { return l[x] > l[y]; });
        std::printf("image %d: top-5", b);
        for (int i = 0; i < std::min(5, k); ++i)
            std::printf("  class %d (p %.4f, logit %+.3f)", idx[size_t(i)],
                        std::exp(double(l[idx[size_t(i)]]) - mx) / z, l[idx[size_t(i)]]);
        std::printf("\n");
    }
}

int run_model(const RunArgs& a) {
    if (a.repeat < 1) throw std::invalid_argument("--repeat must be >= 1");
    int batch = 1;
    Tensor x = load_input(a, &batch);
    graph::ModelOptions mo;
    mo.batch = batch;
    mo.image_size = int(x.dim(2));
    mo.num_classes = a.classes;
    if (x.dim(2) != x.dim(3)) {
        throw std::invalid_argument("input is " + shape_to_string(x.shape()) +
                                    ": the models take square images");
    }
    graph::Graph g = graph::build_model(a.model, mo);
    if (!a.weights.empty()) {
        graph::load_weights(g, a.weights);
        std::printf("%s: weights from %s\n", g.model.c_str(), a.weights.c_str());
    } else {
        graph::init_weights(g, a.seed, graph::InitMode::Official);
        std::printf(
            "%s: no --weights given: parameters initialised from seed %llu (the classes "
            "below mean nothing)\n",
            g.model.c_str(), static_cast<unsigned long long>(a.seed));
    }
    graph::ExecOptions eo;
    eo.device = parse_device(a.device);
    eo.deploy = !a.train_form;
    eo.records = a.records;
    eo.no_records = a.no_records;
    eo.profile = a.profile;
    eo.check_finite = a.check_finite;
    const auto t0 = std::chrono::steady_clock::now();
    graph::Executor ex(g, eo);
    const auto t1 = std::chrono::steady_clock::now();
    if (a.verbose) {
        for (const std::string& s : ex.form_choices())
            std::fprintf(stderr, "lkc run: form %s\n", s.c_str());
        for (const std::string& s : ex.kernel_choices())
            std::fprintf(stderr, "lkc run: kernel %s\n", s.c_str());
    }
    std::map<std::string, Tensor> out = ex.run({{"x", x}});  // warm-up (first touch, packing)
    std::vector<double> ms;
    for (int r = 0; r < a.repeat; ++r) {
        const auto s = std::chrono::steady_clock::now();
        out = ex.run({{"x", x}});
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
                         .count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    const graph::NodeCost cost = graph::total_cost(ex.graph());
    const Tensor& logits = out.at("head");
    print_top5(logits);
    std::printf(
        "%s: %s form, batch %d, %dx%d, device %s: median %.2f ms over %d runs (%.1f img/s), "
        "%.1f GFLOP/s on %.2f GFLOP (nominal), compile %.0f ms, arena %.1f MiB\n",
        g.model.c_str(), a.train_form ? "train" : "deploy", batch, int(x.dim(2)), int(x.dim(3)),
        a.device.c_str(), med, a.repeat, batch * 1000.0 / med, cost.flops() / med * 1e-6,
        cost.flops() * 1e-9, std::chrono::duration<double, std::milli>(t1 - t0).count(),
        ex.plan().arena_bytes / 1048576.0);
    if (a.profile) {
        auto prof = ex.last_profile();
        std::sort(prof.begin(), prof.end(),
                  [](const auto& p, const auto& q) { return p.ms > q.ms; });
        double total = 0;
        for (const auto& p : prof) total += p.ms;
        std::printf("layers by time (last run, %.2f ms in %zu steps):\n", total, prof.size());
        for (size_t i = 0; i < std::min<size_t>(25, prof.size()); ++i)
            std::printf("  %8.3f ms %5.1f%%  %-16s %-44s %s\n", prof[i].ms,
                        100 * prof[i].ms / total, prof[i].op.c_str(), prof[i].name.c_str(),
                        prof[i].kernel.c_str());
    }
    if (!a.output.empty()) {
        write_safetensors(a.output, {{"logits", logits}},
                          {{"model", g.model}, {"form", a.train_form ? "train" : "deploy"}});
        std::printf("logits written to %s\n", a.output.c_str());
    }
    return 0;
}

int run_inspect(const RunArgs& a) {
    graph::ModelOptions mo;
    mo.batch = a.batch ? a.batch : 1;
    mo.image_size = a.size;
    mo.num_classes = a.classes;
    graph::Graph g = graph::build_model(a.model, mo);
    if (a.inspect_workloads) {
        // The distinct depth-wise workloads the executor runs (deploy form as `lkc run` builds
        // it): the list to tune before `lkc compile` (`lkc tune --shapes`).
        graph::init_weights(g, 0);
        graph::ExecOptions eo;
        eo.records = a.records;
        eo.no_records = a.no_records;
        graph::Executor ex(g, eo);
        std::set<std::string> seen;
        for (const graph::LayerKernel& lk : ex.layer_kernels())
            if (seen.insert(lk.workload).second) std::printf("%s\n", lk.workload.c_str());
        return 0;
    }
    graph::InspectOptions io;
    io.nodes = a.inspect_nodes;
    std::printf("%s", graph::inspect_text(g, io).c_str());
    // The deploy graph and its memory plan (forms by the default cost: useful FLOPs).
    const graph::Graph d = graph::passes::deploy(g);
    const graph::passes::MemoryPlan plan = graph::passes::plan_memory(d);
    std::printf(
        "deploy form: %zu nodes; memory plan: arena %.2f MiB, sequential minimum %.2f MiB "
        "(%.3fx), batch %d\n",
        d.nodes.size(), plan.arena_bytes / 1048576.0, plan.sequential_min_bytes / 1048576.0,
        plan.sequential_min_bytes ? double(plan.arena_bytes) / plan.sequential_min_bytes : 0.0,
        mo.batch);
    if (a.inspect_deploy) std::printf("%s", graph::inspect_text(d, io).c_str());
    return 0;
}

int run_export(const RunArgs& a) {
    if (a.export_onnx == a.export_deploy) {
        throw std::invalid_argument("lkc export: give exactly one of --onnx and --deploy");
    }
    graph::ModelOptions mo;
    mo.batch = a.batch ? a.batch : 1;
    mo.image_size = a.size;
    mo.num_classes = a.classes;
    mo.in_chans = a.in_chans;
    graph::Graph g = graph::build_model(a.model, mo);
    if (!a.weights.empty()) {
        graph::load_weights(g, a.weights);
    } else {
        graph::init_weights(g, a.seed, graph::InitMode::Official);
        std::fprintf(stderr, "lkc export: no --weights: parameters initialised from seed %llu\n",
                     static_cast<unsigned long long>(a.seed));
    }
    if (a.export_onnx) {
        // Forms priced by the taps ONNX Runtime computes (zeros included): strips, not sparse
        // crosses (docs/onnx.md).
        const graph::Graph d = graph::passes::deploy(g, graph::onnx_deploy_options());
        graph::OnnxExportInfo info;
        graph::export_onnx(d, a.export_out, graph::OnnxExportOptions{}, &info);
        std::printf("wrote %s: %s deploy form, opset 17, input x [N, %d, %d, %d], output logits\n",
                    a.export_out.c_str(), g.model.c_str(), a.in_chans, a.size, a.size);
        return 0;
    }
    // --deploy: the re-parameterised inference weights. --official-names: the family's official
    // deploy checkpoint keys (loads into build_model(..., deploy = true) / the official code).
    const std::string family = graph::model_info(a.model).family;
    graph::Graph d;
    if (a.export_official) {
        d = graph::passes::official_deploy_keys(
            graph::passes::deploy(g, graph::passes::official_deploy_options(family)), family);
    } else {
        d = graph::passes::deploy(g);
    }
    write_safetensors(
        a.export_out, graph::state_dict(d),
        {{"model", g.model}, {"form", a.export_official ? "official-deploy" : "lkc-deploy"}});
    std::printf("wrote %s: %s deploy-form weights (%zu tensors)%s\n", a.export_out.c_str(),
                g.model.c_str(), graph::state_dict(d).size(),
                a.export_official ? ", official deploy key names" : "");
    return 0;
}

}  // namespace

void register_run(CLI::App& app, RunArgs& a) {
    a.run = app.add_subcommand("run", "run a large-kernel network on an image (top-5 and latency)");
    a.run->add_option("--model", a.model, "model name (lkc inspect --help lists them)")->required();
    a.run->add_option("--weights", a.weights,
                      "safetensors with the official PyTorch state_dict names (train form)");
    a.run->add_option("--input", a.input, "IMG.png | IMG.ppm | X.safetensors (tensor x)")
        ->required();
    a.run->add_option("--batch", a.batch, "batch (an image is repeated)");
    a.run->add_option("--size", a.size, "image size after the evaluation transform")
        ->capture_default_str();
    a.run->add_option("--classes", a.classes, "classifier outputs")->capture_default_str();
    a.run->add_flag("--train-form", a.train_form,
                    "run the train form as given (no re-parameterisation)");
    a.run->add_flag("--deploy", a.deploy, "run the deploy form (default)");
    a.run->add_option("--device", a.device, "cpu | opencl | cuda")->capture_default_str();
    a.run->add_option("--output", a.output, "write the logits to this safetensors file");
    a.run->add_option("--repeat", a.repeat, "timed runs after one warm-up")->capture_default_str();
    a.run->add_option("--seed", a.seed, "initialisation seed without --weights")
        ->capture_default_str();
    a.run->add_option("--records", a.records, "tuning records for kernel choice (repeatable)");
    a.run->add_flag("--no-records", a.no_records, "hand-default kernels only");
    a.run->add_flag("--verbose,-v", a.verbose, "deploy forms and kernels chosen per layer");
    a.run->add_flag("--profile", a.profile, "per-layer times, largest first");
    a.run->add_flag("--check-finite", a.check_finite,
                    "stop at the first layer that writes a NaN or infinity (debugging; slow)");

    a.inspect =
        app.add_subcommand("inspect", "print a model's graph, FLOPs, parameters, memory plan");
    std::string names;
    for (const std::string& n : graph::model_names()) names += (names.empty() ? "" : ", ") + n;
    a.inspect->add_option("--model", a.model, "one of: " + names)->required();
    a.inspect->add_option("--size", a.size, "input size")->capture_default_str();
    a.inspect->add_option("--batch", a.batch, "batch");
    a.inspect->add_option("--classes", a.classes, "classifier outputs")->capture_default_str();
    a.inspect->add_flag("--deploy", a.inspect_deploy, "also print the deploy-form graph");
    a.inspect->add_flag(
        "--workloads", a.inspect_workloads,
        "only the distinct depth-wise workloads the executor runs (for lkc tune --shapes)");

    a.exp = app.add_subcommand("export",
                               "write a model's deploy form: ONNX, or re-parameterised weights");
    a.exp->add_option("--model", a.model, "model name")->required();
    a.exp->add_option("--weights", a.weights, "checkpoint (official train-form names)");
    a.exp->add_flag("--onnx", a.export_onnx, "ONNX model (opset 17) of the deployed graph");
    a.exp->add_flag("--deploy", a.export_deploy,
                    "safetensors of the re-parameterised inference weights");
    a.exp->add_flag(
        "--official-names", a.export_official,
        "with --deploy: the family's official deploy-form keys (RepLKNet, UniRepLKNet, ShiftWise)");
    a.exp->add_option("--size", a.size, "input size")->capture_default_str();
    a.exp->add_option("--classes", a.classes, "classifier outputs")->capture_default_str();
    a.exp
        ->add_option("--in-chans", a.in_chans,
                     "input channels (1 for `lkc train`'s Fashion-MNIST models)")
        ->capture_default_str();
    a.exp->add_option("--batch", a.batch, "batch (ONNX: the batch dimension is dynamic)");
    a.exp->add_option("--seed", a.seed, "initialisation seed without --weights")
        ->capture_default_str();
    a.exp->add_option("-o,--output", a.export_out, "output file")->required();
}

int run_run(const RunArgs& a) {
    if (a.run && a.run->parsed()) return run_model(a);
    if (a.inspect && a.inspect->parsed()) return run_inspect(a);
    if (a.exp && a.exp->parsed()) return run_export(a);
    return -1;
}

}  // namespace lkc::cli
