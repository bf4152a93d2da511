//! Link-layer figures over the seeded channel simulator.
//!
//! ```text
//! cargo run --release -p tenbit-link --features link-full --example link_sim -- \
//!     --text tests/data [--variant frames=DIR]... [--profile lora-sf9] [--mtu 255] \
//!     [--loss 10] [--parity 50] [--runs 20]
//! ```
//! `--text DIR` adds two variants from the same files: `raw` (the text as is) and `zstd`
//! (each file compressed alone, level 19). `--variant NAME=DIR` adds any directory of
//! message files as they are (e.g. tenbit frames). Files over 4 KiB go as several messages.
//! Prints, per variant: delivery with ARQ at the given loss (both directions), mean airtime
//! and bytes on air per file with every overhead (COBS, headers, CRCs, trailer, ACKs,
//! retransmissions), mean wall time with the duty cycle, FEC delivery at that loss, and an
//! FEC loss-tolerance sweep.

#[cfg(not(all(feature = "std", feature = "fec")))]
fn main() {
    eprintln!("link_sim needs --features std,fec (or link-full)");
    std::process::exit(2);
}

#[cfg(all(feature = "std", feature = "fec"))]
fn main() {
    if let Err(e) = real::main() {
        eprintln!("link_sim: {e}");
        std::process::exit(1);
    }
}

#[cfg(all(feature = "std", feature = "fec"))]
mod real {
    use std::path::PathBuf;

    use tenbit_link::io::LinkConfig;
    use tenbit_link::sim::{simulate_transfer, Channel, ChannelConfig, SimLink};
    use tenbit_link::{LinkProfile, MAX_MESSAGE};

    struct Args {
        variants: Vec<(String, Vec<Vec<u8>>)>,
        profile: LinkProfile,
        mtu: Option<usize>,
        loss: u32,
        parity: u8,
        runs: u64,
    }

    fn read_dir(dir: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect()
    }

