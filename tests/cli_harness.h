// The fixture of the CLI tests (test_lkc_op, test_lkc_run, test_lkc_compile): a private temp
// directory per test, and running a command (or the lkc binary, LKC_BINARY) with its exit code,
// stdout and stderr captured.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#ifndef LKC_BINARY
#error "LKC_BINARY must name the lkc executable"
#endif

namespace lkc::test {

struct Result {
    int code;
    std::string out, err;
};

class CliTest : public testing::Test {
  protected:
    void SetUp() override {
        const testing::TestInfo* t = testing::UnitTest::GetInstance()->current_test_info();
        dir_ = std::filesystem::temp_directory_path() /
               ("lkc_" + std::string(t->test_suite_name()) + "_" + std::to_string(::getpid()) +
                "_" + t->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    Result sh(const std::string& cmd) const {
        const std::string out = path("stdout.txt"), err = path("stderr.txt");
        const int status = std::system((cmd + " >" + out + " 2>" + err).c_str());
        Result r;
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }
    Result lkc(const std::string& args) const { return sh(std::string(LKC_BINARY) + " " + args); }
    static std::string slurp(const std::string& p) {
        std::ifstream f(p);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }

    std::filesystem::path dir_;
};

}  // namespace lkc::test
