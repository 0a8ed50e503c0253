#include "autotune/compile.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "autotune/process.h"
#include "runtime/device_info.h"
#include "runtime/schedule_selection.h"

#ifndef LKC_GENERATOR_EXE
#define LKC_GENERATOR_EXE ""
#endif
#ifndef LKC_HALIDE_LIB_DIR
#define LKC_HALIDE_LIB_DIR ""
#endif

namespace lkc::tune {

namespace {

bool exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

void make_dirs(const std::string& dir) {
    std::string cur;
    std::stringstream ss(dir);
    std::string part;
    if (!dir.empty() && dir[0] == '/') cur = "/";
    while (std::getline(ss, part, '/')) {
        if (part.empty()) continue;
        cur += part + "/";
        ::mkdir(cur.c_str(), 0755);
    }
}

// Identity of the generator binary (size and modification time): cache entries made by another
// build are stale.
std::string generator_stamp(const std::string& exe) {
    struct stat st;
    if (::stat(exe.c_str(), &st) != 0) return "";
    return std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec);
}

std::string tail(const std::string& s, size_t n = 4000) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Runs the generator for (generator, name, params + extra_args) and links the object into `lib`
// (published with its metadata file atomically).
CompileResult build_library(const std::string& generator, const std::string& name,
                            const space::Params& params, const std::vector<std::string>& extra,
                            const std::string& target, const std::string& device_id,
                            const std::string& exe, const std::string& stamp,
                            const std::string& lib, const std::string& meta_path,
                            double timeout_s) {
    CompileResult r;
    const std::string dir = lib.substr(0, lib.rfind('/'));
    make_dirs(dir);
    std::string tmpl = dir + "/build.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        r.error = "cannot create a build directory in " + dir;
        return r;
    }
    const std::string work(buf.data());
    auto cleanup = [&] { std::system(("rm -rf '" + work + "'").c_str()); };
    std::vector<std::string> argv = {exe,  "-g", generator, "-f", name,    "-n",
                                     name, "-o", work,      "-e", "object"};
    for (const std::string& e : extra) argv.push_back(e);
    argv.push_back("target=" + target);
    for (const auto& [k, v] : params) argv.push_back(k + "=" + v);
    const ProcessResult gen = run_process(argv, timeout_s);
    r.compile_s = gen.seconds;
    if (!gen.ok()) {
        r.error = "generator " + gen.describe() + ": " + tail(gen.output);
        cleanup();
        return r;
    }
    const char* cxx_env = std::getenv("CXX");
    const std::string cxx = cxx_env && *cxx_env ? cxx_env : "c++";
    const std::string so_tmp = work + "/" + name + ".so";
    const ProcessResult link =
        run_process({cxx, "-shared", "-o", so_tmp, work + "/" + name + ".o"}, timeout_s);
    r.compile_s += link.seconds;
    if (!link.ok()) {
        r.error = "link (" + cxx + ") " + link.describe() + ": " + tail(link.output);
        cleanup();
        return r;
    }
    // Publish: library first, then its metadata (a reader trusts the library only with both).
    nlohmann::json m = {
        {"generator", generator},   {"params", params},       {"name", name},
        {"target", target},         {"device_id", device_id}, {"generator_stamp", stamp},
        {"compile_s", r.compile_s}, {"extra", extra}};
    const std::string meta_tmp = work + "/meta.json";
    {
        std::ofstream f(meta_tmp);
        f << m.dump(1) << "\n";
    }
    if (std::rename(so_tmp.c_str(), lib.c_str()) != 0 ||
        std::rename(meta_tmp.c_str(), meta_path.c_str()) != 0) {
        r.error = "cannot move the compiled candidate into " + dir;
        cleanup();
        return r;
    }
    cleanup();
    r.ok = true;
    r.library = lib;
    return r;
}

// A cached library is reusable if it came from the same generator binary, target and arguments.
bool cache_hit(const std::string& lib, const std::string& meta_path, const std::string& stamp,
               const std::string& target, const std::vector<std::string>& extra, CompileResult* r) {
    if (!exists(lib) || !exists(meta_path)) return false;
    try {
        std::ifstream f(meta_path);
        nlohmann::json m = nlohmann::json::parse(f);
        if (m.value("generator_stamp", "") != stamp || m.value("target", "") != target)
            return false;
        if (m.value("extra", std::vector<std::string>{}) != extra) return false;
        r->ok = true;
        r->cached = true;
        r->library = lib;
        r->compile_s = m.value("compile_s", 0.0);
        return true;
    } catch (const std::exception&) {
        return false;  // unreadable metadata: compile again
    }
}

}  // namespace

