// Small helpers shared by the whole-network benchmarks (bench_models, bench_train).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace lkc::bench {

// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> v;
    std::string item;
    for (char c : s + ",") {
        if (c == ',') {
            if (!item.empty()) v.push_back(item);
            item.clear();
        } else {
            item += c;
        }
    }
    return v;
}

// The upper median (element n/2 after sorting); 0 for no values.
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace lkc::bench
