#include "tools/tune_cli.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>

#include "autotune/compare.h"
#include "autotune/measure.h"
#include "autotune/search.h"
#include "runtime/device_info.h"
#include "runtime/schedule_selection.h"
#include "runtime/tuning_records.h"

namespace lkc::cli {

namespace {

std::vector<Workload> read_shapes(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open shapes file '" + path + "'");
    std::vector<Workload> v;
    std::string line;
    int no = 0;
    while (std::getline(f, line)) {
        ++no;
        const size_t hash = line.find('#');
        if (hash != std::string::npos) line.erase(hash);
        const size_t b = line.find_first_not_of(" \t\r");
        if (b == std::string::npos) continue;
        line = line.substr(b, line.find_last_not_of(" \t\r") - b + 1);
        try {
            v.push_back(parse_workload(line));
        } catch (const std::exception& e) {
            throw std::runtime_error(path + ":" + std::to_string(no) + ": " + e.what());
        }
    }
    return v;
}

std::string records_or_default(const std::string& r) {
    return r.empty() ? default_user_records_path() : r;
}

void report_problems(const RecordsLoad& l) {
    for (const std::string& p : l.problems)
        std::fprintf(stderr, "lkc tune: skipped %s\n", p.c_str());
}

int run_best(const TuneArgs& a) {
    const std::string path = records_or_default(a.records);
    const RecordsLoad l = load_records(path);
    report_problems(l);
    std::vector<TuningRecord> recs = l.records;
    if (!a.best_workload.empty()) {
        const std::string wl = to_string(parse_workload(a.best_workload));
        std::vector<TuningRecord> keep;
        for (const TuningRecord& r : recs)
            if (r.workload == wl) keep.push_back(r);
        recs.swap(keep);
    }
    const auto best = best_records(recs);
    std::printf("%s: %zu records, %zu best (workload, device)\n", path.c_str(), l.records.size(),
                best.size());
    std::printf("%-30s %-62s %10s  %s\n", "device", "workload", "median ms", "schedule");
    for (const TuningRecord& r : best)
        std::printf("%-30s %-62s %10.4f  %s\n", r.device_id.c_str(), r.workload.c_str(),
                    r.median_ms, schedule_key(r.schedule).c_str());
    return 0;
}

int run_distill(const TuneArgs& a) {
    const std::string path = records_or_default(a.records);
    const RecordsLoad l = load_records(path);
    report_problems(l);
    std::vector<std::string> ids = record_device_ids(l.records);
    if (!a.device_id.empty()) ids = {a.device_id};
    if (ids.empty()) throw std::runtime_error(path + ": no records to distill");
    if (!a.out_file.empty() && ids.size() > 1) {
        throw std::runtime_error(path + " holds records of " + std::to_string(ids.size()) +
                                 " devices: use --out-dir, or --device-id with -o");
    }
    for (const std::string& id : ids) {
        const nlohmann::json table = distill(l.records, id);
        const std::string out = !a.out_file.empty()
                                    ? a.out_file
                                    : distilled_table_path(a.out_dir.empty() ? "." : a.out_dir, id);
        write_distilled(out, table);
        std::printf("wrote %s: %zu workloads for %s\n", out.c_str(), table["entries"].size(),
                    id.c_str());
    }
    return 0;
}

int run_compare(const TuneArgs& a) {
    tune::CompareOptions o;
    for (const std::string& s : a.cmp_workloads) o.workloads.push_back(parse_workload(s));
    if (!a.cmp_shapes.empty())
        for (const Workload& w : read_shapes(a.cmp_shapes)) o.workloads.push_back(w);
    if (o.workloads.empty())
        throw std::runtime_error("lkc tune compare: give workloads or --shapes");
    o.device = parse_device(a.device);
    o.records = records_or_default(a.records);
    o.csv = a.csv;
    o.vs = a.vs;
    std::string item;
    for (char ch : a.autoschedulers + ",") {
        if (ch == ',') {
            if (!item.empty()) o.autoschedulers.push_back(item);
            item.clear();
        } else {
            item += ch;
        }
    }
    const auto rows = tune::compare(o, std::cerr);
    tune::print_compare(rows, std::cout);
    if (!o.csv.empty()) std::printf("wrote %s\n", o.csv.c_str());
    return 0;
}

int run_tune_workloads(const TuneArgs& a) {
    tune::TuneOptions o;
    for (const std::string& s : a.workloads) o.workloads.push_back(parse_workload(s));
    if (!a.shapes.empty())
        for (const Workload& w : read_shapes(a.shapes)) o.workloads.push_back(w);
    if (o.workloads.empty()) {
        throw std::runtime_error(
            "lkc tune: give workloads (or --shapes FILE); see lkc tune --help");
    }
    o.device = parse_device(a.device);
    o.budget_s = a.budget;
    o.seed = a.seed;
    o.strategy = a.strategy;
    o.max_trials = a.max_trials;
    o.final_check = !a.no_final;
    o.progress = !a.quiet;
    o.records = records_or_default(a.records);
    if (!a.quiet) {
        std::fprintf(stderr, "lkc tune: %zu workload(s) on %s, budget %.0f s each, records %s\n",
                     o.workloads.size(), a.device.c_str(), o.budget_s, o.records.c_str());
    }
    const auto results = tune::tune(o, std::cerr);
    tune::print_summary(results, std::cout);
    return 0;
}

}  // namespace

void register_tune(CLI::App& app, TuneArgs& a) {
    a.tune = app.add_subcommand(
        "tune", "search kernel schedules on this device and record the measurements");
    a.tune->add_option("workloads", a.workloads, "workload strings to tune");
    a.tune->add_option("--shapes", a.shapes, "file with one workload per line (# comments)");
    a.tune->add_option("--device", a.device, "cpu | opencl | cuda")->capture_default_str();
    a.tune
        ->add_option("--budget", a.budget,
                     "seconds per workload (compile + measurement time charged)")
        ->capture_default_str();
    a.tune->add_option(
        "--records", a.records,
        "records file to append to and resume from (default: " + default_user_records_path() + ")");
    a.tune->add_option("--seed", a.seed, "search seed")->capture_default_str();
    a.tune->add_option("--strategy", a.strategy, "model | random")->capture_default_str();
    a.tune->add_option("--max-trials", a.max_trials, "stop after N trials (0: budget only)");
    a.tune->add_flag("--no-final", a.no_final, "skip the interleaved re-measure of the best");
    a.tune->add_flag("--quiet,-q", a.quiet, "no progress on stderr");

    a.best = a.tune->add_subcommand("best", "print the best record per workload and device");
    a.best->add_option("--records", a.records, "records file");
    a.best->add_option("--workload", a.best_workload, "only this workload");
    a.distill = a.tune->add_subcommand(
        "distill", "write the compact per-device table builds use (schedules/tuned/)");
    a.distill->add_option("--records", a.records, "records file");
    a.distill->add_option("-o,--output", a.out_file, "table file (one device)");
    a.distill->add_option("--out-dir", a.out_dir, "directory for <device slug>.json tables");
    a.distill->add_option("--device-id", a.device_id, "only this device id");
    a.compare = a.tune->add_subcommand(
        "compare", "tuned vs hand default vs Halide's autoschedulers, measured interleaved");
    a.compare->add_option("workloads", a.cmp_workloads, "workload strings");
    a.compare->add_option("--shapes", a.cmp_shapes, "file with one workload per line");
    a.compare->add_option("--device", a.device, "cpu | opencl | cuda");
    a.compare->add_option("--records", a.records, "records with the tuned schedules");
    a.compare->add_option("--csv", a.csv, "CSV output file");
    a.compare->add_option("--vs", a.vs, "a second records file whose choices are measured too");
    a.compare->add_option("--autoschedulers", a.autoschedulers,
                          "comma-separated (default cpu: Adams2019,Mullapudi2016,Li2018; opencl: "
                          "Li2018,Anderson2021,Mullapudi2016)");
    a.tune->require_subcommand(0, 1);

    a.worker = app.add_subcommand("tune-worker", "measure candidates (used by lkc tune)");
    a.worker->group("");  // hidden
}

int run_tune(const TuneArgs& a) {
    if (a.worker && a.worker->parsed()) return tune::tune_worker_main();
    if (a.best && a.best->parsed()) return run_best(a);
    if (a.distill && a.distill->parsed()) return run_distill(a);
    if (a.compare && a.compare->parsed()) return run_compare(a);
    if (a.tune && a.tune->parsed()) return run_tune_workloads(a);
    return -1;
}

}  // namespace lkc::cli
