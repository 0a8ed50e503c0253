// `lkc tune compare`: the tuned schedule of each workload (from records) against the hand
// default and Halide's own autoschedulers, measured interleaved in one worker per workload.
//
// Autoscheduled variants are built from the same generator with the workload as estimates
// (est_* GeneratorParams) and the autoscheduler's plugin from the Halide wheel:
//   cpu:    Adams2019 (beam_size 1: the default beam 32 exhausted 24 GiB on dwconv2d_fwd and was
//           killed; beam 4 and 8 failed past 8 GiB), Mullapudi2016, Li2018;
//   opencl: Li2018, Anderson2021, Mullapudi2016 (each when it compiles for the target).
// Only the dense generators are autoscheduled: the table-driven families (taps, sparse) depend on
// run-time tables an autoscheduler cannot plan for.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "autotune/measure.h"
#include "runtime/device.h"

namespace lkc::tune {

struct CompareRow {
    Workload workload;
    std::string tuned_schedule;  // schedule key of the tuned choice ("" if none recorded)
    std::string vs_schedule;     // the --vs records' choice
    double default_ms = 0, tuned_ms = 0, vs_ms = 0;
    std::vector<std::pair<std::string, double>> autosched_ms;  // name -> ms (0: failed)
    std::vector<std::pair<std::string, std::string>> errors;   // what -> message
    double tuning_s = 0;  // compile + measurement time in the records for this workload
};

struct CompareOptions {
    std::vector<Workload> workloads;
    Device device = Device::Cpu;
    std::string records;  // where the tuned schedules come from
    std::string vs;       // optional second records file: its choice is measured alongside
    std::vector<std::string> autoschedulers;  // empty: the defaults above for the device
    std::string csv;                          // optional CSV output
    MeasureOptions measure;
};

std::vector<CompareRow> compare(const CompareOptions& o, std::ostream& progress);
void print_compare(const std::vector<CompareRow>& rows, std::ostream& out);
void write_compare_csv(const std::vector<CompareRow>& rows, const std::string& path);

}  // namespace lkc::tune
