//! Pre-shared-key sealing of messages with ChaCha20-Poly1305.
//!
//! A sealed message is `sender ‖ epoch ‖ counter ‖ ciphertext ‖ tag`:
//!
//! | field      | bytes | meaning                                                        |
//! |------------|-------|----------------------------------------------------------------|
//! | sender     | 1     | sender id: separates nonce spaces and replay windows of senders  |
//! | epoch      | 4 LE  | boot epoch, persisted and bumped before first use (std side)   |
//! | counter    | 1-8   | LEB128 message counter within the epoch (< 2^56)               |
//! | ciphertext | n     | the payload, encrypted                                         |
//! | tag        | 16    | Poly1305 tag over the header (AAD) and ciphertext              |
//!
//! Nonce = `sender ‖ epoch (4 LE) ‖ counter (7 LE)`. It never repeats as long as each sender
//! id is used by one device and the epoch store survives reboots (it is bumped, and written
//! durably, *before* the first message of a boot). The receiver keeps a replay window per
//! sender: newer epochs reset it, older epochs and already-seen counters are rejected.
//! Sealing is per message, not per packet, so a 16-byte tag is paid once per message.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use zeroize::Zeroize;

/// Errors of the sealing layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A sealed message failed authentication (wrong key, forged or damaged).
    #[error("message failed authentication")]
    AuthFailed,
    /// A sealed message was already seen (replay).
    #[error("replayed message rejected")]
    Replay,
    /// The nonce counter is exhausted for this boot epoch: restart to take a new epoch.
    #[error("nonce space exhausted for this epoch")]
    NonceExhausted,
    /// A key was not 64 hex digits.
    #[error("a key is 64 hex digits")]
    BadKey,
    /// An output buffer was too small.
    #[error("buffer too small for the sealed message")]
    BufferTooSmall,
}

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Largest sealed header (sender, epoch, 8-byte counter).
pub const MAX_HEADER: usize = 1 + 4 + 8;
/// Largest sealing overhead.
pub const MAX_OVERHEAD: usize = MAX_HEADER + TAG_LEN;
const COUNTER_LIMIT: u64 = 1 << 56;

/// A 256-bit pre-shared key. Never printed: `Debug` shows `Key(<redacted>)`; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    /// A key from 64 hex digits (surrounding whitespace ignored, e.g. a key file's newline).
    pub fn from_hex(s: &str) -> Result<Self, SealError> {
        let s = s.trim().as_bytes();
        if s.len() != 64 {
            return Err(SealError::BadKey);
        }
        let mut k = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(SealError::BadKey),
            };
            k[i] = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Ok(Key(k))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&self.0.into())
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn nonce(sender: u8, epoch: u32, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = sender;
    n[1..5].copy_from_slice(&epoch.to_le_bytes());
    n[5..12].copy_from_slice(&counter.to_le_bytes()[..7]);
    n.into()
}

fn write_header(sender: u8, epoch: u32, counter: u64, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = sender;
    out[1..5].copy_from_slice(&epoch.to_le_bytes());
    let mut n = 5;
    let mut c = counter;
    loop {
        let b = (c & 0x7F) as u8;
        c >>= 7;
        if c == 0 {
            out[n] = b;
            return n + 1;
        }
        out[n] = b | 0x80;
        n += 1;
    }
}

/// Parses a sealed header: (sender, epoch, counter, header length).
fn read_header(b: &[u8]) -> Result<(u8, u32, u64, usize), SealError> {
    if b.len() < 6 + TAG_LEN {
        return Err(SealError::AuthFailed);
    }
    let sender = b[0];
    let epoch = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let mut counter = 0u64;
    for i in 0..8 {
        let byte = b[5 + i];
        counter |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // Reject non-minimal encodings: one message, one header.
            if i > 0 && byte == 0 {
                return Err(SealError::AuthFailed);
            }
            if counter >= COUNTER_LIMIT || b.len() < 6 + i + TAG_LEN {
                return Err(SealError::AuthFailed);
            }
            return Ok((sender, epoch, counter, 6 + i));
        }
        if 6 + i >= b.len() {
            break;
        }
    }
    Err(SealError::AuthFailed)
}

