//! An OpenAI-compatible HTTP server over any [`ChatModel`] (`tenbit serve --model M.gguf`).
//!
//! Endpoints: `POST /v1/chat/completions` (non-streaming JSON), `GET /v1/models`,
//! `GET /health`. Malformed requests get HTTP 400 with an OpenAI-style error body
//! (`{"error": {"message", "type", "param", "code"}}`), so any OpenAI client shows a readable
//! message. Synchronous (tiny_http) with a few worker threads: a health check is answered while
//! a long generation runs.

use std::io::Read;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response};

use super::{ChatMessage, ChatModel, ChatRequest, StrongError};

/// Largest request body accepted; a chat request carrying a long answer is well under this.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Worker threads accepting requests.
const WORKERS: usize = 4;
/// How often idle workers look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);

/// A bound, not yet running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    model: Arc<dyn ChatModel>,
    addr: SocketAddr,
    ids: Arc<AtomicU64>,
}

/// A server running on a background thread; shuts down on [`ServerHandle::shutdown`] or drop.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<Result<(), StrongError>>>,
}

/// Bind `addr` and serve `model` until `shutdown` becomes true (blocking).
pub fn serve(
    model: Arc<dyn ChatModel>,
    addr: SocketAddr,
    shutdown: &AtomicBool,
) -> Result<(), StrongError> {
    Server::bind(model, addr)?.run(shutdown)
}

