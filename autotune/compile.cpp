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
    // Cache hit: same generator binary, same target.
    if (exists(lib) && exists(meta_path)) {
        try {
            std::ifstream f(meta_path);
            nlohmann::json m = nlohmann::json::parse(f);
            if (m.value("generator_stamp", "") == stamp && m.value("target", "") == target) {
                r.ok = true;
                r.cached = true;
                r.library = lib;
                r.compile_s = m.value("compile_s", 0.0);
                return r;
            }
        } catch (const std::exception&) {
            // unreadable metadata: compile again
        }
    }
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
    std::vector<std::string> argv = {exe,    "-g", c.generator, "-f", c.name,   "-n",
                                     c.name, "-o", work,        "-e", "object", "target=" + target};
    for (const auto& [k, v] : c.params) argv.push_back(k + "=" + v);
    const ProcessResult gen = run_process(argv, timeout_s);
    r.compile_s = gen.seconds;
    if (!gen.ok()) {
        r.error = "generator " + gen.describe() + ": " + tail(gen.output);
        std::system(("rm -rf '" + work + "'").c_str());
        return r;
    }
    const char* cxx_env = std::getenv("CXX");
    const std::string cxx = cxx_env && *cxx_env ? cxx_env : "c++";
    const std::string so_tmp = work + "/" + c.name + ".so";
    const ProcessResult link =
        run_process({cxx, "-shared", "-o", so_tmp, work + "/" + c.name + ".o"}, timeout_s);
    r.compile_s += link.seconds;
    if (!link.ok()) {
        r.error = "link (" + cxx + ") " + link.describe() + ": " + tail(link.output);
        std::system(("rm -rf '" + work + "'").c_str());
        return r;
    }
    // Publish: library first, then its metadata (a reader trusts the library only with both).
    nlohmann::json m = {{"generator", c.generator}, {"params", c.params},
                        {"name", c.name},           {"target", target},
                        {"device_id", device_id},   {"generator_stamp", stamp},
                        {"compile_s", r.compile_s}};
    const std::string meta_tmp = work + "/meta.json";
    {
        std::ofstream f(meta_tmp);
        f << m.dump(1) << "\n";
    }
    if (std::rename(so_tmp.c_str(), lib.c_str()) != 0 ||
        std::rename(meta_tmp.c_str(), meta_path.c_str()) != 0) {
        r.error = "cannot move the compiled candidate into " + dir;
        std::system(("rm -rf '" + work + "'").c_str());
        return r;
    }
    std::system(("rm -rf '" + work + "'").c_str());
    r.ok = true;
    r.library = lib;
    return r;
}

}  // namespace lkc::tune
