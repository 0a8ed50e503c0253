#include "autotune/search.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <ostream>
#include <random>
#include <set>

#include "autotune/compile.h"
#include "runtime/device_info.h"
#include "runtime/schedule_selection.h"
#include "runtime/tuning_records.h"

namespace lkc::tune {

namespace {

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// FNV-1a: a stable (not in-process) hash of the workload for the RNG seed.
uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
    return h;
}

Schedule schedule_of(const Candidate& c) { return Schedule{c.generator, c.params}; }

struct Outcome {
    std::string status;
    double median_ms = 0;  // as measured
    // What the search compares: the median scaled by the hand default's time measured in the same
    // worker (paired), times the default's own median; robust to the VM's slow phases.
    double score_ms = 0;
    std::vector<double> times_ms;
    double compile_s = 0;
    double paired_default_ms = 0;  // the default's median in the same worker (0: not paired)
    int trial = 0;
};

// Whether b is one step from a along one parameter's value list (same generator).
bool is_neighbour(const Candidate& a, const Candidate& b, space::Family f) {
    if (a.generator != b.generator) return false;
    const space::GeneratorSpace& g = space::generator_space(a.generator, f);
    int diffs = 0;
    for (const space::ParamSpec& s : g.params) {
        const std::string& va = a.params.at(s.name);
        const std::string& vb = b.params.at(s.name);
        if (va == vb) continue;
        const auto ia = std::find(s.values.begin(), s.values.end(), va);
        const auto ib = std::find(s.values.begin(), s.values.end(), vb);
        if (ia == s.values.end() || ib == s.values.end() || std::abs(ia - ib) != 1) return false;
        if (++diffs > 1) return false;
    }
    return diffs == 1;
}

class Progress {
  public:
    Progress(std::ostream& os, bool on) : os_(os), on_(on), tty_(isatty(2)) {}
    void update(const std::string& line, bool final = false) {
        if (!on_) return;
        if (tty_) {
            os_ << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
        } else {
            os_ << line << "\n" << std::flush;
        }
    }

  private:
    std::ostream& os_;
    bool on_, tty_;
};

std::string fmt_ms(double ms) {
    char b[32];
    std::snprintf(b, sizeof(b), ms < 1 ? "%.4f" : "%.3f", ms);
    return b;
}

TuneResult tune_one(const Workload& w, const TuneOptions& o, const DeviceInfo& dev, Progress& bar) {
    const Device d = o.device;
    const space::Family fam = family_of(d);
    const double t_start = now_s();
    TuneResult res;
    res.workload = w;
    res.device_id = dev.id;
    const std::string wl = to_string(w);

    std::vector<Candidate> all = enumerate_candidates(w, d, o.measure.threads);
    res.hand_default = default_candidate(w, d);
    if (std::none_of(all.begin(), all.end(),
                     [&](const Candidate& c) { return c.name == res.hand_default.name; })) {
        all.push_back(res.hand_default);
    }
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < all.size(); ++i) index[all[i].name] = i;

    // Earlier results for this workload / device / lkc version (resume).
    std::map<std::string, TuningRecord> prior;
    if (!o.records.empty()) {
        for (const TuningRecord& r : load_records(o.records).records) {
            if (r.workload != wl || r.device_id != dev.id || r.lkc_version != lkc_version())
                continue;
            const std::string st = r.tuner.value("strategy", "");
            if (st == "final" || st == "chosen") continue;  // decisions, not trials
            prior[schedule_key(r.schedule)] = r;
        }
    }

    std::mt19937_64 rng(o.seed ^ fnv1a(wl) ^ fnv1a(o.strategy));
    std::map<std::string, Outcome> done;  // by candidate name
    double charged = 0;
    int trial = 0;
    double def_ref_ms = 0;  // the hand default's median (trial 0)
    std::string def_lib;    // its library ("" when compiled in)
    const double hard_stop = t_start + 2 * o.budget_s + 120;

