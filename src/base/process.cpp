#include "ktstr/base/process.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <sstream>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;

namespace ktstr {
namespace {

std::string describe(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& arg : argv)
        text += (text.empty() ? "" : " ") + arg;
    return text;
}

ExitStatus wait_for(int pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            throw_errno("waitpid");
    }
    if (WIFSIGNALED(status))
        return {128 + WTERMSIG(status), true};
    return {WEXITSTATUS(status), false};
}

// fork and exec with optional cwd and descriptor redirection; returns the child's pid. The
// child gets SIGKILL when this thread ends (PR_SET_PDEATHSIG): ktstr spawns from its
// main thread, so a SIGKILLed ktstr leaves no child behind.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options, int stdout_fd) {
    if (argv.empty())
        throw Error("spawn: empty command");
    auto program = argv[0].find('/') == std::string::npos ? find_program(argv[0])
                                                          : std::optional<fs::path>(argv[0]);
    if (!program)
        throw Error("'" + argv[0] + "' not found on PATH");

    // Everything the child needs is prepared here: after fork only async-signal-safe calls.
    std::vector<std::pair<UniqueFd, int>> moves;
    if (stdout_fd >= 0)
        moves.emplace_back(UniqueFd(::fcntl(stdout_fd, F_DUPFD_CLOEXEC, 64)), STDOUT_FILENO);
    // Sources first move above every target, so that one redirect cannot clobber the
    // source of the next.
    for (auto [from, to] : options.redirects)
        moves.emplace_back(UniqueFd(::fcntl(from, F_DUPFD_CLOEXEC, 64)), to);
    for (const auto& [fd, to] : moves)
        if (!fd)
            throw_errno("cannot duplicate a descriptor for " + argv[0]);
    std::vector<char*> args;
    for (const auto& arg : argv)
        args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> variables;
    for (char** entry = environ; *entry; ++entry) {
        std::string_view text(*entry);
        bool replaced = std::any_of(
            options.environment.begin(), options.environment.end(),
            [&](const auto& variable) { return text.starts_with(variable.first + "="); });
        if (!replaced)
            variables.emplace_back(text);
    }
    for (const auto& [name, value] : options.environment)
        variables.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& variable : variables)
        envp.push_back(variable.data());
    envp.push_back(nullptr);
    pid_t parent = ::getpid();
    int error_pipe[2];
    if (::pipe2(error_pipe, O_CLOEXEC) != 0)
        throw_errno("pipe");

    pid_t pid = ::fork();
    if (pid < 0) {
        int err = errno;
        ::close(error_pipe[0]);
        ::close(error_pipe[1]);
        throw_errno("fork", err);
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) // the parent died before the line above
            ::_exit(127);
        for (const auto& [fd, to] : moves)
            ::dup2(fd.get(), to);
        if (options.cwd && ::chdir(options.cwd->c_str()) != 0) {
            int err = errno;
            [[maybe_unused]] ssize_t n = ::write(error_pipe[1], &err, sizeof err);
            ::_exit(127);
        }
        ::execve(program->c_str(), args.data(), envp.data());
        int err = errno;
        [[maybe_unused]] ssize_t n = ::write(error_pipe[1], &err, sizeof err);
        ::_exit(127);
    }
    ::close(error_pipe[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = ::read(error_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    ::close(error_pipe[0]);
    if (n == sizeof child_errno) { // exec failed: reap the child and say why
        int status;
        ::waitpid(pid, &status, 0);
        throw_errno("cannot run " + program->string(), child_errno);
    }
    return pid;
}

} // namespace

std::optional<fs::path> find_program(const std::string& name) {
    const char* path_env = std::getenv("PATH");
    std::string search = std::string(path_env ? path_env : "/usr/bin:/bin") + ":/usr/sbin:/sbin";
    std::istringstream dirs(search);
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (dir.empty())
            continue;
        fs::path candidate = fs::path(dir) / name;
        if (::access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate))
            return candidate;
    }
    return std::nullopt;
}

ChildProcess::~ChildProcess() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

ExitStatus ChildProcess::wait() {
    if (pid_ <= 0)
        throw Error("waiting for a child process twice");
    ExitStatus status = wait_for(pid_);
    pid_ = -1;
    return status;
}

void ChildProcess::kill(int signal) const {
    if (pid_ > 0)
        ::kill(pid_, signal);
}

ChildProcess start_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
    UniqueFd devnull;
    if (options.quiet)
        devnull = UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    return ChildProcess(spawn(argv, options, devnull.get()));
}

ExitStatus run_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
    return start_process(argv, options).wait();
}

std::string capture_output(const std::vector<std::string>& argv, const SpawnOptions& options) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("pipe");
    UniqueFd read_end(fds[0]);
    UniqueFd write_end(fds[1]);
    ChildProcess child(spawn(argv, options, write_end.get()));
    write_end.reset();

    std::string output;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::read(read_end.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        output.append(buffer, static_cast<std::size_t>(n));
    }
    ExitStatus status = child.wait();
    if (!status.ok())
        throw Error("'" + describe(argv) + "' failed with status " + std::to_string(status.code));
    return output;
}

void check_run(const std::vector<std::string>& argv, const SpawnOptions& options) {
    ExitStatus status = run_process(argv, options);
    if (!status.ok())
        throw Error("'" + describe(argv) + "' failed with status " + std::to_string(status.code));
}

} // namespace ktstr
