#include "autotune/measure.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autotune/process.h"
#include "runtime/op_inputs.h"
#include "runtime/op_runner.h"
#include "runtime/registry.h"
#include "runtime/schedule_selection.h"

namespace lkc::tune {

namespace {

constexpr const char* kResultTag = "LKC_RESULT ";

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nlohmann::json request_of(const Workload& w, Device d, const std::vector<Candidate>& cs,
                          const std::vector<std::string>& libs, const MeasureOptions& o,
                          bool interleaved) {
    nlohmann::json cand = nlohmann::json::array();
    for (size_t i = 0; i < cs.size(); ++i) {
        cand.push_back({{"name", cs[i].builtin ? std::string(cs[i].builtin->name) : cs[i].name},
                        {"generator", cs[i].generator},
                        {"params", cs[i].params},
                        {"library", libs[i]}});
    }
    return {{"workload", to_string(w)},   {"device", device_name(d)},   {"seed", o.seed},
            {"warmup", o.warmup},         {"min_reps", o.min_reps},     {"max_reps", o.max_reps},
            {"min_time_s", o.min_time_s}, {"interleaved", interleaved}, {"candidates", cand}};
}

std::vector<Measurement> run_worker(const nlohmann::json& req, size_t n, double timeout_s,
                                    int threads, const std::string& worker) {
    std::vector<Measurement> out(n);
    std::string result_line;
    const ProcessResult pr = run_process(
        {worker.empty() ? self_executable() : worker, "tune-worker"}, timeout_s, req.dump(),
        [&](const std::string& line) {
            if (line.rfind(kResultTag, 0) == 0) result_line = line.substr(std::strlen(kResultTag));
        },
        {"HL_NUM_THREADS=" + std::to_string(threads), "OMP_NUM_THREADS=" + std::to_string(threads),
         "LKC_RECORDS=none"});
    const double wall = pr.seconds;
    if (!result_line.empty()) {
        try {
            const nlohmann::json j = nlohmann::json::parse(result_line);
            const nlohmann::json& res = j.at("results");
            for (size_t i = 0; i < n; ++i) {
                out[i].wall_s = wall;
                if (i >= res.size()) {
                    out[i].status = "run_error";
                    out[i].error = "measurement worker: " + j.value("error", "no result");
                    continue;
                }
                const nlohmann::json& r = res[i];
                out[i].status = r.at("status").get<std::string>();
                out[i].times_ms = r.at("times_ms").get<std::vector<double>>();
                out[i].median_ms = r.at("median_ms").get<double>();
                out[i].error = r.value("error", "");
            }
            return out;
        } catch (const std::exception& e) {
            for (Measurement& m : out) {
                m.status = "run_error";
                m.error = std::string("unreadable worker result: ") + e.what();
            }
            return out;
        }
    }
    // No result: the worker crashed, hung or failed before reporting.
    std::string tail =
        pr.output.size() > 2000 ? "..." + pr.output.substr(pr.output.size() - 2000) : pr.output;
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    for (Measurement& m : out) {
        m.status = pr.timed_out ? "timeout" : "run_error";
        m.error = "measurement worker " + pr.describe() + (tail.empty() ? "" : ": " + tail);
        m.wall_s = wall;
    }
    return out;
}

// First difference between two output sets, or "" if bitwise equal.
std::string compare_outputs(const std::map<std::string, Tensor>& got,
                            const std::map<std::string, Tensor>& want) {
    for (const auto& [name, t] : want) {
        auto it = got.find(name);
        if (it == got.end()) return "no output '" + name + "'";
        const Tensor& g = it->second;
        if (g.shape() != t.shape()) {
            return "output '" + name + "' has shape " + shape_to_string(g.shape()) + ", expected " +
                   shape_to_string(t.shape());
        }
        const float* a = g.data<float>();
        const float* b = t.data<float>();
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < t.numel(); ++i)
            if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                if (first < 0) first = i;
                ++bad;
            }
        if (bad) {
            std::ostringstream os;
            os << "output '" << name << "' differs from the hand-default kernel at " << bad
               << " of " << t.numel() << " elements (first at " << first << ": " << a[first]
               << " vs " << b[first] << ")";
            return os.str();
        }
    }
    return "";
}

}  // namespace

Measurement measure_candidate(const Workload& w, Device d, const Candidate& c,
                              const std::string& library, const MeasureOptions& o) {
    return run_worker(request_of(w, d, {c}, {library}, o, false), 1, o.timeout_s, o.threads,
                      o.worker)[0];
}

