//! The strong-model roles end to end through real processes and real HTTP on loopback.
//!
//! * Rewrite: `tenbit serve` (a real OpenAI-compatible server, the small model standing in as
//!   "strong" to keep CI fast) rewrites; `tenbit-edge decode` rebuilds the rewrite.
//! * QA: a 135M model cannot answer yes/no questions reliably, so the strong side is the
//!   project's own HTTP server wrapping a scripted judge that always answers "Yes." The frame,
//!   the encoder's small-model run and the edge's replay are all real.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tenbit::strong::serve::Server as HttpServer;
use tenbit::strong::{ChatModel, ChatRequest, ChatResponse, FinishReason, StrongError};
use tenbit_tests::{bin, model_path, run};

/// A judge that says yes to everything.
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

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(bin("tenbit"))
        .args([
            "serve",
            "--model",
            model_path().to_str().unwrap(),
            "--addr",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenbit serve");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "tenbit serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server(child, format!("http://{addr}"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn rewrite_and_qa_through_a_real_http_server() {
    let srv = start_server();
    let prompt = "What is the boiling point of water at sea level?";
    let answer = "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level, where \
the atmospheric pressure is about 101.3 kPa. At higher altitudes the boiling point is lower \
because the air pressure is lower, which is why cooking takes longer in the mountains.";

    let out = run(
        &bin("tenbit"),
        &[
            "encode", "--mode", "rewrite", "--strong", &srv.1, "--prompt", prompt,
        ],
        answer.as_bytes(),
    );
    assert!(out.status.success(), "rewrite: {}", stderr(&out));
    let frame = out.stdout;
    let dec = run(&bin("tenbit-edge"), &["decode", "--prompt", prompt], &frame);
    assert!(dec.status.success(), "{}", stderr(&dec));
    assert!(!dec.stdout.is_empty(), "empty rewrite decoded");
    let info = run(&bin("tenbit"), &["inspect"], &frame);
    assert!(String::from_utf8_lossy(&info.stdout).contains("Rewrite"));

    let judge = HttpServer::bind(Arc::new(AlwaysYes), "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .spawn();
    let url = judge.url();
    let out = run(
        &bin("tenbit"),
        &[
            "encode",
            "--mode",
            "qa",
            "--bits",
            "1",
            "--strong",
            &url,
            "--prompt",
            "What is 2+2?",
        ],
        b"",
    );
    assert!(out.status.success(), "qa: {}", stderr(&out));
    assert_eq!(
        out.stdout.len(),
        3,
        "compact QA frame: 1 byte (mode, revision, K), 1 bit, 15-bit keyed check"
    );
    let said = stderr(&out);
    let final_answer = said
        .split("final answer:\n")
        .nth(1)
        .expect("encoder prints the final answer")
        .trim()
        .to_string();
    let dec = run(
        &bin("tenbit-edge"),
        &["decode", "--prompt", "What is 2+2?"],
        &out.stdout,
    );
    assert!(dec.status.success(), "{}", stderr(&dec));
    assert_eq!(
        String::from_utf8_lossy(&dec.stdout).trim(),
        final_answer,
        "edge replay differs"
    );
    // `inspect` reads a compact frame's code byte without the model.
    let info = run(&bin("tenbit"), &["inspect"], &out.stdout);
    let shown = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.status.success(), "inspect: {}", stderr(&info));
    for want in [
        "compact",
        "Qa",
        "revision  3",
        "bits      1 (K)",
        "check     15 bits",
    ] {
        assert!(
            shown.contains(want),
            "inspect output lacks {want:?}:\n{shown}"
        );
    }
}

#[test]
fn strong_server_down_and_too_many_bits_are_clear_errors() {
    // Exit status 7 is "the strong model failed", whichever mode asked it. Before the errors
    // kept their type, a server that went down during `--mode qa` surfaced as 4 ("corrupt").
    let down = "http://127.0.0.1:9";
    let out = run(
        &bin("tenbit"),
        &["encode", "--mode", "rewrite", "--strong", down],
        b"Some text to rewrite.",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("is down"), "{}", stderr(&out));
    // QA without a reference: the strong model's own solution is asked for first, and fails.
    let qa = |input: &[&str], stdin: &[u8]| {
        let mut args = vec![
            "encode",
            "--mode",
            "qa",
            "--bits",
            "1",
            "--strong",
            down,
            "--prompt",
            "What is 2 + 2?",
        ];
        args.extend_from_slice(input);
        run(&bin("tenbit"), &args, stdin)
    };
    let out = qa(&[], b"");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("is down"), "{}", stderr(&out));
    // With a reference answer on stdin: the small model answers and writes its question, then
    // the judge is unreachable.
    let out = qa(&["-"], b"4");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not answer question 1"), "{err}");
    assert!(err.contains("is down"), "{err}");
    let out = run(
        &bin("tenbit"),
        &[
            "encode", "--mode", "qa", "--bits", "99", "--strong", down, "--prompt", "x",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("maximum"), "{}", stderr(&out));
}

/// The local strong model keeps the previous request's KV cache and re-feeds only what differs
/// (QA judging repeats task, reference and draft with a new question). Replies must be exactly
/// those of a model that prefills every prompt from scratch.
#[test]
fn local_model_prefix_reuse_changes_no_reply() {
    use tenbit::strong::{ChatMessage, LocalModel};
    let req = |q: &str| {
        ChatRequest::new(vec![
            ChatMessage::system("You are a careful assistant."),
            ChatMessage::user(format!(
                "Task: a train travels 60 km in 45 minutes. Draft: 80 km/h.\nQuestion: {q}"
            )),
        ])
        .max_tokens(12)
    };
    let asks = [
        "Is the speed in km/h correct?",
        "Is 45 minutes three quarters of an hour?",
        "Is 45 minutes three quarters of an hour?",
        "Is the speed in km/h correct?",
    ];
    let warm = LocalModel::load(model_path()).expect("load SmolLM2");
    let warm_replies: Vec<String> = asks
        .iter()
        .map(|q| warm.chat(&req(q)).unwrap().content)
        .collect();
    assert!(
        warm.prefix_tokens_reused() > 3 * 20,
        "later requests share the system turn and task: {} tokens reused",
        warm.prefix_tokens_reused()
    );
    for (q, got) in asks.iter().zip(&warm_replies) {
        let cold = LocalModel::load(model_path()).unwrap();
        assert_eq!(&cold.chat(&req(q)).unwrap().content, got, "question {q:?}");
        assert_eq!(cold.prefix_tokens_reused(), 0);
    }
}

/// A judge that says "Yes." to its own-solution request and the first question, tells the
/// test, and then its server goes away.
struct YesOnce(std::sync::Mutex<(usize, Option<std::sync::mpsc::Sender<()>>)>);

impl ChatModel for YesOnce {
    fn name(&self) -> &str {
        "yes-once"
    }
    fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        let mut g = self.0.lock().unwrap();
        g.0 += 1;
        if g.0 == 2 {
            if let Some(tx) = g.1.take() {
                let _ = tx.send(());
            }
        }
        Ok(ChatResponse {
            content: "Yes.".into(),
            finish_reason: FinishReason::Stop,
            model: "yes-once".into(),
            prompt_tokens: None,
            completion_tokens: Some(2),
        })
    }
}

/// The strong server answers question 1 and then dies while the small model writes question 2
/// (protocol 2 writes each question after the previous answer; protocol 3 writes the whole list
/// before any answer, so the death would race with question 2's request):
/// the encoder must exit 7 (strong model unavailable) naming question 2, not 4 ("corrupt") or 1.
#[test]
fn strong_server_dying_mid_qa_run_exits_with_the_outage_status() {
    let (tx, rx) = std::sync::mpsc::channel();
    let judge = HttpServer::bind(
        Arc::new(YesOnce(std::sync::Mutex::new((0, Some(tx))))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap()
    .spawn();
    let url = judge.url();
    let child = Command::new(bin("tenbit"))
        .args([
            "encode",
            "--mode",
            "qa",
            "--bits",
            "3",
            "--qa-protocol",
            "2",
            "--strong",
            &url,
            "--prompt",
            "What is 2 + 2?",
        ])
        .env("TENBIT_MODEL", model_path())
        // Fail fast once the server is gone (one attempt of at most 20 s).
        .env("TENBIT_STRONG_URL", &url)
        .env("TENBIT_STRONG_RETRIES", "0")
        .env("TENBIT_STRONG_TIMEOUT", "20")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tenbit encode");
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the encoder never asked its first question");
    // Stop accepting and close the listener: the next question finds nobody.
    judge.shutdown().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("could not answer question 2"), "{err}");
    assert!(
        err.contains("is down") || err.contains("timed out"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no frame may be written after an outage"
    );
}
