//! The guard's cost: judging time and peak heap for the largest real templates of tests/guard_corpus and for
//! adversarial ones built to be expensive (a policy naming 300 roles x 300 actions x 300 resources, a 1 MB
//! template, nested choices that exhaust the work budget). Budget: any template up to 1 MB judged in
//! under 1 s and 64 MB, whatever its shape. Peak heap is measured exactly, with a counting allocator around each
//! case. Run by scripts/bench.sh; report in target/bench-guard.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stacksetd::desired::PolicyLevel;
use stacksetd::guard::{self, Parameters};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Time (best of `RUNS`) and peak heap above the starting point of `f`.
fn measure<T>(mut f: impl FnMut() -> T) -> (Duration, usize, T) {
    const RUNS: usize = 3;
    let mut best = Duration::MAX;
    let mut peak = 0;
    let mut last = None;
    for _ in 0..RUNS {
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = Instant::now();
        let out = f();
        best = best.min(started.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed).saturating_sub(base));
        last = Some(out);
    }
    (best, peak, last.expect("ran"))
}

fn corpus(file: &str) -> (Value, usize) {
    let path = format!("{}/tests/guard_corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (
        stacksetd::template::parse_document(&text).expect("parses"),
        text.len(),
    )
}

fn role_with(statements: Vec<Value>, i: usize) -> Value {
    json!({"Type": "AWS::IAM::Role", "Properties": {"RoleName": format!("Role{i}"),
        "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "x"}}}]},
        "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": statements}}]}})
}

/// One managed policy naming 300 roles, 300 actions and 300 resources (the product is 27 million grants).
fn combinatorial(extra: bool) -> Value {
    let mut actions: Vec<String> = (0..300).map(|i| format!("ec2:DescribeThing{i}")).collect();
    if extra {
        actions.push("ec2:StopInstances".into());
    }
    let resources: Vec<String> = (0..300)
        .map(|i| format!("arn:aws:ec2:*:*:thing/{i}*"))
        .collect();
    let roles: Vec<Value> = (0..300)
        .map(|i| json!({"Ref": format!("Role{i}")}))
        .collect();
    let mut resources_section = serde_json::Map::new();
    resources_section.insert(
        "P".into(),
        json!({"Type": "AWS::IAM::ManagedPolicy", "Properties": {"Roles": roles,
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}}}),
    );
    for i in 0..300 {
        resources_section.insert(format!("Role{i}"), role_with(vec![], i));
    }
    json!({"Resources": resources_section})
}

/// About 1 MB: 160 roles with 12 statements of 8 actions and 4 resources each.
fn megabyte(extra: bool) -> Value {
    let mut resources = serde_json::Map::new();
    for i in 0..160 {
        let statements: Vec<Value> = (0..12)
            .map(|j| {
                let mut actions: Vec<String> = (0..8).map(|k| format!("svc{j}:GetResourceNumber{k}Detail")).collect();
                if extra && i == 159 && j == 11 {
                    actions.push("s3:GetObject".into());
                }
                json!({"Sid": format!("S{i}x{j}"), "Effect": "Allow", "Action": actions,
                    "Resource": (0..4).map(|r| format!("arn:aws:svc{j}:us-east-1:111122223333:thing/{i}-{r}-*")).collect::<Vec<_>>()})
            })
            .collect();
        resources.insert(format!("Role{i}"), role_with(statements, i));
    }
    json!({"Resources": resources})
}

/// Nested Fn::If over 40 conditions on the Region: 2^40 alternatives, refused when the budget runs out.
fn choices() -> Value {
    let mut conditions = serde_json::Map::new();
    let mut value = json!("ec2:DescribeInstances");
    for i in 0..40 {
        conditions.insert(
            format!("C{i}"),
            json!({"Fn::Equals": [{"Ref": "AWS::Region"}, format!("r{i}")]}),
        );
        value = json!({"Fn::Join": ["", [{"Fn::If": [format!("C{i}"), "a", "b"]}, value]]});
    }
    json!({"Conditions": conditions, "Resources": {"R": role_with(vec![json!({"Effect": "Allow", "Action": value, "Resource": "*"})], 0)}})
}

