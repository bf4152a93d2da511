//! Blocking driver over any `std::io::Read + Write`: serial ports, ptys, stdin/stdout, sockets.
//! This is what `tenbit send` and `tenbit-edge listen` call. See the [module docs](super) for
//! an example.
//!
//! Reads must time out (serial ports opened with [`open_serial`] do; wrap anything that blocks
//! forever, such as stdin, in [`ThreadedReader`]): the ARQ sender needs to notice a missing ACK.
//! `ErrorKind::TimedOut`/`WouldBlock` reads are treated as "nothing yet"; EOF and hang-up as
//! [`LinkError::Closed`].
//!
//! The byte I/O itself is the `no_std` [`PacketPort`](super::port::PacketPort) over
//! `embedded-io`; this module adapts `std::io` streams to it with
//! [`FromStd`](super::port::FromStd) and adds clocks, sleeping, sealing and epochs.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::arq::{ArqAction, ArqConfig, ArqError, ArqSender};
use super::message::OutgoingMessage;
use super::packet::{AckPacket, Framing, Packet, FLAG_SEALED};
use super::port::{FromStd, Incoming, PacketPort, PortError};
use super::profile::{LinkProfile, Pacer};
use super::reassembly::{Reassembler, ReassemblyStats};
#[cfg(feature = "crypto")]
use super::seal::{Key, Opener, Sealer, MAX_OVERHEAD};
use super::{LinkError, MessageError, MAX_MESSAGE};

/// An operating-system I/O error, with what was being done. The `std::io::Error` (and so its
/// [`ErrorKind`]) is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct IoError {
    /// What failed, e.g. `read from link` or `cannot open serial port /dev/ttyUSB0`.
    pub op: String,
    /// The error itself.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// `op` failed with `source`.
    pub fn new(op: impl Into<String>, source: io::Error) -> Self {
        IoError {
            op: op.into(),
            source,
        }
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

impl From<PortError<io::Error>> for LinkError {
    fn from(e: PortError<io::Error>) -> Self {
        match e {
            PortError::Read(e) => LinkError::Io(IoError::new("read from link", e)),
            PortError::Write(e) => LinkError::Io(IoError::new("write to link", e)),
            PortError::Closed => LinkError::Closed,
            PortError::Packet(p) => LinkError::Packet(p),
        }
    }
}

/// How messages are protected against loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Two-way link: acknowledgements and selective retransmission.
    Arq,
    /// One-way link: Reed-Solomon parity, `parity_percent` parity shards per 100 data shards
    /// (needs the `fec` feature; 0 sends data shards only). Nothing is ever read back.
    Broadcast {
        /// Parity overhead in percent (1..=100).
        parity_percent: u8,
    },
}

/// Everything both ends must agree on, plus local tuning.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Link type and its airtime / regulatory model.
    pub profile: LinkProfile,
    /// Largest packet on the wire (COBS and delimiter included).
    pub mtu: usize,
    /// ARQ or FEC broadcast.
    pub mode: Mode,
    /// Respect the duty cycle (and serial line rate) by waiting between packets.
    pub pace: bool,
    /// ARQ timeouts and retry limit.
    pub arq: ArqConfig,
    /// Pre-shared key: seal outgoing messages; accept only sealed, authentic ones.
    #[cfg(feature = "crypto")]
    pub key: Option<Key>,
    /// This sender's id (distinct per device sharing a key).
    pub sender_id: u8,
    /// Where the boot epoch is persisted (required when sealing).
    pub epoch_file: Option<PathBuf>,
    /// Receiver: fail with [`LinkError::Timeout`] after this long without a message.
    pub idle_timeout: Option<Duration>,
    /// How packets are delimited: COBS (transparent modems, cables) or KISS (TNCs, RNode).
    pub framing: Framing,
    /// Receiver: hold the final acknowledgement of each message until the application calls
    /// [`Receiver::acknowledge`] (after it stored the message durably), so that a crash in
    /// between makes the sender retransmit instead of forgetting the message.
    pub deferred_ack: bool,
}

