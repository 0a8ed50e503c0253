#include "runtime/workload.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

namespace lkc {

namespace {

constexpr int kMaxKernel = 63;
constexpr int kMaxDilation = 7;

const char* const kGrammar = "<op>:<pass>:n<N>c<C>h<H>w<W>:<kernel>[:s<S>][:d<D>][:<dtype>]";
const char* const kOps = "dwconv2d, dwconv2d_multi, dwconv2d_sparse, shiftwise";
const char* const kPasses = "fwd, bwd_data, bwd_weight";
const char* const kDtypes = "f32, f16, bf16";

[[noreturn]] void fail(const std::string& whole, const std::string& detail) {
    throw WorkloadError("invalid workload '" + whole + "': " + detail);
}

// A cursor over one ':'-separated field. Messages name the field, quote its text and end with the
// expected form.
class FieldParser {
  public:
    FieldParser(const std::string& whole, std::string name, const std::string& text,
                std::string expected)
        : whole_(whole), name_(std::move(name)), text_(text), expected_(std::move(expected)) {}

    [[noreturn]] void fail(const std::string& what) const {
        lkc::fail(whole_, name_ + " '" + text_ + "': " + what + " (expected " + expected_ + ")");
    }

    bool at_end() const { return pos_ >= text_.size(); }

    bool eat(char ch) {
        if (!at_end() && text_[pos_] == ch) {
            ++pos_;
            return true;
        }
        return false;
    }

    // Requires the literal `ch`; `item` names what it introduces, e.g. "w<W>".
    void expect(char ch, const char* item) {
        if (eat(ch)) return;
        if (at_end()) fail(std::string("missing '") + item + "'");
        fail(std::string("expected '") + ch + "' at position " + std::to_string(pos_) + ", got '" +
             text_.substr(pos_) + "'");
    }

    // Decimal integer in 1..2^31-1: digits only, no sign, no leading zero.
    int number(const std::string& what) {
        if (at_end()) fail("missing " + what);
        char first = text_[pos_];
        if (first == '+') fail("'+' sign in " + what + "; write plain digits");
        if (first == '-') fail(what + " is negative; must be >= 1");
        if (first < '0' || first > '9') {
            fail("expected digits for " + what + ", got '" + text_.substr(pos_) + "'");
        }
        size_t begin = pos_;
        int64_t value = 0;
        bool overflow = false;
        while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') {
            if (!overflow) {
                value = value * 10 + (text_[pos_] - '0');
                if (value > INT_MAX) overflow = true;
            }
            ++pos_;
        }
        std::string digits = text_.substr(begin, pos_ - begin);
        if (overflow) fail(what + " " + digits + " exceeds 2^31-1 = 2147483647");
        if (value == 0) fail(what + " is 0; must be >= 1");
        if (digits[0] == '0') fail("leading zero in " + what + " '" + digits + "'");
        return static_cast<int>(value);
    }

    void end() {
        if (!at_end()) fail("unexpected trailing characters '" + text_.substr(pos_) + "'");
    }

