#!/usr/bin/env python3
"""Writes the hand-made seed inputs into tests/fuzz_corpus/<target>/seed-*.

Each seed follows the input format its target's source describes at the top. Run it again
after changing a format; it rewrites only the seed-* files (and the crash-* inputs it knows
how to make), so the inputs kept from fuzzing (fuzz-*, other crash-*) stay. Needs nothing but Python 3 (hashlib's BLAKE2b tags channel frames
the way guest_protocol::frame_tag does).
"""
import hashlib
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz_corpus")


def write(target, name, data, prefix="seed-"):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, prefix + name), "wb") as f:
        f.write(bytes(data))


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


# ---- virtio: opcodes are (code % 13); see bench/fuzz/virtio.cpp.
def virtio():
    def reg_write(offset, value):
        return bytes([0, offset // 4]) + u32(value)

    def reg_read(offset):
        return bytes([1, offset // 4])

    def bring_up(shape=0x03):  # queue 1, size 1 << (shape % 9)
        return bytes([5, shape])

    def message(text, head=0, chained=False):
        return bytes([12, head, len(text)]) + text + bytes([1 if chained else 0])

    def descriptor(index, address, length, flags, nxt):
        # kind: 0x80 raw address, 0x40 raw length, 0x20 raw flags
        return bytes([6, index, 0xE0]) + u64(address) + u32(length) + u16(flags) + bytes([nxt])

    def make_available(head):
        return bytes([7, head])

    def notify(queue=1):
        return bytes([9, queue])

    write("virtio", "console-output",
          bytes([0]) + bring_up() + message(b"hello, world") +
          message(b"chained buffers", head=2, chained=True) + bytes([10]))
    write("virtio", "backpressure",
          bytes([0x07]) + bring_up() + message(b"0123456789abcdefghijklmnopqrstuvwxyz") +
          bytes([11, 11, 11]) + message(b"more", head=1) + bytes([11, 11]))
    write("virtio", "hostile-descriptors",
          bytes([0]) + bring_up() +
          descriptor(0, 0xFFFFFFFFFFFFFFF0, 0x20, 0, 0) + make_available(0) + notify() +
          reg_write(0x70, 0) + bring_up() +
          descriptor(0, 0x8000, 4, 1, 0) + make_available(0) + notify() +  # a loop
          reg_write(0x70, 0) + bring_up() +
          descriptor(0, 0x8000, 16, 4, 0) + make_available(0) + notify() +  # indirect
          reg_write(0x70, 0) + bring_up() +
          descriptor(0, 0xFFF0, 0x100, 0, 0) + make_available(0) + notify())
    regs = b"".join(reg_read(o) for o in range(0, 0x100, 4))
    odd = bytes([2, 1, 0x70, 0x00, 0xFF,      # 1-byte status write
                 3, 2, 0x02, 0x00,            # 2-byte read at an odd offset
                 3, 8, 0x00, 0x01,            # 8 bytes of config space
                 2, 4, 0x51, 0x00, 1, 0, 0, 0,  # misaligned notify
                 3, 4, 0xFE, 0x01])           # straddles the window's end
    write("virtio", "registers", bytes([0]) + regs + odd +
          reg_write(0x14, 1) + reg_read(0x10) + reg_write(0x30, 99) + reg_read(0x34))
    write("virtio", "bad-queue-sizes",
          bytes([0]) + bring_up(0x80) + u16(6) + message(b"x") +
          reg_write(0x70, 0) + bring_up(0x80) + u16(0) + message(b"y") +
          reg_write(0x70, 0) + bring_up(0x80) + u16(512) + message(b"z") +
          bytes([8]) + u16(100) + notify())
    write("virtio", "receive-queue",
          bytes([1]) + bring_up(0x43) + message(b"rx") + notify(0) + notify(3) +
          bytes([4]) + u16(0x3000) + bytes([6, 0, 0, 8, 0, 0, 0]) + notify())


# ---- serial: opcodes are (code % 8); see bench/fuzz/serial.cpp.
def serial():
    def wr(reg, value):
        return bytes([0, reg, value])

    def rd(reg):
        return bytes([1, reg])

    open_port = bytes([6, 1, 0x0F])  # 8N1, FIFO, DTR RTS OUT2, all interrupts
    write("serial", "console",
          open_port + bytes([4, 5]) + b"hello" + bytes([7, 10]) +
          b"".join(wr(0, c) for c in b"ok\r\n") + rd(2) + rd(5) + rd(6))
    write("serial", "divisor-latch",
          wr(3, 0x80) + wr(0, 0x01) + wr(1, 0x00) + rd(0) + rd(1) + wr(3, 0x03) +
          wr(0, ord("A")) + rd(3) + rd(4) + rd(7) + wr(7, 0x55) + rd(7))
    write("serial", "loopback",
          bytes([6, 0, 0x01]) + wr(0, 0x41) + wr(0, 0x42) + rd(5) + rd(0) + rd(0) + rd(6) +
          wr(4, 0x0B) + rd(6))
    write("serial", "flood",
          bytes([4, 3]) + b"abc" + open_port + bytes([5, 0x7F, 0x78]) + bytes([7, 255]) +
          wr(2, 0x03) + rd(5) + bytes([5, 0xFF, 0x79, 7, 255]))
    write("serial", "raw-widths",
          bytes([2, 2, 0]) + b"\x41\x0f" + bytes([3, 4, 0, 3, 8, 4, 2, 4, 6]) +
          b"\x01\x02\x03\x04" + bytes([3, 1, 9, 3, 0, 3]) + rd(2) + wr(1, 0x02) + rd(2) + rd(2))


# ---- ioapic: opcodes are (code % 7); see bench/fuzz/ioapic.cpp.
def ioapic():
    def entry(pin, high, low):
        return bytes([3, pin]) + u32(high) + u32(low)

    write("ioapic", "linux-setup",
          entry(0, 0x00000000, 0x10000 | 0x30) + entry(1, 0x01000000, 0x31) +
          entry(4, 0x02000000, 0x34 | 0x800) + entry(9, 0x00000000, 0xA000 | 0x39) +
          bytes([2, 6, 0]) + bytes([6, 1]) + entry(23, 0xFF000000, 0x41))
    write("ioapic", "registers",
          bytes([0, 1]) + u32(0) + bytes([2]) + bytes([0, 1]) + u32(1) + bytes([2]) +
          bytes([0, 1]) + u32(2) + bytes([2]) + bytes([0, 1]) + u32(0x0F000000) +
          bytes([0, 1]) + u32(0) + bytes([1]) + u32(0xFFFFFFFF) + bytes([2]) +
          bytes([0, 1]) + u32(0x1234) + bytes([2]) + bytes([0, 1]) + u32(0x40) + bytes([2]))
    write("ioapic", "extended-destination",
          entry(2, 0x00FE0000 | 0x80000000, 0x52) + entry(3, 0xFFFFFFFF, 0xFFFFEFFF) +
          bytes([5]) + u64(0xFFFE000000005000) + bytes([5]) + u64(0x00000000000007FF))
    write("ioapic", "raw-accesses",
          bytes([4, 4, 0, 1]) + u32(0x10) + bytes([4, 4, 0x10, 1]) + u32(0x55) +
          bytes([4, 2, 0x10, 1, 0xAA, 0xBB, 4, 8, 0x10, 0, 4, 1, 0, 0, 4, 4, 0x14, 0]))


# ---- legacy: opcodes are (code % 4); see bench/fuzz/legacy.cpp.
def legacy():
    def cmos(index, value=None):
        return bytes([2, index, value or 0, 1 if value is not None else 0])

    def port(device, offset, size, data=b"", write=False):
        code = (device << 2) | (1 if write else 0)
        return bytes([code, offset + 2, size]) + data

    clock = b"".join(cmos(i) for i in (0, 2, 4, 6, 7, 8, 9, 0x0A, 0x0B, 0x0C, 0x0D, 0x32))
    write("legacy", "cmos", clock + cmos(0x0E, 0x12) + cmos(0x7F, 0xEE) + cmos(0x80 | 0x10, 5) +
          cmos(0x05, 0x99) + port(0, 1, 2) + port(0, 0, 1, b"\x0f", True) + port(0, 1, 1))
    write("legacy", "acpi-pm",
          bytes([3, 1, 0xFF, 0xFF, 3, 2, 0x01, 0x00, 3, 2, 0x00, 0x20, 3, 0, 0xFF, 0xFF]) +
          port(2, 5, 1, b"\x20", True) + port(2, 0, 6) + port(2, 3, 4))
    write("legacy", "i8042",
          port(1, 4, 1, b"\xfe", True) + port(1, 4, 1, b"\xff", True) + port(1, 0, 1) +
          port(1, 4, 2, b"\xfe\xfe", True) + port(1, 0, 5) + port(1, 3, 2, b"\xfe\x00", True))


# ---- channel: see bench/fuzz/channel.cpp.
KEY = bytes((0x5A ^ (i * 37)) & 0xFF for i in range(32))
# FrameKind and kVersion as include/ktstr/harness/guest_protocol.hpp has them: rerun this
# script when they change (the frame-mode seeds leave the version to the harness).
STDOUT, STDERR, EXIT, INIT_ERROR, READY, HELLO, SCHEDULER, REPORT, NOT_RUN = range(1, 10)
KINDS = 9
VERSION = 3


def tagged(kind, payload, sequence):
    header = bytes([kind]) + u32(len(payload))
    tag = hashlib.blake2b(u64(sequence) + header + payload, key=KEY, digest_size=16).digest()
    return header + payload + tag


def channel():
    # Sinks (byte 0, bits 1-6): stdout, stderr, scheduler; 0 unbounded, 1 windowed, 2 none.
    def sinks(frames, out=0, err=0, sched=0, windows=(0, 0, 0)):
        return bytes([(1 if frames else 0) | out << 1 | err << 3 | sched << 5]) + bytes(windows)

    # Raw mode: real frames (tagged with the fuzz key) cut into chunks.
    stream = (tagged(HELLO, u32(VERSION), 0) + tagged(STDOUT, b"hello ", 1) +
              tagged(STDERR, b"warn", 2) + tagged(READY, b"", 3) +
              tagged(SCHEDULER, b"scx: attached\n", 4) +
              tagged(REPORT, b'{"type":"stats","n":1}', 5) +
              tagged(STDOUT, b"world\n", 6) + tagged(EXIT, u32(7), 7))
    raw = b""
    for i in range(0, len(stream), 23):
        piece = stream[i:i + 23]
        raw += bytes([len(piece) << 1]) + piece
    write("channel", "raw-frames", sinks(False) + raw)
    write("channel", "raw-windowed", sinks(False, out=1, sched=1, windows=(1, 0, 2)) + raw +
          bytes([126 << 1]))
    write("channel", "raw-garbage",
          sinks(False) + bytes([10 << 1 | 1]) + b"not frames" + bytes([5 << 1]) +
          b"\x01\xff\xff\xff\xff" + bytes([20 << 1]) + tagged(HELLO, u32(VERSION), 0)[:20])

    # Frame mode: the harness tags; per frame control, kind, length, payload, piece size.
    def frame(kind, payload=b"", control=0, piece=0):
        return bytes([control, (kind - 1) % KINDS, len(payload)]) + payload + bytes([piece])

    def hello(source=0, piece=0):
        return bytes([source, HELLO - 1, piece])

    def status(value, source=0):
        return bytes([0x20 | source, EXIT - 1, value, 0])

    def report(letter, extra=0, rest=b"", source=0):  # 0x20: a well-formed JSON report
        return bytes([0x20 | source, REPORT - 1, letter, extra]) + rest + bytes([0])

    write("channel", "frames-session",
          sinks(True) + hello() + frame(STDOUT, b"hello ") + frame(STDERR, b"warn") +
          frame(READY) + frame(SCHEDULER, b"sched_ext: enabled\n") + report(1) +
          report(2, 3, u32(42) + bytes([5])) + frame(STDOUT, b"world\n", piece=3) + status(7))
    write("channel", "frames-windowed",
          sinks(True, out=1, err=1, sched=1, windows=(3, 0, 9)) + hello(piece=1) +
          frame(STDOUT, b"0123456789" * 6, piece=7) + frame(SCHEDULER, b"s" * 30) +
          frame(STDERR, b"e" * 40) + frame(STDOUT, b"tail") + status(0))
    write("channel", "frames-forged",
          sinks(True) + hello() + frame(STDOUT, b"ok") +
          frame(STDOUT, b"forged", control=0x02) + bytes([0, 0]) + status(1))
    write("channel", "frames-other-device",
          sinks(True) + frame(STDOUT, b"early", control=1) + hello(1) +
          hello(0) + frame(STDOUT, b"bound") + frame(STDOUT, b"ignored", control=1) +
          status(3, 1) + status(4))
    write("channel", "frames-init-error",
          sinks(True, out=2) + hello() + frame(INIT_ERROR, b"cannot run /bin/nope") +
          frame(STDOUT, b"late") + status(0))
    write("channel", "frames-not-run",
          sinks(True) + hello() + frame(SCHEDULER, b"scx: failed to attach\n") +
          frame(NOT_RUN) + frame(STDOUT, b"late") + status(0))
    write("channel", "frames-bad-reports",
          sinks(True) + hello() + frame(REPORT, b'{"type":"ok"}') + frame(REPORT, b"[1,2,3]") +
          frame(REPORT, b'{"type":1}'))
    write("channel", "frames-report-not-json",
          sinks(True) + hello() + report(0, 4, bytes([9])) + frame(REPORT, b'{"type":"x"'))
    write("channel", "frames-bad-length",
          sinks(True) + hello() + bytes([0x08, 0, 3]) + b"abc" + bytes([1, 2, 0]) + status(0))
    # A whole stdout frame into a 3-byte window: the rest of its payload stays held in the
    # channel although offer() took every byte (found by this target).
    write("channel", "payload-held-after-offer",
          sinks(True, out=1, windows=(2, 0, 0)) + hello(piece=10) + bytes([0, 0, 46]),
          prefix="crash-")


# ---- bzimage: the input is the image; see bench/fuzz/bzimage.cpp.
def bzimage():
    def image(protocol=0x020F, setup_sects=4, loadflags=0x01, xloadflags=0x01,
              initrd_max=0x7FFFFFFF, cmdline_size=2048, init_size=0x200000, size=0x1200,
              cmdline_length=32):
        b = bytearray(size)
        b[0x1F1] = setup_sects
        b[0x1FE:0x200] = b"\x55\xaa"
        b[0x201] = 0x6A
        b[0x202:0x206] = b"HdrS"
        b[0x206:0x208] = u16(protocol)
        b[0x211] = loadflags
        b[0x22C:0x230] = u32(initrd_max)
        b[0x236:0x238] = u16(xloadflags)
        b[0x238:0x23C] = u32(cmdline_size)
        b[0x260:0x264] = u32(init_size)
        payload = ((setup_sects or 4) + 1) * 512
        if payload < size:
            b[payload] = 0xE9
        b[-1] = cmdline_length
        return bytes(b)

    write("bzimage", "minimal", image())
    write("bzimage", "setup-sects-0", image(setup_sects=0, protocol=0x020C))
    write("bzimage", "low-initrd-max", image(initrd_max=0x300000, cmdline_length=255))
    write("bzimage", "short-cmdline", image(cmdline_size=8, cmdline_length=9))
    write("bzimage", "too-big", image(init_size=0xFFFFFFFF))
    write("bzimage", "truncated", image(setup_sects=8, size=0x1000))
    write("bzimage", "old-protocol", image(protocol=0x0206))
    write("bzimage", "no-64bit", image(xloadflags=0))


# ---- elf: the input is the file; see bench/fuzz/elf.cpp.
def elf_file(bits=64, little=True, interp=b"/lib64/ld-linux-x86-64.so.2",
             needed=(b"libc.so.6", b"libm.so.6"), rpath=b"$ORIGIN/../lib:/opt/x",
             runpath=b"/usr/local/lib"):
    """A tiny ELF executable with PT_INTERP, PT_DYNAMIC and the sections libelf reads."""
    e = "<" if little else ">"
    wide = bits == 64
    ehsize, phentsize, shentsize = (64, 56, 64) if wide else (52, 32, 40)
    dynstr = b"\0"
    offsets = []
    for s in list(needed) + [rpath, runpath]:
        offsets.append(len(dynstr))
        dynstr += s + b"\0"
    DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_STRTAB, DT_NULL = 1, 15, 29, 5, 0
    dyn_entries = [(DT_NEEDED, o) for o in offsets[:len(needed)]]
    dyn_entries += [(DT_RPATH, offsets[-2]), (DT_RUNPATH, offsets[-1]), (DT_STRTAB, 0),
                    (DT_NULL, 0)]
    dyn_fmt = e + ("qQ" if wide else "iI")
    dynamic = b"".join(struct.pack(dyn_fmt, t, v) for t, v in dyn_entries)
    shstrtab = b"\0.interp\0.dynstr\0.dynamic\0.shstrtab\0"
    names = {n: shstrtab.index(n) for n in (b".interp", b".dynstr", b".dynamic", b".shstrtab")}

    interp_data = interp + b"\0"
    body_start = ehsize + 2 * phentsize
    layout = {}
    data = b""
    for name, blob in ((b".interp", interp_data), (b".dynstr", dynstr),
                       (b".dynamic", dynamic), (b".shstrtab", shstrtab)):
        while (body_start + len(data)) % 8:
            data += b"\0"
        layout[name] = (body_start + len(data), len(blob))
        data += blob
    while (body_start + len(data)) % 8:
        data += b"\0"
    shoff = body_start + len(data)

    PT_INTERP, PT_DYNAMIC = 3, 2
    if wide:
        ph = lambda t, off, size: struct.pack(e + "IIQQQQQQ", t, 4, off, off, off, size, size, 8)
    else:
        ph = lambda t, off, size: struct.pack(e + "IIIIIIII", t, off, off, off, size, size, 4, 4)
    phdrs = ph(PT_INTERP, *layout[b".interp"]) + ph(PT_DYNAMIC, *layout[b".dynamic"])

    SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC = 1, 3, 6
    if wide:
        sh = lambda name, t, off, size, link, entsize: struct.pack(
            e + "IIQQQQIIQQ", name, t, 2, off, off, size, link, 0, 1, entsize)
    else:
        sh = lambda name, t, off, size, link, entsize: struct.pack(
            e + "IIIIIIIIII", name, t, 2, off, off, size, link, 0, 1, entsize)
    shdrs = bytes(shentsize)  # the null section
    shdrs += sh(names[b".interp"], SHT_PROGBITS, *layout[b".interp"], 0, 0)
    shdrs += sh(names[b".dynstr"], SHT_STRTAB, *layout[b".dynstr"], 0, 0)
    shdrs += sh(names[b".dynamic"], SHT_DYNAMIC, *layout[b".dynamic"], 2, 16 if wide else 8)
    shdrs += sh(names[b".shstrtab"], SHT_STRTAB, *layout[b".shstrtab"], 0, 0)

    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if little else 2, 1, 0]) + bytes(8)
    machine = 62 if wide else 3
    if wide:
        header = ident + struct.pack(e + "HHIQQQIHHHHHH", 2, machine, 1, 0x1000, ehsize, shoff, 0,
                                     ehsize, phentsize, 2, shentsize, 5, 4)
    else:
        header = ident + struct.pack(e + "HHIIIIIHHHHHH", 2, machine, 1, 0x1000, ehsize, shoff, 0,
                                     ehsize, phentsize, 2, shentsize, 5, 4)
    return header + phdrs + data + shdrs


def elf():
    write("elf", "tiny-64", elf_file())
    write("elf", "tiny-32-big-endian", elf_file(bits=32, little=False, needed=(b"libz.so.1",)))
    write("elf", "tiny-no-interp-strings",
          elf_file(interp=b"", needed=(b"",), rpath=b"::", runpath=b":$ORIGIN:"))
    tiny = bytearray(elf_file())
    tiny[0x20:0x28] = u64(0x7FFFFFFF)  # program headers far outside the file
    write("elf", "tiny-bad-phoff", tiny)
    write("elf", "not-elf", b"#!/bin/sh\necho not an ELF file\n")
    try:
        with open("/bin/true", "rb") as f:
            true = f.read()
        write("elf", "true-head", true[:2048])
        # Its section headers with the start of the file: offsets point at what is missing.
        shoff = struct.unpack_from("<Q", true, 0x28)[0]
        spliced = bytearray(true[:1024]) + true[shoff:]
        spliced[0x28:0x30] = u64(1024)
        write("elf", "true-head-and-sections", spliced)
    except OSError:
        pass


# ---- cpio: opcodes are (code % 6); see bench/fuzz/cpio.cpp.
ALPHABET = "ab//..x- \n"


def cpio():
    def path(text, any_byte=False):
        if any_byte:
            return bytes([len(text), 0]) + text.encode()
        return bytes([len(text), 1]) + bytes(ALPHABET.index(c) for c in text)

    def special(index):
        return bytes([0xF0 + index])

    def op(code, p, permissions, rest=b""):
        return bytes([code]) + p + u16(permissions) + rest

    def file(p, data, permissions=0o644):
        return op(1, p, permissions, bytes([len(data)]) + data)

    write("cpio", "tree",
          file(path("a/b/x"), b"#!/bin/sh\necho hi\n", 0o755) +
          file(path("x-x"), b"12345") + op(3, path("a/x"), 0, path("x")) +
          op(0, path("b/b/b"), 0o700) + op(4, path("a/..x"), 0o600, u32(5) + u32(1)) +
          file(path("a/a/a/a"), b""))
    write("cpio", "odd-paths",
          file(path("/a//b/"), b"z") + op(0, path("//"), 0o755) + op(0, path(""), 0o755) +
          file(path(". ."), b"") + op(0, path("a"), 0o755) + op(0, path("a"), 0o755) +
          file(path("\n"), b"\n") + file(path("a\x00b", any_byte=True), b"nul"))
    rest = {0: b"", 1: b"\x00", 4: u32(5) + u32(1)}  # directory, empty file, device 5:1
    write("cpio", "special-names",
          b"".join(op(c, special(i), 0o644, rest[c]) for i, c in
                   ((0, 1), (1, 0), (2, 0), (3, 1), (4, 1), (5, 0), (6, 1), (7, 1), (8, 4),
                    (9, 1))) + op(3, path("b"), 0, special(2)))
    write("cpio", "finish-and-reuse",
          file(path("a/b"), b"first") + op(5, b"\x00\x00", 0) + file(path("a/b"), b"second") +
          op(0x80, path("x"), 0o644, bytes([3, 0x10, 0x41])))  # a big file: 784 bytes


def main():
    for make in (virtio, serial, ioapic, legacy, channel, bzimage, elf, cpio):
        make()
    total = 0
    for dirpath, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"tests/fuzz_corpus: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
