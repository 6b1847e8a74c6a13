//! Differential test of the template reader against cfn-lint's decoder (tests/guard_oracle/cfn_decode.py, run
//! with the project's virtualenv Python, where cfn-lint is pinned beside moto): CloudFormation reads YAML with
//! YAML 1.1 scalars, and so must stacksetd, or the guard judges a document CloudFormation never deploys.
//!
//! For every template of the vendor corpus and config/templates, and for generated YAML covering the YAML
//! 1.1/1.2 scalar differences, short-form tags, quoting, keys, anchors and nesting:
//! - stacksetd reads it and cfn-lint reads it: the two documents are equal (a date cfn-lint reads as a date
//!   is the text stacksetd keeps);
//! - stacksetd refuses it: the refusal is one of the reader's documented ones (a scalar to quote, a tag, a
//!   second document, a duplicate or merge key), never a read that differs.
//!
//! `STACKSETD_ORACLE_CASES` sets how many documents are generated (default 600) and `STACKSETD_ORACLE_SEED`
//! the seed (default: a fixed one, so CI is repeatable; the seed is printed).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common;

fn oracle(input: &[(String, String)]) -> serde_json::Map<String, Value> {
    let list: Vec<Value> = input
        .iter()
        .map(|(name, text)| json!({"name": name, "text": text}))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guard_oracle/cfn_decode.py");
    let mut child = Command::new(common::python())
        .arg(&script)
        .arg("--stdin-json-list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the virtualenv's Python starts (scripts/setup-moto.sh installs it)");
    let body = serde_json::to_vec(&list).expect("json");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().expect("the oracle ran");
    assert!(
        out.status.success(),
        "cfn_decode.py failed (is cfn-lint in the virtualenv? scripts/setup-moto.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("the oracle prints JSON") {
        Value::Object(map) => map,
        other => panic!("the oracle printed {other}"),
    }
}

/// The oracle's value with its encodings of what JSON cannot say undone where stacksetd's reading is defined:
/// a date is its text. Anything else encoded stays encoded (and so differs from whatever stacksetd read).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(map) if map.len() == 1 && map.contains_key("__timestamp__") => {
            map["__timestamp__"].clone()
        }
        // A decimal key: CloudFormation's key is its digits, which is what stacksetd reads (other numeric keys it
        // refuses).
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let k = k.strip_prefix("__key__:int:").unwrap_or(k);
                    (k.to_string(), normalize(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        other => other.clone(),
    }
}

/// Numbers compared by value (1000 and 1000.0 are one number to CloudFormation's JSON reader too).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The refusals the reader documents (src/template/yaml.rs, src/template/parse.rs).
const DOCUMENTED_REFUSALS: &[&str] = &[
    "quote it",
    "the YAML tag",
    "a tagged mapping key",
    "second YAML document",
    "duplicate key",
    "merge key",
    "alias",
    "a collection used as a mapping key",
];

struct Outcome {
    compared: usize,
    refused: usize,
}

