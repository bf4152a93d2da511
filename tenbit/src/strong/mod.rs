//! The strong model: a pluggable chat model that the host consults in two modes.
//!
//! * **Rewrite**: the strong model writes a succinct version of a response before the small
//!   model codes it (fewer tokens, same facts).
//! * **Question asking (QA)**: the small model asks yes/no questions and the strong model
//!   answers each with one bit; only the bits travel.
//!
//! The strong model is either any OpenAI-compatible chat-completions server
//! ([`OpenAiClient`]: llama.cpp server, vLLM, Ollama, hosted APIs) or a local GGUF model run by
//! the project's own engine ([`LocalModel`]). [`serve()`] exposes any [`ChatModel`] as an
//! OpenAI-compatible HTTP server, so the client is tested against a real server over loopback.
//!
//! Failure policy: a strong model that is down, slow or talks nonsense produces a
//! [`StrongError`] that says which of those happened, after the configured retries. Nothing in
//! this module ever substitutes a default answer, because a guessed rewrite or a guessed QA bit
//! would silently become a wrong frame.

pub mod local;
pub mod openai;
pub mod pick;
pub mod prompts;
pub mod serve;

use std::time::Duration;

pub use local::LocalModel;
pub use openai::{OpenAiClient, OpenAiConfig, Secret};
pub use prompts::{answer_yes_no, parse_yes_no, rewrite, StrongOracle};
pub use serve::{serve, Server, ServerHandle};

/// One chat message: `role` is `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`; servers may reject anything else.
    pub role: String,
    /// The message text, verbatim (no trimming is applied).
    pub content: String,
}

impl ChatMessage {
    /// A message with any role; prefer the role-named constructors below.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    /// A `system` message (instructions that frame the conversation).
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An `assistant` message (an earlier model turn, replayed as context).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A chat-completions request, the subset of the OpenAI schema both ends understand.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation so far, oldest first; must not be empty.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens; `None` lets the model decide.
    pub max_tokens: Option<u32>,
    /// 0 means greedy decoding (the default: rewrite and QA answers should be reproducible).
    pub temperature: f32,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Sampling seed (used only when `temperature > 0`).
    pub seed: Option<u64>,
}

impl ChatRequest {
    /// Greedy request with no token limit and no stop strings.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            max_tokens: None,
            temperature: 0.0,
            stop: Vec::new(),
            seed: None,
        }
    }
    /// Cap the reply at `n` generated tokens.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Sampling temperature; 0 keeps decoding greedy and reproducible.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }
    /// Add a stop string (generation ends before it; it is not part of the reply).
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
    /// Sampling seed, so a non-greedy request is repeatable on servers that honour it.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of turn, end of text, or a stop string.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
    /// The server said something else (kept so a client never invents a reason).
    Other,
}

impl FinishReason {
    /// The OpenAI wire name (`stop`, `length`; `other` for anything else).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Other => "other",
        }
    }
}

/// The assistant's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// The reply text.
    pub content: String,
    /// Why generation ended; [`FinishReason::Length`] means the reply may be cut off.
    pub finish_reason: FinishReason,
    /// Model name as reported by whoever generated the reply.
    pub model: String,
    /// Prompt size in tokens, when the server reports it.
    pub prompt_tokens: Option<u32>,
    /// Reply size in tokens, when the server reports it.
    pub completion_tokens: Option<u32>,
}

/// A chat model that can play the strong role.
///
/// `Send + Sync` so one model can serve several HTTP workers and be shared by the CLI as
/// `Arc<dyn ChatModel>`; implementations serialise internally where they must.
pub trait ChatModel: Send + Sync {
    /// Name reported in responses and in `GET /v1/models`.
    fn name(&self) -> &str;
    /// One chat completion. Errors are final: retries already happened inside.
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError>;
}

impl<T: ChatModel + ?Sized> ChatModel for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        (**self).chat(req)
    }
}

