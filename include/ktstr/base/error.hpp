#pragma once

#include <stdexcept>
#include <string>

namespace ktstr {

// A failure while doing the job (the host, KVM or the guest misbehaved): exit status 1.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Bad input from the user (options, topology, a kernel image): exit status 2.
class UsageError : public Error {
  public:
    using Error::Error;
};

// Throws Error("<what>: <strerror(errno)>").
[[noreturn]] void throw_errno(const std::string& what);
[[noreturn]] void throw_errno(const std::string& what, int err);

} // namespace ktstr
