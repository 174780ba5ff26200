#pragma once

// What every fuzz target shares. A target is one source file with one
//
//     KTSTR_FUZZ_TARGET(name) { ... data, size ... }
//
// Built with KTSTR_LIBFUZZER (the clang build under -DKTSTR_FUZZ=ON), the body is
// LLVMFuzzerTestOneInput. Otherwise (tests/fuzz_replay_test.cpp includes every target source
// into one translation unit) it is a function registered under `name`, which the replay test
// runs on each file in tests/fuzz_corpus/<name>/. So each target keeps its helpers in a
// namespace of its own (ktstr_fuzz_<name>), never in an anonymous one.
//
// Expected failures (ktstr::Error and its subclasses: GuestMemoryError, VirtqueueError,
// UsageError) are caught inside the target; anything else escaping it, a sanitizer report, or
// a KTSTR_FUZZ_CHECK that fails is a finding.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace ktstr::fuzz {

using Entry = int (*)(const std::uint8_t*, std::size_t);

// Every target compiled into this program, by name (replay builds only).
inline std::map<std::string, Entry>& registry() {
    static std::map<std::string, Entry> targets;
    return targets;
}

struct Registration {
    Registration(const char* name, Entry entry) { registry().emplace(name, entry); }
};

// A target's invariant does not hold.
class InvariantViolation : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

[[noreturn]] inline void violated(const char* what, const char* file, int line) {
    std::string message =
        std::string(file) + ":" + std::to_string(line) + ": fuzz invariant violated: " + what;
#ifdef KTSTR_LIBFUZZER
    std::fprintf(stderr, "%s\n", message.c_str());
    std::abort(); // libFuzzer saves the input as a crash
#else
    throw InvariantViolation(message);
#endif
}

// The fuzz input, read front to back as the operands of a little program; past its end
// every read yields zeros, so any prefix of an input is an input too.
class Input {
  public:
    Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    bool empty() const { return at_ >= size_; }
    std::size_t remaining() const { return empty() ? 0 : size_ - at_; }

    std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
    std::uint16_t u16() { return std::uint16_t(u8() | unsigned(u8()) << 8); }
    std::uint32_t u32() { return std::uint32_t(u16() | std::uint32_t(u16()) << 16); }
    std::uint64_t u64() { return u32() | std::uint64_t(u32()) << 32; }
    bool flag() { return u8() & 1; }
    // At most `n` bytes, fewer at the end of the input.
    std::span<const std::uint8_t> bytes(std::size_t n) {
        n = std::min(n, remaining());
        std::span<const std::uint8_t> out(data_ + at_, n);
        at_ += n;
        return out;
    }
    std::span<const std::uint8_t> rest() { return bytes(remaining()); }

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t at_ = 0;
};

} // namespace ktstr::fuzz

#define KTSTR_FUZZ_CHECK(condition)                                                                \
    ((condition) ? (void)0 : ::ktstr::fuzz::violated(#condition, __FILE__, __LINE__))

#ifdef KTSTR_LIBFUZZER
#define KTSTR_FUZZ_TARGET(name)                                                                    \
    static int ktstr_fuzz_body_##name(const std::uint8_t* data, std::size_t size);                 \
    extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {            \
        return ktstr_fuzz_body_##name(data, size);                                                 \
    }                                                                                              \
    static int ktstr_fuzz_body_##name(const std::uint8_t* data, std::size_t size)
#else
#define KTSTR_FUZZ_TARGET(name)                                                                    \
    static int ktstr_fuzz_body_##name(const std::uint8_t* data, std::size_t size);                 \
    static const ::ktstr::fuzz::Registration ktstr_fuzz_registration_##name(                       \
        #name, ktstr_fuzz_body_##name);                                                            \
    static int ktstr_fuzz_body_##name(const std::uint8_t* data, std::size_t size)
#endif
