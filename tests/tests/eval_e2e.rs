//! `tenbit eval` end to end through the real binary: SmolLM2 as the small model, and as the
//! strong model a real OpenAI-compatible server on loopback (the project's own
//! `tenbit::strong::serve`) on two math problems with K = 1. The server's answers and
//! rewrites come from SmolLM2 (the local model, to keep CI cheap); its yes/no judgements come
//! from a scripted judge, because a 135M model cannot answer yes/no reliably (it rambles, and
//! every QA run would fail): the judge says "Yes." when the small model's draft ends on the
//! same number as the reference answer. Checks the report's structure and that its numbers
//! agree with each other; the accuracies themselves are whatever a 135M model scores.

use std::sync::Arc;

use serde_json::Value;
use tenbit::strong::prompts::QA_SYSTEM;
use tenbit::strong::serve::Server as HttpServer;
use tenbit::strong::{ChatModel, ChatRequest, ChatResponse, FinishReason, LocalModel, StrongError};
use tenbit_tests::{bin, model_path, run};

/// SmolLM2 for answers and rewrites; a number-matching judge for the QA questions.
struct SmolWithJudge(LocalModel);

fn last_number(s: &str) -> Option<String> {
    s.split(|c: char| !c.is_ascii_digit())
        .rfind(|w| !w.is_empty())
        .map(str::to_string)
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    s.split_once(a)
        .and_then(|(_, r)| r.split_once(b))
        .map_or("", |(x, _)| x)
}