    auto record = [&](const Candidate& c, const Outcome& out, const std::string& strategy,
                      const std::string& error) {
        if (o.records.empty()) return;
        TuningRecord r;
        r.lkc_version = lkc_version();
        r.timestamp = utc_timestamp_now();
        r.workload = wl;
        r.device = device_json(dev);
        r.device_id = dev.id;
        r.schedule = schedule_of(c);
        r.kernel = c.builtin ? c.builtin->name : c.name;
        r.status = out.status;
        r.error = error;
        r.median_ms = out.status == "ok" ? out.median_ms : std::nan("");
        r.times_ms = out.times_ms;
        r.compile_s = out.compile_s;
        r.tuner = {{"seed", o.seed},
                   {"trial", out.trial},
                   {"strategy", strategy},
                   {"budget_s", o.budget_s},
                   {"search", o.strategy}};
        if (out.paired_default_ms > 0) r.tuner["paired_default_ms"] = out.paired_default_ms;
        append_record(o.records, r);
    };

    auto best_ok = [&]() -> const Candidate* {
        const Candidate* b = nullptr;
        double bm = 0;
        for (const auto& [name, out] : done) {
            if (out.status != "ok") continue;
            if (!b || out.score_ms < bm) {
                b = &all[index.at(name)];
                bm = out.score_ms;
            }
        }
        return b;
    };

    auto run_trial = [&](const Candidate& c, const std::string& strategy) {
        Outcome out;
        out.trial = trial++;
        std::string error;
        const std::string key = schedule_key(schedule_of(c));
        auto p = prior.find(key);
        bool reused = false;
        if (p != prior.end()) {
            out.status = p->second.status;
            out.median_ms = out.status == "ok" ? p->second.median_ms : 0;
            out.times_ms = p->second.times_ms;
            out.compile_s = p->second.compile_s;
            out.paired_default_ms = p->second.tuner.value("paired_default_ms", 0.0);
            out.score_ms = out.paired_default_ms > 0 && def_ref_ms > 0
                               ? out.median_ms / out.paired_default_ms * def_ref_ms
                               : out.median_ms;
            double t = 0;
            for (double x : out.times_ms) t += x;
            charged += out.compile_s + t / 1000.0 + 0.3;
            reused = true;
            ++res.reused;
        } else {
            const CompileResult cr = compile_candidate(c, d, dev.id);
            out.compile_s = cr.compile_s;
            charged += cr.compile_s;
            if (!cr.cached) ++res.compiled;
            if (!cr.ok) {
                out.status = "compile_error";
                error = cr.error;
            } else if (def_ref_ms <= 0 || c.name == res.hand_default.name) {
                const Measurement m = measure_candidate(w, d, c, cr.library, o.measure);
                charged += m.wall_s;
                out.status = m.status;
                out.median_ms = out.score_ms = m.median_ms;
                out.times_ms = m.times_ms;
                error = m.error;
            } else {
                // Paired with the hand default in one worker, runs interleaved.
                const std::vector<Measurement> ms = measure_interleaved(
                    w, d, {res.hand_default, c}, {def_lib, cr.library}, o.measure);
                charged += ms[1].wall_s;
                out.status = ms[1].status;
                out.median_ms = ms[1].median_ms;
                out.times_ms = ms[1].times_ms;
                error = ms[1].error;
                if (ms[0].status == "ok" && ms[0].median_ms > 0 && out.status == "ok") {
                    out.paired_default_ms = ms[0].median_ms;
                    out.score_ms = out.median_ms / ms[0].median_ms * def_ref_ms;
                } else {
                    out.score_ms = out.median_ms;
                }
            }
            record(c, out, strategy, error);
        }
        if (out.status != "ok") ++res.failures;
        if (c.name == res.hand_default.name && out.status == "ok") {
            def_ref_ms = out.median_ms;
            if (!reused) def_lib = compile_candidate(c, d, dev.id).library;
        }
        done[c.name] = out;
        ++res.trials;
        const Candidate* b = best_ok();
        const double best = b ? done[b->name].score_ms : 0;
        res.log.push_back(
            {out.trial, c.name, strategy, out.status, out.median_ms, best, charged, reused});
        const auto def = done.find(res.hand_default.name);
        std::string line = "lkc tune " + wl + ": trial " + std::to_string(trial) + ", best " +
                           (b ? fmt_ms(best) + " ms" : std::string("-"));
        if (b && def != done.end() && def->second.status == "ok") {
            char sp[32];
            std::snprintf(sp, sizeof(sp), " (%.2fx vs default)", def->second.score_ms / best);
            line += sp;
        }
        char el[64];
        std::snprintf(el, sizeof(el), ", %.0f/%.0f s", charged, o.budget_s);
        line += el;
        if (out.status != "ok") line += " [" + c.name + ": " + out.status + "]";
        bar.update(line);
    };