impl LinkConfig {
    /// Defaults for `profile`: ARQ, the profile's default MTU, pacing on, ACK timeout sized
    /// from the ACK's airtime plus turnaround margin.
    pub fn new(profile: LinkProfile) -> Self {
        let ack_ms = profile.ack_airtime_us(super::MAX_SHARDS).div_ceil(1000);
        let margin = match profile {
            LinkProfile::Serial { .. } => 200,
            LinkProfile::Lora(_) => 1_000,
        };
        LinkConfig {
            profile,
            mtu: profile.default_mtu(),
            mode: Mode::Arq,
            pace: true,
            arq: ArqConfig {
                base_timeout_ms: 2 * ack_ms + margin,
                ..ArqConfig::default()
            },
            #[cfg(feature = "crypto")]
            key: None,
            sender_id: 0,
            epoch_file: None,
            idle_timeout: None,
            framing: Framing::Cobs,
            deferred_ack: false,
        }
    }

    fn validate(&self) -> Result<(), LinkError> {
        Ok(self.profile.validate_framed(self.mtu, self.framing)?)
    }

    /// Largest raw packet under this MTU and framing.
    pub fn max_raw(&self) -> usize {
        self.framing.max_raw(self.mtu)
    }

    fn parity(&self) -> u8 {
        match self.mode {
            Mode::Arq => 0,
            Mode::Broadcast { parity_percent } => parity_percent,
        }
    }
}

/// Progress of a send, for a progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Shards of the message (data + parity).
    pub total_shards: usize,
    /// Data shards acknowledged so far (ARQ) or shards sent (broadcast).
    pub done_shards: usize,
    /// Packets transmitted so far, retransmissions included.
    pub packets_sent: u32,
    /// Airtime used so far, microseconds.
    pub airtime_us: u64,
    /// Time the pacer is about to wait for the duty cycle, milliseconds.
    pub pacing_wait_ms: u64,
}

/// Outcome of a successful send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Message id used.
    pub msg_id: u8,
    /// Payload bytes handed in.
    pub payload_bytes: usize,
    /// Bytes after sealing (what was fragmented).
    pub message_bytes: usize,
    /// Data + parity shards.
    pub shards: usize,
    /// Packets transmitted, retransmissions included.
    pub packets_sent: u32,
    /// Of which retransmissions.
    pub retransmissions: u32,
    /// Bytes written to the port, all overhead included (KISS framing too).
    pub wire_bytes: u64,
    /// Bytes the medium carried: with COBS the same as `wire_bytes`; with KISS the packets
    /// alone (the TNC strips the framing), plus the RNode header on an RNode.
    pub on_air_bytes: u64,
    /// Airtime actually used, microseconds.
    pub airtime_us: u64,
    /// Airtime if every packet gets through first time, microseconds (shown before sending).
    pub estimated_airtime_us: u64,
    /// ACKs received.
    pub acks: u32,
    /// Wall time taken, milliseconds (duty-cycle waits included).
    pub elapsed_ms: u64,
}

/// Estimated first-try airtime of a message of `payload_len` bytes (microseconds), and the
/// number of packets, under `cfg`. Useful to show before sending.
pub fn estimate_airtime(cfg: &LinkConfig, payload_len: usize) -> Result<(u64, usize), LinkError> {
    let sealed = payload_len + seal_overhead(cfg);
    let plan = super::Plan::for_raw(sealed, cfg.max_raw(), cfg.parity())?;
    let air = cfg.framing.on_air_len(plan.packet_raw_len());
    let n = plan.total_shards();
    Ok((cfg.profile.airtime_us(air) * n as u64, n))
}

fn seal_overhead(cfg: &LinkConfig) -> usize {
    #[cfg(feature = "crypto")]
    if cfg.key.is_some() {
        return MAX_OVERHEAD;
    }
    let _ = cfg;
    0
}

#[cfg(feature = "crypto")]
/// Takes the next boot epoch from `path`: max(stored + 1, seconds since 1970), written
/// durably (temp file, fsync, rename) before it is returned, so that no (key, sender, epoch)
/// nonce prefix is ever reused, even if the device crashes right after.
pub fn next_epoch(path: &Path) -> Result<u32, LinkError> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<u32>().map_err(|_| {
            IoError::new(
                format!("epoch file {} is damaged", path.display()),
                io::Error::new(ErrorKind::InvalidData, "not a number"),
            )
        })?,
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(IoError::new(format!("read epoch file {}", path.display()), e).into())
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX - 1)) as u32)
        .unwrap_or(0);
    let next = old
        .checked_add(1)
        .ok_or(super::seal::SealError::NonceExhausted)?
        .max(now);
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{next}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| IoError::new(format!("write epoch file {}", path.display()), e))?;
    Ok(next)
}

