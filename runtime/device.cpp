#include "runtime/device.h"

#include <mutex>

#include "HalideRuntime.h"
#include "HalideRuntimeCuda.h"
#include "HalideRuntimeOpenCL.h"

namespace lkc {

namespace {
thread_local std::string g_last_error;

extern "C" void lkc_halide_error(void* /*user_context*/, const char* msg) {
    // Halide may report several lines for one failure; keep them all.
    if (!g_last_error.empty()) g_last_error += "; ";
    std::string m = msg ? msg : "(no message)";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    g_last_error += m;
}
}  // namespace

const char* device_name(Device d) {
    switch (d) {
        case Device::Cpu:
            return "cpu";
        case Device::OpenCL:
            return "opencl";
        case Device::Cuda:
            return "cuda";
    }
    return "?";
}

Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::Cpu;
    if (s == "opencl") return Device::OpenCL;
    if (s == "cuda") return Device::Cuda;
    throw std::invalid_argument("unknown device '" + s + "' (expected cpu, opencl or cuda)");
}

void install_halide_error_handler() {
    static std::once_flag once;
    std::call_once(once, [] { halide_set_error_handler(lkc_halide_error); });
}

std::string take_halide_error() {
    std::string m;
    m.swap(g_last_error);
    return m;
}

void check_halide(int rc, const std::string& what, Device d) {
    if (rc == 0) {
        g_last_error.clear();
        return;
    }
    std::string msg = take_halide_error();
    if (msg.empty()) msg = "Halide error code " + std::to_string(rc);
    throw KernelError(what + " failed on device '" + device_name(d) + "': " + msg);
}

void release_device(Device d) {
    if (d == Device::OpenCL) halide_device_release(nullptr, halide_opencl_device_interface());
    if (d == Device::Cuda) halide_device_release(nullptr, halide_cuda_device_interface());
}

}  // namespace lkc