/// Everything that can go wrong with a strong model. Messages name the server (never the API
/// key) and what to check.
#[derive(Debug, thiserror::Error)]
pub enum StrongError {
    /// The server could not be reached (refused, reset, DNS) after every retry: start it or
    /// fix the URL.
    #[error("strong model server at {url} is down ({detail}; tried {attempts} time(s))")]
    Down {
        /// The endpoint that was tried.
        url: String,
        /// Connection attempts made, retries included.
        attempts: u32,
        /// The transport's own error text.
        detail: String,
    },
    /// Every attempt exceeded the per-attempt timeout: raise `TENBIT_STRONG_TIMEOUT` or use a
    /// faster server.
    #[error("strong model server at {url} timed out after {timeout:?} ({attempts} attempt(s))")]
    Timeout {
        /// The endpoint that was tried.
        url: String,
        /// The per-attempt timeout in force.
        timeout: Duration,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The server answered, but not with an OpenAI-compatible response (wrong URL or protocol).
    #[error("strong model server at {url} returned garbage: {detail}")]
    Garbage {
        /// The endpoint that answered.
        url: String,
        /// What was wrong with the response.
        detail: String,
    },
    /// The response was well formed but held no completion.
    #[error("strong model server at {url} returned no choices")]
    EmptyChoices {
        /// The endpoint that answered.
        url: String,
    },
    /// The server answered with an HTTP error status (after retries for 429 and 5xx); the body
    /// usually says why (bad key, unknown model).
    #[error("strong model server at {url} answered HTTP {status} ({attempts} attempt(s)): {body}")]
    Http {
        /// The endpoint that answered.
        url: String,
        /// The last HTTP status code.
        status: u16,
        /// Attempts made, retries included.
        attempts: u32,
        /// The response body, for the user to read.
        body: String,
    },
    /// The client configuration (URL, `TENBIT_STRONG_*` values) is invalid: the text says which.
    #[error("strong model configuration: {0}")]
    Config(String),
    /// The local strong model failed to load or run (file, engine, or tokenizer error).
    #[error("local strong model: {0}")]
    Local(String),
    /// The conversation does not fit the local model's context: shorten the prompt.
    #[error("the prompt needs {needed} tokens but the local model's context holds {capacity}")]
    ContextTooLong {
        /// Tokens the prompt needs.
        needed: usize,
        /// Tokens the context holds.
        capacity: usize,
    },
    /// The request itself is unusable (no messages, an unknown role); the caller's bug.
    #[error("invalid chat request: {0}")]
    BadRequest(String),
    /// The strong model never answered a QA question with a clear yes or no, so no bit can be
    /// sent (a guessed bit would corrupt the answer).
    #[error(
        "the strong model gave no usable yes/no answer to {question:?} after {attempts} \
         attempt(s); last reply: {last_reply:?}"
    )]
    Unparseable {
        /// The small model's question.
        question: String,
        /// Times the strong model was asked.
        attempts: u32,
        /// Its last reply, for the user to see what it said instead.
        last_reply: String,
    },
    /// The rewrite came back empty; coding it would lose the whole message.
    #[error("the strong model returned an empty rewrite")]
    EmptyRewrite,
    /// The rewrite stopped at the token limit, so it may have lost facts: raise the limit.
    #[error(
        "the strong model's rewrite hit the {max_tokens}-token limit; a cut-off rewrite would \
         lose facts, so it is refused (raise the limit)"
    )]
    RewriteTruncated {
        /// The token limit the rewrite hit.
        max_tokens: u32,
    },
    /// A QA run asked for more questions than allowed (see [`check_k`]): ask fewer.
    #[error("{k} questions requested; the configured maximum is {max}")]
    TooManyQuestions {
        /// Questions requested.
        k: usize,
        /// The configured maximum.
        max: usize,
    },
    /// `serve` could not listen on the address (in use, or not allowed).
    #[error("cannot start the strong model server on {addr}: {detail}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error text.
        detail: String,
    },
    /// A model name did not resolve to a local file through the catalogue.
    #[error(transparent)]
    Catalogue(#[from] tenbit_catalogue::CatalogueError),
}