  private:
    const std::string& whole_;
    std::string name_;
    const std::string& text_;
    std::string expected_;
    size_t pos_ = 0;
};

void check_extent(FieldParser& f, int k, const std::string& what) {
    if (k > kMaxKernel) {
        f.fail(what + " " + std::to_string(k) + " is out of range 1.." +
               std::to_string(kMaxKernel));
    }
    if (k % 2 == 0) {
        f.fail(what + " " + std::to_string(k) + " is even; only odd kernels have 'same' padding");
    }
}

void check_dilation(FieldParser& f, int d, const std::string& what) {
    if (d > kMaxDilation) {
        f.fail(what + " " + std::to_string(d) + " is out of range 1.." +
               std::to_string(kMaxDilation));
    }
}

std::vector<std::string> split_fields(const std::string& s) {
    std::vector<std::string> out;
    size_t begin = 0;
    while (true) {
        size_t colon = s.find(':', begin);
        if (colon == std::string::npos) {
            out.push_back(s.substr(begin));
            return out;
        }
        out.push_back(s.substr(begin, colon - begin));
        begin = colon + 1;
    }
}

void parse_shape(const std::string& whole, const std::string& text, Workload* wl) {
    FieldParser f(whole, "shape field", text, "n<N>c<C>h<H>w<W>, each size in 1..2^31-1");
    f.expect('n', "n<N>");
    wl->n = f.number("batch N");
    f.expect('c', "c<C>");
    wl->c = f.number("channels C");
    f.expect('h', "h<H>");
    wl->h = f.number("height H");
    f.expect('w', "w<W>");
    wl->w = f.number("width W");
    f.end();
}

void parse_kernel(const std::string& whole, const std::string& text, Workload* wl) {
    switch (wl->op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse: {
            FieldParser f(whole, "kernel field", text, "k<Kh>x<Kw> with odd Kh, Kw in 1..63");
            f.expect('k', "k<Kh>");
            wl->kh = f.number("kernel height");
            f.expect('x', "x<Kw>");
            wl->kw = f.number("kernel width");
            f.end();
            check_extent(f, wl->kh, "kernel height");
            check_extent(f, wl->kw, "kernel width");
            return;
        }
        case Op::DwConv2dMulti: {
            FieldParser f(whole, "kernel field", text,
                          "b<Kh>x<Kw>d<D>(,<Kh>x<Kw>d<D>)* with odd Kh, Kw in 1..63 and D in "
                          "1..7");
            f.expect('b', "b<Kh>x<Kw>d<D>");
            do {
                std::string br = "branch " + std::to_string(wl->branches.size() + 1);
                Branch b{};
                b.kh = f.number(br + " kernel height");
                f.expect('x', "x<Kw>");
                b.kw = f.number(br + " kernel width");
                f.expect('d', "d<D>");
                b.dilation = f.number(br + " dilation");
                check_extent(f, b.kh, br + " kernel height");
                check_extent(f, b.kw, br + " kernel width");
                check_dilation(f, b.dilation, br + " dilation");
                wl->branches.push_back(b);
            } while (f.eat(','));
            f.end();
            return;
        }
        case Op::ShiftWise: {
            FieldParser f(whole, "kernel field", text,
                          "K<K>k<k>g<G> with odd k <= K in 1..63 and G >= 1");
            f.expect('K', "K<K>");
            wl->big_k = f.number("big kernel K");
            f.expect('k', "k<k>");
            wl->small_k = f.number("small kernel k");
            f.expect('g', "g<G>");
            wl->groups = f.number("groups G");
            f.end();
            check_extent(f, wl->big_k, "big kernel K");
            check_extent(f, wl->small_k, "small kernel k");
            if (wl->big_k < wl->small_k) {
                f.fail("big kernel K=" + std::to_string(wl->big_k) +
                       " is smaller than small kernel k=" + std::to_string(wl->small_k));
            }
            return;
        }
    }
}

// Optional trailing fields, in this order.
enum OptionKind { kStride = 0, kDilation = 1, kDtype = 2 };
const char* const kOptionNames[] = {"stride ':s'", "dilation ':d'", "dtype"};

void parse_option(const std::string& whole, const std::string& text, int* last_kind, bool seen[3],
                  Workload* wl) {
    OptionKind kind;
    if (text[0] == 's') {
        kind = kStride;
    } else if (text[0] == 'd') {
        kind = kDilation;
    } else {
        kind = kDtype;
        if (text != "f32" && text != "f16" && text != "bf16") {
            if (seen[kDtype]) {
                fail(whole, "unexpected trailing field '" + text +
                                "' after the dtype; the dtype is the last field");
            }
            fail(whole, "unknown dtype '" + text + "'; expected one of " + kDtypes +
                            " (optional fields are s<S>, d<D>, dtype, in that order)");
        }
    }

    if (kind == kStride && wl->op == Op::ShiftWise) {
        fail(whole, "shiftwise takes no ':" + text + "'; it is defined for stride 1 only");
    }
    if (kind == kDilation && wl->op == Op::ShiftWise) {
        fail(whole, "shiftwise takes no ':" + text + "'; it has no dilation");
    }
    if (kind == kDilation && wl->op == Op::DwConv2dMulti) {
        fail(whole, "dwconv2d_multi takes no global ':" + text +
                        "'; each branch carries its own dilation in the kernel field "
                        "(b<Kh>x<Kw>d<D>,...)");
    }
    if (seen[kind]) {
        fail(whole, std::string("duplicate ") + kOptionNames[kind] + " field '" + text + "'");
    }
    if (kind < *last_kind) {
        fail(whole, std::string(kOptionNames[kind]) + " field '" + text +
                        "' must come before the " + kOptionNames[*last_kind] +
                        " field (order is s<S>, d<D>, dtype)");
    }
    seen[kind] = true;
    *last_kind = kind;

    switch (kind) {
        case kStride: {
            FieldParser f(whole, "stride field", text, "s1 or s2");
            f.expect('s', "s<S>");
            wl->stride = f.number("stride");
            f.end();
            if (wl->stride != 1 && wl->stride != 2) {
                f.fail("stride " + std::to_string(wl->stride) + " is not supported");
            }
            return;
        }
        case kDilation: {
            FieldParser f(whole, "dilation field", text, "d<D> with D in 1..7");
            f.expect('d', "d<D>");
            wl->dilation = f.number("dilation");
            f.end();
            check_dilation(f, wl->dilation, "dilation");
            return;
        }
        case kDtype:
            wl->dtype = text == "f32"   ? ElemType::F32
                        : text == "f16" ? ElemType::F16
                                        : ElemType::BF16;
            return;
    }
}

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

int64_t ceil_div(int64_t a, int64_t b) {  // b > 0
    return -floor_div(-a, b);
}

// Sum over outputs i in [0, out) of the taps u in [0, k) that land inside [0, in):
// 0 <= i*s + u*d - p < in. Counted per tap u as an interval of i, so O(k).
int64_t valid_taps_1d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t p) {
    int64_t total = 0;
    for (int64_t u = 0; u < k; ++u) {
        int64_t off = u * d - p;
        int64_t lo = std::max<int64_t>(0, ceil_div(-off, s));
        int64_t hi = std::min<int64_t>(out - 1, floor_div(in - 1 - off, s));
        if (hi >= lo) total += hi - lo + 1;
    }
    return total;
}

