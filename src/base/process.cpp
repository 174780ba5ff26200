#include "ktstr/base/process.hpp"

#include "ktstr/base/error.hpp"
#include "ktstr/base/fd.hpp"

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <spawn.h>
#include <sstream>
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

// posix_spawn with optional cwd and stdout redirection; returns the child's pid.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options, int stdout_fd) {
    if (argv.empty())
        throw Error("spawn: empty command");
    auto program = argv[0].find('/') == std::string::npos ? find_program(argv[0])
                                                          : std::optional<fs::path>(argv[0]);
    if (!program)
        throw Error("'" + argv[0] + "' not found on PATH");

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (stdout_fd >= 0)
        posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
    // Sources first move above every target, so that one redirect cannot clobber the
    // source of the next.
    std::vector<UniqueFd> sources;
    for (auto [from, to] : options.redirects) {
        sources.emplace_back(::fcntl(from, F_DUPFD_CLOEXEC, 64));
        if (!sources.back())
            throw_errno("cannot duplicate descriptor " + std::to_string(from));
        posix_spawn_file_actions_adddup2(&actions, sources.back().get(), to);
    }
    if (options.cwd)
        posix_spawn_file_actions_addchdir_np(&actions, options.cwd->c_str());

    std::vector<char*> args;
    for (const auto& arg : argv)
        args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);

    pid_t pid = 0;
    int err = ::posix_spawn(&pid, program->c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0)
        throw_errno("cannot run " + program->string(), err);
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

ExitStatus ChildProcess::wait() { return wait_for(pid_); }

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
    pid_t pid = spawn(argv, options, write_end.get());
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
    ExitStatus status = wait_for(pid);
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