impl StrongError {
    /// Whether the strong model itself failed (down, slow, nonsense: exit status 7), as
    /// opposed to a request the caller should not have made (bad input or configuration).
    pub fn is_outage(&self) -> bool {
        !matches!(
            self,
            StrongError::TooManyQuestions { .. }
                | StrongError::Config(_)
                | StrongError::BadRequest(_)
                | StrongError::ContextTooLong { .. }
                | StrongError::Catalogue(_)
                | StrongError::Bind { .. }
        )
    }
}

/// Open the strong model a user names: an `http(s)://` URL is an OpenAI-compatible server
/// (`server_model` names the model there; the rest of the client configuration comes from
/// `TENBIT_STRONG_*`), anything else a local GGUF path or catalogue name run by tenbit's
/// engine. Returns the model and a label for reports.
pub fn open(
    target: &str,
    server_model: Option<&str>,
) -> Result<(Box<dyn ChatModel>, String), StrongError> {
    if target.starts_with("http://") || target.starts_with("https://") {
        let mut cfg =
            OpenAiConfig::from_env().unwrap_or_else(|_| OpenAiConfig::new(target, "default"));
        cfg.base_url = target.to_string();
        if cfg.api_key.is_none() {
            cfg.api_key = std::env::var(openai::ENV_API_KEY)
                .ok()
                .filter(|k| !k.trim().is_empty())
                .map(|k| Secret::new(k.trim()));
        }
        if let Some(m) = server_model {
            cfg.model = m.to_string();
        }
        let label = match server_model {
            Some(m) => format!("{m} at {target}"),
            None => target.to_string(),
        };
        return Ok((Box::new(OpenAiClient::new(cfg)?), label));
    }
    let path = tenbit_catalogue::resolve(target)?;
    let label = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok((Box::new(LocalModel::load(&path)?), label))
}

/// Refuse a QA run asking more questions than `max` allows: each question costs a strong-model
/// call, and the frame format caps K anyway.
pub fn check_k(k: usize, max: usize) -> Result<(), StrongError> {
    if k > max {
        Err(StrongError::TooManyQuestions { k, max })
    } else {
        Ok(())
    }
}

/// Why [`encode_qa`] failed: the strong model (or the K limit), or the small model's coder.
#[derive(Debug, thiserror::Error)]
pub enum QaEncodeError {
    /// The strong model failed, or K is over the limit ([`StrongError::is_outage`] tells which).
    #[error(transparent)]
    Strong(#[from] StrongError),
    /// The small model's side failed (engine, prompt, or frame building).
    #[error(transparent)]
    Codec(#[from] tenbit_lm::codec::CodecError),
}

impl QaEncodeError {
    /// The strong model's own error, wherever it surfaced: up front (K over the limit) or
    /// inside the QA loop, where the oracle's error travels boxed as the source of
    /// [`tenbit_lm::qa::QaError::Oracle`]. `None` when the small model's side failed.
    pub fn strong(&self) -> Option<&StrongError> {
        match self {
            QaEncodeError::Strong(s) => Some(s),
            QaEncodeError::Codec(tenbit_lm::codec::CodecError::Qa(
                tenbit_lm::qa::QaError::Oracle { source, .. },
            )) => source.downcast_ref::<StrongError>(),
            QaEncodeError::Codec(_) => None,
        }
    }

    /// Whether the strong model itself failed (down, timed out, no usable reply): a run to
    /// retry later, not a wrong answer and not a corrupt frame.
    pub fn is_outage(&self) -> bool {
        self.strong().is_some_and(StrongError::is_outage)
    }

    /// As an `anyhow` error whose cause chain holds the inner error itself, so the exit status
    /// follows the cause. (`#[error(transparent)]` forwards `source()` past the wrapped
    /// error, so converting `self` directly would hide a `CodecError` from the chain.)
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            QaEncodeError::Strong(s) => anyhow::Error::from(s),
            QaEncodeError::Codec(c) => anyhow::Error::from(c),
        }
    }
}