    auto budget_left = [&] {
        if (o.max_trials > 0 && trial >= o.max_trials) return false;
        if (now_s() > hard_stop) return false;
        return charged < o.budget_s;
    };

    // Per-generator calibration: median of measured / model over its ok candidates.
    auto calibrated = [&](const Candidate& c) {
        std::vector<double> ratios;
        for (const auto& [name, out] : done) {
            const Candidate& m = all[index.at(name)];
            if (out.status == "ok" && m.generator == c.generator && m.model_cost > 0)
                ratios.push_back(out.score_ms / m.model_cost);
        }
        if (ratios.empty()) {
            for (const auto& [name, out] : done) {
                const Candidate& m = all[index.at(name)];
                if (out.status == "ok" && m.model_cost > 0)
                    ratios.push_back(out.score_ms / m.model_cost);
            }
        }
        if (ratios.empty()) return c.model_cost;
        std::sort(ratios.begin(), ratios.end());
        return c.model_cost * ratios[ratios.size() / 2];
    };

    // 1. The hand default.
    run_trial(res.hand_default, "default");
    // 2. Compiled-in variants (model strategy), lowest model cost first, at most 6.
    if (o.strategy == "model") {
        int n = 0;
        for (const Candidate& c : all) {
            if (!budget_left() || n >= 6) break;
            if (!c.builtin || done.count(c.name)) continue;
            run_trial(c, "builtin");
            ++n;
        }
    }
    // 3. Adaptive (model) or uniform (random) picks.
    while (budget_left()) {
        std::vector<size_t> open;
        for (size_t i = 0; i < all.size(); ++i)
            if (!done.count(all[i].name)) open.push_back(i);
        if (open.empty()) break;
        size_t pick = open[0];
        std::string how;
        if (o.strategy == "random") {
            pick = open[std::uniform_int_distribution<size_t>(0, open.size() - 1)(rng)];
            how = "random";
        } else {
            std::vector<std::pair<double, std::string>> top;
            for (const auto& [name, out] : done)
                if (out.status == "ok") top.push_back({out.score_ms, name});
            std::sort(top.begin(), top.end());
            if (top.size() > 3) top.resize(3);
            std::vector<size_t> nb;
            for (size_t i : open)
                for (const auto& t : top)
                    if (is_neighbour(all[index.at(t.second)], all[i], fam) ||
                        (all[i].generator != all[index.at(t.second)].generator &&
                         w.op == Op::DwConv2dMulti)) {
                        nb.push_back(i);
                        break;
                    }
            const bool exploit =
                !nb.empty() && std::uniform_real_distribution<double>(0, 1)(rng) < 0.75;
            std::vector<std::pair<double, size_t>> ranked;
            for (size_t i : (exploit ? nb : open)) ranked.push_back({calibrated(all[i]), i});
            std::stable_sort(ranked.begin(), ranked.end());
            if (exploit) {
                pick = ranked[0].second;
                how = "model";
            } else {
                const size_t k = std::min<size_t>(8, ranked.size());
                pick = ranked[std::uniform_int_distribution<size_t>(0, k - 1)(rng)].second;
                how = "explore";
            }
        }
        run_trial(all[pick], how);
    }