std::vector<Measurement> measure_interleaved(const Workload& w, Device d,
                                             const std::vector<Candidate>& cs,
                                             const std::vector<std::string>& libraries,
                                             const MeasureOptions& o) {
    return run_worker(request_of(w, d, cs, libraries, o, true), cs.size(),
                      o.timeout_s * double(std::max<size_t>(1, cs.size())), o.threads, o.worker);
}

int tune_worker_main() {
    nlohmann::json out = {{"results", nlohmann::json::array()}};
    try {
        const std::string text((std::istreambuf_iterator<char>(std::cin)),
                               std::istreambuf_iterator<char>());
        const nlohmann::json req = nlohmann::json::parse(text);
        install_halide_error_handler();
        disable_schedules();  // the reference is the hand default
        const Workload w = parse_workload(req.at("workload").get<std::string>());
        const Device d = parse_device(req.at("device").get<std::string>());
        const int warmup = req.value("warmup", 2), min_reps = req.value("min_reps", 5);
        const int max_reps = req.value("max_reps", 200);
        const double min_time_ms = 1000.0 * req.value("min_time_s", 0.25);
        const bool interleaved = req.value("interleaved", false);
        const auto inputs = make_example_inputs(w, req.value("seed", 7u), /*small_int=*/true);

        std::unique_ptr<OpRunner> ref = make_runner(w, Device::Cpu);
        ref->set_inputs(inputs);
        ref->run();
        const auto want = ref->outputs();
        ref.reset();

        struct Slot {
            std::unique_ptr<OpRunner> r;
            nlohmann::json res;
            std::vector<double> t;
        };
        std::vector<Slot> slots;
        for (const nlohmann::json& c : req.at("candidates")) {
            Slot s;
            s.res = {{"name", c.at("name")},
                     {"status", "run_error"},
                     {"times_ms", nlohmann::json::array()},
                     {"median_ms", 0.0},
                     {"error", ""}};
            try {
                const std::string name = c.at("name").get<std::string>();
                const std::string lib = c.value("library", "");
                if (!lib.empty()) {
                    load_kernel_library(lib, name, c.at("generator").get<std::string>(), d,
                                        c.at("params").get<space::Params>());
                }
                s.r = make_runner(w, d, name);
                if (s.r->kernel_name() != name) {
                    throw std::runtime_error("the runner picked " + s.r->kernel_name() +
                                             " instead of " + name);
                }
                s.r->set_inputs(inputs);
                s.r->run();
                s.r->sync();
                const std::string diff = compare_outputs(s.r->outputs(), want);
                if (!diff.empty()) {
                    s.res["status"] = "wrong_result";
                    s.res["error"] = diff;
                    s.r.reset();
                } else {
                    for (int i = 0; i < warmup; ++i) {
                        s.r->run();
                        s.r->sync();
                    }
                    s.res["status"] = "ok";
                }
            } catch (const std::exception& e) {
                s.res["status"] = "run_error";
                s.res["error"] = e.what();
                s.r.reset();
            }
            slots.push_back(std::move(s));
        }
        auto time_once = [](OpRunner& r) {
            const double t0 = now_ms();
            r.run();
            r.sync();
            return now_ms() - t0;
        };
        auto done = [&](const Slot& s) {
            double total = 0;
            for (double t : s.t) total += t;
            return int(s.t.size()) >= max_reps ||
                   (int(s.t.size()) >= min_reps && total >= min_time_ms);
        };
        if (interleaved) {
            for (bool more = true; more;) {
                more = false;
                for (Slot& s : slots) {
                    if (!s.r || done(s)) continue;
                    s.t.push_back(time_once(*s.r));
                    more = true;
                }
            }
        } else {
            for (Slot& s : slots)
                while (s.r && !done(s)) s.t.push_back(time_once(*s.r));
        }
        for (Slot& s : slots) {
            if (s.r) {
                s.res["times_ms"] = s.t;
                s.res["median_ms"] = median(s.t);
            }
            out["results"].push_back(s.res);
        }
    } catch (const std::exception& e) {
        std::cout
            << kResultTag
            << nlohmann::json{{"results", nlohmann::json::array()}, {"error", e.what()}}.dump()
            << std::endl;
        std::cerr << "lkc tune-worker: " << e.what() << "\n";
        return 1;
    }
    std::cout << kResultTag << out.dump() << std::endl;
    return 0;
}

}  // namespace lkc::tune
