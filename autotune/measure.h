// Measuring a candidate on the device at hand. Each measurement runs in its own worker process
// (`lkc tune-worker`, which links the Halide runtime but not libHalide, so PoCL's LLVM never meets
// another LLVM): it loads the candidate's library, runs the workload on exact small-integer inputs,
// compares every output with the hand-default CPU kernel's bit for bit (sums of small integers are
// exact in fp32, so any correct schedule agrees exactly), then times it: warm-up runs, then runs
// until both a minimum time and a minimum count are reached, and reports the median. A crash or a
// hang of the worker is a run_error / timeout of that candidate, never of the tuner.
#pragma once

#include <string>
#include <vector>

#include "autotune/candidates.h"
#include "runtime/device.h"

namespace lkc::tune {

struct MeasureOptions {
    int warmup = 2;
    int min_reps = 5;
    int max_reps = 200;
    double min_time_s = 0.25;  // timed runs continue until this much kernel time has passed
    double timeout_s = 120;    // per candidate, worker start-up and reference included
    int threads = 2;           // HL_NUM_THREADS of the worker
    uint32_t seed = 7;         // inputs
    std::string worker;        // the lkc executable to run `tune-worker` with ("": this one)
};

struct Measurement {
    std::string status;  // ok | wrong_result | run_error | timeout
    std::vector<double> times_ms;
    double median_ms = 0;
    std::string error;
    double wall_s = 0;  // worker wall time
};

// Measures candidate c (its compiled `library`, or "" for a compiled-in variant) for w on d.
Measurement measure_candidate(const Workload& w, Device d, const Candidate& c,
                              const std::string& library, const MeasureOptions& o);

// Measures several candidates interleaved in one worker (one timed run of each in turn, repeated),
// for a final comparison of near-equal candidates under the same machine conditions. Results are
// in the order of `cs`.
std::vector<Measurement> measure_interleaved(const Workload& w, Device d,
                                             const std::vector<Candidate>& cs,
                                             const std::vector<std::string>& libraries,
                                             const MeasureOptions& o);

// The worker's entry point (`lkc tune-worker`): reads the request JSON from stdin, prints one
// line "LKC_RESULT <json>" with the measurements. Returns the process exit code.
int tune_worker_main();

}  // namespace lkc::tune
