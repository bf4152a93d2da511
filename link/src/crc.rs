//! Checksums used by the link layer.
//!
//! Packets carry a CRC-16 (every byte costs airtime on LoRa, and the message-level CRC-32
//! catches what slips through); messages carry a CRC-32 in their trailer so that a message
//! is only ever delivered exactly. The CRC-16 is bitwise: packets are at most a few hundred
//! bytes, so a table would cost more flash than it saves time. The CRC-32 is
//! [`tenbit_wire::checksum::Crc32`], shared with the frame format.

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The message trailer's CRC-32 is the wire crate's, the same one frames use.
pub use tenbit_wire::checksum::Crc32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_values() {
        // The standard "123456789" check values from the CRC catalogue.
        assert_eq!(crc16(b"123456789"), 0x29B1);
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }
}
