#include "runtime/device_info.h"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

namespace lkc {

namespace {

using json = nlohmann::json;

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// The value of the first "key : value" line of the first processor block, or "" if absent.
std::string cpuinfo_value(const std::string& cpuinfo, const std::string& key) {
    std::istringstream in(cpuinfo);
    std::string line;
    bool seen_processor = false;
    while (std::getline(in, line)) {
        if (trim(line).empty()) {
            if (seen_processor) break;  // end of the first processor block
            continue;
        }
        seen_processor = true;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        if (trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
    }
    return "";
}

// Handle of a driver library, opened once and kept for the life of the process: the ICD loader
// and PoCL register exit-time handlers, so unloading them early is unsafe.
void* open_library(const char* name, std::string* error) {
    void* h = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char* e = ::dlerror();
        *error = e ? e : "unknown dlopen error";
    }
    return h;
}

template <typename Fn>
Fn symbol(void* lib, const char* name, const char* what) {
    void* p = ::dlsym(lib, name);
    if (!p) {
        throw DeviceUnavailable(std::string(what) + ": the driver library has no symbol " + name);
    }
    return reinterpret_cast<Fn>(p);
}

// ---- OpenCL ----

using ClGetPlatformIDs = cl_int (*)(cl_uint, cl_platform_id*, cl_uint*);
using ClGetPlatformInfo = cl_int (*)(cl_platform_id, cl_platform_info, size_t, void*, size_t*);
using ClGetDeviceIDs = cl_int (*)(cl_platform_id, cl_device_type, cl_uint, cl_device_id*, cl_uint*);
using ClGetDeviceInfo = cl_int (*)(cl_device_id, cl_device_info, size_t, void*, size_t*);

constexpr cl_int kClPlatformNotFoundKhr = -1001;

struct OpenClApi {
    ClGetPlatformIDs get_platform_ids;
    ClGetPlatformInfo get_platform_info;
    ClGetDeviceIDs get_device_ids;
    ClGetDeviceInfo get_device_info;
};

const OpenClApi& opencl_api() {
    static const OpenClApi api = [] {
        std::string error;
        void* lib = open_library("libOpenCL.so.1", &error);
        if (!lib) {
            throw DeviceUnavailable("opencl: cannot load libOpenCL.so.1 (" + error +
                                    "); install an OpenCL ICD loader and a driver");
        }
        const char* what = "opencl: libOpenCL.so.1";
        return OpenClApi{symbol<ClGetPlatformIDs>(lib, "clGetPlatformIDs", what),
                         symbol<ClGetPlatformInfo>(lib, "clGetPlatformInfo", what),
                         symbol<ClGetDeviceIDs>(lib, "clGetDeviceIDs", what),
                         symbol<ClGetDeviceInfo>(lib, "clGetDeviceInfo", what)};
    }();
    return api;
}

void cl_check(cl_int rc, const std::string& call) {
    if (rc != CL_SUCCESS) {
        throw DeviceUnavailable("opencl: " + call + " failed with error " + std::to_string(rc));
    }
}

std::string cl_platform_string(const OpenClApi& api, cl_platform_id p, cl_platform_info param,
                               const char* name) {
    size_t n = 0;
    cl_check(api.get_platform_info(p, param, 0, nullptr, &n),
             std::string("clGetPlatformInfo(") + name + ")");
    std::vector<char> buf(n + 1, '\0');
    cl_check(api.get_platform_info(p, param, n, buf.data(), nullptr),
             std::string("clGetPlatformInfo(") + name + ")");
    return std::string(buf.data());
}

std::string cl_device_string(const OpenClApi& api, cl_device_id d, cl_device_info param,
                             const char* name) {
    size_t n = 0;
    cl_check(api.get_device_info(d, param, 0, nullptr, &n),
             std::string("clGetDeviceInfo(") + name + ")");
    std::vector<char> buf(n + 1, '\0');
    cl_check(api.get_device_info(d, param, n, buf.data(), nullptr),
             std::string("clGetDeviceInfo(") + name + ")");
    return std::string(buf.data());
}

std::string cl_type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "gpu";
    if (t & CL_DEVICE_TYPE_CPU) return "cpu";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
#ifdef CL_DEVICE_TYPE_CUSTOM
    if (t & CL_DEVICE_TYPE_CUSTOM) return "custom";
#endif
    return "other";
}

// ---- CUDA ----

using CuResult = int;
using CuDevice = int;
using CuInit = CuResult (*)(unsigned int);
using CuDeviceGetCount = CuResult (*)(int*);
using CuDeviceGet = CuResult (*)(CuDevice*, int);
using CuDeviceGetName = CuResult (*)(char*, int, CuDevice);
using CuDeviceGetAttribute = CuResult (*)(int*, int, CuDevice);
using CuDriverGetVersion = CuResult (*)(int*);
using CuGetErrorString = CuResult (*)(CuResult, const char**);

constexpr int kCuAttrMultiprocessorCount = 16;
constexpr int kCuAttrComputeCapabilityMajor = 75;
constexpr int kCuAttrComputeCapabilityMinor = 76;
constexpr CuResult kCudaErrorNoDevice = 100;

struct CudaApi {
    CuInit init;
    CuDeviceGetCount device_get_count;
    CuDeviceGet device_get;
    CuDeviceGetName device_get_name;
    CuDeviceGetAttribute device_get_attribute;
    CuDriverGetVersion driver_get_version;
    CuGetErrorString get_error_string;  // may be null
};

const CudaApi& cuda_api() {
    static const CudaApi api = [] {
        std::string error;
        void* lib = open_library("libcuda.so.1", &error);
        if (!lib) {
            throw DeviceUnavailable("cuda: cannot load libcuda.so.1 (" + error +
                                    "); no NVIDIA driver on this machine");
        }
        const char* what = "cuda: libcuda.so.1";
        return CudaApi{symbol<CuInit>(lib, "cuInit", what),
                       symbol<CuDeviceGetCount>(lib, "cuDeviceGetCount", what),
                       symbol<CuDeviceGet>(lib, "cuDeviceGet", what),
                       symbol<CuDeviceGetName>(lib, "cuDeviceGetName", what),
                       symbol<CuDeviceGetAttribute>(lib, "cuDeviceGetAttribute", what),
                       symbol<CuDriverGetVersion>(lib, "cuDriverGetVersion", what),
                       reinterpret_cast<CuGetErrorString>(::dlsym(lib, "cuGetErrorString"))};
    }();
    return api;
}

void cu_check(const CudaApi& api, CuResult rc, const std::string& call) {
    if (rc == 0) return;
    std::string text;
    const char* s = nullptr;
    if (api.get_error_string && api.get_error_string(rc, &s) == 0 && s)
        text = std::string(": ") + s;
    std::string hint = rc == kCudaErrorNoDevice ? " (no CUDA device)" : "";
    throw DeviceUnavailable("cuda: " + call + " failed with error " + std::to_string(rc) + text +
                            hint);
}

}  // namespace

