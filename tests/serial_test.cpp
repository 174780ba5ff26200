// The 16550 driven the way Linux's 8250 driver drives it.
#include "ktstr/devices/serial.hpp"

#include <catch2/catch_test_macros.hpp>
#include <string>
#include <vector>

using namespace ktstr;

namespace {

struct CountingLine : InterruptLine {
    int edges = 0;
    void trigger() override { ++edges; }
};

std::uint8_t in(Serial16550& uart, std::uint64_t reg) {
    std::uint8_t value = 0;
    uart.read(reg, std::span(&value, 1));
    return value;
}

void out(Serial16550& uart, std::uint64_t reg, std::uint8_t value) {
    uart.write(reg, std::span(&value, 1));
}

} // namespace

TEST_CASE("16550: transmit, divisor latch, scratch and loopback", "[serial]") {
    auto irq = std::make_shared<CountingLine>();
    std::string sent;
    Serial16550 uart(
        irq, [&](std::span<const std::uint8_t> bytes) { sent.append(bytes.begin(), bytes.end()); });

    out(uart, 7, 0xa5);
    CHECK(in(uart, 7) == 0xa5);
    out(uart, 3, 0x80); // DLAB
    out(uart, 0, 0x01);
    out(uart, 1, 0x00);
    CHECK(in(uart, 0) == 0x01);
    out(uart, 3, 0x03);                  // 8N1, DLAB off
    CHECK((in(uart, 5) & 0x60) == 0x60); // THR empty, transmitter idle
    out(uart, 0, 'h');
    out(uart, 0, 'i');
    CHECK(sent == "hi");

    out(uart, 4, 0x10 | 0x0a);           // loopback with RTS and OUT2
    CHECK((in(uart, 6) & 0xf0) == 0x90); // CTS and DCD mirror RTS and OUT2
    out(uart, 0, 'x');
    CHECK(sent == "hi"); // looped back, not sent
    CHECK((in(uart, 5) & 0x01) == 0x01);
    CHECK(in(uart, 0) == 'x');
    CHECK((in(uart, 5) & 0x01) == 0x00);
}

TEST_CASE("16550: interrupts follow IER, OUT2 and IIR acknowledgement", "[serial]") {
    auto irq = std::make_shared<CountingLine>();
    Serial16550 uart(irq, nullptr);
    CHECK(in(uart, 2) == 0x01); // nothing pending

    std::uint8_t input[] = {'a', 'b'};
    uart.receive(input); // before the driver opens the port: held back
    CHECK((in(uart, 5) & 0x01) == 0);
    CHECK(in(uart, 0) == 0); // the driver's "clear for luck" read loses nothing
    // The probe toggles every IER bit and runs a loopback test, then clears the FIFO: the
    // input is still held.
    out(uart, 1, 0x0f);
    out(uart, 4, 0x1a); // loopback with OUT2
    out(uart, 1, 0x00);
    out(uart, 4, 0x00);
    out(uart, 2, 0x07); // FIFO on, both cleared
    CHECK((in(uart, 5) & 0x01) == 0);
    CHECK((in(uart, 2) & 0x0f) == 0x01); // nothing pending: IER is clear again
    const int probe_edges = irq->edges;
    // Opening the port: OUT2 first, then receive interrupts, as serial8250_startup does.
    out(uart, 4, 0x08);
    CHECK(irq->edges == probe_edges);
    out(uart, 1, 0x01);
    CHECK(irq->edges == probe_edges + 1);
    CHECK((in(uart, 5) & 0x01) == 1);
    CHECK((in(uart, 2) & 0x0f) == 0x04);
    CHECK(in(uart, 0) == 'a');
    CHECK(in(uart, 0) == 'b');
    CHECK((in(uart, 2) & 0x0f) == 0x01);
    out(uart, 4, 0x00); // OUT2 clear: a pending interrupt no longer reaches the line
    uart.receive(input);
    CHECK(irq->edges == probe_edges + 1);
    CHECK(in(uart, 0) == 0);
    out(uart, 4, 0x08);
    CHECK(irq->edges == probe_edges + 2);
    CHECK(in(uart, 0) == 'a');
    CHECK(in(uart, 0) == 'b');

    out(uart, 1, 0x03); // enabling THRE interrupts while THR is empty raises one at once
    CHECK(irq->edges == probe_edges + 3);
    CHECK((in(uart, 2) & 0x0f) == 0x02);
    CHECK((in(uart, 2) & 0x0f) == 0x01); // reading IIR acknowledged it
    out(uart, 0, 'z');
    CHECK(irq->edges == probe_edges + 4);
}

TEST_CASE("16550: host input beyond the queue is refused, to be offered again", "[serial]") {
    Serial16550 uart(nullptr, nullptr);
    std::vector<std::uint8_t> input(70000, 'x');
    std::size_t taken = uart.receive(input);
    CHECK(taken == 65536);
    CHECK(uart.receive(std::span(input).subspan(taken)) == 0);
    out(uart, 4, 0x08); // the driver opens the port: the held bytes move to the receiver
    out(uart, 1, 0x01);
    CHECK(uart.receive(std::span(input).subspan(taken)) == input.size() - taken);
    std::size_t read = 0;
    while (in(uart, 5) & 0x01) {
        in(uart, 0);
        ++read;
    }
    CHECK(read == input.size());
}

TEST_CASE("16550: accesses outside its eight registers are harmless", "[serial]") {
    Serial16550 uart(nullptr, nullptr);
    std::uint8_t wide[4] = {1, 2, 3, 4};
    uart.write(6, wide); // two registers in range, two past the end
    uart.read(6, wide);
    CHECK(wide[2] == 0xff);
    CHECK(wide[3] == 0xff);
    CHECK(in(uart, 1000) == 0xff);
}
