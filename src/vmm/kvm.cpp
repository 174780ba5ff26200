#include "ktstr/vmm/kvm.hpp"

#include "ktstr/base/error.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <utility>
#include <vector>

namespace ktstr {

Kvm::Kvm() : fd_(::open("/dev/kvm", O_RDWR | O_CLOEXEC)) {
    if (!fd_)
        throw_errno("cannot open /dev/kvm");
    int version = ::ioctl(fd_.get(), KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        throw Error(
            fmt::format("/dev/kvm speaks API version {}, not {}", version, KVM_API_VERSION));
    int size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0)
        throw_errno("KVM_GET_VCPU_MMAP_SIZE");
    vcpu_mmap_size_ = static_cast<std::size_t>(size);
}

bool Kvm::usable() {
    UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    return fd && ::ioctl(fd.get(), KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
}

int Kvm::check_extension(unsigned long capability) const {
    int value = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
    return value < 0 ? 0 : value;
}

void Kvm::require(std::span<const Capability> capabilities) const {
    std::string missing;
    for (auto [id, name] : capabilities)
        if (!check_extension(id))
            missing += std::string(missing.empty() ? "" : ", ") + name;
    if (!missing.empty())
        throw Error("this host's KVM lacks " + missing);
}

Vm::Vm(const Kvm& kvm) : kvm_(kvm) {
    // KVM_CREATE_VM can fail with EINTR while the host is busy; it is safe to repeat.
    int fd;
    do {
        fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        throw_errno("KVM_CREATE_VM");
    fd_ = UniqueFd(fd);
}

void Vm::map_memory(const GuestMemory& memory) {
    for (const auto& region : memory.regions()) {
        kvm_userspace_memory_region slot{};
        slot.slot = next_slot_++;
        slot.guest_phys_addr = region.start.raw();
        slot.memory_size = region.size;
        slot.userspace_addr = reinterpret_cast<std::uint64_t>(region.host);
        if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &slot) != 0)
            throw_errno(fmt::format("KVM_SET_USER_MEMORY_REGION at {:#x}", region.start.raw()));
    }
}

Vcpu Vm::create_vcpu(std::uint32_t id) const {
    int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0)
        throw_errno(fmt::format("KVM_CREATE_VCPU {}", id));
    return Vcpu(UniqueFd(fd), kvm_.vcpu_mmap_size(), id);
}

void Vm::enable_capability(std::uint32_t capability, std::uint64_t argument, const char* name) {
    kvm_enable_cap enable{};
    enable.cap = capability;
    enable.args[0] = argument;
    if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &enable) != 0)
        throw_errno(fmt::format("KVM_ENABLE_CAP {}", name));
}

namespace {
// Debian 12's linux-libc-dev declares kvm_irq_routing's entries with __DECLARE_FLEX_ARRAY,
// which in C++ adds a byte before them and changes the ioctl number: use the kernel's layout.
struct IrqRoutingHeader {
    std::uint32_t nr;
    std::uint32_t flags;
};
constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, IrqRoutingHeader);
static_assert(kSetGsiRouting == 0x4008ae6a);
} // namespace

void Vm::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const {
    std::vector<std::byte> block(sizeof(IrqRoutingHeader) +
                                 entries.size() * sizeof(kvm_irq_routing_entry));
    IrqRoutingHeader header{std::uint32_t(entries.size()), 0};
    std::memcpy(block.data(), &header, sizeof header);
    if (!entries.empty())
        std::memcpy(block.data() + sizeof header, entries.data(),
                    entries.size() * sizeof(kvm_irq_routing_entry));
    if (::ioctl(fd_.get(), kSetGsiRouting, block.data()) != 0)
        throw_errno("KVM_SET_GSI_ROUTING");
}

Vcpu::Vcpu(UniqueFd fd, std::size_t mmap_size, std::uint32_t id)
    : fd_(std::move(fd)), mmap_size_(mmap_size), id_(id) {
    void* run = ::mmap(nullptr, mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (run == MAP_FAILED)
        throw_errno(fmt::format("cannot map kvm_run of vCPU {}", id));
    run_ = static_cast<kvm_run*>(run);
}

Vcpu::Vcpu(Vcpu&& other) noexcept
    : fd_(std::move(other.fd_)), run_(std::exchange(other.run_, nullptr)),
      mmap_size_(other.mmap_size_), id_(other.id_) {}

Vcpu::~Vcpu() {
    if (run_)
        ::munmap(run_, mmap_size_);
}

std::uint32_t Vcpu::run() {
    if (::ioctl(fd_.get(), KVM_RUN, 0) == 0)
        return run_->exit_reason;
    if (errno == EINTR || errno == EAGAIN)
        return KVM_EXIT_INTR;
    throw_errno(fmt::format("KVM_RUN on vCPU {}", id_));
}

} // namespace ktstr
