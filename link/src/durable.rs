//! Delivery that survives crashes of either end.
//!
//! * [`Outbox`]: the sender's spool directory. Each message is written to its own file (temp
//!   file, `fsync`, atomic rename, `fsync` of the directory) *before* it is transmitted, and
//!   removed only once the receiver's acknowledgement covers it. A restarted sender (or a
//!   `tenbit send --daemon`) resends what is left, in order. A damaged entry (bad magic, length
//!   or CRC-32) is renamed to `*.corrupt`, reported, and never sent.
//! * [`Envelope`]: what a durable message carries in front of its frame (inside the seal, when
//!   sealing): the spool's stream id (random, chosen once per spool) and the message's sequence
//!   number. Packets of durable messages carry [`FLAG_DURABLE`](crate::packet::FLAG_DURABLE).
//!   The link message id is the sequence number's low byte, so a message resent after a
//!   restart keeps its link id.
//! * [`SeenWindow`]: the receiver's persisted de-duplication window per stream (all sequence
//!   numbers below a floor, and a 256-bit bitmap above it), rewritten atomically after every
//!   new message. [`write_message`] writes a message atomically under a name derived from its
//!   (stream, sequence), so writing it twice leaves one file.
//!
//! The receiving order that makes "exactly once" hold across crashes: the link holds the final
//! ACK (`LinkConfig::deferred_ack`); the application checks the window (a duplicate is only
//! acknowledged), writes the message file, records it in the window, and then acknowledges.
//! A crash before the record makes the sender resend, and the rewrite lands on the same file.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::crc::Crc32;

/// Errors of the spool and the de-duplication state: local storage, not the link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// A file operation failed (the `std::io::Error` is kept: a full disk is
    /// `ErrorKind::StorageFull`, a read-only one `ReadOnlyFilesystem` or `PermissionDenied`).
    #[error("{op} {}{}", path.display(), hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A state file (stream id, sequence counter, window) is damaged.
    #[error("{} is damaged ({reason}); move it away to start afresh", path.display())]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A durable message's envelope did not parse.
    #[error("durable message without a valid envelope")]
    BadEnvelope,
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::StorageFull => " (the disk is full)",
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            " (the directory is read-only)"
        }
        _ => "",
    }
}

impl DurableError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DurableError + 'a {
        move |source| DurableError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The I/O error kind, if this is an I/O error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            DurableError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically and durably: a temp file in the same directory,
/// `fsync`, rename over the target, `fsync` of the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Stream id and sequence number of a durable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// The spool's stream id (random, fixed for the life of the spool).
    pub stream: u32,
    /// The message's sequence number in the stream (from 0).
    pub seq: u64,
}

impl Envelope {
    /// Largest encoded envelope.
    pub const MAX_LEN: usize = 4 + 10;

    /// `stream u32 LE ‖ seq LEB128` followed by `frame`.
    pub fn wrap(&self, frame: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::MAX_LEN + frame.len());
        v.extend_from_slice(&self.stream.to_le_bytes());
        let mut s = self.seq;
        loop {
            let b = (s & 0x7F) as u8;
            s >>= 7;
            if s == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend_from_slice(frame);
        v
    }

    /// Splits a durable message into its envelope and frame.
    pub fn unwrap(msg: &[u8]) -> Result<(Envelope, &[u8]), DurableError> {
        if msg.len() < 5 {
            return Err(DurableError::BadEnvelope);
        }
        let stream = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let mut seq = 0u64;
        for i in 0..10 {
            let b = *msg.get(4 + i).ok_or(DurableError::BadEnvelope)?;
            if i == 9 && b > 1 {
                return Err(DurableError::BadEnvelope);
            }
            seq |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DurableError::BadEnvelope); // non-minimal
                }
                return Ok((Envelope { stream, seq }, &msg[5 + i..]));
            }
        }
        Err(DurableError::BadEnvelope)
    }

    /// The link message id of this message: the sequence number's low byte.
    pub fn link_id(&self) -> u8 {
        self.seq as u8
    }

    /// File name of the delivered message (`<stream>-<seq>.<ext>`).
    pub fn file_name(&self, ext: &str) -> String {
        format!("{:08x}-{:016}.{ext}", self.stream, self.seq)
    }
}

