//! End-to-end link tests over the seeded channel simulator: ARQ must deliver everything exactly
//! through loss, corruption, duplication and reordering; FEC must survive the loss of any `m`
//! shards; nothing may ever be delivered corrupted.
#![cfg(all(feature = "std", feature = "fec"))]

use tenbit_link::arq::ArqConfig;
use tenbit_link::io::LinkConfig;
use tenbit_link::message::OutgoingMessage;
use tenbit_link::packet::Packet;
use tenbit_link::reassembly::Reassembler;
use tenbit_link::sim::{simulate_transfer, Channel, ChannelConfig, Rng, SimLink};
use tenbit_link::LinkProfile;

fn payload(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.below(max as u64 + 1) as usize;
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn link(profile: &str, mtu: usize, parity: u8) -> SimLink {
    let profile: LinkProfile = profile.parse().unwrap();
    SimLink {
        profile,
        mtu,
        parity_percent: parity,
        arq: LinkConfig::new(profile).arq,
        pace: true,
    }
}

#[test]
fn arq_delivers_everything_through_a_hostile_channel() {
    let hostile = ChannelConfig {
        loss_ppm: 150_000,
        corrupt_ppm: 50_000,
        duplicate_ppm: 30_000,
        reorder_ppm: 50_000,
        reorder_ms: 2_000,
        latency_ms: 20,
    };
    let mut fwd = Channel::new(hostile, 1);
    let mut back = Channel::new(hostile, 2);
    let mut rng = Rng::new(3);
    let l = link("lora-sf7-none", 58, 0);
    let mut t = 0;
    for i in 0..200u32 {
        let p = payload(&mut rng, 1500);
        let o = simulate_transfer(&p, i as u8, &l, &mut fwd, &mut back, t).unwrap();
        assert!(
            o.delivered && o.sender_confirmed,
            "message {i} ({} bytes): {o:?}",
            p.len()
        );
        assert!(!o.corrupted);
        t += o.elapsed_ms + 60_000;
    }
    assert!(
        fwd.counts[1] > 0 && fwd.counts[2] > 0 && fwd.counts[3] > 0,
        "impairments happened"
    );
}

#[test]
fn arq_reports_loss_on_a_dead_channel() {
    let dead = ChannelConfig {
        loss_ppm: 1_000_000,
        ..ChannelConfig::default()
    };
    let mut l = link("serial-115200", 255, 0);
    l.arq = ArqConfig {
        max_failures: 4,
        ..l.arq
    };
    let o = simulate_transfer(
        b"hello",
        0,
        &l,
        &mut Channel::new(dead, 1),
        &mut Channel::new(dead, 2),
        0,
    )
    .unwrap();
    assert!(!o.delivered && !o.sender_confirmed && !o.corrupted);
    assert_eq!(o.data_packets, 4, "one burst plus three probes");
}

#[test]
fn fec_rebuilds_from_any_k_shards() {
    let mut rng = Rng::new(9);
    for trial in 0..60 {
        let p = payload(&mut rng, 900);
        let parity = [10u8, 25, 50, 100][trial % 4];
        let msg = OutgoingMessage::new(trial as u8, &p, 58, parity, 0).unwrap();
        let (k, m) = (
            msg.plan.data_shards as usize,
            msg.plan.parity_shards as usize,
        );
        // Drop a random set of exactly m shards (the most FEC can take) and shuffle the rest.
        let mut order: Vec<usize> = (0..k + m).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut r = Reassembler::<{ tenbit_link::SHARD_BUF }, 1>::new();
        let mut got = None;
        for &i in &order[m..] {
            let Packet::Data(d) = msg.packet(i as u8, false).unwrap() else {
                unreachable!()
            };
            let h = r.handle(0, &d).unwrap();
            if let Some(dl) = h.delivered {
                got = Some(dl.payload.to_vec());
            }
        }
        assert_eq!(got.as_deref(), Some(&p[..]), "trial {trial}: k={k} m={m}");
        // One shard fewer than k never delivers.
        let mut r = Reassembler::<{ tenbit_link::SHARD_BUF }, 1>::new();
        for &i in &order[m + 1..] {
            let Packet::Data(d) = msg.packet(i as u8, false).unwrap() else {
                unreachable!()
            };
            assert!(r.handle(0, &d).unwrap().delivered.is_none());
        }
    }
}

#[test]
fn broadcast_never_delivers_corrupted_and_mostly_delivers() {
    let ch = ChannelConfig {
        loss_ppm: 100_000,
        corrupt_ppm: 100_000,
        reorder_ppm: 100_000,
        reorder_ms: 500,
        ..ChannelConfig::default()
    };
    let mut fwd = Channel::new(ch, 11);
    let mut back = Channel::new(ChannelConfig::default(), 12);
    let l = link("lora-sf9", 58, 50);
    let mut rng = Rng::new(13);
    let (mut ok, n) = (0, 100);
    let mut t = 0;
    for i in 0..n {
        let p = payload(&mut rng, 800);
        let o = simulate_transfer(&p, i as u8, &l, &mut fwd, &mut back, t).unwrap();
        assert!(!o.corrupted);
        assert_eq!(o.ack_packets, 0, "broadcast never asks for ACKs");
        ok += o.delivered as u32;
        t += o.elapsed_ms + 1000;
    }
    // ~20% effective shard loss against a 33% parity share: nearly all survive.
    assert!(ok >= 90, "{ok}/{n}");
}

#[test]
fn duty_cycle_is_respected_in_simulation() {
    let l = link("lora-sf9", 255, 0);
    let clean = ChannelConfig::default();
    let p = vec![0x55u8; 2000];
    let o = simulate_transfer(
        &p,
        0,
        &l,
        &mut Channel::new(clean, 1),
        &mut Channel::new(clean, 2),
        0,
    )
    .unwrap();
    assert!(o.delivered && o.data_packets >= 9);
    // 1% duty cycle: n packets need at least (n - 1) off-times of 99x their airtime.
    let per_pkt_ms = o.airtime_us / 1000 / u64::from(o.data_packets + o.ack_packets);
    assert!(
        o.elapsed_ms >= u64::from(o.data_packets - 1) * 99 * per_pkt_ms,
        "{o:?}"
    );
}
