// Compiling tuner candidates: the Halide generator executable of this build (lkc_generators)
// emits the candidate's object for the device's target without a Halide runtime; the C++ compiler
// links it into a shared object that the measuring process loads (runtime/registry.h,
// load_kernel_library) and whose runtime calls resolve against that process' Halide runtime.
// Results are cached per device under kernel_cache_dir(), next to a small JSON file with the
// schedule, target, compile time and the generator binary it came from; a candidate whose cache
// entry came from another generator binary is compiled again.
#pragma once

#include <string>

#include "autotune/candidates.h"

namespace lkc::tune {

struct CompileResult {
    bool ok = false;
    bool cached = false;   // found in the cache (compile_s is the recorded time)
    std::string library;   // the shared object
    std::string error;     // compiler output tail when !ok
    double compile_s = 0;  // generator + link wall time
};

// The Halide target string candidates for d are compiled for on this machine (the best x86 ISA
// the CPU has, plus the GPU API for opencl / cuda), with no_runtime.
std::string halide_target(Device d);

// The generator executable: $LKC_GENERATORS, else the one this lkc was built with. Throws
// std::runtime_error if it does not exist (tuning needs a build tree).
std::string generator_executable();

// Compiles c for d (a builtin candidate needs no compiling: ok with library ""). `timeout_s`
// bounds the generator and the link separately.
CompileResult compile_candidate(const Candidate& c, Device d, const std::string& device_id,
                                double timeout_s = 300);

}  // namespace lkc::tune

namespace lkc::tune {

// Builds the dense generator of w with one of Halide's autoschedulers ("Adams2019",
// "Mullapudi2016", "Li2018", "Anderson2021"), w as the estimates, into the kernel cache. `cand`
// receives the candidate to measure it as (generator, name; params are the hand defaults, which
// only shape the algorithm's register tile here). Throws std::invalid_argument for a workload no
// dense generator runs.
CompileResult compile_autoscheduled(const Workload& w, Device d, const std::string& device_id,
                                    const std::string& autoscheduler, Candidate* cand,
                                    double timeout_s = 600);

}  // namespace lkc::tune