/// Sends messages; keeps the message id and nonce counter across messages.
#[derive(Debug)]
pub struct Sender {
    cfg: LinkConfig,
    next_id: u8,
    pacer: Pacer,
    #[cfg(feature = "crypto")]
    sealer: Option<Sealer>,
    clock: Instant,
}

impl Sender {
    /// Validates `cfg`; when sealing, takes a fresh boot epoch from `cfg.epoch_file`.
    pub fn new(cfg: LinkConfig) -> Result<Self, LinkError> {
        cfg.validate()?;
        #[cfg(feature = "crypto")]
        let sealer = match &cfg.key {
            None => None,
            Some(key) => {
                let path = cfg.epoch_file.as_deref().ok_or_else(|| {
                    IoError::new(
                        "a key needs an epoch file so that nonces never repeat",
                        io::Error::new(ErrorKind::InvalidInput, "no epoch file"),
                    )
                })?;
                Some(Sealer::new(key, cfg.sender_id, next_epoch(path)?))
            }
        };
        // Start ids away from 0 so that a restarted sender rarely reuses a recent id.
        let clock = Instant::now();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(0);
        Ok(Sender {
            next_id: (t ^ std::process::id()) as u8,
            pacer: Pacer::new(&cfg.profile),
            cfg,
            #[cfg(feature = "crypto")]
            sealer,
            clock,
        })
    }

    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    /// The configuration in use.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Sends one message (a tenbit frame of at most [`MAX_MESSAGE`] bytes) over `io` and
    /// blocks until it is acknowledged (ARQ) or fully transmitted (broadcast).
    /// `on_progress` is called after every packet.
    pub fn send<IO: Read + Write>(
        &mut self,
        io: &mut IO,
        frame: &[u8],
        on_progress: impl FnMut(&Progress),
    ) -> Result<SendReport, LinkError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.send_with_id(io, frame, id, on_progress)
    }

    /// As [`Sender::send`] with a given link message id. A durable outbox passes the low byte
    /// of the message's persistent sequence number, so that a message resent after a restart
    /// keeps its link id (and a receiver that already delivered it recognises the duplicate),
    /// while fresh messages never reuse a recently delivered id.
    pub fn send_with_id<IO: Read + Write>(
        &mut self,
        io: &mut IO,
        frame: &[u8],
        id: u8,
        on_progress: impl FnMut(&Progress),
    ) -> Result<SendReport, LinkError> {
        self.send_flagged(io, frame, id, 0, on_progress)
    }

    /// Sends a durable message: `message` is an envelope followed by the frame
    /// (`durable::Envelope::wrap`), and `id` the envelope's link id. Its packets carry
    /// [`FLAG_DURABLE`](super::packet::FLAG_DURABLE) so the receiver knows to de-duplicate it.
    pub fn send_durable<IO: Read + Write>(
        &mut self,
        io: &mut IO,
        message: &[u8],
        id: u8,
        on_progress: impl FnMut(&Progress),
    ) -> Result<SendReport, LinkError> {
        self.send_flagged(io, message, id, super::packet::FLAG_DURABLE, on_progress)
    }

    fn send_flagged<IO: Read + Write>(
        &mut self,
        io: &mut IO,
        frame: &[u8],
        id: u8,
        extra_flags: u8,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<SendReport, LinkError> {
        let start = self.now_us();
        #[allow(unused_mut, unused_variables)]
        let mut sealed_buf: Vec<u8> = Vec::new();
        #[allow(unused_mut)]
        let mut flags = extra_flags;
        #[allow(unused_mut)]
        let mut body = frame;
        if frame.len() > MAX_MESSAGE {
            return Err(MessageError::TooLarge.into());
        }
        #[cfg(feature = "crypto")]
        if let Some(s) = self.sealer.as_mut() {
            sealed_buf.resize(frame.len() + MAX_OVERHEAD, 0);
            let n = s.seal(frame, &mut sealed_buf)?;
            sealed_buf.truncate(n);
            body = &sealed_buf;
            flags |= FLAG_SEALED;
        }
        self.next_id = self.next_id.max(id.wrapping_add(1));
        let msg = OutgoingMessage::for_raw(id, body, self.cfg.max_raw(), self.cfg.parity(), flags)?;
        let on_air = self.cfg.framing.on_air_len(msg.plan.packet_raw_len());
        let airtime = self.cfg.profile.airtime_us(on_air);
        let total = msg.plan.total_shards();
        let mut report = SendReport {
            msg_id: id,
            payload_bytes: frame.len(),
            message_bytes: body.len(),
            shards: total,
            estimated_airtime_us: airtime * total as u64,
            ..SendReport::default()
        };
        let mut progress = Progress {
            total_shards: total,
            ..Progress::default()
        };
        let mut port: PacketPort<FromStd<&mut IO>> = PacketPort::new(FromStd(io), self.cfg.framing);
        let transmit = |me: &mut Self,
                        port: &mut PacketPort<FromStd<&mut IO>>,
                        index: u8,
                        ack_req: bool,
                        report: &mut SendReport,
                        progress: &mut Progress,
                        on_progress: &mut dyn FnMut(&Progress)|
         -> Result<u64, LinkError> {
            let packet = msg.packet(index, ack_req)?;
            let wait = if me.cfg.pace {
                me.pacer.wait_us(me.now_us())
            } else {
                0
            };
            progress.pacing_wait_ms = wait / 1000;
            on_progress(progress);
            if wait > 0 {
                std::thread::sleep(Duration::from_micros(wait));
            }
            let now = me.now_us();
            let n = port.send(&packet)?;
            me.pacer.record(now, airtime);
            report.packets_sent += 1;
            report.wire_bytes += n as u64;
            report.on_air_bytes += on_air as u64;
            report.airtime_us += airtime;
            progress.packets_sent = report.packets_sent;
            progress.airtime_us = report.airtime_us;
            progress.pacing_wait_ms = 0;
            Ok((now + airtime) / 1000)
        };
        match self.cfg.mode {
            Mode::Broadcast { .. } => {
                for i in 0..total {
                    transmit(
                        self,
                        &mut port,
                        i as u8,
                        false,
                        &mut report,
                        &mut progress,
                        &mut on_progress,
                    )?;
                    progress.done_shards = i + 1;
                    on_progress(&progress);
                }
            }
            Mode::Arq => {
                let mut arq = ArqSender::new(id, msg.plan.data_shards, self.cfg.arq);
                let k = msg.plan.data_shards as usize;
                loop {
                    let now_ms = self.now_us() / 1000;
                    match arq.poll(now_ms) {
                        ArqAction::Transmit { index, ack_req } => {
                            let end = transmit(
                                self,
                                &mut port,
                                index,
                                ack_req,
                                &mut report,
                                &mut progress,
                                &mut on_progress,
                            )?;
                            arq.transmitted(end);
                        }
                        ArqAction::WaitUntil(_) => {
                            while let Some(inc) = port.poll()? {
                                if let Incoming::Packet(Packet::Ack(a)) = inc {
                                    if arq.on_ack(&a) {
                                        report.acks += 1;
                                        progress.done_shards = a.received.count_ones() as usize;
                                        on_progress(&progress);
                                    }
                                }
                            }
                        }
                        ArqAction::Delivered => break,
                        ArqAction::Lost => {
                            return Err(ArqError::Lost {
                                msg_id: id,
                                tries: arq.failures(),
                            }
                            .into())
                        }
                    }
                }
                report.retransmissions = report.packets_sent.saturating_sub(k as u32);
            }
        }
        report.elapsed_ms = (self.now_us() - start) / 1000;
        Ok(report)
    }
}