/// Seals outgoing messages. One per sender per boot epoch: it owns the counter.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    sender: u8,
    epoch: u32,
    counter: u64,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer")
            .field("sender", &self.sender)
            .field("epoch", &self.epoch)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `sender` in boot epoch `epoch` (which must never have been used before
    /// with this key and sender id: see `link::io::next_epoch` on std).
    pub fn new(key: &Key, sender: u8, epoch: u32) -> Self {
        Sealer {
            cipher: key.cipher(),
            sender,
            epoch,
            counter: 0,
        }
    }

    /// Seals `plaintext` into `out`; returns the sealed length (plaintext + at most
    /// [`MAX_OVERHEAD`]). Each call consumes one counter value, even on a short buffer, so
    /// a nonce is never used twice.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        if self.counter >= COUNTER_LIMIT {
            return Err(SealError::NonceExhausted);
        }
        let counter = self.counter;
        self.counter += 1;
        let mut header = [0u8; MAX_HEADER];
        let h = write_header(self.sender, self.epoch, counter, &mut header);
        let total = h + plaintext.len() + TAG_LEN;
        if out.len() < total {
            return Err(SealError::BufferTooSmall);
        }
        out[..h].copy_from_slice(&header[..h]);
        let body = &mut out[h..h + plaintext.len()];
        body.copy_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(self.sender, self.epoch, counter), &header[..h], body)
            .map_err(|_| SealError::BufferTooSmall)?;
        out[h + plaintext.len()..total].copy_from_slice(&tag);
        Ok(total)
    }
}

/// Replay window of one sender: the newest (epoch, counter) and a bitmap of the 64 before it.
#[derive(Clone, Copy, Debug)]
struct Window {
    sender: u8,
    epoch: u32,
    top: u64,
    seen: u64,
}

impl Window {
    fn check(&self, epoch: u32, counter: u64) -> bool {
        if epoch != self.epoch {
            return epoch > self.epoch;
        }
        if counter > self.top {
            return true;
        }
        let back = self.top - counter;
        back < 64 && self.seen >> back & 1 == 0
    }

    fn commit(&mut self, epoch: u32, counter: u64) {
        if epoch > self.epoch {
            *self = Window {
                sender: self.sender,
                epoch,
                top: counter,
                seen: 1,
            };
        } else if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter;
        } else {
            self.seen |= 1 << (self.top - counter);
        }
    }
}

/// Opens sealed messages, rejecting forgeries and replays. `SENDERS` bounds the number of
/// distinct sender ids tracked; messages from further senders are rejected (never admitted
/// without a replay window).
pub struct Opener<const SENDERS: usize = 16> {
    cipher: ChaCha20Poly1305,
    windows: heapless::Vec<Window, SENDERS>,
    /// Messages dropped because authentication failed.
    pub auth_failures: u32,
    /// Messages dropped as replays (or from senders beyond `SENDERS`).
    pub replays: u32,
}

impl<const SENDERS: usize> Opener<SENDERS> {
    /// An opener with empty replay windows.
    pub fn new(key: &Key) -> Self {
        Opener {
            cipher: key.cipher(),
            windows: heapless::Vec::new(),
            auth_failures: 0,
            replays: 0,
        }
    }

