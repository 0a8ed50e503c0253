// Child processes for the tuner: the Halide generator (compiling a candidate), the C++ linker and
// the measurement worker, each with a wall-clock timeout so a hung compile or kernel never stops
// the search.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lkc::tune {

struct ProcessResult {
    int exit_code = -1;  // when the child exited normally
    int signal = 0;      // when it was killed by a signal (SIGKILL after a timeout)
    bool timed_out = false;
    std::string output;  // stdout and stderr interleaved (capped at 1 MiB, the tail kept)
    double seconds = 0;
    bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
    // "exit code 2", "killed by signal 11 (Segmentation fault)", "timed out after 60 s"
    std::string describe() const;
};

// Runs argv[0] (searched on PATH) with `stdin_text` on its standard input, kills it (and its
// process group) after `timeout_s`. `on_line` (optional) sees each line of output as it arrives.
// Throws std::runtime_error only if the process cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s,
                          const std::string& stdin_text = "",
                          const std::function<void(const std::string&)>& on_line = {},
                          const std::vector<std::string>& extra_env = {});

// The absolute path of the running executable (/proc/self/exe).
std::string self_executable();

}  // namespace lkc::tune
