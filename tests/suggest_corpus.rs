//! The suggestion classifiers against a corpus of realistic values and
//! near-misses (tests/data/suggest_corpus.tsv). Every line must classify as
//! written; the corpus says why each near-miss is one.

use sealgate::policy::suggest::{classify_str, ValueClass};

fn class(name: &str) -> Option<ValueClass> {
    match name {
        "email" => Some(ValueClass::Email),
        "card_number" => Some(ValueClass::CardNumber),
        "national_id" => Some(ValueClass::NationalId),
        "phone" => Some(ValueClass::Phone),
        "iban" => Some(ValueClass::Iban),
        "secret" => Some(ValueClass::Secret),
        "none" => None,
        other => panic!("unknown class {other:?} in the corpus"),
    }
}

#[test]
fn every_corpus_line_classifies_as_written() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/suggest_corpus.tsv"
    ))
    .unwrap();
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (want, value) = line.split_once('\t').expect("class<TAB>value");
        n += 1;
        let got = classify_str(value);
        if got != class(want) {
            wrong.push(format!("{value:?}: want {want}, got {got:?}"));
        }
    }
    assert!(n >= 60, "the corpus is there: {n} lines");
    assert!(
        wrong.is_empty(),
        "{} of {n} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
