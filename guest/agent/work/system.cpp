// Work types that lean on the kernel: files, processes, memory, cgroups, other programs.
#include "../worker.hpp"

#include <fcntl.h>
#include <fstream>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace ktstr::agent {
namespace {

void sync_io(WorkerContext& ctx) {
    std::string path = "/tmp/ktstr-io-" + std::to_string(ctx.spec().worker_id);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    std::vector<char> block(ctx.param<std::size_t>("bytes", 4096), 'k');
    while (fd >= 0 && !ctx.stopping()) {
        if (::pwrite(fd, block.data(), block.size(), 0) < 0)
            break;
        ctx.will_block();
        ::fdatasync(fd);
        ctx.unit();
    }
    ::close(fd);
    ::unlink(path.c_str());
}

void fork_exit(WorkerContext& ctx) {
    while (!ctx.stopping()) {
        pid_t child = ::fork();
        if (child == 0)
            ::_exit(0);
        ctx.will_block();
        int status;
        while (child > 0 && ::waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        ctx.unit();
    }
}

void pagefault_churn(WorkerContext& ctx) {
    std::size_t size = ctx.param<std::size_t>("size_kb", 4096) * 1024;
    long page = ::sysconf(_SC_PAGESIZE);
    while (!ctx.stopping()) {
        void* memory =
            ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED)
            break;
        for (std::size_t at = 0; at < size && !ctx.stopping(); at += std::size_t(page)) {
            static_cast<char*>(memory)[at] = 1;
            if (at % (64 * std::size_t(page)) == 0)
                ctx.unit();
        }
        ::munmap(memory, size);
    }
}

void cgroup_churn(WorkerContext& ctx) {
    const auto& paths = ctx.spec().cgroup_paths;
    auto every = ctx.param<std::uint64_t>("every", 20);
    std::string pid = std::to_string(::getpid());
    for (std::uint64_t n = 0; !ctx.stopping(); ++n) {
        if (!paths.empty() && n % every == 0) {
            std::ofstream procs("/sys/fs/cgroup/" + paths[(n / every) % paths.size()] +
                                "/cgroup.procs");
            procs << pid << "\n";
        }
        ctx.burn(20'000);
        ctx.unit();
    }
}

void custom(WorkerContext& ctx) {
    std::vector<std::string> argv = ctx.params().value("argv", std::vector<std::string>{"true"});
    std::vector<char*> args;
    for (auto& arg : argv)
        args.push_back(arg.data());
    args.push_back(nullptr);
    while (!ctx.stopping()) {
        pid_t child = ::fork();
        if (child == 0) {
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        ctx.will_block();
        int status = 0;
        while (child > 0 && ::waitpid(child, &status, 0) < 0 && errno == EINTR) {
            if (ctx.stopping())
                ::kill(child, SIGKILL);
        }
        ctx.unit();
    }
}

} // namespace

extern const WorkType kSystemWorkTypes[] = {
    {"sync_io", sync_io},           {"fork_exit", fork_exit}, {"pagefault_churn", pagefault_churn},
    {"cgroup_churn", cgroup_churn}, {"custom", custom},       {nullptr, nullptr},
};

} // namespace ktstr::agent
