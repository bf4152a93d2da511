//! The ShareGPT V3 conversations ([`crate::data::SHAREGPT`]): real ChatGPT responses (early
//! 2023; the package states no license) that training and the chat benchmarks read.
//!
//! The packaged file is one JSON array that is cut off mid-string at byte 125,509,632, so no
//! JSON parser accepts it whole. [`parse`] reads it the only way that works: one array element
//! at a time, stopping at the cut. A cut is expected only at the very end; bad JSON before it is
//! an error with its byte offset, so a damaged download is never mistaken for the known cut.
//!
//! [`split_of`] fixes the held-out set once for every tool: a conversation whose id hashes
//! (SHA-256, first byte) to 0..=25 is [`Split::Test`] (~10%), and nothing may train on it.
//! Hashing the id rather than taking positions keeps the split stable if a later package
//! version reorders or extends the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why the conversations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShareGptError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with a JSON array.
    #[error("not a ShareGPT file: expected a JSON array, found {found:?} at byte {offset}")]
    NotAnArray {
        /// Byte offset of the first non-blank byte.
        offset: usize,
        /// What stood there.
        found: char,
    },
    /// An element before the end is not a conversation object (a damaged file, not the cut).
    #[error("malformed conversation at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset where the element starts.
        offset: usize,
        /// The JSON parser's message.
        reason: String,
    },
    /// The file holds no complete conversation.
    #[error("no complete conversation in the file")]
    Empty,
}

/// Who wrote a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The user (`"human"`).
    Human,
    /// ChatGPT (`"gpt"`): the responses tenbit codes.
    Gpt,
    /// Anything else the file names (`"system"`, `"bing"`, ...), kept as written.
    Other(String),
}

impl Role {
    fn from_name(name: &str) -> Role {
        match name {
            "human" | "user" => Role::Human,
            "gpt" | "chatgpt" | "assistant" => Role::Gpt,
            other => Role::Other(other.to_owned()),
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Its author.
    pub role: Role,
    /// Its text, as in the file.
    pub text: String,
}

/// One conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The file's id (not unique in every dump; the split hashes it, so duplicates share a side).
    pub id: String,
    /// Its turns, in order.
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// Which side of the held-out split it is on.
    pub fn split(&self) -> Split {
        split_of(&self.id)
    }
}

/// Training or held-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// May be trained on.
    Train,
    /// Held out: for measurement only, never for training.
    Test,
}

/// The split of a conversation id: [`Split::Test`] when the first byte of SHA-256(id) is at
/// most 25 (26/256 = 10.2% of ids).
pub fn split_of(id: &str) -> Split {
    if Sha256::digest(id.as_bytes())[0] <= 25 {
        Split::Test
    } else {
        Split::Train
    }
}

/// What [`parse`] found.
#[derive(Debug)]
pub struct Corpus {
    /// Every complete conversation, in file order.
    pub conversations: Vec<Conversation>,
    /// Where the file was cut, if it ends inside an element (the packaged file does).
    pub cut_at: Option<usize>,
}

#[derive(Deserialize)]
struct RawConversation {
    id: String,
    #[serde(default)]
    conversations: Vec<RawTurn>,
}

#[derive(Deserialize)]
struct RawTurn {
    from: String,
    #[serde(default)]
    value: String,
}

/// Reads the file at `path` (see [`parse`]).
pub fn read(path: &Path) -> Result<Corpus, ShareGptError> {
    let bytes = std::fs::read(path).map_err(|source| ShareGptError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes)
}

