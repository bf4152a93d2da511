//! Systematic Reed-Solomon erasure coding over GF(2^8) (crate `reed-solomon-erasure`): the `k`
//! data shards go out unchanged, followed by `m` parity shards; the receiver rebuilds the data
//! from any `k` of the `k + m`. Used on one-way links, where nothing can be retransmitted.

use alloc::vec::Vec;
use reed_solomon_erasure::galois_8::ReedSolomon;

use super::message::MessageError;
use super::message::Plan;

fn codec(plan: &Plan) -> Result<ReedSolomon, MessageError> {
    ReedSolomon::new(plan.data_shards as usize, plan.parity_shards as usize)
        .map_err(|_| MessageError::BadParity)
}

/// Fills the parity shards of `shards` (`(k + m) * L` bytes, data shards already written).
pub fn encode(shards: &mut [u8], plan: &Plan) -> Result<(), MessageError> {
    if shards.len() != plan.total_len() || plan.shard_len == 0 {
        return Err(MessageError::BufferTooSmall);
    }
    let rs = codec(plan)?;
    let mut parts: Vec<&mut [u8]> = shards.chunks_mut(plan.shard_len).collect();
    rs.encode(&mut parts).map_err(|_| MessageError::BadParity)
}

/// Rebuilds the missing data shards in place. `present` has bit `i` set for every shard `i`
/// (data or parity) that arrived; needs at least `k` of them.
pub fn reconstruct(shards: &mut [u8], plan: &Plan, present: u128) -> Result<(), MessageError> {
    if shards.len() < plan.total_len() || plan.shard_len == 0 {
        return Err(MessageError::BufferTooSmall);
    }
    if (present.count_ones() as usize) < plan.data_shards as usize {
        return Err(MessageError::Corrupt);
    }
    let rs = codec(plan)?;
    let mut parts: Vec<(&mut [u8], bool)> = shards[..plan.total_len()]
        .chunks_mut(plan.shard_len)
        .enumerate()
        .map(|(i, s)| (s, present >> i & 1 == 1))
        .collect();
    rs.reconstruct_data(&mut parts)
        .map_err(|_| MessageError::Corrupt)
}
