#pragma once

#include "ktstr/base/fd.hpp"
#include "ktstr/vmm/bus.hpp"
#include "ktstr/vmm/guest_memory.hpp"

#include <cstdint>
#include <linux/kvm.h>
#include <span>
#include <string>

namespace ktstr {

// The /dev/kvm system handle.
class Kvm {
  public:
    // Opens /dev/kvm; throws Error saying why KVM cannot be used.
    Kvm();
    // Whether /dev/kvm can be opened and speaks the stable API.
    static bool usable();

    int fd() const { return fd_.get(); }
    int check_extension(unsigned long capability) const;
    // Throws Error naming every one of `capabilities` this host's KVM lacks.
    struct Capability {
        unsigned long id;
        const char* name;
    };
    void require(std::span<const Capability> capabilities) const;
    std::size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }

  private:
    UniqueFd fd_;
    std::size_t vcpu_mmap_size_ = 0;
};

class Vcpu;

class Vm {
  public:
    explicit Vm(const Kvm& kvm);
    int fd() const { return fd_.get(); }
    const Kvm& kvm() const { return kvm_; }

    // Registers every region of `memory` as a KVM memory slot.
    void map_memory(const GuestMemory& memory);
    Vcpu create_vcpu(std::uint32_t id) const;
    // KVM_ENABLE_CAP on the VM; throws Error naming `name` when KVM refuses.
    void enable_capability(std::uint32_t capability, std::uint64_t argument, const char* name);
    // KVM_SET_GSI_ROUTING: replaces the whole routing table; a GSI without an entry drops
    // what its irqfd signals.
    void set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const;

  private:
    const Kvm& kvm_;
    UniqueFd fd_;
    std::uint32_t next_slot_ = 0;
};

// What a vCPU thread drives: a KVM vCPU, or a stand-in in tests.
class VcpuRunner {
  public:
    virtual ~VcpuRunner() = default;
    virtual std::uint32_t id() const = 0;
    // The shared kvm_run page: exit reason and exit data after run().
    virtual kvm_run& state() const = 0;
    // One KVM_RUN; returns the exit reason, or KVM_EXIT_INTR when a signal interrupted it
    // or `immediate_exit` was set.
    virtual std::uint32_t run() = 0;
    // Where the vCPU was, for the report of a fatal exit (registers), or empty.
    virtual std::string crash_state() const { return {}; }
    // Whether the vCPU is in its power-on state (at the reset vector).
    virtual bool in_reset_state() const { return false; }
};

class Vcpu : public VcpuRunner {
  public:
    Vcpu(UniqueFd fd, std::size_t mmap_size, std::uint32_t id);
    Vcpu(Vcpu&& other) noexcept;
    Vcpu& operator=(Vcpu&&) = delete;
    Vcpu(const Vcpu&) = delete;
    ~Vcpu() override;

    std::uint32_t id() const override { return id_; }
    int fd() const { return fd_.get(); }
    kvm_run& state() const override { return *run_; }
    std::uint32_t run() override;

  private:
    UniqueFd fd_;
    kvm_run* run_;
    std::size_t mmap_size_;
    std::uint32_t id_;
};

} // namespace ktstr