    fn parse() -> Result<Args, String> {
        let mut a = Args {
            variants: Vec::new(),
            profile: "lora-sf9".parse().unwrap(),
            mtu: None,
            loss: 10,
            parity: 50,
            runs: 20,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut val = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--text" => {
                    let files = read_dir(&val()?)?;
                    let z = files
                        .iter()
                        .map(|f| zstd::bulk::compress(f, 19).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    a.variants.push(("raw".into(), files));
                    a.variants.push(("zstd-19".into(), z));
                }
                "--variant" => {
                    let v = val()?;
                    let (name, dir) = v.split_once('=').ok_or("--variant NAME=DIR")?;
                    a.variants.push((name.into(), read_dir(dir)?));
                }
                "--profile" => a.profile = val()?.parse().map_err(|e| format!("{e}"))?,
                "--mtu" => a.mtu = Some(val()?.parse().map_err(|_| "bad --mtu")?),
                "--loss" => a.loss = val()?.parse().map_err(|_| "bad --loss")?,
                "--parity" => a.parity = val()?.parse().map_err(|_| "bad --parity")?,
                "--runs" => a.runs = val()?.parse().map_err(|_| "bad --runs")?,
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if a.variants.is_empty() {
            return Err("give --text DIR and/or --variant NAME=DIR".into());
        }
        Ok(a)
    }

    #[derive(Default)]
    struct Totals {
        files: u64,
        files_ok: u64,
        msgs: u64,
        airtime_us: u64,
        wire: u64,
        elapsed_ms: u64,
        packets: u64,
        corrupted: u64,
    }

    /// Sends every file of `files` `runs` times through fresh seeded channels.
    fn run(files: &[Vec<u8>], link: &SimLink, loss_ppm: u32, runs: u64, seed: u64) -> Totals {
        let mut t = Totals::default();
        let ch = ChannelConfig {
            loss_ppm,
            latency_ms: 50,
            ..ChannelConfig::default()
        };
        for r in 0..runs {
            let mut fwd = Channel::new(ch, seed ^ (r * 2 + 1));
            let mut back = Channel::new(ch, seed ^ (r * 2 + 2));
            let mut now = 0u64;
            let mut id = 0u8;
            for f in files {
                let mut ok = true;
                t.files += 1;
                let chunks: Vec<&[u8]> = if f.is_empty() {
                    vec![&f[..]]
                } else {
                    f.chunks(MAX_MESSAGE).collect()
                };
                for c in chunks {
                    let o =
                        simulate_transfer(c, id, link, &mut fwd, &mut back, now).expect("simulate");
                    id = id.wrapping_add(1);
                    t.msgs += 1;
                    ok &= o.delivered;
                    t.corrupted += u64::from(o.corrupted);
                    t.airtime_us += o.airtime_us;
                    t.wire += o.wire_bytes;
                    t.elapsed_ms += o.elapsed_ms;
                    t.packets += u64::from(o.data_packets + o.ack_packets);
                    now += o.elapsed_ms + 600_000; // idle gap: receiver state ages out
                }
                t.files_ok += u64::from(ok);
            }
        }
        t
    }

    pub fn main() -> Result<(), String> {
        let a = parse()?;
        let base = LinkConfig::new(a.profile);
        let mtu = a.mtu.unwrap_or(base.mtu);
        a.profile.validate(mtu).map_err(|e| e.to_string())?;
        let arq = SimLink {
            profile: a.profile,
            mtu,
            parity_percent: 0,
            arq: base.arq,
            pace: true,
        };
        let fec = SimLink {
            parity_percent: a.parity,
            ..arq
        };
        let loss = a.loss * 10_000;
        println!(
            "profile {} | MTU {mtu} B | loss {}% per packet each way | {} runs per file | ARQ: selective repeat, {} tries | FEC: RS {}% parity",
            a.profile, a.loss, a.runs, arq.arq.max_failures, a.parity
        );
        println!();
        println!(
            "{:<10} {:>5} {:>9} | {:>10} {:>8} | {:>9} {:>10} {:>10} {:>8} {:>10} | {:>9} {:>10} {:>8}",
            "variant", "files", "mean B", "air clean", "B clean",
            "ARQ deliv", "ARQ air", "ARQ B air", "ARQ pkts", "ARQ time",
            "FEC deliv", "FEC air", "FEC B air"
        );
        for (name, files) in &a.variants {
            let n = files.len() as f64;
            let mean_len = files.iter().map(|f| f.len()).sum::<usize>() as f64 / n;
            let clean = run(files, &arq, 0, 1, 7);
            let lossy = run(files, &arq, loss, a.runs, 11);
            let f = run(files, &fec, loss, a.runs, 13);
            assert_eq!(
                lossy.corrupted + f.corrupted + clean.corrupted,
                0,
                "corrupted delivery"
            );
            let per = |x: u64, t: &Totals| x as f64 / t.files as f64;
            println!(
                "{:<10} {:>5} {:>9.0} | {:>9.2}s {:>8.0} | {:>8.2}% {:>9.2}s {:>10.0} {:>8.1} {:>9.0}s | {:>8.2}% {:>9.2}s {:>10.0}",
                name,
                files.len(),
                mean_len,
                per(clean.airtime_us, &clean) / 1e6,
                per(clean.wire, &clean),
                100.0 * lossy.files_ok as f64 / lossy.files as f64,
                per(lossy.airtime_us, &lossy) / 1e6,
                per(lossy.wire, &lossy),
                per(lossy.packets, &lossy),
                per(lossy.elapsed_ms, &lossy) / 1e3,
                100.0 * f.files_ok as f64 / f.files as f64,
                per(f.airtime_us, &f) / 1e6,
                per(f.wire, &f),
            );
        }
        println!();
        println!("FEC loss tolerance (one-way, files delivered %), per variant and parity:");
        let losses = [0u32, 5, 10, 15, 20, 25, 30, 40];
        print!("{:<10} {:>7}", "variant", "parity");
        for l in losses {
            print!(" {:>6}", format!("{l}%"));
        }
        println!();
        for (name, files) in &a.variants {
            for parity in [0u8, 25, 50, 100] {
                let link = SimLink {
                    parity_percent: parity,
                    ..arq
                };
                print!("{:<10} {:>6}%", name, parity);
                for l in losses {
                    let t = if parity == 0 {
                        // No parity: broadcast of data shards only (what FEC improves on).
                        run_plain(files, &arq, l * 10_000, a.runs)
                    } else {
                        run(files, &link, l * 10_000, a.runs, 17)
                    };
                    print!(" {:>6.1}", 100.0 * t.files_ok as f64 / t.files as f64);
                }
                println!();
            }
        }
        println!();
        println!("columns: mean B = payload bytes per file; air/B clean = airtime and bytes on air with no loss;");
        println!("ARQ/FEC air, B air = per file incl. retransmissions, ACKs, COBS, headers, CRCs, trailer;");
        println!("ARQ time = mean wall time per file under the duty cycle (idle gaps excluded).");
        Ok(())
    }

    /// One-way delivery without parity: a file arrives only if every data shard does.
    fn run_plain(files: &[Vec<u8>], arq: &SimLink, loss_ppm: u32, runs: u64) -> Totals {
        let mut link = *arq;
        link.arq.max_failures = 1;
        link.arq.base_timeout_ms = 1;
        // With one try and no ACK path, ARQ degenerates to a single unacknowledged burst.
        let ch = ChannelConfig {
            loss_ppm,
            ..ChannelConfig::default()
        };
        let dead_back = ChannelConfig {
            loss_ppm: 1_000_000,
            ..ChannelConfig::default()
        };
        let mut t = Totals::default();
        for r in 0..runs {
            let mut fwd = Channel::new(ch, 0xF0 ^ r);
            let mut back = Channel::new(dead_back, 0xF1 ^ r);
            let mut now = 0;
            for (i, f) in files.iter().enumerate() {
                t.files += 1;
                let mut ok = true;
                for c in f.chunks(MAX_MESSAGE.max(1)) {
                    let o = simulate_transfer(c, i as u8, &link, &mut fwd, &mut back, now)
                        .expect("sim");
                    ok &= o.delivered;
                    now += o.elapsed_ms + 600_000;
                }
                t.files_ok += u64::from(ok);
            }
        }
        t
    }
}
