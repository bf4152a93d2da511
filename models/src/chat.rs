//! Chat templates: how a prompt and a response sit in the model's context.
//!
//! tenbit conditions the coder on the conversation a response came from, so both ends must
//! lay out the same tokens. Only the ChatML family is supported (SmolLM2, Qwen2.5): the Jinja
//! template in the GGUF is recognised, not executed, and its default system message is read
//! out of it so that the context matches what the model was trained on.

use tenbit_common::TokenId;

use crate::gguf::Gguf;
use crate::tokenizer::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template not supported (tenbit supports ChatML templates: <|im_start|>role ... <|im_end|>); template begins: {0:?}")]
    Unsupported(String),
    #[error("the vocabulary lacks the ChatML token {0}")]
    MissingToken(&'static str),
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    default_system: Option<String>,
    eot: TokenId,
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

/// The system message a ChatML template inserts when the conversation has none.
fn default_system(template: &str) -> Option<String> {
    let key = "<|im_start|>system\n";
    let i = template.find(key)? + key.len();
    let rest = &template[i..];
    let end = rest.find(END)?;
    let s = &rest[..end];
    // A template that builds the system turn from a variable has no literal default.
    if s.contains("{{") || s.contains("{%") || s.contains('\'') && s.contains('+') {
        return None;
    }
    Some(s.to_string())
}

impl ChatTemplate {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ChatError> {
        let tmpl = g.get_str("tokenizer.chat_template").unwrap_or("");
        let tok =
            crate::tokenizer::Tokenizer::from_gguf(g).map_err(|_| ChatError::MissingToken(END))?;
        Self::new(tmpl, &tok)
    }

    /// From template text and the tokenizer (cheaper when a tokenizer already exists).
    pub fn new(template: &str, tok: &Tokenizer) -> Result<Self, ChatError> {
        if !template.contains(START) || !template.contains(END) {
            return Err(ChatError::Unsupported(template.chars().take(60).collect()));
        }
        tok.token_id(START).ok_or(ChatError::MissingToken(START))?;
        let eot = tok.token_id(END).ok_or(ChatError::MissingToken(END))?;
        Ok(ChatTemplate {
            default_system: default_system(template),
            eot,
        })
    }

    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    fn system_turn(&self, system: Option<&str>) -> String {
        match system.or(self.default_system.as_deref()) {
            Some(s) => format!("{START}system\n{s}{END}\n"),
            None => String::new(),
        }
    }

    /// Tokens that precede the user's message.
    pub fn user_prefix(&self, tok: &Tokenizer, system: Option<&str>) -> Vec<TokenId> {
        tok.encode_template(&format!("{}{START}user\n", self.system_turn(system)))
    }

    /// Tokens between the end-of-turn closing the user message and the assistant's text.
    pub fn assistant_prefix(&self, tok: &Tokenizer) -> Vec<TokenId> {
        tok.encode_template(&format!("\n{START}assistant\n"))
    }

    /// Context for a response whose prompt is unknown.
    pub fn bare_assistant_prefix(&self, tok: &Tokenizer, system: Option<&str>) -> Vec<TokenId> {
        tok.encode_template(&format!("{}{START}assistant\n", self.system_turn(system)))
    }

    /// `<|im_end|>`: terminates coded messages.
    pub fn end_of_turn(&self, _tok: &Tokenizer) -> TokenId {
        self.eot
    }

    /// A whole conversation, ending with the assistant prefix (ready to generate). Message
    /// contents are encoded as plain text: a user cannot inject control tokens.
    pub fn render(&self, tok: &Tokenizer, messages: &[(&str, &str)]) -> Vec<TokenId> {
        let mut out = Vec::new();
        if messages.first().is_none_or(|(r, _)| *r != "system") {
            out.extend(tok.encode_template(&self.system_turn(None)));
        }
        for (role, content) in messages {
            out.extend(tok.encode_template(&format!("{START}{role}\n")));
            out.extend(tok.encode(content.as_bytes()));
            out.push(self.eot);
            out.extend(tok.encode(b"\n"));
        }
        out.extend(tok.encode_template(&format!("{START}assistant\n")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_is_read_from_the_template() {
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
}