/// One-shot send: `Sender::new(cfg.clone())?.send(io, frame, on_progress)`. With a key this
/// bumps the epoch file for every call (correct, but a long-lived [`Sender`] is cheaper).
pub fn send_message<IO: Read + Write>(
    io: &mut IO,
    cfg: &LinkConfig,
    frame: &[u8],
    on_progress: impl FnMut(&Progress),
) -> Result<SendReport, LinkError> {
    Sender::new(cfg.clone())?.send(io, frame, on_progress)
}

/// A delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Link message id.
    pub msg_id: u8,
    /// The payload exactly as sent (opened, if it was sealed).
    pub payload: Vec<u8>,
    /// Whether it was sealed and authenticated.
    pub authenticated: bool,
    /// It carries a durable envelope (sent from a spool; see `durable`).
    pub durable: bool,
    /// With [`LinkConfig::deferred_ack`]: the acknowledgement still to send with
    /// [`Receiver::acknowledge`] once the message is stored.
    pub pending_ack: Option<AckPacket>,
}

/// What the receiver observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message arrived exactly.
    Message(Received),
    /// A message was given up (some shards arrived but it could not be completed or checked).
    Lost {
        /// Its link id.
        msg_id: u8,
    },
}

/// Receiver counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets that parsed.
    pub packets: u64,
    /// Damaged packets (framing, CRC, header) dropped.
    pub bad_packets: u64,
    /// KISS frames that were not port-0 data (RNode reports, other ports), ignored.
    pub other_frames: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// Messages dropped because they failed authentication (or were unsealed while a key is set).
    pub auth_failures: u64,
    /// Sealed messages rejected as replays.
    pub replays: u64,
    /// Sealed messages dropped because no key is configured.
    pub sealed_without_key: u64,
    /// Shard-level counters.
    pub reassembly: ReassemblyStats,
}

