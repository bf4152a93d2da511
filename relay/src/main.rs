//! tenbit-relay: microcontroller firmware that joins a serial cable to a LoRa TNC.
//!
//! Link packets arrive on UART A as `COBS(packet) ‖ 0x00` (the `serial-<baud>` profile, what
//! `tenbit send --link serial-115200` writes). Each one is checked (framing, header, CRC, the
//! packet's one canonical form, the LoRa MTU) and re-framed as a KISS data frame on port 0 for
//! a LoRa TNC on UART B (the `kiss+lora-sf<N>` link of `tenbit-edge listen`). ACKs come back
//! the other way (KISS in, COBS out), so the sender's selective-repeat ARQ runs end to end
//! through the relay. Sealed messages are forwarded as they are: the relay holds no key and
//! never needs one (the packet CRC covers the sealed bytes, the Poly1305 tag is checked by the
//! edge). Damaged or oversized packets are dropped and counted, never forwarded; nothing
//! panics on input.
//!
//! No heap: two [`PacketPort`]s with fixed frame buffers, about 2 KB of stack. Logging with
//! `defmt` over semihosting (decoded on the host with `defmt-print -e tenbit-relay`).
//!
//! Board: ARM MPS2 AN386 (Cortex-M4F, CMSDK APB UARTs), as QEMU's `-M mps2-an386` emulates
//! it: UART0 at `0x4000_4000` is A, UART1 at `0x4000_5000` is B. On another Cortex-M part only
//! [`Uart`] changes.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};

use cortex_m_rt::entry;
use defmt_semihosting as _;
use tenbit_link::packet::{Framing, Packet, PacketError, FLAG_SEALED};
use tenbit_link::port::{Incoming, PacketPort, PortError};

/// What the LoRa side can carry in one packet (bytes on air; the TNC strips KISS framing).
const LORA_MTU: usize = 255;
/// Peripheral clock of the MPS2 FPGA images (25 MHz).
const PCLK_HZ: u32 = 25_000_000;
/// UART rate of both sides.
const BAUD: u32 = 115_200;
/// Frame buffer of each port: the largest un-stuffed packet a COBS or KISS frame can hold.
const FRAME_BUF: usize = tenbit_link::MAX_MTU + 8;

/// A CMSDK APB UART (ARM DDI 0479): DATA, STATE, CTRL, INTSTATUS, BAUDDIV.
struct Uart {
    base: usize,
}

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

