//! Input and output for the CLIs, with the guarantees a user expects from a compressor:
//! bounded reads (a 10 MB paste into a 256 KiB tool fails fast and small), `-` for stdio, and
//! outputs written atomically so an error never leaves a half-written file behind.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Why an input could not be read or an output written.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Reading failed.
    #[error("cannot read {what}")]
    Read {
        /// The file, or "standard input".
        what: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Writing failed (the destination is left as it was).
    #[error("cannot write {what}")]
    Write {
        /// The file, or "standard output".
        what: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The input exceeds the limit; at most `max + 1` bytes were read to find out.
    #[error("{what} is larger than {max} bytes (raise the limit with --max-size)")]
    TooLarge {
        /// The file, or "standard input".
        what: String,
        /// The limit in bytes.
        max: u64,
    },
}

fn describe(path: Option<&Path>) -> String {
    match path {
        None => "standard input".into(),
        Some(p) if p == Path::new("-") => "standard input".into(),
        Some(p) => p.display().to_string(),
    }
}

/// Read a whole input (a path, `-` or `None` for stdin), refusing more than `max` bytes.
/// Reads at most `max + 1` bytes, so memory stays bounded whatever the input's size.
pub fn read_input(path: Option<&Path>, max: u64) -> Result<Vec<u8>, IoError> {
    let what = describe(path);
    let err = |source| IoError::Read {
        what: what.clone(),
        source,
    };
    let reader: Box<dyn Read> = match path {
        None => Box::new(io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(io::stdin().lock()),
        Some(p) => Box::new(fs::File::open(p).map_err(err)?),
    };
    let mut buf = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(err)?;
    if buf.len() as u64 > max {
        return Err(IoError::TooLarge { what, max });
    }
    Ok(buf)
}

/// Write `bytes` to a path (atomically: temp file + rename) or to stdout for `-`/`None`.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<(), IoError> {
    match path {
        None => write_stdout(bytes),
        Some(p) if p == Path::new("-") => write_stdout(bytes),
        Some(p) => {
            let what = p.display().to_string();
            let err = |source| IoError::Write {
                what: what.clone(),
                source,
            };
            let tmp = temp_sibling(p);
            let res = (|| {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                fs::rename(&tmp, p)
            })();
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res.map_err(err)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), IoError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|source| IoError::Write {
            what: "standard output".into(),
            source,
        })
}

fn temp_sibling(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tenbit-tmp.{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_input_without_reading_it_all() {
        let dir = std::env::temp_dir().join(format!("tenbit-io-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("big");
        fs::write(&p, vec![b'a'; 1000]).unwrap();
        assert!(matches!(
            read_input(Some(&p), 999),
            Err(IoError::TooLarge { .. })
        ));
        assert_eq!(read_input(Some(&p), 1000).unwrap().len(), 1000);
        let out = dir.join("out");
        write_output(Some(&out), b"xyz").unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"xyz");
        assert!(read_input(Some(&dir.join("missing")), 10).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
