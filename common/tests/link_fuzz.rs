//! Property-test fuzz harness: arbitrary bytes into every link parser never panic and never
//! allocate without bound (all parsers work in fixed buffers), and well-formed inputs
//! round-trip. Run longer with `PROPTEST_CASES=200000 cargo test -p tenbit-common
//! --features link-full --test link_fuzz`.
#![cfg(all(feature = "std", feature = "fec", feature = "crypto"))]

use proptest::prelude::*;
use tenbit_common::link::cobs::{self, CobsDecoder};
use tenbit_common::link::message::{check_body, OutgoingMessage};
use tenbit_common::link::packet::{DataPacket, Packet};
use tenbit_common::link::reassembly::Reassembler;
use tenbit_common::link::seal::{Key, Opener, Sealer};
use tenbit_common::link::LinkProfile;

proptest! {
    #[test]
    fn packet_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = Packet::parse(&bytes) {
            // Whatever parses re-serialises to the same bytes.
            let mut out = [0u8; 300];
            let n = p.write_raw(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
    }

    #[test]
    fn cobs_stream_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = CobsDecoder::<264>::new();
        for b in bytes {
            if let Some(Ok(p)) = d.push(b) {
                prop_assert!(p.len() <= 264);
                let _ = Packet::parse(p);
            }
        }
        let mut buf = [0u8; 64];
        let n = 64.min(buf.len());
        let _ = cobs::decode_in_place(&mut buf[..n]);
    }

    #[test]
    fn cobs_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut enc = vec![0u8; cobs::max_encoded_len(data.len())];
        let n = cobs::encode(&data, &mut enc).unwrap();
        prop_assert!(!enc[..n].contains(&0));
        let m = cobs::decode_in_place(&mut enc[..n]).unwrap();
        prop_assert_eq!(&enc[..m], &data[..]);
    }

    #[test]
    fn body_check_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check_body(&bytes);
    }

    #[test]
    fn reassembler_survives_arbitrary_shards(
        shards in proptest::collection::vec(
            (any::<u8>(), 0u8..8, 1u8..8, 0u8..4, 0u8..4, proptest::collection::vec(any::<u8>(), 1..40)),
            0..64)
    ) {
        let mut r = Reassembler::<512, 2>::new();
        for (t, (id, idx, k, m, flags, payload)) in shards.into_iter().enumerate() {
            if (idx as usize) >= k as usize + m as usize { continue; }
            let p = DataPacket { msg_id: id % 4, index: idx, data_shards: k, parity_shards: m, flags, payload: &payload };
            if let Ok(h) = r.handle(t as u64, &p) {
                if let Some(d) = h.delivered {
                    // Anything delivered passed the end-to-end CRC: it is bounded by the buffer.
                    prop_assert!(d.payload.len() <= 512);
                }
            }
            let _ = r.expire(t as u64 * 1000);
        }
    }

    #[test]
    fn reassembly_roundtrip_any_order(
        payload in proptest::collection::vec(any::<u8>(), 0..1200),
        mtu in 20usize..=255,
        parity in prop_oneof![Just(0u8), 1u8..=100],
        seed in any::<u64>(),
    ) {
        let Ok(msg) = OutgoingMessage::new(1, &payload, mtu, parity, 0) else { return Ok(()) };
        let total = msg.plan.total_shards();
        let mut order: Vec<usize> = (0..total).collect();
        let mut s = seed | 1;
        for i in (1..total).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut r: Box<Reassembler> = Box::default();
        let mut got = None;
        for i in order {
            let Packet::Data(d) = msg.packet(i as u8, false).unwrap() else { unreachable!() };
            if let Some(dl) = r.handle(0, &d).unwrap().delivered {
                prop_assert!(got.is_none(), "delivered twice");
                got = Some(dl.payload.to_vec());
            }
        }
        prop_assert_eq!(got, Some(payload));
    }

    #[test]
    fn opener_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut o = Opener::<4>::new(&Key::from_bytes([3; 32]));
        let mut b = bytes.clone();
        prop_assert!(o.open(&mut b).is_err(), "random bytes never authenticate");
    }

    #[test]
    fn seal_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300), epoch in any::<u32>()) {
        let k = Key::from_bytes([5; 32]);
        let mut s = Sealer::new(&k, 1, epoch);
        let mut o = Opener::<4>::new(&k);
        let mut out = vec![0u8; data.len() + 40];
        let n = s.seal(&data, &mut out).unwrap();
        prop_assert_eq!(o.open(&mut out[..n]).unwrap(), &data[..]);
    }

    #[test]
    fn profile_parse_never_panics(s in "\\PC{0,40}") {
        let _ = s.parse::<LinkProfile>();
    }

    #[test]
    fn profile_parse_grammar(sf in 7u8..=12, bw in prop_oneof![Just(125u16), Just(250), Just(500)], cr in 5u8..=8) {
        let p: LinkProfile = format!("lora-sf{sf}-bw{bw}-cr4/{cr}").parse().unwrap();
        prop_assert_eq!(p.to_string().parse::<LinkProfile>().unwrap(), p);
    }
}
