//! Client for any OpenAI-compatible chat-completions server (llama.cpp server, vLLM, Ollama,
//! hosted APIs).
//!
//! Synchronous on purpose (ureq): the host makes one strong-model call at a time and the
//! binary stays small. Transient failures (connection refused or reset, timeouts, HTTP 429 and
//! 5xx) are retried with exponential backoff; everything else fails at once with an error that
//! says what the server did wrong. A 200 response whose body is not the expected JSON is an
//! error, never an empty answer.

use std::fmt;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use super::{ChatModel, ChatRequest, ChatResponse, FinishReason, StrongError};

/// Environment variable with the server's base URL (`http://127.0.0.1:8080`, `.../v1`).
pub const ENV_URL: &str = "TENBIT_STRONG_URL";
/// Environment variable with the model name sent in requests.
pub const ENV_MODEL: &str = "TENBIT_STRONG_MODEL";
/// Environment variable with the API key (sent as `Authorization: Bearer`, never logged).
pub const ENV_API_KEY: &str = "TENBIT_STRONG_API_KEY";
/// Environment variable with the per-attempt timeout in seconds (fractions allowed).
pub const ENV_TIMEOUT: &str = "TENBIT_STRONG_TIMEOUT";
/// Environment variable with the number of retries after the first attempt.
pub const ENV_RETRIES: &str = "TENBIT_STRONG_RETRIES";

/// Model name sent when none is configured: llama.cpp's server ignores the field, hosted APIs
/// reject it with a message naming the model, which is the hint the user needs.
pub const DEFAULT_MODEL: &str = "default";

/// Longest wait between two attempts, whatever the backoff or `Retry-After` say.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Largest response body accepted (a chat reply is a few KB; this bounds a runaway server).
const MAX_BODY: u64 = 8 << 20;

/// An API key. `Debug` prints `Secret(***)` and there is no `Display`, so a key cannot reach a
/// log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a key; from here on it prints only as `Secret(***)`.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The key itself, for the one place that needs it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Connection settings of an [`OpenAiClient`].
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL: `http://host:port`, `http://host:port/v1`, or the full `.../chat/completions`.
    pub base_url: String,
    /// Model name sent in each request (servers with one model often ignore it).
    pub model: String,
    /// Sent as `Authorization: Bearer`; `None` for servers that need no key.
    pub api_key: Option<Secret>,
    /// Limit for one attempt, connect to last body byte.
    pub timeout: Duration,
    /// Attempts after the first one for transient failures.
    pub retries: u32,
    /// Wait before the first retry; doubles each retry (capped at 30 s).
    pub backoff: Duration,
}

impl OpenAiConfig {
    /// Defaults: 120 s timeout (a big model writing a long rewrite is slow), 3 retries, 500 ms
    /// initial backoff.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }

    /// Read `TENBIT_STRONG_URL` (required), `TENBIT_STRONG_MODEL`, `TENBIT_STRONG_API_KEY`,
    /// `TENBIT_STRONG_TIMEOUT` (seconds) and `TENBIT_STRONG_RETRIES` from the environment.
    pub fn from_env() -> Result<Self, StrongError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any variable source (tests use a map, so they never
    /// race on the process environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, StrongError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let url = get(ENV_URL).ok_or_else(|| {
            StrongError::Config(format!(
                "no strong model server configured: set {ENV_URL} (e.g. http://127.0.0.1:8080)"
            ))
        })?;
        let model = get(ENV_MODEL).unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let mut cfg = OpenAiConfig::new(url.trim(), model.trim());
        cfg.api_key = get(ENV_API_KEY).map(|k| Secret::new(k.trim()));
        if let Some(t) = get(ENV_TIMEOUT) {
            let secs: f64 = t
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| {
                    StrongError::Config(format!(
                        "{ENV_TIMEOUT}={t:?} is not a positive number of seconds"
                    ))
                })?;
            cfg.timeout = Duration::from_secs_f64(secs.min(86_400.0));
        }
        if let Some(r) = get(ENV_RETRIES) {
            cfg.retries = r.trim().parse().map_err(|_| {
                StrongError::Config(format!("{ENV_RETRIES}={r:?} is not a whole number"))
            })?;
        }
        Ok(cfg)
    }
}

/// Chat completions over HTTP(S). See the module docs for the retry policy.
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    /// The resolved `.../chat/completions` endpoint.
    endpoint: String,
    agent: ureq::Agent,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.cfg.model)
            .field("api_key", &self.cfg.api_key)
            .field("timeout", &self.cfg.timeout)
            .field("retries", &self.cfg.retries)
            .finish()
    }
}

/// `.../chat/completions` from a base URL in any of the spellings users paste.
fn endpoint(base: &str) -> Result<String, StrongError> {
    let base = base.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(StrongError::Config(format!(
            "strong model URL {base:?} must start with http:// or https://"
        )));
    }
    Ok(if base.ends_with("/chat/completions") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    })
}

/// One attempt's failure, sorted by what the retry loop should do with it.
enum Attempt {
    /// Worth retrying; the error to report if no retry succeeds.
    Transient(StrongError, Option<Duration>),
    Fatal(StrongError),
}

