// Device fingerprints: the key under which tuning records are stored (docs/records.md).
//
//   cpu     cpu/<model name>/<isa>/<cores>c            cpu/AMD EPYC/avx512/2c
//   opencl  opencl/<platform>/<type>-<device>/<driver> opencl/Portable Computing Language/
//                                                      cpu-pthread-skylake-avx512-AMD
//                                                      EPYC/3.1+debian
//   cuda    cuda/<name>/sm_<major><minor>/<driver>     cuda/NVIDIA A100-SXM4-40GB/sm_80/12.4
//
// Id parts have whitespace runs collapsed to one space, control characters dropped and '/'
// replaced by '-', so '/' only separates parts. OpenCL and CUDA are probed through dlopen: lkc_core
// links neither libOpenCL nor libcuda, and a machine without them gets DeviceUnavailable.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace lkc {

// No driver library, platform or device for the requested kind/index. The message says which.
class DeviceUnavailable : public std::runtime_error {
  public:
    explicit DeviceUnavailable(const std::string& msg) : std::runtime_error(msg) {}
};

struct DeviceInfo {
    std::string kind;       // "cpu" | "opencl" | "cuda"
    std::string id;         // stable key, see above
    std::string name;       // human-readable device name
    nlohmann::json fields;  // object: everything probed (isa, cores, driver, compute units, ...)
};

// {"kind", "id", "name", ...fields}: the "device" object of a tuning record.
nlohmann::json device_json(const DeviceInfo& d);

// ---- CPU ----

// The machine's CPU: /proc/cpuinfo model name and flags, cores usable by this process
// (sched_getaffinity).
DeviceInfo cpu_device_info();

// Best ISA named by a /proc/cpuinfo "flags" value (space-separated): "avx512" (avx512f, avx512vl,
// avx512bw, avx512dq), "avx2" (avx2, fma), "sse41" (sse4_1) or "baseline".
std::string cpu_isa_from_flags(const std::string& flags);

// Pure part of cpu_device_info(): `cpuinfo` is the text of /proc/cpuinfo (the first processor's
// entries are used), `cores` the usable core count (>= 1).
DeviceInfo cpu_device_info_from(const std::string& cpuinfo, int cores);

// ---- OpenCL ----

// What the OpenCL probe reads for one device.
struct OpenClProbe {
    int index = 0;                 // position among all devices of all platforms
    std::string platform_name;     // CL_PLATFORM_NAME
    std::string platform_version;  // CL_PLATFORM_VERSION
    std::string device_name;       // CL_DEVICE_NAME
    std::string device_type;       // "cpu" | "gpu" | "accelerator" | "custom" | "other"
    std::string driver_version;    // CL_DRIVER_VERSION
    int compute_units = 0;         // CL_DEVICE_MAX_COMPUTE_UNITS
};

// Device `index` counted over every device (CL_DEVICE_TYPE_ALL) of every platform, in the order
// the ICD loader reports them. Throws DeviceUnavailable if libOpenCL.so.1 cannot be loaded, there
// is no platform or device, or `index` is out of range.
DeviceInfo opencl_device_info(int index = 0);

// Pure part of opencl_device_info().
DeviceInfo opencl_device_info_from(const OpenClProbe& p);

// ---- CUDA ----

// What the CUDA probe reads for one device.
struct CudaProbe {
    int index = 0;
    std::string name;         // cuDeviceGetName
    int cc_major = 0;         // attribute 75
    int cc_minor = 0;         // attribute 76
    int multiprocessors = 0;  // attribute 16
    int driver_version = 0;   // cuDriverGetVersion: 1000 * major + 10 * minor
};

// Throws DeviceUnavailable if libcuda.so.1 cannot be loaded, cuInit fails (no device, no driver)
// or `index` is out of range.
DeviceInfo cuda_device_info(int index = 0);

// Pure part of cuda_device_info().
DeviceInfo cuda_device_info_from(const CudaProbe& p);

// cuDriverGetVersion value as "major.minor": 12040 -> "12.4".
std::string cuda_driver_version_string(int version);

// ---- ids ----

// Collapses whitespace runs to one space, trims, drops control characters, replaces '/' by '-'.
std::string normalise_id_part(const std::string& s);

// File-name-safe lower-case slug of a device id: runs of characters outside [a-z0-9] become one
// '-', no leading/trailing '-'. "cpu/AMD EPYC/avx512/2c" -> "cpu-amd-epyc-avx512-2c". Slugs longer
// than 120 characters are cut and end in '-' + 8 hex digits of a hash of the whole id.
std::string device_slug(const std::string& id);

}  // namespace lkc
