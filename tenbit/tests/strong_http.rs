//! The strong-model plumbing over real loopback HTTP: `serve` with a scripted model, and
//! `OpenAiClient` against it and against raw TCP servers that misbehave (down, slow, garbage,
//! 5xx, 429, 401).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenbit::strong::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, OpenAiClient, OpenAiConfig,
    Secret, Server, ServerHandle, StrongError,
};

/// Replies "echo: <last message>" and records every request; fails the first `fail_first`
/// calls (the server turns those into HTTP 500).
struct Echo {
    fail_first: usize,
    calls: AtomicUsize,
    seen: Mutex<Vec<ChatRequest>>,
}

impl Echo {
    fn new(fail_first: usize) -> Arc<Self> {
        Arc::new(Echo {
            fail_first,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl ChatModel for Echo {
    fn name(&self) -> &str {
        "echo-1"
    }
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req.clone());
        if n < self.fail_first {
            return Err(StrongError::Local(format!("scripted failure {n}")));
        }
        let last = &req.messages.last().unwrap().content;
        let content = format!("echo: {last}");
        let words = content.split_whitespace().count() as u32;
        let limited = req.max_tokens.is_some_and(|m| m < words);
        Ok(ChatResponse {
            content,
            finish_reason: if limited {
                FinishReason::Length
            } else {
                FinishReason::Stop
            },
            model: "echo-1".into(),
            prompt_tokens: Some(req.messages.len() as u32),
            completion_tokens: Some(words),
        })
    }
}

fn start(model: Arc<dyn ChatModel>) -> ServerHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Server::bind(model, addr).expect("bind loopback").spawn()
}

fn client(url: &str, timeout_ms: u64, retries: u32) -> OpenAiClient {
    let mut cfg = OpenAiConfig::new(url, "echo-1");
    cfg.timeout = Duration::from_millis(timeout_ms);
    cfg.retries = retries;
    cfg.backoff = Duration::from_millis(20);
    OpenAiClient::new(cfg).unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("be brief"),
        ChatMessage::user("hello there"),
    ])
}

#[test]
fn chat_round_trip_over_loopback() {
    let model = Echo::new(0);
    let server = start(model.clone());
    let c = client(&server.url(), 5_000, 0);
    let req = hello().max_tokens(40).stop("\n\n").seed(42);
    let r = c.chat(&req).unwrap();
    assert_eq!(r.content, "echo: hello there");
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert_eq!(r.model, "echo-1");
    assert_eq!(r.prompt_tokens, Some(2));
    assert_eq!(r.completion_tokens, Some(3));
    // Every field the client sent reached the model unchanged.
    assert_eq!(model.seen.lock().unwrap().as_slice(), &[req]);

    let r = c.chat(&hello().max_tokens(1)).unwrap();
    assert_eq!(r.finish_reason, FinishReason::Length);
    server.shutdown().unwrap();
}

#[test]
fn base_url_with_v1_suffix_works_too() {
    let server = start(Echo::new(0));
    let c = client(&format!("{}/v1/", server.url()), 5_000, 0);
    assert_eq!(c.chat(&hello()).unwrap().content, "echo: hello there");
}

#[test]
fn health_models_and_openai_style_errors() {
    let server = start(Echo::new(0));
    let base = server.url();
    let get = |path: &str| -> serde_json::Value {
        ureq::get(&format!("{base}{path}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    assert_eq!(get("/health")["status"], "ok");
    let models = get("/v1/models");
    assert_eq!(models["data"][0]["id"], "echo-1");

    let status_and_error = |method: &str, path: &str, body: &str| match ureq::request(
        method,
        &format!("{base}{path}"),
    )
    .send_string(body)
    {
        Err(ureq::Error::Status(code, resp)) => {
            let v: serde_json::Value = resp.into_json().unwrap();
            (code, v["error"]["message"].as_str().unwrap().to_string())
        }
        other => panic!("{method} {path}: expected an error status, got {other:?}"),
    };
    let (code, msg) = status_and_error("POST", "/v1/chat/completions", "{\"messages\": [");
    assert_eq!(code, 400);
    assert!(msg.contains("not valid JSON"), "{msg}");
    let (code, msg) = status_and_error(
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"x"}],"stream":true}"#,
    );
    assert_eq!(code, 400);
    assert!(msg.contains("stream"), "{msg}");
    let (code, _) = status_and_error("GET", "/v1/chat/completions", "");
    assert_eq!(code, 405);
    let (code, msg) = status_and_error("GET", "/nope", "");
    assert_eq!(code, 404);
    assert!(msg.contains("/nope"), "{msg}");
}

