#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ktstr {

// How a child process ended, in the shell's convention: its exit code, or 128 + signal.
struct ExitStatus {
    int code = 0;
    bool signaled = false;
    bool ok() const { return code == 0 && !signaled; }
};

struct SpawnOptions {
    std::optional<std::filesystem::path> cwd;
    // Replaces stdout with /dev/null (stderr still reaches the user).
    bool quiet = false;
    // dup2(from, to) in the child, in order, after `quiet`.
    std::vector<std::pair<int, int>> redirects;
    // Set in the child's environment, over this process's.
    std::vector<std::pair<std::string, std::string>> environment;
};

// The absolute path of `name` found on $PATH (plus the sbin directories), if any.
std::optional<std::filesystem::path> find_program(const std::string& name);

// A started child process; wait() reaps it. One that is dropped unwaited (an exception
// between start and wait) is killed and reaped, so no child outlives the code that
// started it. Children also get SIGKILL when ktstr dies, however it dies (the kernel's
// parent-death signal), so none outlives ktstr either.
class ChildProcess {
  public:
    explicit ChildProcess(int pid) : pid_(pid) {}
    ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
    ChildProcess& operator=(ChildProcess&&) = delete;
    ChildProcess(const ChildProcess&) = delete;
    ~ChildProcess();
    int pid() const { return pid_; }
    ExitStatus wait();
    void kill(int signal) const;

  private:
    int pid_;
};

// Starts argv[0] (looked up on $PATH) without waiting for it.
ChildProcess start_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Runs argv[0] (looked up on $PATH) and waits for it.
ExitStatus run_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Runs argv and returns its standard output; a non-zero exit throws Error naming the program.
std::string capture_output(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Like run_process, but throws Error naming the command when it fails.
void check_run(const std::vector<std::string>& argv, const SpawnOptions& options = {});

} // namespace ktstr
