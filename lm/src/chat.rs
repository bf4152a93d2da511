//! Chat templates: how a prompt and a response sit in the model's context.
//!
//! tenbit conditions the coder on the conversation a response came from, so both ends must
//! lay out the same tokens. Only the ChatML family is supported (SmolLM2, Qwen2.5): the Jinja
//! template in the GGUF is recognised, not executed (a Jinja engine on the decoder boards would
//! be a lot of code for one fixed layout), and its default system message is read out of it so
//! that the context matches what the model was trained on.
//!
//! Tokenization follows what `tokenizer.apply_chat_template(..., tokenize=True)` does in HF:
//! the rendered text is split at special-token spellings and each stretch of ordinary text is
//! BPE-encoded as a whole (so `user\n` and the message content form one stretch). Message
//! contents themselves never turn into special tokens: a user cannot forge `<|im_end|>`.

use tenbit_wire::TokenId;

use crate::tokenizer::Tokenizer;
use tenbit_engine::gguf::Gguf;

/// Why a model's chat template cannot be used to lay out messages.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template is not ChatML; tenbit lays out only ChatML itself (bit-exact on both ends).
    #[error("chat template of {model} is not supported (tenbit supports ChatML templates: <|im_start|>role ... <|im_end|>); template begins: {start:?}")]
    Unsupported {
        /// The model's `general.name`.
        model: String,
        /// The template's first characters, to recognise it.
        start: String,
    },
    /// A ChatML special token is not in the vocabulary.
    #[error("the vocabulary lacks the ChatML token {0}")]
    MissingToken(&'static str),
}

/// A ChatML chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    default_system: Option<String>,
    start: TokenId,
    eot: TokenId,
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

/// Undo Jinja string-literal escapes (`\n`, `\t`, `\'`, `\"`, `\\`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o @ ('\'' | '"' | '\\')) => out.push(o),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The system message a ChatML template inserts when the conversation has none: the literal
/// text between `<|im_start|>system` + newline and `<|im_end|>` inside one string literal.
/// The newline may be a real one (SmolLM2's template) or a `\n` escape (Qwen2.5's). Templates
/// that build the system turn from a variable (`' + messages[0]['content'] + '`) are skipped.
fn default_system(template: &str) -> Option<String> {
    let key = "<|im_start|>system";
    let mut from = 0;
    while let Some(k) = template[from..].find(key) {
        let at = from + k + key.len();
        from = at;
        let rest = &template[at..];
        let body = if let Some(r) = rest.strip_prefix('\n') {
            r
        } else if let Some(r) = rest.strip_prefix("\\n") {
            r
        } else {
            continue;
        };
        let Some(end) = body.find(END) else { continue };
        let s = &body[..end];
        // A literal default lies inside one string literal: no quotes, no Jinja syntax.
        if s.is_empty() || s.contains(['\'', '"']) || s.contains("{{") || s.contains("{%") {
            continue;
        }
        return Some(unescape(s));
    }
    None
}

/// Token-level builder: specials as ids, adjacent ordinary text merged into one stretch.
struct Builder<'t> {
    tok: &'t Tokenizer,
    out: Vec<TokenId>,
    text: String,
}

impl<'t> Builder<'t> {
    fn new(tok: &'t Tokenizer) -> Self {
        Builder {
            tok,
            out: Vec::new(),
            text: String::new(),
        }
    }
    fn special(&mut self, t: TokenId) -> &mut Self {
        self.flush();
        self.out.push(t);
        self
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.out.extend(self.tok.encode(self.text.as_bytes()));
            self.text.clear();
        }
    }
    fn finish(mut self) -> Vec<TokenId> {
        self.flush();
        self.out
    }
}

