#include "ktstr/vmm/x86_64/aml.hpp"

#include "ktstr/base/error.hpp"

#include <fmt/format.h>

namespace ktstr::aml {

namespace {

constexpr std::uint8_t kZeroOp = 0x00;
constexpr std::uint8_t kOneOp = 0x01;
constexpr std::uint8_t kNameOp = 0x08;
constexpr std::uint8_t kBytePrefix = 0x0A;
constexpr std::uint8_t kWordPrefix = 0x0B;
constexpr std::uint8_t kDWordPrefix = 0x0C;
constexpr std::uint8_t kStringPrefix = 0x0D;
constexpr std::uint8_t kQWordPrefix = 0x0E;
constexpr std::uint8_t kScopeOp = 0x10;
constexpr std::uint8_t kBufferOp = 0x11;
constexpr std::uint8_t kPackageOp = 0x12;
constexpr std::uint8_t kExtOpPrefix = 0x5B;
constexpr std::uint8_t kDeviceOp = 0x82;
constexpr std::uint8_t kRootChar = '\\';

// Resource descriptor tags (ACPI 6.3 section 6.4).
constexpr std::uint8_t kEndTag = 0x79;
constexpr std::uint8_t kMemory32FixedTag = 0x86;
constexpr std::uint8_t kExtendedInterruptTag = 0x89;

void append(Bytes& to, const Bytes& from) { to.insert(to.end(), from.begin(), from.end()); }

void append_little_endian(Bytes& to, std::uint64_t value, int size) {
    for (int i = 0; i < size; ++i)
        to.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

// NameString: an optional root prefix and one NameSeg.
Bytes name_string(std::string_view name) {
    Bytes encoded;
    std::string_view segment = name;
    if (!segment.empty() && segment.front() == '\\') {
        encoded.push_back(kRootChar);
        segment.remove_prefix(1);
    }
    auto lead = [](char c) {
        return (c >= 'A' && c <= 'Z') || c == '_';
    };
    auto later = [&](char c) {
        return lead(c) || (c >= '0' && c <= '9');
    };
    bool valid = !segment.empty() && segment.size() <= 4 && lead(segment.front());
    for (char c : segment)
        valid = valid && later(c);
    if (!valid)
        throw Error(fmt::format("'{}' is not an AML name (one segment of up to four characters "
                                "A-Z, 0-9, _, not starting with a digit)",
                                name));
    encoded.insert(encoded.end(), segment.begin(), segment.end());
    encoded.resize(encoded.size() + 4 - segment.size(), '_');
    return encoded;
}

// Opcode(s), PkgLength, then the contents: the shape of every package term.
Bytes with_length(const Bytes& opcode, const Bytes& contents) {
    Bytes encoded = opcode;
    append(encoded, package_length(contents.size()));
    append(encoded, contents);
    return encoded;
}

Bytes named_package(const Bytes& opcode, std::string_view name, const std::vector<Bytes>& terms) {
    Bytes contents = name_string(name);
    for (const auto& term : terms)
        append(contents, term);
    return with_length(opcode, contents);
}

} // namespace

Bytes package_length(std::size_t content_length) {
    // One byte holds up to 63 in its low six bits. Otherwise bits 7-6 of the lead byte count the
    // bytes that follow (1-3), its low nibble holds the value's low four bits and each following
    // byte eight more.
    if (content_length + 1 <= 0x3F)
        return {static_cast<std::uint8_t>(content_length + 1)};
    for (std::size_t following = 1; following <= 3; ++following) {
        std::size_t total = content_length + 1 + following;
        if (total >= std::size_t(1) << (4 + 8 * following))
            continue;
        Bytes encoded{static_cast<std::uint8_t>(following << 6 | (total & 0x0F))};
        for (std::size_t i = 0; i < following; ++i)
            encoded.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * i)));
        return encoded;
    }
    throw Error(fmt::format("an AML package of {} bytes is too long to encode", content_length));
}

Bytes integer(std::uint64_t value) {
    if (value == 0)
        return {kZeroOp};
    if (value == 1)
        return {kOneOp};
    Bytes encoded;
    if (value <= 0xFF) {
        encoded.push_back(kBytePrefix);
        append_little_endian(encoded, value, 1);
    } else if (value <= 0xFFFF) {
        encoded.push_back(kWordPrefix);
        append_little_endian(encoded, value, 2);
    } else if (value <= 0xFFFFFFFF) {
        encoded.push_back(kDWordPrefix);
        append_little_endian(encoded, value, 4);
    } else {
        encoded.push_back(kQWordPrefix);
        append_little_endian(encoded, value, 8);
    }
    return encoded;
}

Bytes string(std::string_view text) {
    Bytes encoded{kStringPrefix};
    for (char c : text) {
        if (c < 0x20 || c > 0x7E)
            throw Error(
                fmt::format("AML string '{}' has a character outside printable ASCII", text));
        encoded.push_back(static_cast<std::uint8_t>(c));
    }
    encoded.push_back(0);
    return encoded;
}

Bytes package(const std::vector<Bytes>& elements) {
    if (elements.size() > 0xFF)
        throw Error(fmt::format("an AML package of {} elements needs VarPackage", elements.size()));
    Bytes contents{static_cast<std::uint8_t>(elements.size())};
    for (const auto& element : elements)
        append(contents, element);
    return with_length({kPackageOp}, contents);
}

Bytes name(std::string_view name, const Bytes& object) {
    Bytes encoded{kNameOp};
    append(encoded, name_string(name));
    append(encoded, object);
    return encoded;
}

Bytes device(std::string_view name, const std::vector<Bytes>& terms) {
    return named_package({kExtOpPrefix, kDeviceOp}, name, terms);
}

Bytes scope(std::string_view name, const std::vector<Bytes>& terms) {
    return named_package({kScopeOp}, name, terms);
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
    Bytes buffer;
    for (const auto& descriptor : descriptors)
        append(buffer, descriptor);
    // A zero checksum in the End Tag means "treat the template as checksummed".
    buffer.push_back(kEndTag);
    buffer.push_back(0);
    Bytes contents = integer(buffer.size());
    append(contents, buffer);
    return with_length({kBufferOp}, contents);
}

Bytes memory32_fixed(GuestAddress base, std::uint64_t length) {
    if (length > 0xFFFF'FFFF || base.raw() > 0x1'0000'0000 - length)
        throw Error(fmt::format("memory range {:#x}+{:#x} does not fit a Memory32Fixed descriptor "
                                "(it must lie below 4 GiB)",
                                base.raw(), length));
    Bytes encoded{kMemory32FixedTag};
    append_little_endian(encoded, 9, 2); // descriptor length after the tag and length
    encoded.push_back(1);                // read-write
    append_little_endian(encoded, base.raw(), 4);
    append_little_endian(encoded, length, 4);
    return encoded;
}

Bytes extended_interrupt(std::uint32_t gsi, IrqTrigger trigger) {
    // Flags: bit 0 consumer, bit 1 edge (clear: level); active-high and exclusive are zeros.
    std::uint8_t flags = 0x01 | (trigger == IrqTrigger::edge ? 0x02 : 0x00);
    Bytes encoded{kExtendedInterruptTag};
    append_little_endian(encoded, 6, 2); // descriptor length: flags, count, one interrupt
    encoded.push_back(flags);
    encoded.push_back(1);
    append_little_endian(encoded, gsi, 4);
    return encoded;
}

} // namespace ktstr::aml
