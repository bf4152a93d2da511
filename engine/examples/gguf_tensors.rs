//! List a GGUF's tensors: name, ggml type, dims; then a count per type.
//! `cargo run --release -p tenbit-engine --example gguf_tensors -- MODEL.gguf [--all]`

use std::collections::BTreeMap;

use tenbit_engine::gguf::Gguf;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: gguf_tensors MODEL.gguf [--all]");
    let all = args.next().as_deref() == Some("--all");
    let g = Gguf::open(&path).expect("open gguf");
    let mut count: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in &g.tensors {
        if all {
            println!(
                "{:40} {:8} {:?}",
                t.name,
                format!("{:?}", t.ggml_type),
                t.dims
            );
        }
        let e = count.entry(format!("{:?}", t.ggml_type)).or_default();
        e.0 += 1;
        e.1 += t.size as u64;
    }
    for (ty, (n, bytes)) in count {
        println!("{ty:8} {n:4} tensors {:10.1} MB", bytes as f64 / 1e6);
    }
}
