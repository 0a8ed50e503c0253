// The tuner's search: per workload, candidates are picked, compiled, checked and timed until the
// budget is spent, every measurement appended to the records file.
//
// Strategy "model" (default):
//   1. the hand default (what lkc runs without records), then the compiled-in variants in model
//      order (no compile needed);
//   2. then, per trial, with probability 3/4 the unmeasured neighbour (one parameter one step
//      along its value list, or one generator swap for multi-branch ops) of the three best
//      measured schedules with the lowest calibrated model cost, else one of the 8 unmeasured
//      candidates of lowest calibrated cost at random. The analytic cost (candidates.h) is
//      calibrated per generator by the median ratio measured / model of its measured candidates;
//   3. the best three (within 10 %) and the default are measured again interleaved in one
//      process; the fastest wins (within max(2 %, the runs' relative IQR): the earlier trial, and
//      the hand default over anything not clearly faster).
// Strategy "random": the hand default, then uniformly random unmeasured candidates (the
// baseline the model strategy is compared with).
//
// Budget: seconds per workload of *charged* time, the compile time of each candidate (its
// recorded time when it comes from the cache) plus its measurement wall time. Charging recorded
// compile times makes a run with a warm cache take the same path as the cold one, so the same
// seed and budget give the same schedule on a quiet machine. Resuming: a candidate already in the
// records (same workload, device and lkc version) is not measured again; its recorded result and
// times are reused and charged, so a resumed run replays the earlier one and continues past it.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "autotune/candidates.h"
#include "autotune/measure.h"

namespace lkc::tune {

struct TuneOptions {
    std::vector<Workload> workloads;
    Device device = Device::Cpu;
    double budget_s = 60;  // per workload, charged time (see above)
    std::string records;   // appended to and resumed from
    uint64_t seed = 1;
    std::string strategy = "model";  // model | random
    int max_trials = 0;              // 0: as many as the budget allows
    bool final_check = true;         // interleaved re-measure of the best three
    bool progress = true;            // progress on stderr
    MeasureOptions measure;
};

struct TrialLog {
    int trial;
    std::string name, strategy, status;
    double median_ms;  // 0 unless ok
    double best_ms;    // best ok so far
    double charged_s;  // cumulative charged time after this trial
    bool reused;       // from the records, not measured now
};

struct TuneResult {
    Workload workload;
    std::string device_id;
    Candidate best, hand_default;
    double best_ms = 0, default_ms = 0;  // medians (final interleaved run where there was one)
    int trials = 0, failures = 0, reused = 0, compiled = 0;
    double charged_s = 0, wall_s = 0;
    std::vector<TrialLog> log;
};

// Tunes every workload of `o`; progress lines go to `progress` (stderr in the CLI). Throws
// DeviceUnavailable (runtime/device_info.h) when the device does not exist.
std::vector<TuneResult> tune(const TuneOptions& o, std::ostream& progress);

// The summary table printed by `lkc tune`.
void print_summary(const std::vector<TuneResult>& results, std::ostream& out);

}  // namespace lkc::tune