    /// Authenticates and decrypts `sealed` in place; returns the plaintext (a sub-slice).
    pub fn open<'a>(&mut self, sealed: &'a mut [u8]) -> Result<&'a mut [u8], SealError> {
        let (sender, epoch, counter, h) = match read_header(sealed) {
            Ok(v) => v,
            Err(e) => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                return Err(e);
            }
        };
        let win = self.windows.iter().position(|w| w.sender == sender);
        if let Some(i) = win {
            if !self.windows[i].check(epoch, counter) {
                self.replays = self.replays.saturating_add(1);
                return Err(SealError::Replay);
            }
        } else if self.windows.is_full() {
            self.replays = self.replays.saturating_add(1);
            return Err(SealError::Replay);
        }
        let n = sealed.len();
        let (head, rest) = sealed.split_at_mut(h);
        let (body, tag) = rest.split_at_mut(n - h - TAG_LEN);
        let tag = Tag::clone_from_slice(tag);
        if self
            .cipher
            .decrypt_in_place_detached(&nonce(sender, epoch, counter), head, body, &tag)
            .is_err()
        {
            self.auth_failures = self.auth_failures.saturating_add(1);
            return Err(SealError::AuthFailed);
        }
        match win {
            Some(i) => self.windows[i].commit(epoch, counter),
            None => {
                let _ = self.windows.push(Window {
                    sender,
                    epoch,
                    top: counter,
                    seen: 1,
                });
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn seal_open_tamper_replay() {
        let mut s = Sealer::new(&key(1), 7, 3);
        let mut o = Opener::<4>::new(&key(1));
        let mut first = [0u8; 64];
        let n = s.seal(b"hello", &mut first).unwrap();
        assert_eq!(n, 1 + 4 + 1 + 5 + 16);
        assert_ne!(
            &first[6..11],
            b"hello",
            "ciphertext must not be the plaintext"
        );
        let mut copy = first;
        assert_eq!(o.open(&mut copy[..n]).unwrap(), b"hello");
        // Replay of the same message.
        let mut copy = first;
        assert_eq!(o.open(&mut copy[..n]), Err(SealError::Replay));
        assert_eq!(o.replays, 1);
        // Every single-bit change is rejected.
        let mut s2 = Sealer::new(&key(1), 7, 3);
        s2.counter = 1;
        let mut m = [0u8; 64];
        let n2 = s2.seal(b"world", &mut m).unwrap();
        for bit in 0..n2 * 8 {
            let mut t = m;
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(o.open(&mut t[..n2]).is_err(), "bit {bit}");
        }
        assert!(o.auth_failures > 0);
        // Wrong key.
        let mut wrong = Opener::<4>::new(&key(2));
        let mut t = m;
        assert_eq!(wrong.open(&mut t[..n2]), Err(SealError::AuthFailed));
        // The untouched message still opens (failed attempts did not advance the window).
        let mut t = m;
        assert_eq!(o.open(&mut t[..n2]).unwrap(), b"world");
    }

    #[test]
    fn windows_and_epochs() {
        let k = key(9);
        let mut o = Opener::<2>::new(&k);
        let mut old = Sealer::new(&k, 1, 10);
        let mut msgs = [[0u8; 40]; 3];
        let mut lens = [0; 3];
        for (m, l) in msgs.iter_mut().zip(lens.iter_mut()) {
            *l = old.seal(b"x", m).unwrap();
        }
        // Out of order within the window is fine, once each.
        for i in [2usize, 0, 1] {
            let mut t = msgs[i];
            assert!(o.open(&mut t[..lens[i]]).is_ok(), "msg {i}");
        }
        // A newer epoch (reboot) is accepted; the old epoch is then rejected.
        let mut new = Sealer::new(&k, 1, 11);
        let mut m = [0u8; 40];
        let n = new.seal(b"y", &mut m).unwrap();
        assert!(o.open(&mut m[..n]).is_ok());
        let mut old_again = Sealer::new(&k, 1, 10);
        old_again.counter = 50;
        let n = old_again.seal(b"z", &mut m).unwrap();
        assert_eq!(o.open(&mut m[..n]), Err(SealError::Replay));
    }

    #[test]
    fn key_is_never_printed() {
        let k = Key::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
        assert!(!format!("{:?}", Sealer::new(&k, 0, 0)).contains("ab"));
        assert!(Key::from_hex("abc").is_err());
        assert!(Key::from_hex(&"zz".repeat(32)).is_err());
    }
}
