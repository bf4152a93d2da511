//! `tenbit send --reticulum DEST` and `tenbit-edge listen --reticulum` as real processes, over
//! two reference Reticulum instances (PyPI rns 1.5.7 via the pinned sidecar) joined by a TCP
//! interface on 127.0.0.1 (`share_instance = No`): a held-out response and a 10-bit QA frame
//! arrive decoded byte for byte; a sidecar killed with SIGKILL is reported and restarted, and
//! one that may not be restarted ends the listener with the link exit code 6.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/rns.rs"]
mod rns;
use tenbit::strong::serve::Server as HttpServer;
use tenbit::strong::{ChatModel, ChatRequest, ChatResponse, FinishReason, StrongError};
use tenbit_tests::{bin, model_path, run};

struct AlwaysYes;
impl ChatModel for AlwaysYes {
    fn name(&self) -> &str {
        "always-yes"
    }
    fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        Ok(ChatResponse {
            content: "Yes.".into(),
            finish_reason: FinishReason::Stop,
            model: "always-yes".into(),
            prompt_tokens: None,
            completion_tokens: Some(2),
        })
    }
}

/// A listener process whose stderr lines arrive on a channel.
struct Listener {
    proc: rns::Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Listener {
    fn start(py: &str, config: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = Command::new(bin("tenbit-edge"))
            .args([
                "listen",
                "--reticulum",
                "--rns-python",
                py,
                "--rns-timeout",
                "20",
            ])
            .arg("--rns-config")
            .arg(config)
            .arg("--out-dir")
            .arg(out)
            .args(extra)
            .env("TENBIT_MODEL", model_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Listener {
            proc: rns::Proc(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `what`; returns it.
    fn wait_line(&mut self, what: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let left = limit.saturating_sub(t.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no {what:?} within {limit:?}; stderr:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn dest_and_pid(line: &str) -> (String, u32) {
    // "listening on Reticulum destination <hash> (tenbit.edge), sidecar pid <n>"
    let w: Vec<&str> = line.split_whitespace().collect();
    let dest = w[w.iter().position(|x| *x == "destination").unwrap() + 1].to_string();
    let pid = w.last().unwrap().parse().unwrap();
    (dest, pid)
}

fn wait_file(dir: &std::path::Path, name: &str, limit: Duration) -> Vec<u8> {
    let t = Instant::now();
    loop {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            return b;
        }
        assert!(t.elapsed() < limit, "{name} not written within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(py: &str, config: &std::path::Path, dest: &str, args: &[&str], input: &[u8]) {
    let mut child = Command::new(bin("tenbit"))
        .args([
            "send",
            "--reticulum",
            dest,
            "--rns-python",
            py,
            "--rns-timeout",
            "20",
        ])
        .arg("--rns-config")
        .arg(config)
        .args(args)
        .env("TENBIT_MODEL", model_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "send: {err}");
    assert!(err.contains("delivered over Reticulum"), "{err}");
}

#[test]
fn send_and_listen_over_reticulum_tcp_decode_byte_for_byte_and_survive_a_sidecar_kill() {
    let py = rns::python();
    let d = rns::scratch("cli");
    let port = rns::free_port();
    let a = rns::config(&d.join("a"), &rns::tcp_server(port));
    let b = rns::config(&d.join("b"), &rns::tcp_client(port));

    // A held-out-style response, encoded with the prompt known to both ends.
    let data = tenbit_tests::data_dir().join("llm");
    let prompt = std::fs::read_to_string(data.join("02-bowline-knot.prompt.txt")).unwrap();
    let text = std::fs::read(data.join("02-bowline-knot.response.txt")).unwrap();
    let out1 = d.join("out1");
    let mut l = Listener::start(&py, &a, &out1, &["--prompt", &prompt]);
    let ready = l.wait_line(
        "listening on Reticulum destination",
        Duration::from_secs(120),
    );
    let (dest, _) = dest_and_pid(&ready);
    let enc = run(&bin("tenbit"), &["encode", "--prompt", &prompt], &text);
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    send(&py, &b, &dest, &["--frame"], &enc.stdout);
    assert_eq!(
        wait_file(&out1, "msg-00001.txt", Duration::from_secs(60)),
        text
    );
    drop(l);

    // A 10-bit QA frame to a restarted listener: same identity, same destination. Its sidecar
    // is killed first: reported, restarted, and the frame still arrives.
    let (qa, answer) = qa_frame();
    let out2 = d.join("out2");
    let mut l = Listener::start(&py, &a, &out2, &["--prompt", "What is 2+2?"]);
    let ready = l.wait_line(
        "listening on Reticulum destination",
        Duration::from_secs(120),
    );
    let (dest2, pid) = dest_and_pid(&ready);
    assert_eq!(dest2, dest, "the listener's identity did not persist");
    kill9(pid);
    l.wait_line("reticulum sidecar died", Duration::from_secs(30));
    send(&py, &b, &dest, &["--frame"], &qa);
    let got = wait_file(&out2, "msg-00001.txt", Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&got).trim(),
        answer,
        "QA frame replayed differently"
    );
    drop(l);

    // No restarts allowed: a dead sidecar ends the listener with the link exit code.
    let mut l = Listener::start(&py, &a, &d.join("out3"), &["--rns-restarts", "0", "--raw"]);
    let ready = l.wait_line(
        "listening on Reticulum destination",
        Duration::from_secs(120),
    );
    kill9(dest_and_pid(&ready).1);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = l.proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "listener kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = l.wait_line("died", Duration::from_secs(5));
    assert_eq!(status.code(), Some(6), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A 10-bit QA frame for "What is 2+2?" and the final answer the encoder printed.
fn qa_frame() -> (Vec<u8>, String) {
    let judge = HttpServer::bind(Arc::new(AlwaysYes), "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .spawn();
    let out = run(
        &bin("tenbit"),
        &[
            "encode",
            "--mode",
            "qa",
            "--bits",
            "10",
            "--strong",
            &judge.url(),
            "--prompt",
            "What is 2+2?",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "qa: {err}");
    assert_eq!(
        out.stdout.len(),
        4,
        "10-bit QA frame: compact, 1 + 10 bits + 14-bit check"
    );
    let answer = err
        .split("final answer:\n")
        .nth(1)
        .expect("final answer")
        .trim()
        .to_string();
    (out.stdout, answer)
}