impl ChatTemplate {
    /// Read the template from the GGUF and resolve its special tokens once.
    pub fn from_gguf(g: &Gguf) -> Result<Self, ChatError> {
        let tmpl = g.get_str("tokenizer.chat_template").unwrap_or("");
        let model = g.get_str("general.name").unwrap_or("this model");
        if !tmpl.contains(START) || !tmpl.contains(END) {
            return Err(ChatError::Unsupported {
                model: model.to_string(),
                start: tmpl.chars().take(80).collect(),
            });
        }
        // Look the two tokens up in the raw vocabulary rather than building a whole tokenizer.
        let tokens = g
            .get_array("tokenizer.ggml.tokens")
            .map_err(|_| ChatError::MissingToken(START))?;
        let find = |name: &'static str| {
            tokens
                .iter()
                .position(|v| v.as_str() == Some(name))
                .map(|i| TokenId(i as u32))
                .ok_or(ChatError::MissingToken(name))
        };
        Ok(ChatTemplate {
            default_system: default_system(tmpl),
            start: find(START)?,
            eot: find(END)?,
        })
    }

    /// From template text and a tokenizer (for templates not stored in a GGUF).
    pub fn new(template: &str, tok: &Tokenizer) -> Result<Self, ChatError> {
        if !template.contains(START) || !template.contains(END) {
            return Err(ChatError::Unsupported {
                model: "the given template".into(),
                start: template.chars().take(80).collect(),
            });
        }
        let start = tok.token_id(START).ok_or(ChatError::MissingToken(START))?;
        let eot = tok.token_id(END).ok_or(ChatError::MissingToken(END))?;
        Ok(ChatTemplate {
            default_system: default_system(template),
            start,
            eot,
        })
    }

    /// The system message used when none is given (`None` if the template has none).
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    fn system_turn(&self, b: &mut Builder, system: Option<&str>) {
        if let Some(s) = system.or(self.default_system.as_deref()) {
            b.special(self.start)
                .text("system\n")
                .text(s)
                .special(self.eot)
                .text("\n");
        }
    }

    /// Tokens that precede the user's message:
    /// `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n`.
    pub fn user_prefix(&self, tok: &Tokenizer, system: Option<&str>) -> Vec<TokenId> {
        let mut b = Builder::new(tok);
        self.system_turn(&mut b, system);
        b.special(self.start).text("user\n");
        b.finish()
    }

    /// Tokens between the end-of-turn token that closes the user message and the assistant's
    /// text: `\n<|im_start|>assistant\n`.
    pub fn assistant_prefix(&self, tok: &Tokenizer) -> Vec<TokenId> {
        let mut b = Builder::new(tok);
        b.text("\n").special(self.start).text("assistant\n");
        b.finish()
    }

    /// Context for a response whose prompt is unknown:
    /// `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>assistant\n`.
    pub fn bare_assistant_prefix(&self, tok: &Tokenizer, system: Option<&str>) -> Vec<TokenId> {
        let mut b = Builder::new(tok);
        self.system_turn(&mut b, system);
        b.special(self.start).text("assistant\n");
        b.finish()
    }

    /// `<|im_end|>`: terminates coded messages.
    pub fn end_of_turn(&self, _tok: &Tokenizer) -> TokenId {
        self.eot
    }

    /// A whole conversation of (role, content) messages, ending with the assistant prefix
    /// (ready to generate), as the template renders it with `add_generation_prompt`: the
    /// default system turn comes first unless the first message is a system message.
    pub fn render(&self, tok: &Tokenizer, messages: &[(&str, &str)]) -> Vec<TokenId> {
        let mut b = Builder::new(tok);
        if messages.first().is_none_or(|(r, _)| *r != "system") {
            self.system_turn(&mut b, None);
        }
        for (role, content) in messages {
            b.special(self.start)
                .text(role)
                .text("\n")
                .text(content)
                .special(self.eot)
                .text("\n");
        }
        b.special(self.start).text("assistant\n");
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_is_read_from_smollm2_template() {
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        assert_eq!(
            default_system(smol).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(
            default_system("{{'<|im_start|>' + message['role'] + '\n'}}"),
            None
        );
    }

    #[test]
    fn default_system_is_read_from_qwen25_template() {
        // Excerpt of Qwen2.5's template as stored in its GGUF: `\n` escapes inside literals, and
        // a variable-built system turn before the literal default.
        let qwen = r#"{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}"#;
        assert_eq!(
            default_system(qwen).as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
    }

    #[test]
    fn unescape_handles_jinja_escapes() {
        assert_eq!(unescape(r"a\nb\tc\'d\\e\x"), "a\nb\tc'd\\e\\x");
    }
}
