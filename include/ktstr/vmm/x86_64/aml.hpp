#pragma once

#include "ktstr/vmm/guest_memory.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace ktstr {

// How an interrupt line signals: the guest programs its IOAPIC pin to match.
enum class IrqTrigger { edge, level };

} // namespace ktstr

// Encoders for the few AML (ACPI Machine Language, ACPI 6.3 chapter 20) terms the DSDT needs.
// Each returns the complete encoding of one term; enclosing terms take their contents encoded.
// Names are one NameSeg of up to four characters (padded with '_'), optionally prefixed with
// '\' for the root; a bad name is a programming error and throws Error.
namespace ktstr::aml {

using Bytes = std::vector<std::uint8_t>;

// PkgLength for a package whose contents after the PkgLength are `content_length` bytes. The
// encoded value counts the PkgLength's own bytes, so the smallest form that fits is chosen.
Bytes package_length(std::size_t content_length);

// The shortest form: ZeroOp, OneOp, or a Byte/Word/DWord/QWord constant.
Bytes integer(std::uint64_t value);
// A String object: printable ASCII, null-terminated.
Bytes string(std::string_view text);

// Package() { elements }, of fewer than 256 elements.
Bytes package(const std::vector<Bytes>& elements);

// Name(name, object)
Bytes name(std::string_view name, const Bytes& object);
// Device(name) { terms }
Bytes device(std::string_view name, const std::vector<Bytes>& terms);
// Scope(name) { terms }
Bytes scope(std::string_view name, const std::vector<Bytes>& terms);

// ResourceTemplate() { descriptors }: a Buffer of resource descriptors closed by an End Tag.
Bytes resource_template(const std::vector<Bytes>& descriptors);
// Memory32Fixed(ReadWrite, base, length); the range must lie below 4 GiB.
Bytes memory32_fixed(GuestAddress base, std::uint64_t length);
// Interrupt(ResourceConsumer, Edge|Level, ActiveHigh, Exclusive) { gsi }
Bytes extended_interrupt(std::uint32_t gsi, IrqTrigger trigger);

} // namespace ktstr::aml
