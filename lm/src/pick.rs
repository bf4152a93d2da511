//! Seeded selection (`--mode pick --bits K`): both ends can draw the same 2^K candidate answers
//! from the small model, so only the index of the best one travels.
//!
//! Candidate `i` is sampled from the integer CDF ([`Sampler`]) with a SplitMix64 stream seeded
//! by [`seed`]`(i)`, on the prompt's chat context, until the end of turn or
//! [`MAX_PICK_TOKENS`]. The encoder draws all 2^K candidates together in one engine [`Batch`]
//! (one pass over the weights per step for all of them); the edge draws only the chosen one,
//! in a batch of one, at the cost of the small model answering alone. The batch's logits are
//! bit-identical to a lone session whatever the other sequences, so the two ends agree token
//! for token. Nothing here may depend on anything but (model, prompt, K, index).
//!
//! "None of them is good" is not an index value: the encoder then sends a lossless or rewrite
//! frame of the strong model's answer instead, and the frame's mode tells the edge which it
//! got. So all 2^K index values name candidates.

use tenbit_engine::{Batch, EngineError, Model, SessionOptions};
use tenbit_wire::rng::mix64;
use tenbit_wire::TokenId;

use crate::chat::ChatTemplate;
use crate::generate::Sampler;
use crate::qa::OracleError;
use crate::tokenizer::Tokenizer;

/// Largest K (2^K candidates the encoder draws; 64 sequences of the small model in one batch).
pub const MAX_PICK_BITS: u32 = 6;
/// Token limit of one candidate. Part of the protocol: both ends stop at the same point.
pub const MAX_PICK_TOKENS: usize = 320;
/// Softmax scale of the candidate sampler: temperature 2/3, hotter than QA's re-asks so the
/// candidates differ. Exact in binary (1.5 = 3/2).
pub const PICK_SCALE: f32 = 1.5;
/// Revision of the pick protocol carried in the payload's top three bits (0 = revision 1:
/// [`seed`], [`PICK_SCALE`], [`MAX_PICK_TOKENS`], the prompt as one user turn).
pub const PICK_REVISION: u8 = 0;
const SEED_BASE: u64 = 0x7069_636b_2f76_3100; // "pick/v1\0"

/// Why a pick run or a pick frame failed.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// The engine failed while drawing candidates (model, adapter or batch limits).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// K above [`MAX_PICK_BITS`] (encoder request or a frame's K field).
    #[error("pick mode with K = {k} bits asks for 2^{k} candidates; at most K = {max} is allowed")]
    TooManyBits {
        /// The K asked for, in bits.
        k: u32,
        /// [`MAX_PICK_BITS`].
        max: u32,
    },
    /// K = 0 would leave nothing to choose.
    #[error("pick mode needs at least one bit (K >= 1)")]
    ZeroBits,
    /// A frame naming a candidate that K bits cannot name.
    #[error("pick frame names candidate {index}, beyond the 2^{k} = {} candidates of K = {k}", 1u64 << k)]
    IndexOutOfRange {
        /// The candidate index the frame names.
        index: u64,
        /// The frame's K, in bits.
        k: u32,
    },
    /// A frame of a pick revision this build does not know.
    #[error("pick frame has revision {0}; this decoder knows revision {PICK_REVISION}")]
    UnknownRevision(u8),
    /// The payload's length disagrees with its K.
    #[error("pick payload of {len} bytes disagrees with its K = {k}")]
    BadLength {
        /// The payload's length, in bytes.
        len: usize,
        /// The frame's K, in bits.
        k: u32,
    },
    /// The judge (the strong model, on the encoder) failed; its own error is the source so the
    /// CLI can tell an outage from anything else.
    #[error("the strong model could not judge the candidates")]
    Judge(#[source] OracleError),
}

/// Chooses the best candidate: the strong model on the encoder. `Ok(None)` = none is good.
pub trait Judge {
    /// The index into `candidates` of the best one, or `None` when none is good enough.
    fn choose(&mut self, prompt: &str, candidates: &[String])
        -> Result<Option<usize>, OracleError>;
}

/// The SplitMix64 seed of candidate `index` (part of the protocol).
pub fn seed(index: u32) -> u64 {
    mix64(SEED_BASE ^ u64::from(index))
}

/// Check an encoder's K before drawing anything.
pub fn check_bits(k: u32) -> Result<(), PickError> {
    match k {
        0 => Err(PickError::ZeroBits),
        k if k > MAX_PICK_BITS => Err(PickError::TooManyBits {
            k,
            max: MAX_PICK_BITS,
        }),
        _ => Ok(()),
    }
}