json device_json(const DeviceInfo& d) {
    json j = json::object();
    j["kind"] = d.kind;
    j["id"] = d.id;
    j["name"] = d.name;
    if (d.fields.is_object()) {
        for (auto it = d.fields.begin(); it != d.fields.end(); ++it) {
            if (it.key() != "kind" && it.key() != "id" && it.key() != "name") {
                j[it.key()] = it.value();
            }
        }
    }
    return j;
}

std::string normalise_id_part(const std::string& s) {
    std::string out;
    bool space = false;
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            space = true;
            continue;
        }
        if (c < 0x20 || c == 0x7f) continue;
        if (space && !out.empty()) out += ' ';
        space = false;
        out += c == '/' ? '-' : ch;
    }
    return out;
}

std::string device_slug(const std::string& id) {
    constexpr size_t kMaxSlug = 120;
    std::string slug;
    bool dash = false;
    for (char ch : id) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (dash && !slug.empty()) slug += '-';
            dash = false;
            slug += static_cast<char>(c);
        } else {
            dash = true;
        }
    }
    if (slug.empty()) slug = "device";
    if (slug.size() > kMaxSlug) {
        uint64_t h = 1469598103934665603ull;  // FNV-1a
        for (char ch : id) {
            h ^= static_cast<unsigned char>(ch);
            h *= 1099511628211ull;
        }
        char hex[9];
        std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(h ^ (h >> 32)));
        slug = slug.substr(0, kMaxSlug - 9);
        while (!slug.empty() && slug.back() == '-') slug.pop_back();
        slug += '-';
        slug += hex;
    }
    return slug;
}