int ceil_div_int(int a, int b) { return static_cast<int>((int64_t{a} + b - 1) / b); }

}  // namespace

const char* op_name(Op op) {
    switch (op) {
        case Op::DwConv2d:
            return "dwconv2d";
        case Op::DwConv2dMulti:
            return "dwconv2d_multi";
        case Op::DwConv2dSparse:
            return "dwconv2d_sparse";
        case Op::ShiftWise:
            return "shiftwise";
    }
    return "?";
}

const char* pass_name(Pass pass) {
    switch (pass) {
        case Pass::Fwd:
            return "fwd";
        case Pass::BwdData:
            return "bwd_data";
        case Pass::BwdWeight:
            return "bwd_weight";
    }
    return "?";
}

const char* elem_type_name(ElemType t) {
    switch (t) {
        case ElemType::F32:
            return "f32";
        case ElemType::F16:
            return "f16";
        case ElemType::BF16:
            return "bf16";
    }
    return "?";
}

bool operator==(const Branch& a, const Branch& b) {
    return a.kh == b.kh && a.kw == b.kw && a.dilation == b.dilation;
}

bool operator==(const Workload& a, const Workload& b) {
    return a.op == b.op && a.pass == b.pass && a.n == b.n && a.c == b.c && a.h == b.h &&
           a.w == b.w && a.kh == b.kh && a.kw == b.kw && a.branches == b.branches &&
           a.big_k == b.big_k && a.small_k == b.small_k && a.groups == b.groups &&
           a.stride == b.stride && a.dilation == b.dilation && a.dtype == b.dtype;
}

