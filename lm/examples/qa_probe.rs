//! Experiment: print QA transcripts of a model with a scripted oracle (alternating yes/no), to
//! see what questions a small model asks under each protocol revision.
//!
//!     cargo run --release -p tenbit-lm --example qa_probe -- MODEL K PROMPT...

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, SessionOptions};
use tenbit_lm::codec::LmCodec;
use tenbit_lm::qa::{Oracle, Protocol};

struct Alternate;
impl Oracle for Alternate {
    fn answer(
        &mut self,
        i: usize,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<bool, tenbit_lm::qa::OracleError> {
        Ok(i.is_multiple_of(2))
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let path = match catalogue::find(&a[1]) {
        Some(spec) => catalogue::ensure(spec, &mut |_| {}).unwrap(),
        None => a[1].clone().into(),
    };
    let k: usize = a[2].parse().unwrap();
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    for p in &a[3..] {
        let (_, t) = c
            .encode_qa_with(p.as_bytes(), k, Protocol::CURRENT, &mut Alternate)
            .unwrap();
        println!("PROMPT {p}\nINITIAL {}\n", t.initial_answer);
        for (q, b) in &t.questions {
            println!("  Q {q:?} -> {b}");
        }
        println!("FINAL {}\n", t.final_answer);
    }
}
