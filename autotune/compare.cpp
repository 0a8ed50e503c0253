#include "autotune/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <ostream>

#include "autotune/compile.h"
#include "runtime/device_info.h"
#include "runtime/tuning_records.h"

namespace lkc::tune {

namespace {

std::vector<std::string> default_autoschedulers(Device d) {
    if (d == Device::Cpu) return {"Adams2019", "Mullapudi2016", "Li2018"};
    return {"Li2018", "Anderson2021", "Mullapudi2016"};
}

std::string first_line(const std::string& s) {
    const std::string t = s.substr(0, s.find('\n'));
    return t.size() > 300 ? t.substr(0, 300) + "..." : t;
}

double geomean(const std::vector<double>& v) {
    if (v.empty()) return std::nan("");
    double s = 0;
    for (double x : v) s += std::log(x);
    return std::exp(s / double(v.size()));
}

}  // namespace

std::vector<CompareRow> compare(const CompareOptions& o, std::ostream& progress) {
    DeviceInfo dev = o.device == Device::Cpu      ? cpu_device_info()
                     : o.device == Device::OpenCL ? opencl_device_info()
                                                  : cuda_device_info();
    std::vector<TuningRecord> recs;
    if (!o.records.empty()) {
        RecordsLoad l = load_records(o.records);
        for (const std::string& p : l.problems)
            progress << "lkc tune compare: skipped " << p << "\n";
        recs = l.records;
    }
    std::map<std::string, TuningRecord> best, best_vs;
    for (const TuningRecord& r : best_records(recs))
        if (r.device_id == dev.id) best[r.workload] = r;
    if (!o.vs.empty()) {
        for (const TuningRecord& r : best_records(load_records(o.vs).records))
            if (r.device_id == dev.id) best_vs[r.workload] = r;
    }
    std::map<std::string, double> tuning_s;
    for (const TuningRecord& r : recs) {
        if (r.device_id != dev.id) continue;
        double t = r.compile_s;
        for (double x : r.times_ms) t += x / 1000.0;
        tuning_s[r.workload] += t;
    }
    std::vector<std::string> autos =
        o.autoschedulers.empty() ? default_autoschedulers(o.device) : o.autoschedulers;
    if (autos.size() == 1 && autos[0] == "none") autos.clear();

    std::vector<CompareRow> rows;
    for (const Workload& w : o.workloads) {
        const std::string wl = to_string(w);
        progress << "lkc tune compare: " << wl << "\n" << std::flush;
        CompareRow row;
        row.workload = w;
        row.tuning_s = tuning_s.count(wl) ? tuning_s[wl] : 0;
        std::vector<Candidate> cs;
        std::vector<std::string> libs, what;
        cs.push_back(default_candidate(w, o.device));
        libs.push_back("");
        what.push_back("default");
        auto add_recorded = [&](const std::map<std::string, TuningRecord>& from, const char* tag,
                                std::string* key) {
            auto b = from.find(wl);
            if (b == from.end()) return;
            *key = schedule_key(b->second.schedule);
            try {
                Candidate t = make_candidate(w, o.device, b->second.schedule.generator,
                                             b->second.schedule.params, o.measure.threads, false);
                const CompileResult cr = compile_candidate(t, o.device, dev.id);
                if (cr.ok) {
                    cs.push_back(t);
                    libs.push_back(cr.library);
                    what.push_back(tag);
                } else {
                    row.errors.push_back({tag, first_line(cr.error)});
                }
            } catch (const std::exception& e) {
                row.errors.push_back({tag, e.what()});
            }
        };
        add_recorded(best, "tuned", &row.tuned_schedule);
        add_recorded(best_vs, "vs", &row.vs_schedule);
        if (w.op == Op::DwConv2d) {
            for (const std::string& a : autos) {
                Candidate c;
                try {
                    const CompileResult cr = compile_autoscheduled(w, o.device, dev.id, a, &c);
                    if (!cr.ok) {
                        row.errors.push_back({a, first_line(cr.error)});
                        row.autosched_ms.push_back({a, 0});
                        continue;
                    }
                    cs.push_back(c);
                    libs.push_back(cr.library);
                    what.push_back(a);
                } catch (const std::exception& e) {
                    row.errors.push_back({a, e.what()});
                    row.autosched_ms.push_back({a, 0});
                }
            }
        }
        const std::vector<Measurement> ms = measure_interleaved(w, o.device, cs, libs, o.measure);
        for (size_t i = 0; i < cs.size(); ++i) {
            const double t = ms[i].status == "ok" ? ms[i].median_ms : 0;
            if (ms[i].status != "ok")
                row.errors.push_back({what[i], ms[i].status + ": " + first_line(ms[i].error)});
            if (what[i] == "default") {
                row.default_ms = t;
            } else if (what[i] == "tuned") {
                row.tuned_ms = t;
            } else if (what[i] == "vs") {
                row.vs_ms = t;
            } else {
                row.autosched_ms.push_back({what[i], t});
            }
        }
        for (const auto& [k, e] : row.errors) progress << "  " << k << ": " << e << "\n";
        rows.push_back(row);
    }
    if (!o.csv.empty()) write_compare_csv(rows, o.csv);
    return rows;
}

void print_compare(const std::vector<CompareRow>& rows, std::ostream& out) {
    std::vector<std::string> autos;
    for (const CompareRow& r : rows)
        for (const auto& [a, t] : r.autosched_ms)
            if (std::find(autos.begin(), autos.end(), a) == autos.end()) autos.push_back(a);
    char buf[256];
    const bool vs =
        std::any_of(rows.begin(), rows.end(), [](const CompareRow& r) { return r.vs_ms > 0; });
    std::snprintf(buf, sizeof(buf), "%-54s %9s %9s %8s", "workload", "default", "tuned", "def/tun");
    out << buf;
    if (vs) out << "        vs   vs/tun";
    for (const std::string& a : autos) {
        std::snprintf(buf, sizeof(buf), " %13s", (a + "/tun").c_str());
        out << buf;
    }
    out << " tuning s\n";
    std::vector<double> sp;
    std::map<std::string, std::vector<double>> as_sp;
    for (const CompareRow& r : rows) {
        const double tuned = r.tuned_ms > 0 ? r.tuned_ms : r.default_ms;
        std::snprintf(buf, sizeof(buf), "%-54s %9.4f %9.4f %8.3f", to_string(r.workload).c_str(),
                      r.default_ms, r.tuned_ms, r.tuned_ms > 0 ? r.default_ms / r.tuned_ms : 0.0);
        out << buf;
        if (r.tuned_ms > 0 && r.default_ms > 0) sp.push_back(r.default_ms / r.tuned_ms);
        if (vs) {
            std::snprintf(buf, sizeof(buf), " %9.4f %8.3f", r.vs_ms,
                          r.vs_ms > 0 && r.tuned_ms > 0 ? r.vs_ms / r.tuned_ms : 0.0);
            out << buf;
            if (r.vs_ms > 0 && r.tuned_ms > 0) as_sp["vs"].push_back(r.vs_ms / r.tuned_ms);
        }
        for (const std::string& a : autos) {
            double t = 0;
            for (const auto& [n, v] : r.autosched_ms)
                if (n == a) t = v;
            if (t > 0 && tuned > 0) as_sp[a].push_back(t / tuned);
            std::snprintf(
                buf, sizeof(buf), " %13s",
                t > 0 && tuned > 0 ? std::to_string(t / tuned).substr(0, 6).c_str() : "-");
            out << buf;
        }
        std::snprintf(buf, sizeof(buf), " %8.0f\n", r.tuning_s);
        out << buf;
    }
    std::snprintf(buf, sizeof(buf), "geomean default/tuned %.3f over %zu workloads\n", geomean(sp),
                  sp.size());
    out << buf;
    for (const auto& [a, v] : as_sp) {
        std::snprintf(buf, sizeof(buf), "geomean %s/tuned %.3f over %zu workloads\n", a.c_str(),
                      geomean(v), v.size());
        out << buf;
    }
}

void write_compare_csv(const std::vector<CompareRow>& rows, const std::string& path) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        if (!f) throw std::runtime_error("cannot write " + tmp);
        f << "workload,impl,median_ms,ratio_vs_tuned,tuned_schedule,tuning_s,error\n";
        for (const CompareRow& r : rows) {
            const double tuned = r.tuned_ms > 0 ? r.tuned_ms : r.default_ms;
            auto row = [&](const std::string& impl, double ms) {
                std::string err;
                for (const auto& [k, e] : r.errors)
                    if (k == impl) err = e;
                for (char& ch : err)
                    if (ch == ',' || ch == '"' || ch == '\n') ch = ';';
                std::string sched = r.tuned_schedule;
                for (char& ch : sched)
                    if (ch == ',') ch = ';';
                f << to_string(r.workload) << "," << impl << ","
                  << (ms > 0 ? std::to_string(ms) : "") << ","
                  << (ms > 0 && tuned > 0 ? std::to_string(ms / tuned) : "") << "," << sched << ","
                  << r.tuning_s << "," << err << "\n";
            };
            row("default", r.default_ms);
            row("tuned", r.tuned_ms);
            if (r.vs_ms > 0) row("vs", r.vs_ms);
            for (const auto& [a, t] : r.autosched_ms) row(a, t);
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("cannot write " + path);
}

}  // namespace lkc::tune