/// Receives messages from `io`, acknowledging shards when asked.
pub struct Receiver<IO> {
    port: PacketPort<FromStd<IO>>,
    cfg: LinkConfig,
    reasm: Box<Reassembler>,
    #[cfg(feature = "crypto")]
    opener: Option<Opener>,
    pacer: Pacer,
    clock: Instant,
    last_event: Instant,
    pending: VecDeque<Event>,
    stats: ReceiverStats,
    /// Deferred-ACK mode: (id, k) of recent messages the application acknowledged.
    confirmed: VecDeque<(u8, u8)>,
}

impl<IO: Read + Write> Receiver<IO> {
    /// A receiver on `io` with `cfg` (profile, key, idle timeout; the mode is the sender's).
    pub fn new(io: IO, cfg: &LinkConfig) -> Result<Self, LinkError> {
        cfg.validate()?;
        Ok(Receiver {
            port: PacketPort::new(FromStd(io), cfg.framing),
            #[cfg(feature = "crypto")]
            opener: cfg.key.as_ref().map(Opener::new),
            reasm: Box::default(),
            pacer: Pacer::new(&cfg.profile),
            cfg: cfg.clone(),
            clock: Instant::now(),
            last_event: Instant::now(),
            pending: VecDeque::new(),
            stats: ReceiverStats::default(),
            confirmed: VecDeque::new(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        let mut s = self.stats;
        s.reassembly = *self.reasm.stats();
        s
    }

    /// The underlying port.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.port.get_mut().0
    }

    /// Blocks until the next message arrives exactly; lost messages are skipped (and counted).
    pub fn next_message(&mut self) -> Result<Received, LinkError> {
        loop {
            if let Event::Message(m) = self.next_event()? {
                return Ok(m);
            }
        }
    }

    /// Blocks until the next delivered or lost message.
    pub fn next_event(&mut self) -> Result<Event, LinkError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.last_event = Instant::now();
                return Ok(e);
            }
            if let Some(t) = self.cfg.idle_timeout {
                if self.last_event.elapsed() >= t {
                    return Err(LinkError::Timeout);
                }
            }
            let now_ms = self.clock.elapsed().as_millis() as u64;
            if let Some(id) = self.reasm.expire(now_ms) {
                self.pending.push_back(Event::Lost { msg_id: id });
                continue;
            }
            // One read, then every frame it completed.
            let mut first = true;
            while first || self.port.has_buffered() {
                first = false;
                self.poll_once()?;
            }
        }
    }

    /// Sends the acknowledgement a deferred-ACK receiver held back for `msg` (no-op if none).
    pub fn acknowledge(&mut self, msg: &Received) -> Result<(), LinkError> {
        match msg.pending_ack {
            Some(a) => {
                if self.confirmed.len() >= 16 {
                    self.confirmed.pop_front();
                }
                self.confirmed.push_back((a.msg_id, a.data_shards));
                self.send_ack(a)
            }
            None => Ok(()),
        }
    }

    fn send_ack(&mut self, a: AckPacket) -> Result<(), LinkError> {
        if self.cfg.pace {
            let wait = self.pacer.wait_us(self.clock.elapsed().as_micros() as u64);
            if wait > 0 {
                std::thread::sleep(Duration::from_micros(wait));
            }
        }
        let now = self.clock.elapsed().as_micros() as u64;
        let p = Packet::Ack(a);
        self.port.send(&p)?;
        let mut raw = [0u8; 32];
        let n = p.write_raw(&mut raw)?;
        let air = self.cfg.framing.on_air_len(n);
        self.pacer.record(now, self.cfg.profile.airtime_us(air));
        self.stats.acks_sent += 1;
        Ok(())
    }

    fn poll_once(&mut self) -> Result<(), LinkError> {
        let now_ms = self.clock.elapsed().as_millis() as u64;
        let pkt = match self.port.poll()? {
            None => return Ok(()),
            Some(Incoming::Bad(_)) => {
                self.stats.bad_packets += 1;
                return Ok(());
            }
            Some(Incoming::Command(_)) => {
                self.stats.other_frames += 1;
                return Ok(());
            }
            // Our own ACKs echoed, or another pair's.
            Some(Incoming::Packet(Packet::Ack(_))) => return Ok(()),
            Some(Incoming::Packet(Packet::Data(d))) => d,
        };
        self.stats.packets += 1;
        let handled = match self.reasm.handle(now_ms, &pkt) {
            Ok(h) => h,
            Err(_) => return Ok(()),
        };
        for id in &handled.lost {
            self.pending.push_back(Event::Lost { msg_id: *id });
        }
        let mut ack = handled.ack;
        if let Some(d) = handled.delivered {
            let sealed = d.flags & FLAG_SEALED != 0;
            let flags = d.flags;
            let msg_id = d.msg_id;
            #[cfg(feature = "crypto")]
            let opened: Option<Vec<u8>> = match (&mut self.opener, sealed) {
                (Some(o), true) => {
                    let (f0, r0) = (o.auth_failures, o.replays);
                    let r = o.open(d.payload).map(|p| p.to_vec()).ok();
                    self.stats.auth_failures += u64::from(o.auth_failures - f0);
                    self.stats.replays += u64::from(o.replays - r0);
                    r
                }
                (Some(_), false) => {
                    self.stats.auth_failures += 1;
                    None
                }
                (None, true) => {
                    self.stats.sealed_without_key += 1;
                    None
                }
                (None, false) => Some(d.payload.to_vec()),
            };
            #[cfg(not(feature = "crypto"))]
            let opened: Option<Vec<u8>> = if sealed {
                self.stats.sealed_without_key += 1;
                None
            } else {
                Some(d.payload.to_vec())
            };
            if let Some(payload) = opened {
                let pending_ack = if self.cfg.deferred_ack {
                    ack.take()
                } else {
                    None
                };
                self.pending.push_back(Event::Message(Received {
                    msg_id,
                    payload,
                    authenticated: sealed,
                    durable: flags & super::packet::FLAG_DURABLE != 0,
                    pending_ack,
                }));
            }
        } else if let Some(a) = ack {
            // A full ACK without a delivery answers a duplicate of a recent message. With
            // deferred ACKs it may only go out once the application confirmed that message:
            // until then the sender must keep it (the application may still crash).
            let full = a.received == super::packet::full_mask(a.data_shards);
            if self.cfg.deferred_ack && full && !self.confirmed.contains(&(a.msg_id, a.data_shards))
            {
                ack = None;
            }
        }
        if let Some(a) = ack {
            self.send_ack(a)?;
        }
        Ok(())
    }
}