#[test]
fn server_error_then_success_is_retried() {
    let model = Echo::new(2);
    let server = start(model.clone());
    let c = client(&server.url(), 5_000, 3);
    let r = c.chat(&hello()).unwrap();
    assert_eq!(r.content, "echo: hello there");
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        3,
        "two 500s, then success"
    );

    // Without enough retries the 500 surfaces with the server's message.
    let model = Echo::new(5);
    let server = start(model.clone());
    let e = client(&server.url(), 5_000, 1).chat(&hello()).unwrap_err();
    match &e {
        StrongError::Http {
            status,
            attempts,
            body,
            ..
        } => {
            assert_eq!((*status, *attempts), (500, 2));
            assert!(body.contains("scripted failure 1"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(model.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn server_down_is_a_clear_error_after_retries() {
    // Bind and drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let e = client(&url, 2_000, 2).chat(&hello()).unwrap_err();
    let took = t0.elapsed();
    match &e {
        StrongError::Down { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("is down"), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    // Backoff 20 ms then 40 ms between the three attempts.
    assert!(took >= Duration::from_millis(60), "{took:?}");
}

/// A raw TCP server: connection i gets `replies[i]` (`None`: read the request, then never
/// answer). Returns its base URL, the number of connections, and the raw requests.
fn raw_server(replies: Vec<Option<String>>) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let conns = Arc::new(AtomicUsize::new(0));
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let (c2, r2) = (conns.clone(), reqs.clone());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, stream) in l.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            c2.fetch_add(1, Ordering::SeqCst);
            r2.lock().unwrap().push(read_request(&mut s));
            match replies.get(i).cloned().flatten() {
                Some(reply) => {
                    let _ = s.write_all(reply.as_bytes());
                }
                None => held.push(s),
            }
        }
    });
    (url, conns, reqs)
}

fn read_request(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    head + "\r\n" + &String::from_utf8_lossy(&body)
}

fn http(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

const GOOD: &str = r#"{"id":"x","object":"chat.completion","model":"raw","choices":[{"index":0,
"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}"#;

#[test]
fn slow_server_times_out() {
    let (url, conns, _) = raw_server(vec![None, None]);
    let t0 = Instant::now();
    let e = client(&url, 300, 1).chat(&hello()).unwrap_err();
    let took = t0.elapsed();
    match &e {
        StrongError::Timeout {
            timeout, attempts, ..
        } => {
            assert_eq!(*timeout, Duration::from_millis(300));
            assert_eq!(*attempts, 2);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "the timeout was retried once"
    );
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn garbage_bodies_are_refused_without_retry() {
    let (url, conns, _) = raw_server(vec![Some(http(
        "200 OK",
        "text/html",
        "<html>Welcome to nginx!</html>",
    ))]);
    let e = client(&url, 5_000, 3).chat(&hello()).unwrap_err();
    match &e {
        StrongError::Garbage { detail, .. } => assert!(detail.contains("not JSON"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("returned garbage"), "{e}");
    assert!(e.to_string().contains("nginx"), "the excerpt helps: {e}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);

    // JSON, but not a chat completion.
    let (url, _, _) = raw_server(vec![Some(http(
        "200 OK",
        "application/json",
        r#"{"result":"fine"}"#,
    ))]);
    let e = client(&url, 5_000, 0).chat(&hello()).unwrap_err();
    assert!(matches!(e, StrongError::Garbage { .. }), "{e:?}");

    // Not even HTTP.
    let (url, _, _) = raw_server(vec![Some("SSH-2.0-OpenSSH_9.6\r\n".into())]);
    let e = client(&url, 5_000, 0).chat(&hello()).unwrap_err();
    assert!(matches!(e, StrongError::Garbage { .. }), "{e:?}");

    let (url, _, _) = raw_server(vec![Some(http(
        "200 OK",
        "application/json",
        r#"{"choices":[]}"#,
    ))]);
    let e = client(&url, 5_000, 0).chat(&hello()).unwrap_err();
    assert!(matches!(e, StrongError::EmptyChoices { .. }), "{e:?}");
}

#[test]
fn rate_limit_is_retried_and_auth_failure_is_not() {
    let (url, conns, _) = raw_server(vec![
        Some(http(
            "429 Too Many Requests",
            "application/json",
            r#"{"error":{"message":"slow down"}}"#,
        )),
        Some(http("200 OK", "application/json", GOOD)),
    ]);
    assert_eq!(
        client(&url, 5_000, 1).chat(&hello()).unwrap().content,
        "fine"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    let (url, conns, _) = raw_server(vec![Some(http(
        "401 Unauthorized",
        "application/json",
        r#"{"error":{"message":"invalid api key"}}"#,
    ))]);
    let e = client(&url, 5_000, 3).chat(&hello()).unwrap_err();
    match &e {
        StrongError::Http { status, body, .. } => {
            assert_eq!(*status, 401);
            assert!(body.contains("invalid api key"), "{body}");
            assert!(body.contains("TENBIT_STRONG_API_KEY"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "a 401 is not retried");
}

#[test]
fn request_carries_model_and_bearer_key() {
    let (url, _, reqs) = raw_server(vec![Some(http("200 OK", "application/json", GOOD))]);
    let mut cfg = OpenAiConfig::new(url, "big-model");
    cfg.api_key = Some(Secret::new("sk-test-123"));
    cfg.retries = 0;
    let c = OpenAiClient::new(cfg).unwrap();
    c.chat(&hello().max_tokens(7)).unwrap();
    let raw = reqs.lock().unwrap()[0].clone();
    assert!(raw.starts_with("POST /v1/chat/completions "), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("authorization: bearer sk-test-123"),
        "{raw}"
    );
    let body: serde_json::Value =
        serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["model"], "big-model");
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][1]["content"], "hello there");
    assert!(!format!("{c:?}").contains("sk-test-123"));
}
