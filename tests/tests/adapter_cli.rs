//! LoRA adapters through the real binaries: frames coded with an adapter decode on the edge
//! with the same adapter file, and are refused with exit status 3 and a clear message without
//! it or with another adapter; an adapter for another base model is refused on loading; an
//! adapter travels to the board over a pty "cable" and arrives hash-checked.

use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/cable.rs"]
mod cable;
use cable::pty_cable;
use tenbit_engine::lora::Target;
use tenbit_lm::codec::identity_of;
use tenbit_tests::{bin, model_path, run, write_test_adapter};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-adapter-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn model_hash() -> [u8; 32] {
    tenbit_engine::Model::load(model_path())
        .unwrap()
        .content_hash()
}

#[test]
fn adapter_frames_need_the_same_adapter_on_the_edge() {
    let d = tmp("frames");
    let (pa, pb) = (d.join("a.tbl"), d.join("b.tbl"));
    let ha = write_test_adapter(&pa, 1, 2, &[Target::Q, Target::V], None);
    let hb = write_test_adapter(&pb, 2, 2, &[Target::Q, Target::V], None);
    let mh = model_hash();
    let tags = [
        identity_of(&mh, None).tag(),
        identity_of(&mh, Some(&ha)).tag(),
        identity_of(&mh, Some(&hb)).tag(),
    ];
    // Distinct tags make the refusal a model mismatch (3) rather than a checksum failure (4).
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let (a, b) = (pa.to_str().unwrap(), pb.to_str().unwrap());
    let text =
        std::fs::read(tenbit_tests::data_dir().join("llm/03-python-reverse-list.response.txt"))
            .unwrap();
    let enc = |args: &[&str]| {
        let o = run(&bin("tenbit"), &[&["encode"], args].concat(), &text);
        assert!(o.status.success(), "encode: {}", stderr(&o));
        o.stdout
    };
    let with_a = enc(&["--adapter", a]);
    let plain = enc(&[]);
    assert_ne!(with_a, plain, "the adapter must change the coding");
    assert_eq!(with_a[1], tags[1], "frame names (model, adapter)");

    let dec = |args: &[&str], frame: &[u8]| {
        run(&bin("tenbit-edge"), &[&["decode"], args].concat(), frame)
    };
    let ok = dec(&["--adapter", a], &with_a);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(ok.stdout, text);
    let host = run(&bin("tenbit"), &["decode", "--adapter", a], &with_a);
    assert!(host.status.success(), "{}", stderr(&host));
    assert_eq!(host.stdout, text);

    let none = dec(&[], &with_a);
    assert_eq!(none.status.code(), Some(3), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("pass the same file with --adapter"),
        "{}",
        stderr(&none)
    );
    assert!(none.stdout.is_empty());
    let other = dec(&["--adapter", b], &with_a);
    assert_eq!(other.status.code(), Some(3), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("applies adapter"),
        "{}",
        stderr(&other)
    );
    let host_none = run(&bin("tenbit"), &["decode"], &with_a);
    assert_eq!(host_none.status.code(), Some(3), "{}", stderr(&host_none));
    // And the other way round: a base frame is refused by a decoder holding an adapter.
    let rev = dec(&["--adapter", a], &plain);
    assert_eq!(rev.status.code(), Some(3), "{}", stderr(&rev));

    let info = run(&bin("tenbit"), &["adapter", "info", a], b"");
    assert!(info.status.success(), "{}", stderr(&info));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains(&hex(&ha)), "{info}");
    assert!(info.contains("targets    q,v"), "{info}");
    assert!(
        info.contains(&format!("frame tag 0x{:02x}", tags[1])),
        "{info}"
    );
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn adapter_for_another_base_model_is_refused_with_exit_3() {
    let d = tmp("base");
    let p = d.join("other.tbl");
    write_test_adapter(&p, 3, 1, &[Target::Q], Some([0xAB; 32]));
    let p = p.to_str().unwrap();
    for (b, cmd) in [("tenbit", "encode"), ("tenbit-edge", "decode")] {
        let o = run(&bin(b), &[cmd, "--adapter", p], b"hello");
        assert_eq!(o.status.code(), Some(3), "{b} {cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("abababab"), "{}", stderr(&o));
        assert!(stderr(&o).contains("base model"), "{}", stderr(&o));
    }
    let junk = d.join("junk.tbl");
    std::fs::write(&junk, b"not an adapter at all").unwrap();
    let o = run(
        &bin("tenbit-edge"),
        &["decode", "--adapter", junk.to_str().unwrap()],
        b"",
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a tenbit LoRA adapter"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn adapter_send_and_receive_over_a_pty_cable() {
    let d = tmp("link");
    let src = d.join("sent.tbl");
    let dst = d.join("received.tbl");
    // Rank 1 on q: ~70 KB, several link messages.
    let h = write_test_adapter(&src, 4, 1, &[Target::Q], None);
    let cable = pty_cable();
    let (pa, pb) = (cable.a.clone(), cable.b.clone());
    let link = ["--link", "serial-921600", "--no-pace"];
    let rx = Command::new(bin("tenbit-edge"))
        .args([
            "adapter",
            "receive",
            "--port",
            &pb,
            "-o",
            dst.to_str().unwrap(),
        ])
        .args(link)
        .env("TENBIT_MODEL", model_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let tx = Command::new(bin("tenbit"))
        .args(["adapter", "send", "--port", &pa, src.to_str().unwrap()])
        .args(link)
        .env("TENBIT_MODEL", model_path())
        .output()
        .unwrap();
    assert!(tx.status.success(), "send: {}", stderr(&tx));
    assert!(stderr(&tx).contains("sent adapter"), "{}", stderr(&tx));
    let got = rx.wait_with_output().unwrap();
    assert!(got.status.success(), "receive: {}", stderr(&got));
    assert!(String::from_utf8_lossy(&got.stdout).contains(&hex(&h)));
    assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&src).unwrap());
    drop(cable);
}

#[test]
fn the_edge_binary_links_no_host_code() {
    // `cargo` is the one running this test; the lock file pins the graph, so this is offline.
    // `cargo tree -p tenbit-edge` resolves features for the edge alone, as its own build does.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "tenbit-edge",
            "--prefix",
            "none",
        ])
        .current_dir(tenbit_tests::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for needed in [
        "tenbit-engine",
        "tenbit-lm",
        "tenbit-wire",
        "tenbit-link",
        "tenbit-cli",
    ] {
        assert!(
            crates.contains(&needed),
            "tenbit-edge lacks {needed}:\n{tree}"
        );
    }
    // Training (candle, gemm), HTTP (ureq, tiny_http, rustls), pip/zip fetching (zip, flate2),
    // plotting and the host crate itself stay on the host.
    for banned in [
        "candle-core",
        "candle-nn",
        "gemm",
        "tenbit-train",
        "ureq",
        "tiny_http",
        "rustls",
        "zip",
        "flate2",
        "plotters",
        "tenbit",
    ] {
        assert!(
            !crates.contains(&banned),
            "tenbit-edge links {banned}:\n{tree}"
        );
    }
}