    // 4. Final interleaved comparison of the best three (within 10 %), and the default.
    std::vector<std::pair<double, std::string>> top;
    for (const auto& [name, out] : done)
        if (out.status == "ok") top.push_back({out.score_ms, name});
    std::sort(top.begin(), top.end());
    if (top.empty()) {
        res.best = res.hand_default;
        res.best_ms = 0;
    } else {
        std::vector<std::string> finalists;
        for (const auto& t : top)
            if (finalists.size() < 3 && t.first <= top[0].first * 1.10)
                finalists.push_back(t.second);
        const bool def_ok = done[res.hand_default.name].status == "ok";
        if (def_ok &&
            std::find(finalists.begin(), finalists.end(), res.hand_default.name) == finalists.end())
            finalists.push_back(res.hand_default.name);
        std::map<std::string, double> final_ms;
        double spread = 0;  // largest relative IQR of the final runs
        if (o.final_check && finalists.size() > 1) {
            std::vector<Candidate> cs;
            std::vector<std::string> libs;
            bool all_built = true;
            for (const std::string& n : finalists) {
                cs.push_back(all[index.at(n)]);
                const CompileResult cr = compile_candidate(cs.back(), d, dev.id);
                all_built = all_built && cr.ok;
                libs.push_back(cr.library);
            }
            if (all_built) {
                const std::vector<Measurement> ms = measure_interleaved(w, d, cs, libs, o.measure);
                for (size_t i = 0; i < cs.size(); ++i) {
                    if (ms[i].status != "ok") continue;
                    final_ms[cs[i].name] = ms[i].median_ms;
                    std::vector<double> t = ms[i].times_ms;
                    std::sort(t.begin(), t.end());
                    if (t.size() >= 4 && ms[i].median_ms > 0)
                        spread = std::max(
                            spread, (t[t.size() * 3 / 4] - t[t.size() / 4]) / ms[i].median_ms);
                    Outcome out;
                    out.status = "ok";
                    out.median_ms = ms[i].median_ms;
                    out.times_ms = ms[i].times_ms;
                    out.trial = done[cs[i].name].trial;
                    record(cs[i], out, "final", "");
                }
            }
        }
        auto time_of = [&](const std::string& n) {
            auto it = final_ms.find(n);
            return it != final_ms.end() ? it->second : done[n].score_ms;
        };
        // The fastest wins; within the tie margin of it the earliest trial, and the hand default
        // stays the choice unless something is faster by more than the margin. The margin is 2 %,
        // or the final runs' own spread (relative IQR) when the machine is noisier than that, so
        // that two runs on the same machine pick the same schedule instead of the noise's.
        const double margin = 1.0 + std::max(0.02, spread);
        double fastest = time_of(finalists[0]);
        for (const std::string& n : finalists) fastest = std::min(fastest, time_of(n));
        std::string win;
        for (const std::string& n : finalists)
            if (time_of(n) <= fastest * margin && (win.empty() || done[n].trial < done[win].trial))
                win = n;
        if (def_ok && time_of(res.hand_default.name) <= fastest * margin)
            win = res.hand_default.name;
        res.best = all[index.at(win)];
        res.best_ms = time_of(win);
        Outcome chosen = done[win];
        chosen.median_ms = res.best_ms;
        record(res.best, chosen, "chosen", "");
        res.default_ms = def_ok ? time_of(res.hand_default.name) : 0;
    }
    res.charged_s = charged;
    res.wall_s = now_s() - t_start;
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "lkc tune %s: %d trials (%d failed, %d from records), best %s ms", wl.c_str(),
                  res.trials, res.failures, res.reused, fmt_ms(res.best_ms).c_str());
    bar.update(buf, true);
    return res;
}

}  // namespace

std::vector<TuneResult> tune(const TuneOptions& o, std::ostream& progress) {
    if (o.strategy != "model" && o.strategy != "random") {
        throw std::invalid_argument("unknown search strategy '" + o.strategy +
                                    "' (expected model or random)");
    }
    DeviceInfo dev;
    try {
        switch (o.device) {
            case Device::Cpu:
                dev = cpu_device_info();
                break;
            case Device::OpenCL:
                dev = opencl_device_info();
                break;
            case Device::Cuda:
                dev = cuda_device_info();
                break;
        }
    } catch (const DeviceUnavailable& e) {
        throw DeviceUnavailable(std::string("no ") +
                                (o.device == Device::Cuda ? "CUDA" : "OpenCL") +
                                " device to tune on: " + e.what());
    }
    Progress bar(progress, o.progress);
    std::vector<TuneResult> out;
    for (const Workload& w : o.workloads) out.push_back(tune_one(w, o, dev, bar));
    return out;
}

void print_summary(const std::vector<TuneResult>& results, std::ostream& out) {
    char line[512];
    std::snprintf(line, sizeof(line), "%-62s %10s %10s %8s %6s %6s  %s\n", "workload", "default ms",
                  "tuned ms", "speed-up", "trials", "failed", "schedule");
    out << line;
    for (const TuneResult& r : results) {
        const double sp = r.best_ms > 0 && r.default_ms > 0 ? r.default_ms / r.best_ms : 0;
        std::snprintf(line, sizeof(line), "%-62s %10s %10s %7.2fx %6d %6d  %s\n",
                      to_string(r.workload).c_str(),
                      r.default_ms > 0 ? fmt_ms(r.default_ms).c_str() : "-",
                      r.best_ms > 0 ? fmt_ms(r.best_ms).c_str() : "-", sp, r.trials, r.failures,
                      schedule_key(schedule_of(r.best)).c_str());
        out << line;
    }
}

}  // namespace lkc::tune