int Workload::out_h() const { return ceil_div_int(h, stride); }
int Workload::out_w() const { return ceil_div_int(w, stride); }

int Workload::pad_h() const {
    switch (op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            return dilation * (kh - 1) / 2;
        case Op::DwConv2dMulti: {
            int p = 0;
            for (const Branch& b : branches) p = std::max(p, b.dilation * (b.kh - 1) / 2);
            return p;
        }
        case Op::ShiftWise:
            return big_k / 2;
    }
    return 0;
}

int Workload::pad_w() const {
    switch (op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            return dilation * (kw - 1) / 2;
        case Op::DwConv2dMulti: {
            int p = 0;
            for (const Branch& b : branches) p = std::max(p, b.dilation * (b.kw - 1) / 2);
            return p;
        }
        case Op::ShiftWise:
            return big_k / 2;
    }
    return 0;
}

int Workload::num_sub_kernels() const {
    if (op != Op::ShiftWise || small_k <= 0) return 0;
    return (big_k + small_k - 1) / small_k;
}

double Workload::nominal_flops() const {
    const double nc2 = 2.0 * n * c;
    const double ohw = static_cast<double>(out_h()) * out_w();
    switch (op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            return nc2 * ohw * kh * kw;
        case Op::DwConv2dMulti: {
            double taps = 0;
            for (const Branch& b : branches) taps += static_cast<double>(b.kh) * b.kw;
            return nc2 * ohw * taps;
        }
        case Op::ShiftWise: {
            const double k = small_k;
            const double strip = static_cast<double>(num_sub_kernels()) * small_k;
            return nc2 * ohw * (2.0 * k * strip + k * k);
        }
    }
    return 0;
}

Workload cropped_to_map(const Workload& w) {
    if (w.op != Op::DwConv2d) return w;
    auto reach = [&](int k, int extent) {
        return 2 * std::min((k - 1) / 2, (extent - 1) / w.dilation) + 1;
    };
    Workload c = w;
    c.kh = reach(w.kh, w.h);
    c.kw = reach(w.kw, w.w);
    return c;
}

double Workload::useful_flops() const {
    const double nc2 = 2.0 * n * c;
    const int oh = out_h(), ow = out_w();
    // Valid taps factorise: per output (i, j) they are (valid rows at i) x (valid cols at j), so
    // the sum over outputs is (sum_i rows) x (sum_j cols).
    auto conv_taps = [&](int k_h, int k_w, int d, int p_h, int p_w) {
        return static_cast<double>(valid_taps_1d(h, oh, k_h, stride, d, p_h)) *
               static_cast<double>(valid_taps_1d(w, ow, k_w, stride, d, p_w));
    };
    switch (op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            return nc2 * conv_taps(kh, kw, dilation, pad_h(), pad_w());
        case Op::DwConv2dMulti: {
            double taps = 0;
            for (const Branch& b : branches) {
                taps += conv_taps(b.kh, b.kw, b.dilation, b.dilation * (b.kh - 1) / 2,
                                  b.dilation * (b.kw - 1) / 2);
            }
            return nc2 * taps;
        }
        case Op::ShiftWise: {
            // Strip offsets are -K/2 .. -K/2 + nk*k - 1; the small kernel is centred.
            const int k = small_k, e = (small_k - 1) / 2;
            const int strip = num_sub_kernels() * small_k, mid = big_k / 2;
            return nc2 * (conv_taps(k, strip, 1, e, mid) + conv_taps(strip, k, 1, mid, e) +
                          conv_taps(k, k, 1, e, e));
        }
    }
    return 0;
}

