// Devices lkc runs kernels on, and the Halide runtime error plumbing: a kernel failure (for
// example no OpenCL platform, no CUDA driver) becomes an lkc::KernelError with Halide's message,
// never an abort.
#pragma once

#include <stdexcept>
#include <string>

namespace lkc {

enum class Device { Cpu, OpenCL, Cuda };

const char* device_name(Device d);  // "cpu", "opencl", "cuda"
// Parses "cpu" | "opencl" | "cuda"; throws std::invalid_argument naming the valid choices.
Device parse_device(const std::string& s);

class KernelError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Installs lkc's halide_error handler (idempotent). The handler stores the message per thread.
void install_halide_error_handler();
// Takes (and clears) the last Halide error message reported on this thread.
std::string take_halide_error();

// Throws KernelError("<what> failed on <device>: <Halide message>") when rc != 0.
void check_halide(int rc, const std::string& what, Device d);

// Releases the Halide runtime's state for a GPU device (context, kernel cache); no-op for cpu.
void release_device(Device d);

}  // namespace lkc
