//! A bounded, seeded mutation fuzzer on the stable toolchain: the same entry points as the cargo-fuzz targets
//! (fuzz/fuzz_targets/), over the seed corpus (fuzz/corpus/) and the crashers kept from fuzzing runs
//! (fuzz/regressions/). Mutations: byte flips, insertions of YAML-significant tokens, deletions, splices with
//! other seeds, duplicated and swapped lines, deep nesting and alias expansions. Asserts that no input panics
//! and that none takes long (a generous bound against exponential blow-ups; the figures are printed), and that the
//! run tested what it claims: most inputs reached the parser (not stopped at the UTF-8 check), and a share of them
//! got through it into validation or the guard (each entry point reports how far an input got).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stacksetd::fuzzing::Reach;

/// Iterations per target; each runs one mutated input. The template target does much more per input (IAM
/// extraction, allowlists, diffs, decisions), so it runs fewer.
const DESIRED_ITERATIONS: usize = 2500;
const TEMPLATE_ITERATIONS: usize = 1000;
/// Far above any input's real cost (milliseconds in debug): only a blow-up reaches it.
const SLOW: Duration = Duration::from_secs(10);
/// Of the mutated inputs, at least this share must reach the parser (be UTF-8)...
const MIN_PARSED_SHARE: f64 = 0.80;
/// ...and at least this share must get through it (a valid desired state; a template the guard then reviews),
/// or the mutations only ever test the parser's error paths.
const MIN_ACCEPTED_SHARE: f64 = 0.02;

/// splitmix64: a fixed seed gives the same inputs on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\t",
    "#",
    "'",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "!!int ",
    "!Ref ",
    "!GetAtt ",
    "!Sub ",
    "!!binary ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "~",
    "null",
    "true",
    "no",
    "0x1F",
    "0o17",
    "-1",
    "18446744073709551616",
    "99999999999999999999999",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "1_000",
    "012345678901",
    "\u{feff}",
    "\u{200f}",
    "\u{0}",
    "🦀",
    "é",
    "\r\n",
    "\\u0000",
    "Action",
    "NotAction",
    "Resource",
    "Effect",
    "Allow",
    "Deny",
    "*",
    "?",
    "Statement",
    "PolicyDocument",
    "Fn::Sub",
    "Fn::If",
    "AWS::IAM::Role",
    "AWS::IAM::ManagedPolicy",
    "spec",
    "regions",
    "accounts",
    "operationPreferences",
    "maxConcurrentCount",
    "failureToleranceCount",
    "maxConcurrentPercentage",
    "ROOT",
    "DIFFERENCE",
    "INTERSECTION",
    "UNION",
    "us-east-1",
    "apiVersion",
    "kind",
    "StackSetDeployment",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(data.len() + 1);
        match rng.below(11) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let byte = *rng.pick(&[
                    0u8, b'\t', b'\n', b':', b'-', b'&', b'*', b'!', 0x80, 0xff, b' ',
                ]);
                data.insert(at, byte);
            }
            2 | 3 => {
                let token = rng.pick(TOKENS).as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            4 if !data.is_empty() => {
                let len = rng.below(32).min(data.len() - at.min(data.len()));
                data.drain(at.min(data.len())..at.min(data.len()) + len);
            }
            5 => {
                // Splice: our head, another seed's tail.
                let other = rng.pick(corpus);
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            6 | 7 => {
                // Duplicate or swap lines.
                let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
                if lines.len() > 1 {
                    let i = rng.below(lines.len());
                    let j = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        let line = lines[i];
                        for _ in 0..1 + rng.below(3) {
                            lines.insert(j, line);
                        }
                    } else {
                        lines.swap(i, j);
                    }
                    data = lines.join(&b'\n');
                }
            }
            8 => {
                // Deep nesting at a random point.
                let depth = 1 + rng.below(300);
                let (open, close) = *rng.pick(&[("[", "]"), ("{a: ", "}"), ("- ", "")]);
                let mut nested = open.repeat(depth).into_bytes();
                nested.extend_from_slice(b"x");
                nested.extend(close.repeat(depth).into_bytes());
                data.splice(at..at, nested);
            }
            9 => {
                // Alias expansion: a small billion-laughs prefix, then references to it.
                let levels = 2 + rng.below(7);
                let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
                for level in 1..levels {
                    let refs = vec![format!("*a{}", level - 1); 10].join(", ");
                    bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
                }
                if rng.below(2) == 0 {
                    let mut out = bomb.into_bytes();
                    out.extend_from_slice(&data);
                    data = out;
                } else {
                    data.splice(at..at, bomb.into_bytes());
                }
            }
            _ => {
                data.truncate(at);
            }
        }
    }
    data.truncate(256 * 1024);
    data
}

fn seeds(dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        // libFuzzer's own additions (40-hex names, gitignored) are left out: the run is the same on every
        // checkout.
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !(name.len() == 40 && name.chars().all(|c| c.is_ascii_hexdigit()))
            })
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out
}