const ENTRY_MAGIC: &[u8; 5] = b"TBOX1";
const ENTRY_HEADER: usize = 5 + 8 + 4 + 4;

/// One message waiting in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its envelope.
    pub envelope: Envelope,
    /// The frame to send.
    pub frame: Vec<u8>,
}

/// A spool entry that failed its checks: renamed to `*.corrupt`, never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptEntry {
    /// Where it is now.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: &'static str,
}

/// What a scan of the spool found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Messages to send, oldest first.
    pub entries: Vec<Entry>,
    /// Damaged entries set aside by this scan.
    pub corrupt: Vec<CorruptEntry>,
}

/// The sender's spool directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    stream: u32,
    next: u64,
}

fn entry_crc(seq: u64, frame: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&seq.to_le_bytes());
    c.update(&(frame.len() as u32).to_le_bytes());
    c.update(frame);
    c.finish()
}

fn parse_entry(name: &str, bytes: &[u8]) -> Result<(u64, Vec<u8>), &'static str> {
    let want: u64 = name
        .strip_suffix(".out")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("bad file name")?;
    if bytes.len() < ENTRY_HEADER || &bytes[..5] != ENTRY_MAGIC {
        return Err("not a spool entry (bad magic or truncated header)");
    }
    let seq = u64::from_le_bytes(bytes[5..13].try_into().unwrap_or([0; 8]));
    let len = u32::from_le_bytes(bytes[13..17].try_into().unwrap_or([0; 4])) as usize;
    let crc = u32::from_le_bytes(bytes[17..21].try_into().unwrap_or([0; 4]));
    let frame = &bytes[ENTRY_HEADER..];
    if seq != want {
        return Err("sequence number does not match the file name");
    }
    if frame.len() != len {
        return Err("truncated or overlong message");
    }
    if entry_crc(seq, frame) != crc {
        return Err("CRC-32 mismatch");
    }
    Ok((seq, frame.to_vec()))
}

impl Outbox {
    /// Opens (or creates) the spool in `dir`. A new spool takes a random stream id.
    pub fn open(dir: &Path) -> Result<Outbox, DurableError> {
        fs::create_dir_all(dir).map_err(DurableError::io("cannot create spool", dir))?;
        let state = dir.join("stream");
        let (stream, next) = match fs::read_to_string(&state) {
            Ok(s) => {
                let mut it = s.split_whitespace();
                let bad = || DurableError::BadState {
                    path: state.clone(),
                    reason: "expected `<stream hex> <next seq>`",
                };
                let stream = it
                    .next()
                    .and_then(|v| u32::from_str_radix(v, 16).ok())
                    .ok_or_else(bad)?;
                let next = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                (stream, next)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let stream = random_u32();
                write_atomic(dir, "stream", format!("{stream:08x} 0\n").as_bytes())
                    .map_err(DurableError::io("cannot initialise spool", &state))?;
                (stream, 0)
            }
            Err(e) => return Err(DurableError::io("cannot read spool state", &state)(e)),
        };
        let mut ob = Outbox {
            dir: dir.to_path_buf(),
            stream,
            next,
        };
        // Entries written after the last counter update (a crash in between) still count.
        if let Some(max) = ob.entry_seqs()?.into_iter().max() {
            ob.next = ob.next.max(max + 1);
        }
        Ok(ob)
    }