/// What a two-way [`Endpoint`] observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DuplexEvent {
    /// A message from the peer, exactly as sent.
    Received(Vec<u8>),
    /// A queued message was acknowledged by the peer.
    Sent {
        /// Its link id.
        msg_id: u8,
    },
    /// A queued message was given up (no acknowledgement after the retries).
    Lost {
        /// Its link id.
        msg_id: u8,
    },
}

/// Both directions over one port: messages queued with [`Endpoint::queue`] go out one at a
/// time under ARQ while the peer's messages are reassembled and acknowledged. This is what a
/// relay or a KISS TNC bridge runs on each side of a tenbit link (e.g. two Reticulum nodes
/// reaching each other only through tenbit). ARQ mode, unsealed.
pub struct Endpoint<IO> {
    port: PacketPort<FromStd<IO>>,
    cfg: LinkConfig,
    reasm: Box<Reassembler>,
    queue: VecDeque<Vec<u8>>,
    current: Option<(Box<OutgoingMessage>, ArqSender)>,
    next_id: u8,
    pacer: Pacer,
    clock: Instant,
    events: VecDeque<DuplexEvent>,
}

impl<IO: Read + Write> Endpoint<IO> {
    /// An endpoint on `io` (profile, MTU, framing and ARQ tuning from `cfg`).
    pub fn new(io: IO, cfg: &LinkConfig) -> Result<Self, LinkError> {
        cfg.validate()?;
        Ok(Endpoint {
            port: PacketPort::new(FromStd(io), cfg.framing),
            cfg: cfg.clone(),
            reasm: Box::default(),
            queue: VecDeque::new(),
            current: None,
            next_id: (std::process::id() as u8).wrapping_mul(37),
            pacer: Pacer::new(&cfg.profile),
            clock: Instant::now(),
            events: VecDeque::new(),
        })
    }