// ---- CPU ----

std::string cpu_isa_from_flags(const std::string& flags) {
    std::set<std::string> f;
    std::istringstream in(flags);
    for (std::string w; in >> w;) f.insert(w);
    auto has = [&](const char* x) { return f.count(x) > 0; };
    if (has("avx512f") && has("avx512vl") && has("avx512bw") && has("avx512dq")) return "avx512";
    if (has("avx2") && has("fma")) return "avx2";
    if (has("sse4_1")) return "sse41";
    return "baseline";
}

DeviceInfo cpu_device_info_from(const std::string& cpuinfo, int cores) {
    if (cores < 1) {
        throw std::invalid_argument("cpu_device_info_from: cores is " + std::to_string(cores) +
                                    ", expected >= 1");
    }
    std::string model = normalise_id_part(cpuinfo_value(cpuinfo, "model name"));
    if (model.empty()) model = "unknown cpu";
    const std::string isa = cpu_isa_from_flags(cpuinfo_value(cpuinfo, "flags"));

    DeviceInfo d;
    d.kind = "cpu";
    d.name = model;
    d.id = "cpu/" + model + "/" + isa + "/" + std::to_string(cores) + "c";
    d.fields = json::object();
    d.fields["model_name"] = model;
    d.fields["isa"] = isa;
    d.fields["cores"] = cores;
    for (const char* key : {"vendor_id", "cpu family", "model", "stepping"}) {
        std::string v = normalise_id_part(cpuinfo_value(cpuinfo, key));
        if (!v.empty()) {
            std::string k = key;
            for (char& ch : k) ch = ch == ' ' ? '_' : ch;
            d.fields[k] = v;
        }
    }
    return d;
}

DeviceInfo cpu_device_info() {
    std::ifstream in("/proc/cpuinfo");
    std::stringstream text;
    if (in) text << in.rdbuf();
    int cores = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
    if (cores < 1) cores = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    if (cores < 1) cores = 1;
    return cpu_device_info_from(text.str(), cores);
}

// ---- OpenCL ----

DeviceInfo opencl_device_info_from(const OpenClProbe& p) {
    const std::string platform = normalise_id_part(p.platform_name);
    const std::string device = normalise_id_part(p.device_name);
    const std::string type = p.device_type.empty() ? "other" : normalise_id_part(p.device_type);
    const std::string driver = normalise_id_part(p.driver_version);
    DeviceInfo d;
    d.kind = "opencl";
    d.name = device;
    d.id = "opencl/" + platform + "/" + type + "-" + device + "/" + driver;
    d.fields = json::object();
    d.fields["index"] = p.index;
    d.fields["platform"] = platform;
    d.fields["platform_version"] = normalise_id_part(p.platform_version);
    d.fields["device_type"] = type;
    d.fields["driver_version"] = driver;
    d.fields["compute_units"] = p.compute_units;
    return d;
}