    /// The spool's stream id.
    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_seqs(&self) -> Result<Vec<u64>, DurableError> {
        let rd =
            fs::read_dir(&self.dir).map_err(DurableError::io("cannot list spool", &self.dir))?;
        let mut v = Vec::new();
        for e in rd.flatten() {
            if let Some(seq) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".out"))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                v.push(seq);
            }
        }
        Ok(v)
    }

    /// Writes `frame` to the spool (durably, before anything is sent); returns its envelope.
    pub fn enqueue(&mut self, frame: &[u8]) -> Result<Envelope, DurableError> {
        let seq = self.next;
        let mut bytes = Vec::with_capacity(ENTRY_HEADER + frame.len());
        bytes.extend_from_slice(ENTRY_MAGIC);
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&entry_crc(seq, frame).to_le_bytes());
        bytes.extend_from_slice(frame);
        let name = format!("{seq:016x}.out");
        write_atomic(&self.dir, &name, &bytes).map_err(DurableError::io(
            "cannot write spool entry",
            &self.dir.join(&name),
        ))?;
        self.next = seq + 1;
        write_atomic(
            &self.dir,
            "stream",
            format!("{:08x} {}\n", self.stream, self.next).as_bytes(),
        )
        .map_err(DurableError::io("cannot update spool state", &self.dir))?;
        Ok(Envelope {
            stream: self.stream,
            seq,
        })
    }

    /// Reads every pending entry, oldest first. Damaged ones are renamed to `*.corrupt` and
    /// listed in [`Scan::corrupt`]; they are never returned for sending.
    pub fn scan(&self) -> Result<Scan, DurableError> {
        let mut seqs = self.entry_seqs()?;
        seqs.sort_unstable();
        let mut scan = Scan::default();
        for seq in seqs {
            let name = format!("{seq:016x}.out");
            let path = self.dir.join(&name);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // acked meanwhile
                Err(e) => return Err(DurableError::io("cannot read spool entry", &path)(e)),
            };
            match parse_entry(&name, &bytes) {
                Ok((seq, frame)) => scan.entries.push(Entry {
                    envelope: Envelope {
                        stream: self.stream,
                        seq,
                    },
                    frame,
                }),
                Err(reason) => {
                    let aside = self.dir.join(format!("{name}.corrupt"));
                    fs::rename(&path, &aside)
                        .map_err(DurableError::io("cannot set aside corrupt entry", &path))?;
                    scan.corrupt.push(CorruptEntry {
                        path: aside,
                        reason,
                    });
                }
            }
        }
        Ok(scan)
    }

    /// Removes an acknowledged entry (durably).
    pub fn remove(&self, seq: u64) -> Result<(), DurableError> {
        let path = self.dir.join(format!("{seq:016x}.out"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(DurableError::io("cannot remove spool entry", &path)(e)),
        }
        sync_dir(&self.dir).map_err(DurableError::io("cannot sync spool", &self.dir))
    }
}

