#include "autotune/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace lkc::tune {

namespace {
constexpr size_t kOutputCap = size_t{1} << 20;

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string ProcessResult::describe() const {
    if (timed_out) return "timed out after " + std::to_string(int(seconds + 0.5)) + " s";
    if (signal)
        return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
    return "exit code " + std::to_string(exit_code);
}

std::string self_executable() {
    char buf[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
    return std::string(buf, size_t(n));
}

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s,
                          const std::string& stdin_text,
                          const std::function<void(const std::string&)>& on_line,
                          const std::vector<std::string>& extra_env) {
    if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
    int out_pipe[2], in_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(in_pipe, O_CLOEXEC) != 0) {
        throw std::runtime_error(std::string("pipe: ") + strerror(errno));
    }
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (const std::string& kv : extra_env) {
        const std::string key = kv.substr(0, kv.find('=') + 1);
        for (auto it = env.begin(); it != env.end();)
            it = it->rfind(key, 0) == 0 ? env.erase(it) : it + 1;
        env.push_back(kv);
    }
    std::vector<char*> cargv, cenv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const std::string& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    const double t0 = now_s();
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);  // own group: a timeout kills the child's children too
        dup2(in_pipe[0], 0);
        dup2(out_pipe[1], 1);
        dup2(out_pipe[1], 2);
        environ = cenv.data();
        execvp(cargv[0], cargv.data());
        const std::string msg =
            std::string("cannot run ") + argv[0] + ": " + strerror(errno) + "\n";
        (void)!write(2, msg.data(), msg.size());
        _exit(127);
    }
    setpgid(pid, pid);
    close(in_pipe[0]);
    close(out_pipe[1]);
    // Feed stdin (requests are small; a full pipe would only block a child that reads nothing).
    size_t off = 0;
    while (off < stdin_text.size()) {
        const ssize_t n = write(in_pipe[1], stdin_text.data() + off, stdin_text.size() - off);
        if (n <= 0) break;
        off += size_t(n);
    }
    close(in_pipe[1]);

    ProcessResult r;
    std::string pending;
    bool open = true;
    while (open) {
        const double left = timeout_s - (now_s() - t0);
        if (left <= 0) {
            r.timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        pollfd p{out_pipe[0], POLLIN, 0};
        const int pr = poll(&p, 1, int(std::min(left, 1.0) * 1000) + 1);
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        char buf[65536];
        const ssize_t n = read(out_pipe[0], buf, sizeof(buf));
        if (n <= 0) {
            open = false;
            break;
        }
        r.output.append(buf, size_t(n));
        if (r.output.size() > kOutputCap) r.output.erase(0, r.output.size() - kOutputCap);
        if (on_line) {
            pending.append(buf, size_t(n));
            size_t nl;
            while ((nl = pending.find('\n')) != std::string::npos) {
                on_line(pending.substr(0, nl));
                pending.erase(0, nl + 1);
            }
        }
    }
    close(out_pipe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (on_line && !pending.empty()) on_line(pending);
    r.seconds = now_s() - t0;
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    if (r.timed_out) r.signal = 0;
    return r;
}

}  // namespace lkc::tune