impl OpenAiClient {
    /// A client for `cfg`; fails with [`StrongError::Config`] on a bad URL or a zero timeout.
    /// Nothing is sent until the first request.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, StrongError> {
        let endpoint = endpoint(&cfg.base_url)?;
        if cfg.timeout.is_zero() {
            return Err(StrongError::Config("the timeout must be above zero".into()));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(cfg.timeout.min(Duration::from_secs(10)))
            .timeout(cfg.timeout)
            .user_agent(concat!("tenbit/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(OpenAiClient {
            cfg,
            endpoint,
            agent,
        })
    }

    /// [`OpenAiConfig::from_env`] then [`new`](Self::new).
    pub fn from_env() -> Result<Self, StrongError> {
        Self::new(OpenAiConfig::from_env()?)
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn body(&self, req: &ChatRequest) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.cfg.model,
            "messages": messages,
            "temperature": req.temperature,
            "stream": false,
        });
        if let Some(n) = req.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if !req.stop.is_empty() {
            body["stop"] = json!(req.stop);
        }
        if let Some(s) = req.seed {
            body["seed"] = json!(s);
        }
        body
    }

    fn attempt(&self, body: &str, attempts: u32) -> Result<ChatResponse, Attempt> {
        let url = &self.endpoint;
        let mut r = self
            .agent
            .post(url)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json");
        if let Some(k) = &self.cfg.api_key {
            r = r.set("Authorization", &format!("Bearer {}", k.expose()));
        }
        match r.send_string(body) {
            Ok(resp) => {
                let text = read_body(resp).map_err(|e| self.io_failure(e, attempts))?;
                parse_response(url, &text).map_err(Attempt::Fatal)
            }
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after = resp
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = read_body(resp).unwrap_or_default();
                let mut detail = error_message(&text);
                if status == 401 || status == 403 {
                    detail.push_str(&format!(" (check {ENV_API_KEY})"));
                }
                let e = StrongError::Http {
                    url: url.clone(),
                    status,
                    attempts,
                    body: detail,
                };
                if status == 429 || (500..600).contains(&status) {
                    Err(Attempt::Transient(e, retry_after))
                } else {
                    Err(Attempt::Fatal(e))
                }
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport_failure(t, attempts)),
        }
    }

    fn transport_failure(&self, t: ureq::Transport, attempts: u32) -> Attempt {
        use ureq::ErrorKind as K;
        let url = self.endpoint.clone();
        let io_kind = std::error::Error::source(&t)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map(|e| e.kind());
        if matches!(
            io_kind,
            Some(io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
        ) {
            return Attempt::Transient(self.timeout_error(attempts), None);
        }
        match t.kind() {
            K::ConnectionFailed | K::Dns | K::Io => Attempt::Transient(
                StrongError::Down {
                    url,
                    attempts,
                    detail: t.to_string(),
                },
                None,
            ),
            // Not HTTP at all (a status line or header that does not parse).
            K::BadStatus | K::BadHeader | K::HTTP => Attempt::Fatal(StrongError::Garbage {
                url,
                detail: t.to_string(),
            }),
            _ => Attempt::Fatal(StrongError::Config(t.to_string())),
        }
    }

    fn io_failure(&self, e: io::Error, attempts: u32) -> Attempt {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Attempt::Transient(self.timeout_error(attempts), None)
            }
            io::ErrorKind::InvalidData => Attempt::Fatal(StrongError::Garbage {
                url: self.endpoint.clone(),
                detail: format!("unreadable body: {e}"),
            }),
            _ => Attempt::Transient(
                StrongError::Down {
                    url: self.endpoint.clone(),
                    attempts,
                    detail: format!("connection lost while reading the reply: {e}"),
                },
                None,
            ),
        }
    }

    fn timeout_error(&self, attempts: u32) -> StrongError {
        StrongError::Timeout {
            url: self.endpoint.clone(),
            timeout: self.cfg.timeout,
            attempts,
        }
    }
}

/// The body as UTF-8, at most [`MAX_BODY`] bytes.
fn read_body(resp: ureq::Response) -> io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    resp.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("body larger than {MAX_BODY} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "body is not UTF-8"))
}

/// A short, printable excerpt of a body (errors must stay one readable line).
fn excerpt(s: &str) -> String {
    let s = s.trim();
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// The `error.message` of an OpenAI-style error body, else an excerpt of the body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error").and_then(|e| {
                e.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| e.as_str().map(str::to_string))
            })
        })
        .unwrap_or_else(|| excerpt(body))
}