DeviceInfo opencl_device_info(int index) {
    if (index < 0) {
        throw DeviceUnavailable("opencl: device index " + std::to_string(index) +
                                " is negative; expected >= 0");
    }
    const OpenClApi& api = opencl_api();
    cl_uint np = 0;
    cl_int rc = api.get_platform_ids(0, nullptr, &np);
    if (rc == kClPlatformNotFoundKhr || (rc == CL_SUCCESS && np == 0)) {
        throw DeviceUnavailable(
            "opencl: no OpenCL platform (the ICD loader found no driver; install e.g. "
            "pocl-opencl-icd)");
    }
    cl_check(rc, "clGetPlatformIDs");
    std::vector<cl_platform_id> platforms(np);
    cl_check(api.get_platform_ids(np, platforms.data(), nullptr), "clGetPlatformIDs");

    int seen = 0;
    for (cl_platform_id platform : platforms) {
        cl_uint nd = 0;
        rc = api.get_device_ids(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &nd);
        if (rc == CL_DEVICE_NOT_FOUND || nd == 0) continue;
        cl_check(rc, "clGetDeviceIDs");
        if (index >= seen + static_cast<int>(nd)) {
            seen += static_cast<int>(nd);
            continue;
        }
        std::vector<cl_device_id> devices(nd);
        cl_check(api.get_device_ids(platform, CL_DEVICE_TYPE_ALL, nd, devices.data(), nullptr),
                 "clGetDeviceIDs");
        cl_device_id dev = devices[static_cast<size_t>(index - seen)];

        OpenClProbe p;
        p.index = index;
        p.platform_name = cl_platform_string(api, platform, CL_PLATFORM_NAME, "CL_PLATFORM_NAME");
        p.platform_version =
            cl_platform_string(api, platform, CL_PLATFORM_VERSION, "CL_PLATFORM_VERSION");
        p.device_name = cl_device_string(api, dev, CL_DEVICE_NAME, "CL_DEVICE_NAME");
        p.driver_version = cl_device_string(api, dev, CL_DRIVER_VERSION, "CL_DRIVER_VERSION");
        cl_device_type type = 0;
        cl_check(api.get_device_info(dev, CL_DEVICE_TYPE, sizeof type, &type, nullptr),
                 "clGetDeviceInfo(CL_DEVICE_TYPE)");
        p.device_type = cl_type_name(type);
        cl_uint units = 0;
        cl_check(
            api.get_device_info(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, nullptr),
            "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)");
        p.compute_units = static_cast<int>(units);
        return opencl_device_info_from(p);
    }
    if (seen == 0) {
        throw DeviceUnavailable("opencl: " + std::to_string(np) +
                                " platform(s) but no OpenCL device");
    }
    throw DeviceUnavailable("opencl: device index " + std::to_string(index) + " is out of range; " +
                            std::to_string(seen) + " OpenCL device(s)");
}

// ---- CUDA ----

std::string cuda_driver_version_string(int version) {
    return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

DeviceInfo cuda_device_info_from(const CudaProbe& p) {
    const std::string name = normalise_id_part(p.name);
    const std::string sm = "sm_" + std::to_string(p.cc_major) + std::to_string(p.cc_minor);
    const std::string driver = cuda_driver_version_string(p.driver_version);
    DeviceInfo d;
    d.kind = "cuda";
    d.name = name;
    d.id = "cuda/" + name + "/" + sm + "/" + driver;
    d.fields = json::object();
    d.fields["index"] = p.index;
    d.fields["compute_capability"] = std::to_string(p.cc_major) + "." + std::to_string(p.cc_minor);
    d.fields["sm"] = sm;
    d.fields["multiprocessors"] = p.multiprocessors;
    d.fields["driver_version"] = driver;
    return d;
}

DeviceInfo cuda_device_info(int index) {
    if (index < 0) {
        throw DeviceUnavailable("cuda: device index " + std::to_string(index) +
                                " is negative; expected >= 0");
    }
    const CudaApi& api = cuda_api();
    cu_check(api, api.init(0), "cuInit");
    int count = 0;
    cu_check(api, api.device_get_count(&count), "cuDeviceGetCount");
    if (count == 0) throw DeviceUnavailable("cuda: the driver reports no CUDA device");
    if (index >= count) {
        throw DeviceUnavailable("cuda: device index " + std::to_string(index) +
                                " is out of range; " + std::to_string(count) + " CUDA device(s)");
    }
    CuDevice dev = 0;
    cu_check(api, api.device_get(&dev, index), "cuDeviceGet");
    CudaProbe p;
    p.index = index;
    char name[256] = {0};
    cu_check(api, api.device_get_name(name, sizeof name - 1, dev), "cuDeviceGetName");
    p.name = name;
    cu_check(api, api.device_get_attribute(&p.cc_major, kCuAttrComputeCapabilityMajor, dev),
             "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)");
    cu_check(api, api.device_get_attribute(&p.cc_minor, kCuAttrComputeCapabilityMinor, dev),
             "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)");
    cu_check(api, api.device_get_attribute(&p.multiprocessors, kCuAttrMultiprocessorCount, dev),
             "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)");
    cu_check(api, api.driver_get_version(&p.driver_version), "cuDriverGetVersion");
    return cuda_device_info_from(p);
}

}  // namespace lkc