std::string halide_target(Device d) {
    const std::string isa = cpu_device_info().fields.value("isa", "baseline");
    std::string host = "x86-64-linux";
    if (isa == "avx512") host += "-sse41-avx-f16c-fma-avx2-avx512-avx512_skylake";
    if (isa == "avx2") host += "-sse41-avx-f16c-fma-avx2";
    if (isa == "sse41") host += "-sse41";
    switch (d) {
        case Device::Cpu:
            return host + "-no_runtime";
        case Device::OpenCL:
            return host + "-opencl-cl_doubles-no_runtime";
        case Device::Cuda:
            return host + "-cuda-cuda_capability_80-no_runtime";
    }
    return host;
}

std::string generator_executable() {
    const char* env = std::getenv("LKC_GENERATORS");
    const std::string exe = env && *env ? env : LKC_GENERATOR_EXE;
    if (exe.empty() || !exists(exe)) {
        throw std::runtime_error("the Halide generator executable '" + exe +
                                 "' does not exist: tuning compiles candidates with the "
                                 "lkc_generators binary of a build "
                                 "tree (set LKC_GENERATORS to its path)");
    }
    return exe;
}

CompileResult compile_candidate(const Candidate& c, Device d, const std::string& device_id,
                                double timeout_s) {
    CompileResult r;
    if (c.builtin) {
        r.ok = true;
        r.cached = true;
        return r;
    }
    const std::string exe = generator_executable();
    const std::string stamp = generator_stamp(exe);
    const std::string lib = cached_kernel_path(device_id, c.name);
    const std::string meta_path = lib.substr(0, lib.size() - 3) + ".json";
    const std::string target = halide_target(d);
    if (cache_hit(lib, meta_path, stamp, target, {}, &r)) return r;
    return build_library(c.generator, c.name, c.params, {}, target, device_id, exe, stamp, lib,
                         meta_path, timeout_s);
}

}  // namespace lkc::tune

namespace lkc::tune {

CompileResult compile_autoscheduled(const Workload& w, Device d, const std::string& device_id,
                                    const std::string& autoscheduler, Candidate* cand,
                                    double timeout_s) {
    if (w.op != Op::DwConv2d) {
        throw std::invalid_argument("autoscheduler comparison builds dense dwconv2d only, not '" +
                                    to_string(w) + "'");
    }
    const std::string gen = generators_for(w).front();
    std::string lower = autoscheduler;
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    const std::string plugin =
        std::string(LKC_HALIDE_LIB_DIR) + "/libautoschedule_" + lower + ".so";
    if (!exists(plugin)) {
        throw std::runtime_error("autoscheduler plugin " + plugin + " does not exist");
    }
    // One library per workload (the estimates are the workload): a stable FNV-1a of its string.
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : to_string(w)) h = (h ^ ch) * 1099511628211ull;
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    Candidate c;
    c.generator = gen;
    c.params = space::canonical(gen, family_of(d), {});
    c.name = gen + "__as_" + lower + "_" + std::string(hex).substr(0, 10) + "_" + device_name(d);
    c.runs = w;
    if (cand) *cand = c;
    std::vector<std::string> extra = {"-p", plugin, "autoscheduler=" + autoscheduler,
                                      "autoscheduler.parallelism=2"};
    if (autoscheduler == "Adams2019") extra.push_back("autoscheduler.beam_size=1");
    space::Params est = {
        {"est_n", std::to_string(w.n)},      {"est_c", std::to_string(w.c)},
        {"est_h", std::to_string(w.h)},      {"est_w", std::to_string(w.w)},
        {"est_kh", std::to_string(w.kh)},    {"est_kw", std::to_string(w.kw)},
        {"est_s", std::to_string(w.stride)}, {"est_d", std::to_string(w.dilation)}};
    for (const auto& kv : est) extra.push_back(kv.first + "=" + kv.second);
    const std::string exe = generator_executable();
    const std::string stamp = generator_stamp(exe);
    const std::string lib = cached_kernel_path(device_id, c.name);
    const std::string meta_path = lib.substr(0, lib.size() - 3) + ".json";
    const std::string target = halide_target(d);
    CompileResult r;
    if (cache_hit(lib, meta_path, stamp, target, extra, &r)) return r;
    return build_library(gen, c.name, {}, extra, target, device_id, exe, stamp, lib, meta_path,
                         timeout_s);
}

}  // namespace lkc::tune