/// Check a 200 body against the chat-completions schema and take the first choice.
pub(crate) fn parse_response(url: &str, body: &str) -> Result<ChatResponse, StrongError> {
    let garbage = |detail: String| StrongError::Garbage {
        url: url.to_string(),
        detail,
    };
    let v: Value = serde_json::from_str(body)
        .map_err(|e| garbage(format!("not JSON ({e}): {}", excerpt(body))))?;
    let obj = v
        .as_object()
        .ok_or_else(|| garbage(format!("expected a JSON object, got {}", excerpt(body))))?;
    if let Some(e) = obj.get("error") {
        return Err(garbage(format!("error object in a 200 reply: {e}")));
    }
    let choices = obj
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| garbage(format!("no `choices` array in {}", excerpt(body))))?;
    let first = choices.first().ok_or_else(|| StrongError::EmptyChoices {
        url: url.to_string(),
    })?;
    let content = first
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            garbage(format!(
                "first choice has no `message.content` string: {}",
                excerpt(&first.to_string())
            ))
        })?;
    let finish_reason = match first.get("finish_reason").and_then(Value::as_str) {
        Some("stop") | Some("eos") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some(_) => FinishReason::Other,
    };
    let usage = |k: &str| {
        obj.get("usage")
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Ok(ChatResponse {
        content: content.to_string(),
        finish_reason,
        model: obj
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        prompt_tokens: usage("prompt_tokens"),
        completion_tokens: usage("completion_tokens"),
    })
}

impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.cfg.model
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        if req.messages.is_empty() {
            return Err(StrongError::BadRequest("no messages".into()));
        }
        let body = self.body(req).to_string();
        let mut wait = self.cfg.backoff;
        let mut attempt = 1u32;
        loop {
            match self.attempt(&body, attempt) {
                Ok(r) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(e, retry_after)) => {
                    if attempt > self.cfg.retries {
                        return Err(e);
                    }
                    let pause = retry_after.unwrap_or(wait).min(MAX_BACKOFF);
                    tracing::warn!(
                        "strong model attempt {attempt}/{} failed: {e}; retrying in {pause:?}",
                        self.cfg.retries + 1
                    );
                    std::thread::sleep(pause);
                    wait = (wait * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn endpoint_accepts_common_spellings() {
        let want = "http://h:1/v1/chat/completions";
        for base in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/",
            "http://h:1/v1/chat/completions",
        ] {
            assert_eq!(endpoint(base).unwrap(), want, "{base}");
        }
        assert!(matches!(endpoint("h:1"), Err(StrongError::Config(_))));
        assert!(matches!(endpoint("ftp://h"), Err(StrongError::Config(_))));
    }

    #[test]
    fn secret_is_redacted_everywhere() {
        let mut cfg = OpenAiConfig::new("http://127.0.0.1:9", "m");
        cfg.api_key = Some(Secret::new("sk-very-secret"));
        let c = OpenAiClient::new(cfg.clone()).unwrap();
        for s in [format!("{cfg:?}"), format!("{c:?}")] {
            assert!(!s.contains("sk-very-secret"), "{s}");
            assert!(s.contains("Secret(***)"), "{s}");
        }
    }

    #[test]
    fn config_from_lookup() {
        let env: HashMap<&str, &str> = [
            (ENV_URL, " http://x:1/v1 "),
            (ENV_MODEL, "big"),
            (ENV_API_KEY, "k"),
            (ENV_TIMEOUT, "2.5"),
            (ENV_RETRIES, "7"),
        ]
        .into();
        let c = OpenAiConfig::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.base_url, "http://x:1/v1");
        assert_eq!(c.model, "big");
        assert_eq!(c.api_key.as_ref().unwrap().expose(), "k");
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.retries, 7);

        let none = OpenAiConfig::from_lookup(|_| None).unwrap_err();
        assert!(none.to_string().contains(ENV_URL), "{none}");
        let bad = OpenAiConfig::from_lookup(|k| match k {
            ENV_URL => Some("http://x".into()),
            ENV_TIMEOUT => Some("-1".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(bad.to_string().contains(ENV_TIMEOUT), "{bad}");
        let d = OpenAiConfig::from_lookup(|k| (k == ENV_URL).then(|| "http://x".into())).unwrap();
        assert_eq!(d.model, DEFAULT_MODEL);
        assert!(d.api_key.is_none());
    }

    #[test]
    fn parse_response_checks_the_schema() {
        let ok = r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"hi"},
            "finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let r = parse_response("u", ok).unwrap();
        assert_eq!(r.content, "hi");
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(3), Some(1)));

        let garbage = |b: &str| match parse_response("u", b) {
            Err(StrongError::Garbage { detail, .. }) => detail,
            other => panic!("{b}: {other:?}"),
        };
        assert!(garbage("<html>oops</html>").contains("not JSON"));
        assert!(garbage("[1,2]").contains("JSON object"));
        assert!(garbage(r#"{"id":"x"}"#).contains("choices"));
        assert!(garbage(r#"{"choices":[{"message":{"content":null}}]}"#).contains("content"));
        assert!(garbage(r#"{"error":{"message":"bad"}}"#).contains("bad"));
        assert!(matches!(
            parse_response("u", r#"{"choices":[]}"#),
            Err(StrongError::EmptyChoices { .. })
        ));
    }

    #[test]
    fn error_message_prefers_openai_error_body() {
        assert_eq!(
            error_message(r#"{"error":{"message":"model not found","type":"x"}}"#),
            "model not found"
        );
        assert_eq!(error_message("plain"), "\"plain\"");
        let long = "x".repeat(1000);
        assert!(error_message(&long).chars().count() < 220);
    }
}