fn random_u32() -> u32 {
    // Distinct per spool; not a secret. Time, pid and a stack address, mixed.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let mut z = t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// Bits of the window above its floor.
const WINDOW: u64 = 256;
/// Streams remembered (oldest forgotten first).
const MAX_STREAMS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamWindow {
    stream: u32,
    /// Every sequence number below `floor` has been seen.
    floor: u64,
    bits: [u64; 4],
}

impl StreamWindow {
    fn contains(&self, seq: u64) -> bool {
        if seq < self.floor {
            return true;
        }
        let d = seq - self.floor;
        d < WINDOW && self.bits[(d / 64) as usize] >> (d % 64) & 1 == 1
    }

    fn insert(&mut self, seq: u64) {
        if seq < self.floor {
            return;
        }
        if seq - self.floor >= WINDOW {
            // Slide: everything below the new floor counts as seen (the sender sends its
            // spool in order, so nothing that old can still be pending).
            let shift = seq - self.floor - WINDOW + 1;
            for _ in 0..shift.min(WINDOW) {
                self.shift_one();
            }
            if shift >= WINDOW {
                self.bits = [0; 4];
            }
            self.floor += shift;
        }
        let d = seq - self.floor;
        self.bits[(d / 64) as usize] |= 1 << (d % 64);
        while self.bits[0] & 1 == 1 {
            self.shift_one();
            self.floor += 1;
        }
    }

    fn shift_one(&mut self) {
        for i in 0..4 {
            let carry = if i < 3 { self.bits[i + 1] & 1 } else { 0 };
            self.bits[i] = self.bits[i] >> 1 | carry << 63;
        }
    }
}

/// The receiver's persisted de-duplication window (one per stream).
#[derive(Debug)]
pub struct SeenWindow {
    path: PathBuf,
    streams: Vec<StreamWindow>,
}

impl SeenWindow {
    /// Loads `path` (absent: empty).
    pub fn open(path: &Path) -> Result<SeenWindow, DurableError> {
        let mut streams = Vec::new();
        match fs::read_to_string(path) {
            Ok(s) => {
                for line in s.lines().filter(|l| !l.trim().is_empty()) {
                    let bad = || DurableError::BadState {
                        path: path.to_path_buf(),
                        reason: "expected `<stream hex> <floor> <bitmap hex>` per line",
                    };
                    let mut it = line.split_whitespace();
                    let stream = it
                        .next()
                        .and_then(|v| u32::from_str_radix(v, 16).ok())
                        .ok_or_else(bad)?;
                    let floor = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                    let hexbits = it.next().filter(|h| h.len() == 64).ok_or_else(bad)?;
                    let mut bits = [0u64; 4];
                    for (i, b) in bits.iter_mut().enumerate() {
                        *b = u64::from_str_radix(&hexbits[i * 16..i * 16 + 16], 16)
                            .map_err(|_| bad())?;
                    }
                    streams.push(StreamWindow {
                        stream,
                        floor,
                        bits,
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(DurableError::io("cannot read receiver state", path)(e)),
        }
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(d).map_err(DurableError::io("cannot create state directory", d))?;
        }
        Ok(SeenWindow {
            path: path.to_path_buf(),
            streams,
        })
    }

    /// Whether this message was already delivered.
    pub fn contains(&self, e: &Envelope) -> bool {
        self.streams
            .iter()
            .any(|w| w.stream == e.stream && w.contains(e.seq))
    }

    /// Records a delivered message and persists the window atomically.
    pub fn insert(&mut self, e: &Envelope) -> Result<(), DurableError> {
        match self.streams.iter().position(|w| w.stream == e.stream) {
            Some(i) => {
                let mut w = self.streams.remove(i);
                w.insert(e.seq);
                self.streams.push(w);
            }
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    self.streams.remove(0);
                }
                let mut w = StreamWindow {
                    stream: e.stream,
                    floor: 0,
                    bits: [0; 4],
                };
                w.insert(e.seq);
                self.streams.push(w);
            }
        }
        let mut text = String::new();
        for w in &self.streams {
            text.push_str(&format!(
                "{:08x} {} {:016x}{:016x}{:016x}{:016x}\n",
                w.stream, w.floor, w.bits[0], w.bits[1], w.bits[2], w.bits[3]
            ));
        }
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("seen");
        write_atomic(dir, name, text.as_bytes())
            .map_err(DurableError::io("cannot write receiver state", &self.path))
    }
}

/// What a durable message is to the receiver.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<'a> {
    /// Not seen before: store `frame`, [`SeenWindow::insert`] the envelope, then acknowledge.
    New(Envelope, &'a [u8]),
    /// Already delivered (before a crash or restart of either end): only acknowledge.
    Duplicate(Envelope),
}

impl SeenWindow {
    /// Classifies a durable message (its envelope and frame; see [`Envelope::unwrap`]).
    pub fn admit<'a>(&self, message: &'a [u8]) -> Result<Admit<'a>, DurableError> {
        let (e, frame) = Envelope::unwrap(message)?;
        Ok(if self.contains(&e) {
            Admit::Duplicate(e)
        } else {
            Admit::New(e, frame)
        })
    }
}

