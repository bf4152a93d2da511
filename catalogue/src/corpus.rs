//! Local text corpora, laid out the way tenbit's benchmarks, probes and tests read them: a
//! directory of `NAME.response.txt` files (LLM responses), each with an optional
//! `NAME.prompt.txt` (the prompt it answers, which both ends of a link know), and, for machine
//! data, plain files coded without a prompt. One reader, so every tool sees the same corpus.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{io_err, CatalogueError};

/// One text of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `NAME` of `NAME.response.txt`, or the plain file's name.
    pub name: String,
    /// The prompt the text answers, when a `NAME.prompt.txt` exists.
    pub prompt: Option<Vec<u8>>,
    /// The text.
    pub text: Vec<u8>,
}

/// Every response in `dir` with its prompt, sorted by name; with `plain`, also every other
/// file that is neither a prompt nor hidden. An unreadable directory is an error; an empty one
/// is returned empty (callers decide whether that is acceptable).
pub fn read_dir(dir: &Path, plain: bool) -> Result<Vec<Sample>, CatalogueError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || name.ends_with(".prompt.txt") {
            continue;
        }
        let (name, prompt) = match name.strip_suffix(".response.txt") {
            Some(stem) => {
                let pp = dir.join(format!("{stem}.prompt.txt"));
                let prompt = match fs::read(&pp) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_err(&pp)(e)),
                };
                (stem.to_string(), prompt)
            }
            None if plain => (name, None),
            None => continue,
        };
        out.push(Sample {
            name,
            prompt,
            text: fs::read(&p).map_err(io_err(&p))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_prompts_and_plain_files() {
        let d = std::env::temp_dir().join(format!("tenbit-corpus-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("02-b.response.txt"), "B").unwrap();
        fs::write(d.join("01-a.response.txt"), "A").unwrap();
        fs::write(d.join("01-a.prompt.txt"), "PA").unwrap();
        fs::write(d.join("log.csv"), "1,2").unwrap();
        fs::write(d.join(".hidden"), "x").unwrap();
        let only = read_dir(&d, false).unwrap();
        assert_eq!(
            only.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["01-a", "02-b"]
        );
        assert_eq!(only[0].prompt.as_deref(), Some(&b"PA"[..]));
        assert_eq!(only[1].prompt, None);
        let all = read_dir(&d, true).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].name, "log.csv");
        assert!(read_dir(&d.join("missing"), true).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