/// `C0` refers to `C1`, ... to `Cn`: each hop is one level of evaluation.
fn condition_chain(n: usize) -> Value {
    let mut conditions = serde_json::Map::new();
    for i in 0..n {
        conditions.insert(format!("C{i}"), json!({"Condition": format!("C{}", i + 1)}));
    }
    conditions.insert(
        format!("C{n}"),
        json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}),
    );
    json!({"Conditions": conditions, "Resources": {"R": {
        "Type": "AWS::IAM::Role", "Condition": "C0",
        "Properties": {"AssumeRolePolicyDocument": {"Statement": []}}}}})
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benchmark not run under cargo test; run it with cargo bench (see scripts/bench.sh)"
        );
        return;
    }
    let params = Parameters::new();
    let mut rows = Vec::new();
    let mut row =
        |name: &str, bytes: usize, what: &str, (time, peak, outcome): (Duration, usize, String)| {
            println!(
                "{name:<58} {bytes:>9} B  {what:<16} {:>9.1} ms  {:>7.1} MB  {outcome}",
                time.as_secs_f64() * 1000.0,
                peak as f64 / 1e6
            );
            rows.push(format!(
                "| {name} | {bytes} | {what} | {:.1} ms | {:.1} MB | {outcome} |",
                time.as_secs_f64() * 1000.0,
                peak as f64 / 1e6
            ));
        };
    let outcome = |r: &Result<guard::Judgment, guard::TooComplex>| match r {
        Ok(j) => format!(
            "{} ({} findings, {} cases)",
            if j.widening {
                "widening"
            } else {
                "not widening"
            },
            j.findings.len(),
            j.cases
        ),
        Err(e) => format!(
            "refused: {}",
            e.to_string().split(" (").next().unwrap_or("")
        ),
    };

    for (old, new) in [
        (
            "crowdstrike/crowdstrike_init_stack@114465655b.yaml",
            "crowdstrike/crowdstrike_init_stack@94cb4372e5.yaml",
        ),
        (
            "lacework/org-cfg-member@ce596cf821.yml",
            "lacework/org-cfg-member@6bf9164950.yml",
        ),
        (
            "datadog/datadog_integration_role@44402ecc78.yaml",
            "datadog/datadog_integration_role@1e903ee3c0.yaml",
        ),
    ] {
        let ((a, _), (b, bytes)) = (corpus(old), corpus(new));
        let name = format!("real: {}", new.split('@').next().unwrap_or(new));
        row(
            &name,
            bytes,
            "judge",
            measure(|| outcome(&guard::judge(&a, &b, &params))),
        );
        row(
            &name,
            bytes,
            "review DataOnly",
            measure(
                || match guard::review(&b, &params, Some(PolicyLevel::DataOnly)) {
                    Ok(r) => format!(
                        "{} offenses, {} warnings",
                        r.check.offenses.len(),
                        r.check.warnings.len()
                    ),
                    Err(e) => e.to_string(),
                },
            ),
        );
    }
    let (a, b) = (combinatorial(false), combinatorial(true));
    let bytes = b.to_string().len();
    row(
        "adversarial: 300 roles x 300 actions x 300 resources",
        bytes,
        "judge",
        measure(|| outcome(&guard::judge(&a, &b, &params))),
    );
    let (a, b) = (megabyte(false), megabyte(true));
    let bytes = b.to_string().len();
    row(
        "adversarial: 1 MB, 160 roles x 12 statements",
        bytes,
        "judge",
        measure(|| outcome(&guard::judge(&a, &b, &params))),
    );
    row(
        "adversarial: 1 MB, 160 roles x 12 statements",
        bytes,
        "review DataOnly",
        measure(
            || match guard::review(&b, &params, Some(PolicyLevel::DataOnly)) {
                Ok(r) => format!("{} offenses", r.check.offenses.len()),
                Err(e) => e.to_string(),
            },
        ),
    );
    let c = choices();
    let bytes = c.to_string().len();
    row(
        "adversarial: 40 nested Fn::If (2^40 alternatives)",
        bytes,
        "judge",
        measure(|| outcome(&guard::judge(&a, &c, &params))),
    );

    // Reading: the 1 MB template as YAML text, through the YAML 1.1 reader (block style, as vendors write it).
    let yaml = serde_norway::to_string(&b).expect("yaml");
    row(
        "adversarial: 1 MB, 160 roles x 12 statements, as YAML",
        yaml.len(),
        "parse",
        measure(|| match stacksetd::template::parse_document(&yaml) {
            Ok(_) => "read".to_string(),
            Err(e) => e,
        }),
    );
    // Last: a chain of 20,000 `Condition` references (about 600 KB), the shape that once overflowed the stack.
    let chain = condition_chain(20_000);
    let text = chain.to_string();
    let bytes = text.len();
    row(
        "adversarial: a chain of 20,000 Condition references",
        bytes,
        "parse + judge",
        measure(|| match stacksetd::template::parse_document(&text) {
            Ok(doc) => outcome(&guard::judge(&a, &doc, &params)),
            Err(e) => format!("refused: {e}"),
        }),
    );

    let report = format!(
        "# Guard benchmark\n\n| template | bytes | what | time (best of 3) | peak heap | outcome |\n|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    let path = format!("{}/target/bench-guard.md", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, &report).expect("write the report");
    println!("report: {path}");
}