/// Draw the candidates named by `indices` (each `< 2^MAX_PICK_BITS`) for `prompt`, all in one
/// batch; returns their texts in the order asked. Candidate `i` is the same text whichever
/// other indices are drawn with it.
pub fn draw(
    model: &Model,
    opts: &SessionOptions,
    tok: &Tokenizer,
    chat: &ChatTemplate,
    prompt: &str,
    indices: &[u32],
) -> Result<Vec<String>, PickError> {
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    let context = chat.render(tok, &[("user", prompt)]);
    let mut o = opts.clone();
    o.max_ctx = context.len() + MAX_PICK_TOKENS + 1;
    let mut batch = Batch::new(model, o, indices.len())?;
    let root = batch.add()?;
    for r in batch.step(&[(root, &context[..])])? {
        r?;
    }
    let mut seqs = vec![root];
    for _ in 1..indices.len() {
        seqs.push(batch.fork(root)?);
    }
    let cap = batch.capacity();
    let stop = [chat.end_of_turn(tok), tok.eos()];
    let mut samplers: Vec<Sampler> = indices
        .iter()
        .map(|&i| Sampler::with_scale(seed(i), PICK_SCALE))
        .collect();
    let mut out: Vec<Vec<TokenId>> = vec![Vec::new(); indices.len()];
    let mut live = vec![true; indices.len()];
    loop {
        let mut next: Vec<(usize, [TokenId; 1])> = Vec::new();
        for j in 0..indices.len() {
            if !live[j] {
                continue;
            }
            let t = samplers[j].pick(batch.logits(seqs[j])?)?;
            if stop.contains(&t)
                || out[j].len() >= MAX_PICK_TOKENS
                || batch.seq_len(seqs[j])? >= cap
            {
                live[j] = false;
                continue;
            }
            out[j].push(t);
            next.push((j, [t]));
        }
        if next.is_empty() {
            break;
        }
        let feeds: Vec<_> = next.iter().map(|(j, t)| (seqs[*j], &t[..])).collect();
        for r in batch.step(&feeds)? {
            r?;
        }
    }
    Ok(out
        .iter()
        .map(|ids| String::from_utf8_lossy(&tok.decode(ids)).trim().to_string())
        .collect())
}

/// Pick payload: one byte (revision << 5 | K), then the index in ceil(K/8) bytes, LE.
pub fn pack(k: u32, index: u32) -> Vec<u8> {
    debug_assert!((1..=MAX_PICK_BITS).contains(&k) && u64::from(index) < 1u64 << k);
    let mut out = vec![(PICK_REVISION << 5) | k as u8];
    let n = (k as usize).div_ceil(8);
    out.extend_from_slice(&index.to_le_bytes()[..n]);
    out
}

/// Inverse of [`pack`]: (K, index), with typed errors for every way a payload can be wrong.
pub fn unpack(payload: &[u8]) -> Result<(u32, u32), PickError> {
    let (&kb, rest) = payload
        .split_first()
        .ok_or(PickError::BadLength { len: 0, k: 0 })?;
    let rev = kb >> 5;
    if rev != PICK_REVISION {
        return Err(PickError::UnknownRevision(rev));
    }
    let k = u32::from(kb & 0x1f);
    if k == 0 {
        return Err(PickError::ZeroBits);
    }
    if k > MAX_PICK_BITS {
        return Err(PickError::TooManyBits {
            k,
            max: MAX_PICK_BITS,
        });
    }
    if rest.len() != (k as usize).div_ceil(8) {
        return Err(PickError::BadLength {
            len: payload.len(),
            k,
        });
    }
    let mut b = [0u8; 4];
    b[..rest.len()].copy_from_slice(rest);
    let index = u32::from_le_bytes(b);
    if u64::from(index) >= 1u64 << k {
        return Err(PickError::IndexOutOfRange {
            index: u64::from(index),
            k,
        });
    }
    Ok((k, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_garbage() {
        for k in 1..=MAX_PICK_BITS {
            for index in [0u32, 1, (1 << k) - 1] {
                let p = pack(k, index);
                assert_eq!(p.len(), 2);
                assert_eq!(unpack(&p).unwrap(), (k, index));
            }
        }
        assert!(matches!(
            unpack(&[3, 8]),
            Err(PickError::IndexOutOfRange { index: 8, k: 3 })
        ));
        assert!(matches!(
            unpack(&[7, 0]),
            Err(PickError::TooManyBits {
                k: 7,
                max: MAX_PICK_BITS
            })
        ));
        assert!(matches!(unpack(&[0, 0]), Err(PickError::ZeroBits)));
        assert!(matches!(unpack(&[3]), Err(PickError::BadLength { .. })));
        assert!(matches!(
            unpack(&[3, 0, 0]),
            Err(PickError::BadLength { .. })
        ));
        assert!(matches!(unpack(&[]), Err(PickError::BadLength { .. })));
        assert!(matches!(
            unpack(&[0x23, 0]),
            Err(PickError::UnknownRevision(1))
        ));
        assert!(matches!(check_bits(7), Err(PickError::TooManyBits { .. })));
        assert!(matches!(check_bits(0), Err(PickError::ZeroBits)));
        assert!(check_bits(MAX_PICK_BITS).is_ok());
    }

    /// The seeds are part of the protocol (this also runs on aarch64 under qemu).
    #[test]
    fn seeds_are_pinned_and_distinct() {
        let s: Vec<u64> = (0..64).map(seed).collect();
        for (i, a) in s.iter().enumerate() {
            assert!(s[..i].iter().all(|b| b != a));
        }
        assert_eq!(seed(0), mix64(0x7069_636b_2f76_3100));
    }
}