fn run(name: &str, entry: fn(&[u8]) -> Reach, dirs: &[&str], seed: u64, iterations: usize) {
    let seeds = seeds(dirs);
    assert!(
        seeds.len() >= 3,
        "{name}: the corpus in {dirs:?} is missing"
    );
    let corpus: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let check = |label: &str, data: &[u8], slowest: &mut (Duration, String)| -> Reach {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| entry(data)));
        let took = started.elapsed();
        let Ok(reach) = result else {
            let dump = std::env::temp_dir().join(format!("stacksetd-fuzz-{name}-crash"));
            std::fs::write(&dump, data).unwrap();
            panic!(
                "{name}: {label} panicked; the input is in {}",
                dump.display()
            );
        };
        assert!(took < SLOW, "{name}: {label} took {took:?}");
        if took > Duration::from_millis(500) {
            let dump = std::env::temp_dir().join(format!(
                "stacksetd-fuzz-{name}-slow-{}",
                label.replace(' ', "_")
            ));
            let _ = std::fs::write(&dump, data);
            println!(
                "{name}: {label} took {took:?}; the input is in {}",
                dump.display()
            );
        }
        if took > slowest.0 {
            *slowest = (took, label.to_string());
        }
        reach
    };

    let started = Instant::now();
    let mut slowest = (Duration::ZERO, String::new());
    // Every seed and regression input as it is, then mutations.
    let mut seeds_accepted = 0;
    for (path, bytes) in &seeds {
        if check(&path.display().to_string(), bytes, &mut slowest) == Reach::Accepted {
            seeds_accepted += 1;
        }
    }
    let mut rng = Rng(seed);
    let mut bytes_total = 0usize;
    let mut reached: BTreeMap<Reach, usize> = BTreeMap::new();
    for i in 0..iterations {
        let base = rng.pick(&corpus).clone();
        let input = mutate(&mut rng, &base, &corpus);
        bytes_total += input.len();
        let reach = check(
            &format!("iteration {i} (seed {seed:#x})"),
            &input,
            &mut slowest,
        );
        *reached.entry(reach).or_default() += 1;
    }
    println!(
        "{name}: {} seeds ({seeds_accepted} accepted) + {iterations} mutated inputs ({} KiB) in {:?}; how far they \
         got: {reached:?}; slowest {:?} ({})",
        seeds.len(),
        bytes_total / 1024,
        started.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(
        seeds_accepted > 0,
        "{name}: no seed of {dirs:?} gets through the parser"
    );
    let share = |n: usize| n as f64 / iterations as f64;
    let parsed = iterations - reached.get(&Reach::NotText).copied().unwrap_or(0);
    let accepted = reached.get(&Reach::Accepted).copied().unwrap_or(0);
    assert!(
        share(parsed) >= MIN_PARSED_SHARE,
        "{name}: only {parsed} of {iterations} inputs reached the parser: {reached:?}"
    );
    assert!(
        share(accepted) >= MIN_ACCEPTED_SHARE,
        "{name}: only {accepted} of {iterations} inputs got through the parser: {reached:?}"
    );
}

/// Iterations of a run: the constants above, or `STACKSETD_FUZZ_ITERATIONS` for a long run (and its seed,
/// `STACKSETD_FUZZ_SEED`).
fn iterations(default: usize) -> usize {
    std::env::var("STACKSETD_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fuzz_seed(default: u64) -> u64 {
    std::env::var("STACKSETD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn desired_state_parser_never_panics() {
    run(
        "desired",
        stacksetd::fuzzing::desired,
        &["fuzz/corpus/desired", "fuzz/regressions/desired"],
        fuzz_seed(0x5EED_0001),
        iterations(DESIRED_ITERATIONS),
    );
}

#[test]
fn template_parser_never_panics() {
    run(
        "template",
        stacksetd::fuzzing::template,
        &["fuzz/corpus/template", "fuzz/regressions/template"],
        fuzz_seed(0x5EED_0002),
        iterations(TEMPLATE_ITERATIONS),
    );
}

/// Found by this smoke run: a YAML template with nested aliases made serde_norway expand them for seconds
/// (debug) before its own limit; the template parser now counts the expansion first and refuses it at once.
#[test]
fn a_template_alias_bomb_is_refused_before_it_expands() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    let started = Instant::now();
    let err = stacksetd::template::parse_document(&bomb).expect_err("an alias bomb is refused");
    println!("alias bomb refused in {:?}: {err}", started.elapsed());
    assert!(
        err.contains("aliases expand to more than 100000 nodes"),
        "{err}"
    );
    // A template that uses an alias or two still parses.
    let doc = stacksetd::template::parse_document(
        "Resources:\n  A: &r {Type: AWS::S3::Bucket}\n  B: *r\n",
    )
    .unwrap();
    assert_eq!(doc["Resources"]["B"]["Type"], "AWS::S3::Bucket");
}