#[test]
fn lora_train_writes_an_adapter_that_both_ends_use() {
    let d = tmp("train");
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let llm = tenbit_tests::data_dir().join("llm");
    for f in [
        "05-train-math.prompt.txt",
        "05-train-math.response.txt",
        "06-apples-math.response.txt",
    ] {
        std::fs::copy(llm.join(f), data.join(f)).unwrap();
    }
    let out = d.join("math.tbl");
    let o = run(
        &bin("tenbit"),
        &[
            "lora",
            "train",
            "--data",
            data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--seq-len",
            "48",
            "--rank",
            "2",
            "--targets",
            "q,v,down",
        ],
        b"",
    );
    assert!(o.status.success(), "train: {}", stderr(&o));
    assert!(stderr(&o).contains("2 documents"), "{}", stderr(&o));
    assert!(stderr(&o).contains("trained in"), "{}", stderr(&o));
    let a = tenbit_engine::lora::Adapter::load(&out).unwrap();
    assert_eq!((a.rank, a.targets.len()), (2, 3));
    let text = std::fs::read(llm.join("06-apples-math.response.txt")).unwrap();
    let p = out.to_str().unwrap();
    let frame = run(&bin("tenbit"), &["encode", "--adapter", p], &text);
    assert!(frame.status.success(), "{}", stderr(&frame));
    let back = run(
        &bin("tenbit-edge"),
        &["decode", "--adapter", p],
        &frame.stdout,
    );
    assert!(back.status.success(), "{}", stderr(&back));
    assert_eq!(back.stdout, text);
}
