//! Bytes and airtime on the medium per message with no loss, per framing, from the link's own
//! packet planning (the same `OutgoingMessage` the senders use):
//!
//! ```text
//! cargo run --release -p tenbit-link --features link-full --example air_bytes -- [FRAMES_DIR]
//! ```
//!
//! Prints (1) a 10-bit QA frame (9 bytes) on every LoRa profile SF7-SF12 at 125 kHz, CR 4/5:
//! bytes and airtime of the data packet and of its ACK, for a transparent modem (COBS), a KISS
//! TNC and an RNode; (2) with FRAMES_DIR (e.g. target/link-figures/frames from
//! bench/link_figures.sh), the mean over its frames of >= 100 bytes: frame bytes, bytes on air
//! in the data direction and with the ACK, and their ratio to the frame size.
//! Uses only ARQ (the two-way default); unsealed.

use tenbit_link::message::Plan;
use tenbit_link::packet::{ack_raw_len, AckPacket, Framing, Packet};
use tenbit_link::profile::{LinkProfile, LoraParams, Region};

fn ack_raw(k: u8) -> usize {
    let mut raw = [0u8; 32];
    Packet::Ack(AckPacket {
        msg_id: 0,
        data_shards: k,
        received: tenbit_link::packet::full_mask(k),
    })
    .write_raw(&mut raw)
    .unwrap_or(ack_raw_len(k as usize))
}

/// (data bytes on air, ACK bytes on air, packets) for a frame of `len` bytes.
fn on_air(len: usize, framing: Framing, mtu: usize) -> (usize, usize, usize) {
    let plan = Plan::for_raw(len, framing.max_raw(mtu), 0).expect("plan");
    let k = plan.total_shards();
    (
        k * framing.on_air_len(plan.packet_raw_len()),
        framing.on_air_len(ack_raw(plan.data_shards)),
        k,
    )
}

fn main() {
    let framings = [
        ("modem (COBS)", Framing::Cobs),
        ("KISS TNC", Framing::Kiss),
        ("RNode", Framing::Rnode),
    ];
    println!("10-bit QA frame (9 bytes), one packet, no loss; airtime from Semtech AN1200.13:");
    println!(
        "{:<28} {:<13} {:>8} {:>10} {:>7} {:>10}",
        "profile", "device", "data B", "data air", "ACK B", "ACK air"
    );
    for sf in 7..=12u8 {
        let p = LinkProfile::Lora(LoraParams {
            sf,
            bw_khz: 125,
            cr: 5,
            preamble: 8,
            region: Region::Eu868,
        });
        for (name, f) in framings {
            let (d, a, _) = on_air(9, f, 255);
            println!(
                "{:<28} {:<13} {:>8} {:>8.1}ms {:>7} {:>8.1}ms",
                p.to_string(),
                name,
                d,
                p.airtime_us(d) as f64 / 1e3,
                a,
                p.airtime_us(a) as f64 / 1e3
            );
        }
    }
    let Some(dir) = std::env::args().nth(1) else {
        return;
    };
    let mut sizes: Vec<usize> = std::fs::read_dir(&dir)
        .expect("frames dir")
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok().map(|m| m.len() as usize))
        .collect();
    sizes.sort_unstable();
    let all = sizes.len();
    sizes.retain(|&s| s >= 100);
    println!();
    println!(
        "{} frames in {dir}, {} of >= 100 bytes (mean {:.1} B, {}..{} B); per message, no loss, MTU 255:",
        all,
        sizes.len(),
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        sizes.first().unwrap_or(&0),
        sizes.last().unwrap_or(&0)
    );
    println!(
        "{:<13} {:>8} {:>10} {:>8} {:>11} {:>9} {:>9}",
        "device", "frame B", "data B", "ACK B", "data+ACK B", "data/frm", "worst"
    );
    for (name, f) in framings {
        let (mut fr, mut d, mut a, mut worst) = (0usize, 0usize, 0usize, 0f64);
        for &s in &sizes {
            let (dd, aa, _) = on_air(s, f, 255);
            fr += s;
            d += dd;
            a += aa;
            worst = worst.max(dd as f64 / s as f64);
        }
        let n = sizes.len().max(1) as f64;
        println!(
            "{:<13} {:>8.1} {:>10.1} {:>8.1} {:>11.1} {:>8.3}x {:>8.3}x",
            name,
            fr as f64 / n,
            d as f64 / n,
            a as f64 / n,
            (d + a) as f64 / n,
            d as f64 / fr.max(1) as f64,
            worst
        );
    }
}
