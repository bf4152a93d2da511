//! The receive buffer behind both stream decoders ([`super::cobs::CobsDecoder`] and
//! [`super::kiss::KissDecoder`]): one place that bounds memory and remembers an overflow.
//!
//! A decoder fills it byte by byte while a packet arrives. A byte past `N` is not stored: it
//! sets a flag instead, so an over-long packet is reported once, when its delimiter comes,
//! and never writes outside the array. When the delimiter comes the decoder ends the packet:
//! what was received is handed back for checking (COBS decodes it in place) and, if good, kept
//! readable until the next byte arrives, without a copy.

/// Bytes of the packet being received, at most `N`, plus the last completed packet.
#[derive(Debug)]
pub(crate) struct RxBuf<const N: usize> {
    buf: [u8; N],
    /// Bytes of the packet now arriving.
    len: usize,
    /// Length of the completed packet at the front of `buf` (0: none).
    last: usize,
    /// A byte of the packet now arriving did not fit.
    overflow: bool,
}

/// What arrived between two delimiters, handed back by [`RxBuf::end`].
pub(crate) enum Ended<'a> {
    /// Nothing (two delimiters in a row: a preamble).
    Empty,
    /// More than `N` bytes: dropped.
    Oversized,
    /// These bytes, to check (and decode in place) before [`RxBuf::keep`].
    Bytes(&'a mut [u8]),
}

impl<const N: usize> RxBuf<N> {
    pub(crate) const fn new() -> Self {
        RxBuf {
            buf: [0; N],
            len: 0,
            last: 0,
            overflow: false,
        }
    }

    /// Appends one byte of the packet now arriving (or notes that it did not fit).
    pub(crate) fn push(&mut self, byte: u8) {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// Ends the packet now arriving and starts the next; the previous completed packet is
    /// forgotten.
    pub(crate) fn end(&mut self) -> Ended<'_> {
        let len = core::mem::replace(&mut self.len, 0);
        self.last = 0;
        if core::mem::replace(&mut self.overflow, false) {
            Ended::Oversized
        } else if len == 0 {
            Ended::Empty
        } else {
            Ended::Bytes(&mut self.buf[..len])
        }
    }

    /// Makes the first `n` bytes of the ended packet readable through [`Self::last`].
    pub(crate) fn keep(&mut self, n: usize) {
        self.last = n.min(N);
    }

    /// The last completed packet (empty if none).
    pub(crate) fn last(&self) -> &[u8] {
        &self.buf[..self.last]
    }

    /// Forgets the packet now arriving (the completed one stays readable).
    pub(crate) fn discard(&mut self) {
        self.len = 0;
        self.overflow = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_memory_and_reports_overflow_once() {
        let mut b = RxBuf::<4>::new();
        for x in 1..=6 {
            b.push(x);
        }
        assert!(matches!(b.end(), Ended::Oversized));
        // The flag is cleared with the packet: the next one is fine.
        b.push(9);
        b.push(8);
        match b.end() {
            Ended::Bytes(bytes) => assert_eq!(bytes, &[9, 8]),
            _ => panic!("two bytes fit"),
        }
        b.keep(2);
        assert_eq!(b.last(), &[9, 8]);
        assert!(matches!(b.end(), Ended::Empty));
        assert_eq!(
            b.last(),
            &[] as &[u8],
            "ending a packet forgets the last one"
        );
    }

    #[test]
    fn discard_drops_a_partial_packet() {
        let mut b = RxBuf::<2>::new();
        b.push(1);
        b.push(2);
        b.push(3);
        b.discard();
        assert!(matches!(b.end(), Ended::Empty));
    }
}
