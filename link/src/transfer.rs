//! Sending an adapter over a tenbit link, whose messages carry at most 4 KiB: the file is cut
//! into numbered chunks, each one link message, and reassembled and checked against the
//! file's sha256 (carried in every chunk) on the receiving side.
//!
//! Chunk layout: magic `TBAC` (4), adapter sha256 (32), index (u32 LE), count (u32 LE), data.

use sha2::{Digest, Sha256};

/// First bytes of every chunk.
pub const CHUNK_MAGIC: [u8; 4] = *b"TBAC";
/// Chunk header: magic, sha256, index, count.
pub const CHUNK_HEADER: usize = 4 + 32 + 4 + 4;

/// Errors of the adapter transfer protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    /// The message does not start with [`CHUNK_MAGIC`].
    #[error("link message is not an adapter chunk")]
    NotAChunk,
    /// Index beyond the announced count (or a count of zero).
    #[error("adapter chunk {index} of {count} is out of range")]
    BadIndex {
        /// Chunk index.
        index: u32,
        /// Announced chunk count.
        count: u32,
    },
    /// A chunk of another file arrived mid-transfer.
    #[error("adapter chunk belongs to another transfer (adapter {found}, expected {expected})")]
    OtherAdapter {
        /// Hash prefix (hex) of the transfer in progress.
        expected: String,
        /// Hash prefix (hex) of the chunk.
        found: String,
    },
    /// The reassembled file does not match the announced sha256.
    #[error(
        "reassembled adapter has sha256 {found}, the sender announced {expected}: corrupt transfer"
    )]
    HashMismatch {
        /// Announced sha256 (hex).
        expected: String,
        /// Computed sha256 (hex).
        found: String,
    },
    /// The file needs more than 2^32 chunks.
    #[error("adapter of {0} bytes needs more than 2^32 chunks")]
    TooLarge(usize),
}

/// Cut `file` into chunks whose messages are at most `max_message` bytes.
pub fn chunks(file: &[u8], max_message: usize) -> Result<Vec<Vec<u8>>, TransferError> {
    let hash: [u8; 32] = Sha256::digest(file).into();
    let room = max_message.saturating_sub(CHUNK_HEADER).max(1);
    let count = file.len().div_ceil(room).max(1);
    let count32 = u32::try_from(count).map_err(|_| TransferError::TooLarge(file.len()))?;
    Ok((0..count)
        .map(|i| {
            let data = &file[(i * room).min(file.len())..((i + 1) * room).min(file.len())];
            let mut m = Vec::with_capacity(CHUNK_HEADER + data.len());
            m.extend_from_slice(&CHUNK_MAGIC);
            m.extend_from_slice(&hash);
            m.extend_from_slice(&(i as u32).to_le_bytes());
            m.extend_from_slice(&count32.to_le_bytes());
            m.extend_from_slice(data);
            m
        })
        .collect())
}

/// Collects chunks (any order, duplicates ignored) until the file is complete.
#[derive(Debug, Default)]
pub struct Assembler {
    hash: Option<[u8; 32]>,
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
}

impl Assembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// (chunks received, chunks expected), once the first chunk has arrived.
    pub fn progress(&self) -> (usize, usize) {
        (self.have, self.parts.len())
    }

    /// Add one link message; returns the whole file, hash-checked, once complete.
    pub fn push(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, TransferError> {
        if msg.len() < CHUNK_HEADER || msg[..4] != CHUNK_MAGIC {
            return Err(TransferError::NotAChunk);
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&msg[4..36]);
        let index = u32::from_le_bytes(msg[36..40].try_into().unwrap());
        let count = u32::from_le_bytes(msg[40..44].try_into().unwrap());
        if count == 0 || index >= count {
            return Err(TransferError::BadIndex { index, count });
        }
        match self.hash {
            None => {
                self.hash = Some(hash);
                self.parts = vec![None; count as usize];
            }
            Some(h) if h != hash || self.parts.len() != count as usize => {
                return Err(TransferError::OtherAdapter {
                    expected: hex::encode(&h[..8]),
                    found: hex::encode(&hash[..8]),
                })
            }
            Some(_) => {}
        }
        let slot = &mut self.parts[index as usize];
        if slot.is_none() {
            *slot = Some(msg[CHUNK_HEADER..].to_vec());
            self.have += 1;
        }
        if self.have < self.parts.len() {
            return Ok(None);
        }
        let file: Vec<u8> = self.parts.iter().flatten().flatten().copied().collect();
        let found: [u8; 32] = Sha256::digest(&file).into();
        if found != hash {
            return Err(TransferError::HashMismatch {
                expected: hex::encode(hash),
                found: hex::encode(found),
            });
        }
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_in_any_order_and_corruption_is_caught() {
        let file: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let c = chunks(&file, 1000).unwrap();
        assert_eq!(c.len(), file.len().div_ceil(1000 - CHUNK_HEADER));
        assert!(c.iter().all(|m| m.len() <= 1000));
        let mut a = Assembler::new();
        let mut out = None;
        for m in c.iter().rev().chain(c.iter().take(1)) {
            if let Some(f) = a.push(m).unwrap() {
                out = Some(f);
            }
        }
        assert_eq!(out.unwrap(), file);
        // A flipped data byte fails the final hash check.
        let mut a = Assembler::new();
        let mut bad = c.clone();
        let last = bad[3].len() - 1;
        bad[3][last] ^= 1;
        let res: Vec<_> = bad.iter().map(|m| a.push(m)).collect();
        assert!(matches!(
            res.last().unwrap(),
            Err(TransferError::HashMismatch { .. })
        ));
        assert_eq!(
            Assembler::new().push(b"GGUF").unwrap_err(),
            TransferError::NotAChunk
        );
    }
}