    /// Queues a message for the peer (at most [`MAX_MESSAGE`] bytes).
    pub fn queue(&mut self, message: Vec<u8>) -> Result<(), LinkError> {
        if message.len() > MAX_MESSAGE {
            return Err(MessageError::TooLarge.into());
        }
        self.queue.push_back(message);
        Ok(())
    }

    /// Messages waiting (the one in flight included).
    pub fn backlog(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    fn transmit(&mut self, p: &Packet<'_>) -> Result<u64, LinkError> {
        let mut raw = [0u8; super::MAX_RAW_PACKET];
        let n = p.write_raw(&mut raw)?;
        let air = self.cfg.profile.airtime_us(self.cfg.framing.on_air_len(n));
        if self.cfg.pace {
            let wait = self.pacer.wait_us(self.now_us());
            if wait > 0 {
                std::thread::sleep(Duration::from_micros(wait));
            }
        }
        let now = self.now_us();
        self.port.send(p)?;
        self.pacer.record(now, air);
        Ok((now + air) / 1000)
    }

    /// One round: reads what arrived (at most one read, so this returns within the port's
    /// read timeout), handles it, drives the outgoing ARQ, and returns the next event if any.
    pub fn poll(&mut self) -> Result<Option<DuplexEvent>, LinkError> {
        let mut first = true;
        while first || self.port.has_buffered() {
            first = false;
            let now_ms = self.now_us() / 1000;
            let mut ack_out = None;
            match self.port.poll()? {
                Some(Incoming::Packet(Packet::Data(d))) => {
                    if let Ok(h) = self.reasm.handle(now_ms, &d) {
                        if let Some(dl) = h.delivered {
                            if dl.flags & FLAG_SEALED == 0 {
                                self.events
                                    .push_back(DuplexEvent::Received(dl.payload.to_vec()));
                            }
                        }
                        ack_out = h.ack;
                    }
                }
                Some(Incoming::Packet(Packet::Ack(a))) => {
                    if let Some((_, arq)) = self.current.as_mut() {
                        arq.on_ack(&a);
                    }
                }
                _ => {}
            }
            if let Some(a) = ack_out {
                self.transmit(&Packet::Ack(a))?;
            }
        }
        let _ = self.reasm.expire(self.now_us() / 1000);
        if self.current.is_none() {
            if let Some(m) = self.queue.pop_front() {
                let id = self.next_id;
                self.next_id = id.wrapping_add(1);
                let msg = OutgoingMessage::for_raw(id, &m, self.cfg.max_raw(), 0, 0)?;
                let arq = ArqSender::new(id, msg.plan.data_shards, self.cfg.arq);
                self.current = Some((Box::new(msg), arq));
            }
        }
        while let Some((msg, mut arq)) = self.current.take() {
            match arq.poll(self.now_us() / 1000) {
                ArqAction::Transmit { index, ack_req } => {
                    let p = msg.packet(index, ack_req)?;
                    let end = self.transmit(&p)?;
                    arq.transmitted(end);
                    self.current = Some((msg, arq));
                }
                ArqAction::WaitUntil(_) => {
                    self.current = Some((msg, arq));
                    break;
                }
                ArqAction::Delivered => {
                    let msg_id = arq.msg_id();
                    self.events.push_back(DuplexEvent::Sent { msg_id });
                    break;
                }
                ArqAction::Lost => {
                    let msg_id = arq.msg_id();
                    self.events.push_back(DuplexEvent::Lost { msg_id });
                    break;
                }
            }
        }
        Ok(self.events.pop_front())
    }

    /// The underlying port.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.port.get_mut().0
    }
}