Workload parse_workload(const std::string& s) {
    if (s.empty()) fail(s, std::string("empty string; expected ") + kGrammar);
    std::vector<std::string> fields = split_fields(s);
    if (fields.size() < 4) {
        fail(s, "has " + std::to_string(fields.size()) +
                    " ':'-separated field(s); expected 4 to 7: " + kGrammar);
    }
    static const char* const kFieldNames[] = {"op", "pass", "shape", "kernel"};
    for (size_t i = 0; i < fields.size(); ++i) {
        if (fields[i].empty()) {
            fail(s, "field " + std::to_string(i + 1) + " (" +
                        (i < 4 ? kFieldNames[i] : "optional s<S>|d<D>|dtype") + ") is empty");
        }
    }

    Workload wl;
    const std::string& op = fields[0];
    if (op == "dwconv2d") {
        wl.op = Op::DwConv2d;
    } else if (op == "dwconv2d_multi") {
        wl.op = Op::DwConv2dMulti;
    } else if (op == "dwconv2d_sparse") {
        wl.op = Op::DwConv2dSparse;
    } else if (op == "shiftwise") {
        wl.op = Op::ShiftWise;
    } else {
        fail(s, "unknown op '" + op + "'; expected one of " + kOps);
    }

    const std::string& pass = fields[1];
    if (pass == "fwd") {
        wl.pass = Pass::Fwd;
    } else if (pass == "bwd_data") {
        wl.pass = Pass::BwdData;
    } else if (pass == "bwd_weight") {
        wl.pass = Pass::BwdWeight;
    } else {
        fail(s, "unknown pass '" + pass + "'; expected one of " + kPasses);
    }

    parse_shape(s, fields[2], &wl);
    parse_kernel(s, fields[3], &wl);

    int last_kind = kStride;
    bool seen[3] = {false, false, false};
    for (size_t i = 4; i < fields.size(); ++i) parse_option(s, fields[i], &last_kind, seen, &wl);
    return wl;
}

std::string to_string(const Workload& w) {
    std::string s = std::string(op_name(w.op)) + ":" + pass_name(w.pass) + ":n" +
                    std::to_string(w.n) + "c" + std::to_string(w.c) + "h" + std::to_string(w.h) +
                    "w" + std::to_string(w.w) + ":";
    switch (w.op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            s += "k" + std::to_string(w.kh) + "x" + std::to_string(w.kw);
            break;
        case Op::DwConv2dMulti:
            s += "b";
            for (size_t i = 0; i < w.branches.size(); ++i) {
                const Branch& b = w.branches[i];
                if (i > 0) s += ",";
                s += std::to_string(b.kh) + "x" + std::to_string(b.kw) + "d" +
                     std::to_string(b.dilation);
            }
            break;
        case Op::ShiftWise:
            s += "K" + std::to_string(w.big_k) + "k" + std::to_string(w.small_k) + "g" +
                 std::to_string(w.groups);
            break;
    }
    if (w.stride != 1) s += ":s" + std::to_string(w.stride);
    if (w.dilation != 1) s += ":d" + std::to_string(w.dilation);
    s += std::string(":") + elem_type_name(w.dtype);

    // Every printed name must parse back to the same workload.
    Workload back;
    try {
        back = parse_workload(s);
    } catch (const WorkloadError& e) {
        throw WorkloadError(std::string("to_string: workload is outside the grammar: ") + e.what());
    }
    if (back != w) {
        throw WorkloadError("to_string: workload '" + s + "' sets fields that " + op_name(w.op) +
                            " does not use (kh/kw for dwconv2d and dwconv2d_sparse, branches for "
                            "dwconv2d_multi, big_k/small_k/groups for shiftwise; others must keep "
                            "their defaults)");
    }
    return s;
}

}  // namespace lkc