/// Parses a ShareGPT JSON array element by element. A file that ends inside an element (or
/// before the closing `]`) yields the complete elements before it and [`Corpus::cut_at`];
/// anything else that is not a conversation object is [`ShareGptError::Malformed`].
pub fn parse(bytes: &[u8]) -> Result<Corpus, ShareGptError> {
    let blank = |b: &u8| b.is_ascii_whitespace();
    let mut pos = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    match bytes.get(pos) {
        Some(b'[') => pos += 1,
        Some(&b) => {
            return Err(ShareGptError::NotAnArray {
                offset: pos,
                found: b as char,
            })
        }
        None => return Err(ShareGptError::Empty),
    }
    let mut conversations = Vec::new();
    let mut cut_at = None;
    loop {
        // Separators between elements: blanks and one comma.
        while bytes.get(pos).is_some_and(blank) {
            pos += 1;
        }
        match bytes.get(pos) {
            None => {
                cut_at = Some(pos);
                break;
            }
            Some(b']') => break,
            Some(b',') if !conversations.is_empty() => {
                pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let mut stream =
            serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<RawConversation>();
        match stream.next() {
            Some(Ok(raw)) => {
                conversations.push(Conversation {
                    id: raw.id,
                    turns: raw
                        .conversations
                        .into_iter()
                        .map(|t| Turn {
                            role: Role::from_name(&t.from),
                            text: t.value,
                        })
                        .collect(),
                });
                pos += stream.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => {
                cut_at = Some(pos);
                break;
            }
            Some(Err(e)) => {
                return Err(ShareGptError::Malformed {
                    offset: pos,
                    reason: e.to_string(),
                })
            }
            None => {
                cut_at = Some(pos);
                break;
            }
        }
    }
    if conversations.is_empty() {
        return Err(ShareGptError::Empty);
    }
    Ok(Corpus {
        conversations,
        cut_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"[
      {"id": "a1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Hello!"}]},
      {"id": "b2", "conversations": [{"from": "system", "value": "be brief"}, {"from": "gpt", "value": "ok \"quoted\""}]}
    ]"#;

    #[test]
    fn reads_a_whole_array() {
        let c = parse(TWO.as_bytes()).unwrap();
        assert_eq!(c.cut_at, None);
        assert_eq!(c.conversations.len(), 2);
        assert_eq!(c.conversations[0].turns[1].role, Role::Gpt);
        assert_eq!(
            c.conversations[1].turns[0].role,
            Role::Other("system".into())
        );
        assert_eq!(c.conversations[1].turns[1].text, "ok \"quoted\"");
    }

    #[test]
    fn stops_at_a_cut_anywhere_in_the_last_element() {
        let whole = TWO.as_bytes();
        let second = TWO.find("{\"id\": \"b2\"").unwrap();
        let end = TWO.rfind('}').unwrap();
        for cut in second + 1..=end {
            let c = parse(&whole[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(c.conversations.len(), 1, "cut at {cut}");
            assert!(c.cut_at.is_some());
        }
        // Cut after the last element but before `]`: both elements, still a cut.
        let c = parse(&whole[..end + 1]).unwrap();
        assert_eq!((c.conversations.len(), c.cut_at.is_some()), (2, true));
    }

    #[test]
    fn damage_before_the_end_is_an_error_with_its_offset() {
        let bad = TWO.replacen("\"conversations\": [", "\"conversations\": 7, \"x\": [", 1);
        match parse(bad.as_bytes()) {
            Err(ShareGptError::Malformed { offset, .. }) => {
                assert_eq!(offset, TWO.find('{').unwrap())
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
        assert!(matches!(
            parse(b"  {\"id\": 1}"),
            Err(ShareGptError::NotAnArray { found: '{', .. })
        ));
        assert!(matches!(parse(b"[]"), Err(ShareGptError::Empty)));
        assert!(matches!(
            parse(b"[{\"id\": \"x\", \"conv"),
            Err(ShareGptError::Empty)
        ));
    }

    #[test]
    fn the_split_is_stable_and_about_a_tenth() {
        assert_eq!(split_of("a1"), split_of("a1"));
        let test = (0..20_000)
            .filter(|i| split_of(&format!("conv-{i}")) == Split::Test)
            .count();
        // 26/256 = 10.16%; 20k draws: sd ~0.2%.
        assert!((1_850..2_220).contains(&test), "{test} of 20000 held out");
    }
}