impl ChatModel for SmolWithJudge {
    fn name(&self) -> &str {
        "smollm2-with-judge"
    }
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        if req.messages.first().is_some_and(|m| m.content == QA_SYSTEM) {
            let u = &req.messages[1].content;
            let same = last_number(between(u, "<reference>", "</reference>"))
                == last_number(between(u, "<draft>", "</draft>"));
            return Ok(ChatResponse {
                content: if same { "Yes." } else { "No." }.into(),
                finish_reason: FinishReason::Stop,
                model: "judge".into(),
                prompt_tokens: None,
                completion_tokens: Some(2),
            });
        }
        self.0.chat(req)
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn in_unit(v: &Value, what: &str) {
    let x = f(v);
    assert!((0.0..=1.0).contains(&x), "{what} = {x} outside [0, 1]");
}

#[test]
fn eval_math_smoke_report_is_consistent() {
    let local = LocalModel::load(model_path()).expect("load SmolLM2");
    let srv = HttpServer::bind(
        Arc::new(SmolWithJudge(local)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap()
    .spawn();
    let url = srv.url();
    let out_dir = std::env::temp_dir().join(format!("tenbit-eval-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = run(
        &bin("tenbit"),
        &[
            "eval",
            "--suite",
            "math",
            "--limit",
            "2",
            "--bits",
            "1",
            "--pick-bits",
            "1",
            "--strong",
            &url,
            "--strong-max-tokens",
            "48",
            "--rewrite-max-tokens",
            "96",
            "--out",
            out_dir.to_str().unwrap(),
            "-q",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "tenbit eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md_stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        md_stdout.contains("small + QA (protocol 3, deployed), K=1"),
        "{md_stdout}"
    );
    assert!(md_stdout.contains("pick, index only, K=1"), "{md_stdout}");
    assert!(md_stdout.contains("Wilson 95%"), "{md_stdout}");

    let r: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["bits"], serde_json::json!([1]));
    let overhead = r["qa_frame_overhead_bytes"].as_u64().unwrap();
    assert_eq!(overhead, 7, "6-byte frame + the K byte");
    let suites = r["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 1);
    let s = &suites[0];
    assert_eq!(s["suite"], "math");
    assert_eq!(s["tasks"], 2);
    in_unit(&s["acc_small"], "acc_small");
    in_unit(&s["acc_strong"], "acc_strong");
    let q = &s["qa"][0];
    assert_eq!(q["k"], 1);
    in_unit(&q["accuracy"], "acc_qa");
    // K = 1 travels in a compact frame: 3 bytes (1 byte, the bit, a 15-bit keyed check).
    assert_eq!(q["overhead_bits"].as_u64().unwrap(), 8 * 3 - 1);
    assert_eq!(q["n"], 2);
    let p = &s["pick"][0];
    assert_eq!(p["k"], 1);
    assert_eq!(p["n"], 2);
    assert_eq!(s["pick_index_only"][0]["n"], 2);

    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        tasks[0]["id"], "hand-01",
        "hand-written problems come first"
    );
    let (mut sent, mut raw, mut ok_runs, mut qa_ok, mut small_ok, mut strong_ok) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for t in tasks {
        let strong_text = t["strong"]["text"].as_str().unwrap();
        assert_eq!(
            t["strong_raw_bits"].as_u64().unwrap(),
            8 * strong_text.len() as u64
        );
        assert!(t["strong_lossless_bits"].as_u64().unwrap() >= 8 * 6);
        let qa = t["qa"].as_array().unwrap();
        assert_eq!(qa.len(), 1);
        let run = &qa[0];
        if run["answer"]["error"].is_null() {
            assert_eq!(
                run["bits_sent"].as_u64().unwrap(),
                1 + q["overhead_bits"].as_u64().unwrap()
            );
            assert_eq!(
                run["frame_bytes"].as_u64().unwrap() * 8,
                run["bits_sent"].as_u64().unwrap()
            );
            assert_eq!(run["questions"].as_array().unwrap().len(), 1);
            sent += run["bits_sent"].as_u64().unwrap();
            raw += t["strong_raw_bits"].as_u64().unwrap();
            ok_runs += 1;
        }
        // A graded answer's verdict matches its extracted number.
        for a in [&t["small"], &t["strong"], run] {
            let a = if a.get("answer").is_some() {
                &a["answer"]
            } else {
                a
            };
            if a["correct"].as_bool().unwrap() {
                assert!(a["detail"]
                    .as_str()
                    .unwrap()
                    .ends_with(a["extracted"].as_str().unwrap()));
            }
        }
        qa_ok += run["answer"]["correct"].as_bool().unwrap() as u64;
        small_ok += t["small"]["correct"].as_bool().unwrap() as u64;
        strong_ok += t["strong"]["correct"].as_bool().unwrap() as u64;
    }
    // Summary numbers are the task records' numbers.
    assert_eq!(f(&s["acc_small"]), small_ok as f64 / 2.0);
    assert_eq!(f(&s["acc_strong"]), strong_ok as f64 / 2.0);
    assert_eq!(f(&q["accuracy"]), qa_ok as f64 / 2.0);
    if ok_runs > 0 && raw > 0 {
        let want = sent as f64 / raw as f64;
        assert!((f(&q["ratio_vs_raw"]) - want).abs() < 1e-9);
        assert!(want < 1.0, "8 bytes must be smaller than the strong answer");
    }
    let (a_s, a_t, a_q) = (f(&s["acc_small"]), f(&s["acc_strong"]), f(&q["accuracy"]));
    if a_t > a_s {
        assert!((f(&q["gap_recovered"]) - (a_q - a_s) / (a_t - a_s)).abs() < 1e-9);
    } else {
        assert!(q["gap_recovered"].is_null(), "no gap, no fraction");
    }
    for name in ["report.md", "accuracy_vs_bits.svg", "ratio_vs_compute.svg"] {
        let body = std::fs::read_to_string(out_dir.join(name)).unwrap();
        assert!(!body.is_empty(), "{name} empty");
        if name.ends_with(".svg") {
            assert!(body.contains("<svg"), "{name} is not an SVG");
        }
    }
    assert!(
        ok_runs > 0,
        "the scripted judge always answers, so QA runs succeed"
    );
    // One record per finished task; --resume keeps them and runs nothing again (the judge's
    // server is gone, so any strong call would fail the rerun).
    let files = std::fs::read_dir(out_dir.join("tasks")).unwrap().count();
    assert_eq!(files, 2, "one JSON per finished task");
    srv.shutdown().unwrap();
    let again = run(
        &bin("tenbit"),
        &[
            "eval",
            "--suite",
            "math",
            "--limit",
            "2",
            "--bits",
            "1",
            "--pick-bits",
            "1",
            "--strong",
            &url,
            "--resume",
            out_dir.to_str().unwrap(),
            "-q",
        ],
        b"",
    );
    assert!(
        again.status.success(),
        "resume: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let r2: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r2["tasks"], r["tasks"], "resumed report differs");
    let _ = std::fs::remove_dir_all(&out_dir);
}