/// The encoder's whole QA step: the small model answers `prompt` and asks `k` questions, the
/// strong model answers each with one bit (judging against `reference`, its own or a given
/// answer, when there is one), and the bits become a frame.
///
/// This is the one function behind both `tenbit encode --mode qa` and `tenbit eval`, so what
/// the evaluation scores is exactly what a link would carry.
pub fn encode_qa(
    codec: &tenbit_lm::codec::LmCodec<'_>,
    strong: &dyn ChatModel,
    prompt: &str,
    k: usize,
    max_k: usize,
    reference: Option<&str>,
) -> Result<(Vec<u8>, tenbit_lm::qa::Transcript), QaEncodeError> {
    encode_qa_with(
        codec,
        strong,
        prompt,
        k,
        max_k,
        tenbit_lm::qa::Protocol::CURRENT,
        reference,
    )
}

/// [`encode_qa`] with an explicit QA protocol revision (evaluation of older revisions, and
/// `tenbit encode --qa-protocol`).
pub fn encode_qa_with(
    codec: &tenbit_lm::codec::LmCodec<'_>,
    strong: &dyn ChatModel,
    prompt: &str,
    k: usize,
    max_k: usize,
    protocol: tenbit_lm::qa::Protocol,
    reference: Option<&str>,
) -> Result<(Vec<u8>, tenbit_lm::qa::Transcript), QaEncodeError> {
    check_k(k, max_k)?;
    let mut oracle = StrongOracle::new(strong, k);
    if let Some(r) = reference.filter(|r| !r.trim().is_empty()) {
        oracle = oracle.with_reference(r);
    }
    Ok(codec.encode_qa_with(prompt.as_bytes(), k, protocol, &mut oracle)?)
}

/// The strong model's own solution of `prompt` (greedy, at most `max_tokens`): what its QA
/// judge answers from when the encoder has no reference answer, and the "strong alone"
/// answer of the evaluation.
pub fn solve(strong: &dyn ChatModel, prompt: &str, max_tokens: u32) -> Result<String, StrongError> {
    let req = ChatRequest::new(vec![ChatMessage::user(prompt)]).max_tokens(max_tokens);
    Ok(strong.chat(&req)?.content.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strong model's error keeps its type through the QA loop's boxed oracle error, and
    /// `into_anyhow` leaves the inner error in the cause chain (where the exit status looks).
    #[test]
    fn qa_encode_errors_keep_their_cause() {
        use tenbit_lm::codec::CodecError;
        use tenbit_lm::qa::QaError;
        let in_loop = |s: StrongError| {
            QaEncodeError::Codec(CodecError::Qa(QaError::Oracle {
                index: 1,
                question: "Is it 4?".into(),
                source: Box::new(s),
            }))
        };
        let down = in_loop(StrongError::Down {
            url: "http://127.0.0.1:9".into(),
            attempts: 1,
            detail: "refused".into(),
        });
        assert!(matches!(down.strong(), Some(StrongError::Down { .. })));
        assert!(down.is_outage());
        let chain = down.into_anyhow();
        assert!(chain.chain().any(|c| c.is::<CodecError>()));
        assert!(chain.chain().any(|c| c.is::<StrongError>()));
        let too_many = in_loop(StrongError::TooManyQuestions { k: 3, max: 2 });
        assert!(matches!(
            too_many.strong(),
            Some(StrongError::TooManyQuestions { k: 3, max: 2 })
        ));
        assert!(!too_many.is_outage());
        let up_front = QaEncodeError::from(check_k(9, 8).unwrap_err());
        assert!(!up_front.is_outage());
        assert!(up_front.into_anyhow().is::<StrongError>());
        let codec = QaEncodeError::Codec(CodecError::NotUtf8Prompt);
        assert!(codec.strong().is_none() && !codec.is_outage());
        assert!(codec.into_anyhow().is::<CodecError>());
    }

    #[test]
    fn k_limit_is_inclusive() {
        assert!(check_k(0, 8).is_ok());
        assert!(check_k(8, 8).is_ok());
        let e = check_k(9, 8).unwrap_err();
        assert!(matches!(e, StrongError::TooManyQuestions { k: 9, max: 8 }));
        assert!(e.to_string().contains("maximum is 8"), "{e}");
    }
}