/// Sends every pending spool entry, oldest first, each removed from the spool once its
/// acknowledgement arrived; `on_sent` is called after each. Damaged entries are set aside and
/// passed to `on_corrupt` (never sent). Returns how many were delivered. The first link
/// error stops the run and leaves that entry (and the later ones) in the spool.
pub fn send_pending<IO: std::io::Read + std::io::Write>(
    outbox: &Outbox,
    sender: &mut crate::io::Sender,
    io: &mut IO,
    mut on_sent: impl FnMut(&Entry, &crate::io::SendReport),
    mut on_corrupt: impl FnMut(&CorruptEntry),
) -> Result<usize, crate::LinkError> {
    let scan = outbox.scan()?;
    for c in &scan.corrupt {
        on_corrupt(c);
    }
    let mut sent = 0;
    for entry in &scan.entries {
        let message = entry.envelope.wrap(&entry.frame);
        let report = sender.send_durable(io, &message, entry.envelope.link_id(), |_| {})?;
        outbox.remove(entry.envelope.seq)?;
        on_sent(entry, &report);
        sent += 1;
    }
    Ok(sent)
}

/// Writes a delivered message as `dir/<stream>-<seq>.<ext>`, atomically and durably.
pub fn write_message(
    dir: &Path,
    e: &Envelope,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, DurableError> {
    fs::create_dir_all(dir).map_err(DurableError::io("cannot create output directory", dir))?;
    let name = e.file_name(ext);
    write_atomic(dir, &name, bytes)
        .map_err(DurableError::io("cannot write message", &dir.join(&name)))?;
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tenbit-durable-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn envelope_roundtrip_and_rejects() {
        for seq in [0u64, 1, 127, 128, 300, u64::MAX] {
            let e = Envelope {
                stream: 0xDEAD_BEEF,
                seq,
            };
            let v = e.wrap(b"frame");
            assert_eq!(Envelope::unwrap(&v).unwrap(), (e, &b"frame"[..]));
        }
        assert!(Envelope::unwrap(&[1, 2, 3]).is_err());
        assert!(
            Envelope::unwrap(&[1, 2, 3, 4, 0x80, 0x00]).is_err(),
            "non-minimal"
        );
        assert!(Envelope::unwrap(&[1, 2, 3, 4, 0x80]).is_err(), "truncated");
    }

    #[test]
    fn window_dedupes_and_slides() {
        let d = tmp("window");
        let path = d.join("seen");
        let mut w = SeenWindow::open(&path).unwrap();
        let e = |seq| Envelope { stream: 7, seq };
        for s in [0u64, 2, 1, 5, 300, 299] {
            assert!(!w.contains(&e(s)), "{s}");
            w.insert(&e(s)).unwrap();
            assert!(w.contains(&e(s)));
        }
        let w2 = SeenWindow::open(&path).unwrap();
        for s in [0u64, 1, 2, 5, 299, 300, 10] {
            // 10 is below the slid floor (300 - 255): counted as seen.
            assert!(w2.contains(&e(s)), "{s} after reload");
        }
        assert!(!w2.contains(&e(301)));
        assert!(!w2.contains(&Envelope { stream: 8, seq: 0 }));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn outbox_persists_resumes_and_sets_aside_corruption() {
        let d = tmp("outbox");
        let mut ob = Outbox::open(&d).unwrap();
        let a = ob.enqueue(b"first").unwrap();
        let b = ob.enqueue(b"second").unwrap();
        let c = ob.enqueue(b"third").unwrap();
        assert_eq!((a.seq, b.seq, c.seq), (0, 1, 2));
        ob.remove(a.seq).unwrap();
        // Damage the third entry's frame byte.
        let p = d.join(format!("{:016x}.out", c.seq));
        let mut bytes = fs::read(&p).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&p, bytes).unwrap();
        let ob2 = Outbox::open(&d).unwrap();
        assert_eq!(ob2.stream(), ob.stream());
        let scan = ob2.scan().unwrap();
        assert_eq!(scan.entries.len(), 1);
        assert_eq!(scan.entries[0].frame, b"second");
        assert_eq!(scan.corrupt.len(), 1);
        assert_eq!(scan.corrupt[0].reason, "CRC-32 mismatch");
        assert!(scan.corrupt[0].path.exists());
        // The counter survives even with every entry gone.
        ob2.remove(b.seq).unwrap();
        let mut ob3 = Outbox::open(&d).unwrap();
        assert_eq!(ob3.enqueue(b"fourth").unwrap().seq, 3);
        let _ = fs::remove_dir_all(&d);
    }
}