impl Uart {
    /// Takes the UART at `base` and enables it at [`BAUD`], polled (no interrupts).
    ///
    /// # Safety
    /// `base` must be a CMSDK APB UART that nothing else drives.
    unsafe fn take(base: usize) -> Self {
        let u = Uart { base };
        u.wr(CTRL, 0);
        u.wr(BAUDDIV, PCLK_HZ / BAUD);
        u.wr(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        // Drain the receive register once. On silicon this discards a stale byte; under QEMU
        // a DATA read is also what tells the character backend the UART takes input again
        // (enabling RX alone does not), so without it the first bytes could wait unread.
        let _ = u.rd(DATA);
        u
    }

    fn rd(&self, reg: usize) -> u32 {
        // SAFETY: `take`'s contract: a UART register block at `base`.
        unsafe { read_volatile((self.base + reg) as *const u32) }
    }

    fn wr(&self, reg: usize, v: u32) {
        // SAFETY: as in `rd`.
        unsafe { write_volatile((self.base + reg) as *mut u32, v) }
    }

    fn try_read(&self) -> Option<u8> {
        if self.rd(STATE) & STATE_RX_FULL != 0 {
            Some(self.rd(DATA) as u8)
        } else {
            None
        }
    }

    fn write_byte(&self, b: u8) {
        while self.rd(STATE) & STATE_TX_FULL != 0 {}
        self.wr(DATA, u32::from(b));
    }
}

/// "No byte yet": the UART is polled, so a read with nothing in the receive register returns
/// this, which [`PacketPort::poll`] reads as "nothing more yet" (like a host port's timeout).
#[derive(Debug, Clone, Copy)]
struct NothingYet;

impl embedded_io::Error for NothingYet {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::TimedOut
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = NothingYet;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NothingYet> {
        let mut n = 0;
        while n < buf.len() {
            match self.try_read() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 && !buf.is_empty() {
            Err(NothingYet)
        } else {
            Ok(n)
        }
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, NothingYet> {
        for &b in buf {
            self.write_byte(b);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), NothingYet> {
        Ok(())
    }
}

/// What the relay has done, per direction; every drop is counted by cause.
#[derive(Default)]
struct Counters {
    forwarded: u32,
    bytes_out: u32,
    sealed: u32,
    dropped_framing: u32,
    dropped_crc: u32,
    dropped_malformed: u32,
    dropped_oversized: u32,
    dropped_other: u32,
}

impl Counters {
    fn dropped(&self) -> u32 {
        self.dropped_framing
            + self.dropped_crc
            + self.dropped_malformed
            + self.dropped_oversized
            + self.dropped_other
    }

    fn drop(&mut self, dir: &str, e: PacketError) {
        let cause = match e {
            PacketError::Framing => {
                self.dropped_framing += 1;
                "framing"
            }
            PacketError::BadCrc => {
                self.dropped_crc += 1;
                "crc"
            }
            PacketError::Malformed => {
                self.dropped_malformed += 1;
                "malformed"
            }
            PacketError::Oversized => {
                self.dropped_oversized += 1;
                "oversized"
            }
            _ => {
                self.dropped_other += 1;
                "other"
            }
        };
        defmt::warn!(
            "{=str} dropped: {=str} (dropped {=u32}: framing {=u32} crc {=u32} malformed {=u32} oversized {=u32} other {=u32})",
            dir,
            cause,
            self.dropped(),
            self.dropped_framing,
            self.dropped_crc,
            self.dropped_malformed,
            self.dropped_oversized,
            self.dropped_other
        );
    }
}

extern "C" {
    /// End of `.bss`/`.uninit` (cortex-m-rt): the lowest address the stack may reach.
    static mut __sheap: u32;
    /// Initial stack pointer (cortex-m-rt): the top of RAM.
    static _stack_start: u32;
}

const PAINT: u32 = 0xACAC_ACAC;

/// Fills the unused stack (from the end of static RAM to just below the live frames) with
/// [`PAINT`], so [`stack_high_water`] can tell how deep the stack has ever grown.
fn paint_stack() {
    let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p + 256 < sp {
        // SAFETY: between the end of static data and 256 bytes below the current stack
        // pointer: RAM that nothing uses yet.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Deepest stack use since boot, in bytes (the lowest word no longer holding [`PAINT`]).
fn stack_high_water() -> usize {
    let bottom = core::ptr::addr_of_mut!(__sheap) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = bottom;
    // SAFETY: words of RAM between static data and the top of the stack.
    while p < top && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

/// Raw length of a parsed packet (header + payload + CRC), as it will be re-serialised.
fn raw_len(p: &Packet<'_>) -> Result<usize, PacketError> {
    let mut buf = [0u8; tenbit_link::MAX_RAW_PACKET + 8];
    p.write_raw(&mut buf)
}

/// Moves at most one frame from `from` to `to`. `max_raw` is the largest raw packet the
/// outgoing side carries.
fn pump(
    dir: &str,
    from: &mut PacketPort<Uart, FRAME_BUF>,
    to: &mut PacketPort<Uart, FRAME_BUF>,
    max_raw: usize,
    c: &mut Counters,
) {
    let incoming = match from.poll() {
        Ok(Some(i)) => i,
        Ok(None) => return,
        // A polled UART never fails or closes; count it if the HAL ever does.
        Err(PortError::Packet(e)) => return c.drop(dir, e),
        Err(_) => return c.drop(dir, PacketError::Framing),
    };
    let p = match incoming {
        Incoming::Packet(p) => p,
        Incoming::Bad(e) => return c.drop(dir, e),
        // KISS frames other than port-0 data (TNC reports): not link packets.
        Incoming::Command(_) => return c.drop(dir, PacketError::Malformed),
    };
    let raw = match raw_len(&p) {
        Ok(n) => n,
        Err(_) => return c.drop(dir, PacketError::Oversized),
    };
    if raw > max_raw {
        return c.drop(dir, PacketError::Oversized);
    }
    match to.send(&p) {
        Ok(n) => {
            c.forwarded += 1;
            c.bytes_out = c.bytes_out.wrapping_add(n as u32);
            match p {
                Packet::Data(d) => {
                    let sealed = d.flags & FLAG_SEALED != 0;
                    if sealed {
                        c.sealed += 1;
                    }
                    defmt::info!(
                        "{=str} data msg {=u8} shard {=u8}/{=u8}+{=u8} {=usize} B raw -> {=usize} B framed, sealed {=bool} (forwarded {=u32}, sealed {=u32}, dropped {=u32})",
                        dir,
                        d.msg_id,
                        d.index,
                        d.data_shards,
                        d.parity_shards,
                        raw,
                        n,
                        sealed,
                        c.forwarded,
                        c.sealed,
                        c.dropped()
                    );
                }
                Packet::Ack(a) => defmt::info!(
                    "{=str} ack msg {=u8} k {=u8} -> {=usize} B framed (forwarded {=u32}, dropped {=u32}; stack high water {=usize} B)",
                    dir,
                    a.msg_id,
                    a.data_shards,
                    n,
                    c.forwarded,
                    c.dropped(),
                    stack_high_water()
                ),
            }
        }
        Err(PortError::Packet(e)) => c.drop(dir, e),
        Err(_) => c.drop(dir, PacketError::Framing),
    }
}

#[entry]
fn main() -> ! {
    paint_stack();
    // SAFETY: UART0 and UART1 of the MPS2 AN386 memory map; this is their only driver.
    let (ua, ub) = unsafe { (Uart::take(0x4000_4000), Uart::take(0x4000_5000)) };
    let mut a = PacketPort::<_, FRAME_BUF>::new(ua, Framing::Cobs);
    let mut b = PacketPort::<_, FRAME_BUF>::new(ub, Framing::Kiss);
    let lora_raw = Framing::Kiss.max_raw(LORA_MTU);
    let serial_raw = Framing::Cobs.max_raw(tenbit_link::MAX_MTU);
    defmt::info!(
        "tenbit-relay up: UART0 COBS (serial) <-> UART1 KISS (LoRa TNC, MTU {=usize}, raw packets <= {=usize} B), {=u32} baud",
        LORA_MTU,
        lora_raw,
        BAUD
    );
    let (mut ab, mut ba) = (Counters::default(), Counters::default());
    loop {
        pump("A->B", &mut a, &mut b, lora_raw, &mut ab);
        pump("B->A", &mut b, &mut a, serial_raw, &mut ba);
    }
}

/// A panic is a bug (input never panics): log it and stop QEMU with a failure status.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
