// The tunable schedule space of every generator, per target family: the GeneratorParams each
// schedule exposes (schedules/*.h), their candidate values, defaults and validity rules. Plain
// C++ (no Halide): the registry uses it to give every compiled variant a canonical schedule, the
// autotuner to enumerate candidates. Kernel sizes, strides and dilations are run-time inputs of
// the generators, so one compiled candidate serves every workload of its op and pass.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace lkc::space {

// Target families a schedule is written for (cmake/lkc_kernels.cmake).
enum class Family { Cpu, OpenCL, Cuda };
const char* family_name(Family f);  // "cpu", "opencl", "cuda"

using Params = std::map<std::string, std::string>;

struct ParamSpec {
    std::string name;                 // GeneratorParam name, e.g. "tile"
    std::string code;                 // short code in variant names, e.g. "t"
    std::vector<std::string> values;  // candidate values, in search order (neighbours adjacent)
    std::string def;                  // the generator's default
};

struct GeneratorSpace {
    std::string generator;
    std::vector<ParamSpec> params;  // empty: one schedule only
};

// The space of `generator` for family f. Throws std::invalid_argument for an unknown generator.
const GeneratorSpace& generator_space(const std::string& generator, Family f);

// Every generator the spaces know (for tests and listings).
std::vector<std::string> generator_names();

// Fills defaults and checks keys and values: a key the generator does not have, or a value that
// is not an integer / bool where one is expected, throws std::invalid_argument naming both.
// Values outside the search list are allowed (hand variants may use them).
Params canonical(const std::string& generator, Family f, const Params& p);

// Parses CMake's PARAMS list as stored in the registry ("tile=14;chunk=8"; separators ';' or ' ').
Params parse_param_list(const std::string& s);

// Stable, identifier-safe variant name of a schedule: <generator>__<code><value>... in the space's
// parameter order, bools as 0/1, e.g. "dwconv2d_fwd__t12c8px0st1pr1r8". The family suffix
// (_cpu, _opencl, _cuda) is added by the caller.
std::string schedule_name(const std::string& generator, Family f, const Params& canonical_params);

// Integer / bool accessors of a canonical parameter set (throws if absent or not a number).
int int_param(const Params& p, const std::string& name);
bool bool_param(const Params& p, const std::string& name);

}  // namespace lkc::space