fn differential(docs: &[(String, String)]) -> Outcome {
    let theirs = oracle(docs);
    let mut outcome = Outcome {
        compared: 0,
        refused: 0,
    };
    let mut failures = Vec::new();
    for (name, text) in docs {
        let ours = stacksetd::template::parse_document(text);
        let reference = &theirs[name];
        match (ours, reference.get("ok")) {
            (Ok(ours), Some(theirs)) => {
                outcome.compared += 1;
                let theirs = normalize(theirs);
                if !same(&ours, &theirs) {
                    failures.push(format!(
                        "{name}: read differently\n--- text\n{text}\n--- stacksetd\n{ours}\n--- cfn-lint\n{theirs}"
                    ));
                }
            }
            (Ok(ours), None) => failures.push(format!(
                "{name}: cfn-lint refuses it ({}) but stacksetd reads it as {ours}\n{text}",
                reference.get("error").unwrap_or(&Value::Null)
            )),
            (Err(why), _) => {
                outcome.refused += 1;
                if !DOCUMENTED_REFUSALS.iter().any(|r| why.contains(r))
                    && reference.get("ok").is_some()
                {
                    failures.push(format!(
                        "{name}: refused for an undocumented reason: {why}\n{text}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documents differ:\n\n{}",
        failures.len(),
        docs.len(),
        failures[..failures.len().min(12)].join("\n\n")
    );
    outcome
}

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            corpus_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json" | "template")
        ) {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_template_is_read_as_cfn_lint_reads_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    corpus_files(&root.join("tests/guard_corpus"), &mut files);
    corpus_files(&root.join("config/templates"), &mut files);
    files.sort();
    let docs: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            (
                p.strip_prefix(root).unwrap_or(p).display().to_string(),
                std::fs::read_to_string(p).expect("utf-8"),
            )
        })
        .collect();
    let outcome = differential(&docs);
    // Every real template is read, none refused.
    assert_eq!(outcome.refused, 0, "a real template was refused");
    assert_eq!(outcome.compared, docs.len());
    assert!(
        docs.len() >= 60,
        "the corpus is there ({} files)",
        docs.len()
    );
}

/// A small deterministic generator (xorshift): no dependency, and a printed seed replays a failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Plain scalars whose YAML 1.1 and 1.2 readings differ, or that look like they might, which stacksetd reads.
const SCALARS: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "Yes",
    "NO",
    "On",
    "OFF",
    "y",
    "n",
    "Y",
    "N",
    "true",
    "False",
    "TRUE",
    "tRue",
    "yEs",
    "null",
    "Null",
    "NULL",
    "~",
    "0",
    "-0",
    "12",
    "-12",
    "0o755",
    "0X1F",
    "1.5",
    "-1.5",
    "1.",
    ".5",
    "1e3",
    "1E3",
    "1.0e+3",
    "1.0e3",
    "6.8523015e+5",
    "2010-09-09",
    "2012-10-17",
    "abc",
    "a b",
    "123456789012",
    "arn:aws:iam::123456789012:root",
    "ec2:Describe*",
    "10.0.0.0/16",
    "1.2.3",
    "0.0",
    "-",
    "::",
    "<<x",
];

/// The forms YAML 1.1 gives a value unlike their text: stacksetd refuses them (quote it).
const REFUSED: &[&str] = &[
    "+12",
    "0755",
    "08",
    "00",
    "0x1F",
    "0b101",
    "1_000",
    "1:30",
    "190:20:30",
    "-.5",
    ".inf",
    "-.Inf",
    ".nan",
    "2001-12-14t21:59:43.10-05:00",
    "2001-1-5",
    "=",
    "99999999999999999999",
];

const TAGS: &[&str] = &[
    "!Ref",
    "!Sub",
    "!GetAtt",
    "!Base64",
    "!ImportValue",
    "!Condition",
    "!GetAZs",
    "!Foo",
    "!!str",
];

fn scalar(rng: &mut Rng) -> String {
    let s = if rng.below(12) == 0 {
        rng.pick(REFUSED)
    } else {
        rng.pick(SCALARS)
    };
    match rng.below(6) {
        0 => format!("'{s}'"),
        1 => format!("\"{s}\""),
        2 => format!("{} {s}", rng.pick(TAGS)),
        _ => s.to_string(),
    }
}

fn key(rng: &mut Rng, i: usize) -> String {
    match rng.below(8) {
        0 => rng.pick(SCALARS).to_string(),
        1 => format!("'{}'", rng.pick(REFUSED)),
        _ => format!("K{i}"),
    }
}

fn value(rng: &mut Rng, depth: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match if depth > 3 { 0 } else { rng.below(9) } {
        0..=3 => format!(" {}\n", scalar(rng)),
        4 => {
            let items: Vec<String> = (0..rng.below(4)).map(|_| scalar(rng)).collect();
            format!(" [{}]\n", items.join(", "))
        }
        5 => {
            let tag = rng.pick(&[
                "!If",
                "!Equals",
                "!Join",
                "!Select",
                "!FindInMap",
                "!And",
                "!Split",
            ]);
            let items: Vec<String> = (0..1 + rng.below(3)).map(|_| scalar(rng)).collect();
            format!(" {tag} [{}]\n", items.join(", "))
        }
        6 => {
            let mut out = String::from("\n");
            for _ in 0..1 + rng.below(3) {
                out.push_str(&format!("{pad}  -{}", value(rng, depth + 1, indent + 4)));
            }
            out
        }
        _ => {
            let mut out = String::from("\n");
            for i in 0..1 + rng.below(4) {
                out.push_str(&format!(
                    "{pad}  {}:{}",
                    key(rng, i),
                    value(rng, depth + 1, indent + 2)
                ));
            }
            out
        }
    }
}

fn generated(rng: &mut Rng, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let mut text = String::new();
            if rng.below(3) == 0 {
                text.push_str("AWSTemplateFormatVersion: 2010-09-09\n");
            }
            for j in 0..1 + rng.below(5) {
                text.push_str(&format!("{}:{}", key(rng, j), value(rng, 0, 0)));
            }
            if rng.below(10) == 0 {
                text.push_str("Anchored: &a {x: yes}\nAgain: *a\n");
            }
            (format!("generated-{i}"), text)
        })
        .collect()
}

#[test]
fn generated_yaml_over_the_scalar_differences_is_read_as_cfn_lint_reads_it_or_refused() {
    let cases: usize = std::env::var("STACKSETD_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("STACKSETD_ORACLE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0c1d_2024);
    println!("oracle seed {seed} (replay: STACKSETD_ORACLE_SEED={seed}), {cases} documents");
    let docs = generated(&mut Rng(seed.wrapping_mul(2).wrapping_add(1)), cases);
    let outcome = differential(&docs);
    println!(
        "FIGURE oracle: {} documents, {} read identically, {} refused",
        docs.len(),
        outcome.compared,
        outcome.refused
    );
    // Both sides are exercised: most documents are read and compared, some are refused.
    assert!(outcome.compared * 3 >= docs.len(), "too few compared");
    assert!(outcome.refused > 0, "no refusal exercised");
}

/// data/resource-types.tsv is what scripts/refresh-resource-types.py makes of the schemas of the cfn-lint the
/// virtualenv pins: a table edited by hand, or left behind by a cfn-lint upgrade, fails here.
#[test]
fn the_resource_type_table_is_what_the_pinned_schemas_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(common::python())
        .arg(root.join("scripts/refresh-resource-types.py"))
        .arg("--check")
        .current_dir(root)
        .output()
        .expect("the refresh script runs");
    assert!(
        out.status.success(),
        "data/resource-types.tsv is stale or the script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