/// Gives a blocking reader (stdin, a pipe, a pty master) read timeouts: a thread reads into a
/// channel, and `read` waits at most `timeout` for it.
pub struct ThreadedReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    timeout: Duration,
    eof: bool,
}

impl ThreadedReader {
    /// Starts the reader thread on `r`.
    pub fn new<R: Read + Send + 'static>(mut r: R, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::sync_channel(64);
        std::thread::spawn(move || {
            let mut b = vec![0u8; 512];
            loop {
                match r.read(&mut b) {
                    Ok(0) => {
                        let _ = tx.send(Ok(Vec::new()));
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Ok(b[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        ThreadedReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            timeout,
            eof: false,
        }
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.buf.len() {
            if self.eof {
                return Ok(0);
            }
            match self.rx.recv_timeout(self.timeout) {
                Ok(Ok(v)) if v.is_empty() => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(Ok(v)) => {
                    self.buf = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(ErrorKind::TimedOut, "no data"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader and a writer joined into one port (e.g. stdin + stdout).
pub struct Duplex<R, W> {
    /// Read half.
    pub reader: R,
    /// Write half.
    pub writer: W,
}

impl<R: Read, W> Read for Duplex<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<R, W: Write> Write for Duplex<R, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// stdin + stdout as a link port (reads time out after 100 ms so ARQ timers run).
pub fn stdio_port() -> Duplex<ThreadedReader, io::Stdout> {
    Duplex {
        reader: ThreadedReader::new(io::stdin(), Duration::from_millis(100)),
        writer: io::stdout(),
    }
}

/// Opens a serial port (or pty) in raw 8N1 mode with a 50 ms read timeout.
/// A missing or dead port gives e.g.
/// `cannot open serial port /dev/ttyUSB0: No such file or directory`.
#[cfg(feature = "serial")]
pub fn open_serial(path: &str, baud: u32) -> Result<Box<dyn serialport::SerialPort>, LinkError> {
    serialport::new(path, baud)
        .timeout(Duration::from_millis(50))
        .open()
        .map_err(|e| {
            let kind = match e.kind {
                serialport::ErrorKind::NoDevice => ErrorKind::NotFound,
                serialport::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                serialport::ErrorKind::Io(k) => k,
                serialport::ErrorKind::Unknown => ErrorKind::Other,
            };
            IoError::new(
                format!("cannot open serial port {path}"),
                io::Error::new(kind, e.description),
            )
            .into()
        })
}

/// A TCP stream (e.g. a KISS TNC's TCP port, `127.0.0.1:8001`) with a 50 ms read timeout, so
/// it can serve as a link port.
pub fn open_tcp(addr: &str) -> Result<std::net::TcpStream, LinkError> {
    let s = std::net::TcpStream::connect(addr)
        .map_err(|e| IoError::new(format!("cannot connect to {addr}"), e))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .and_then(|_| s.set_nodelay(true))
        .map_err(|e| IoError::new(format!("cannot configure {addr}"), e))?;
    Ok(s)
}