impl Server {
    /// Bind the listening socket (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub fn bind(model: Arc<dyn ChatModel>, addr: SocketAddr) -> Result<Server, StrongError> {
        let bind_err = |detail: String| StrongError::Bind {
            addr: addr.to_string(),
            detail,
        };
        let http = tiny_http::Server::http(addr).map_err(|e| bind_err(e.to_string()))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_err("not an IP listener".into()))?;
        Ok(Server {
            http: Arc::new(http),
            model,
            addr,
            ids: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` is set; requests in flight finish first.
    pub fn run(&self, shutdown: &AtomicBool) -> Result<(), StrongError> {
        tracing::info!(
            "serving {} at http://{}/v1/chat/completions",
            self.model.name(),
            self.addr
        );
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| self.worker(shutdown));
            }
        });
        Ok(())
    }

    /// Run on a background thread.
    pub fn spawn(self) -> ServerHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let http = self.http.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tenbit-serve-{}", addr.port()))
            .spawn(move || self.run(&flag))
            .expect("spawning a thread only fails when the OS is out of threads");
        ServerHandle {
            addr,
            stop,
            http,
            thread: Some(thread),
        }
    }

    fn worker(&self, shutdown: &AtomicBool) {
        while !shutdown.load(Ordering::Relaxed) {
            match self.http.recv_timeout(POLL) {
                Ok(Some(req)) => self.handle(req),
                Ok(None) => {}
                Err(e) => {
                    // A failed accept (e.g. the peer reset) must not kill the server.
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    fn handle(&self, mut req: Request) {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let method = req.method().clone();
        let (status, body) = match (method, path.as_str()) {
            (Method::Get, "/health") => (200, json!({"status": "ok"})),
            (Method::Get, "/v1/models" | "/models") => (
                200,
                json!({"object": "list", "data": [{
                    "id": self.model.name(), "object": "model", "created": 0, "owned_by": "tenbit"
                }]}),
            ),
            (Method::Post, "/v1/chat/completions" | "/chat/completions") => {
                self.chat_completions(&mut req)
            }
            (
                _,
                "/health" | "/v1/models" | "/models" | "/v1/chat/completions" | "/chat/completions",
            ) => error(
                405,
                "invalid_request_error",
                format!("method not allowed on {path}"),
            ),
            _ => error(404, "not_found_error", format!("no such endpoint: {path}")),
        };
        let header = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
            .expect("static header is valid");
        let resp = Response::from_string(body.to_string())
            .with_status_code(status)
            .with_header(header);
        if let Err(e) = req.respond(resp) {
            tracing::debug!("client went away before the reply: {e}");
        }
    }

    fn chat_completions(&self, req: &mut Request) -> (u16, Value) {
        let mut raw = Vec::new();
        if let Err(e) = req
            .as_reader()
            .take(MAX_REQUEST_BYTES + 1)
            .read_to_end(&mut raw)
        {
            return error(
                400,
                "invalid_request_error",
                format!("cannot read body: {e}"),
            );
        }
        if raw.len() as u64 > MAX_REQUEST_BYTES {
            return error(
                413,
                "invalid_request_error",
                format!("request body larger than {MAX_REQUEST_BYTES} bytes"),
            );
        }
        let chat = match parse_request(&raw) {
            Ok(c) => c,
            Err(msg) => return error(400, "invalid_request_error", msg),
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.model.chat(&chat)));
        let resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e @ (StrongError::BadRequest(_) | StrongError::ContextTooLong { .. }))) => {
                return error(400, "invalid_request_error", e.to_string())
            }
            Ok(Err(e)) => return error(500, "server_error", e.to_string()),
            Err(_) => return error(500, "server_error", "the model panicked".into()),
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let p = resp.prompt_tokens.unwrap_or(0);
        let c = resp.completion_tokens.unwrap_or(0);
        (
            200,
            json!({
                "id": format!("chatcmpl-tenbit-{id}"),
                "object": "chat.completion",
                "created": created,
                "model": self.model.name(),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": resp.content},
                    "finish_reason": resp.finish_reason.as_str(),
                }],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            }),
        )
    }
}

impl ServerHandle {
    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL for an [`super::OpenAiClient`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, let requests in flight finish, and join the server thread.
    pub fn shutdown(mut self) -> Result<(), StrongError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), StrongError> {
        self.stop.store(true, Ordering::Relaxed);
        self.http.unblock();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StrongError::Local("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// An OpenAI-style error reply.
fn error(status: u16, kind: &str, message: String) -> (u16, Value) {
    (
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    )
}

/// Message content: a string, null (empty), or an array of `{"type":"text","text":...}` parts.
fn content_text(v: Option<&Value>, i: usize) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(format!(
                        "messages[{i}].content: only text parts are supported"
                    )),
                },
            )
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.concat()),
        Some(_) => Err(format!("messages[{i}].content must be a string")),
    }
}

/// Validate and convert a chat-completions body. `Err` is the message for the 400 reply.
pub(crate) fn parse_request(raw: &[u8]) -> Result<ChatRequest, String> {
    let v: Value =
        serde_json::from_slice(raw).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("request body must be a JSON object")?;
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err("streaming is not supported; send \"stream\": false".into());
    }
    if let Some(n) = obj.get("n") {
        if n.as_u64() != Some(1) {
            return Err("only n = 1 is supported".into());
        }
    }
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?;
    if msgs.is_empty() {
        return Err("`messages` must not be empty".into());
    }
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("messages[{i}].role must be a string"))?;
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(format!(
                "messages[{i}].role {role:?} is not one of system, user, assistant"
            ));
        }
        messages.push(ChatMessage::new(role, content_text(m.get("content"), i)?));
    }
    let max_tokens = match obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
    {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .map(|n| n.min(u64::from(u32::MAX)) as u32)
                .ok_or("`max_tokens` must be a non-negative integer")?,
        ),
    };
    // OpenAI's default temperature is 1; callers wanting determinism send 0.
    let temperature = match obj.get("temperature") {
        None | Some(Value::Null) => 1.0,
        Some(t) => t
            .as_f64()
            .filter(|t| t.is_finite() && (0.0..=2.0).contains(t))
            .ok_or("`temperature` must be a number between 0 and 2")? as f32,
    };
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or("`stop` must be a string or an array of strings")?,
        Some(_) => return Err("`stop` must be a string or an array of strings".into()),
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(s) => Some(
            s.as_u64()
                .or_else(|| s.as_i64().map(|i| i as u64))
                .ok_or("`seed` must be an integer")?,
        ),
    };
    Ok(ChatRequest {
        messages,
        max_tokens,
        temperature,
        stop,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_requests() {
        let r = parse_request(
            br#"{"model":"x","messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "max_tokens":5,"temperature":0,"stop":"\n","seed":-1}"#,
        )
        .unwrap();
        assert_eq!(
            r.messages,
            vec![ChatMessage::system("s"), ChatMessage::user("ab")]
        );
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.temperature, 0.0);
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert_eq!(r.seed, Some(u64::MAX));

        let d = parse_request(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(d.temperature, 1.0);
        assert_eq!(d.max_tokens, None);
        assert!(d.stop.is_empty());
    }

    #[test]
    fn rejects_bad_requests_with_reasons() {
        for (body, needle) in [
            (&b"{not json"[..], "not valid JSON"),
            (b"[]", "JSON object"),
            (b"{}", "messages"),
            (br#"{"messages":[]}"#, "empty"),
            (br#"{"messages":[{"role":"tool","content":"x"}]}"#, "role"),
            (br#"{"messages":[{"role":"user","content":5}]}"#, "string"),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"stream":true}"#,
                "stream",
            ),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n = 1",
            ),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":-3}"#,
                "max_tokens",
            ),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                "stop",
            ),
        ] {
            let e = parse_request(body).unwrap_err();
            assert!(e.contains(needle), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
