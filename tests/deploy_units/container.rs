//! deploy/container/Containerfile, read instruction by instruction (Docker is not available to the tests).

use super::*;

/// One Containerfile instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.split_whitespace().collect::<Vec<_>>().join(" "),
                });
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Containerfile ends in a continuation line"
    );
    out
}

/// The global ARGs (before the first FROM) with their defaults, and the FROM lines with them substituted.
fn global_args(all: &[Instruction]) -> std::collections::BTreeMap<String, String> {
    all.iter()
        .take_while(|i| i.keyword != "FROM")
        .map(|i| {
            assert_eq!(i.keyword, "ARG", "only ARGs come before the first FROM");
            let (name, value) = i.args.split_once('=').expect("a global ARG has a default");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The instructions grouped by stage (each starting at its FROM).
fn stages(all: &[Instruction]) -> Vec<&[Instruction]> {
    let all = &all[global_args(all).len()..];
    let starts: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(
        starts.first() == Some(&0),
        "a Containerfile starts with FROM"
    );
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| &all[start..starts.get(k + 1).copied().unwrap_or(all.len())])
        .collect()
}

#[test]
fn the_containerfile_builds_in_one_stage_and_runs_as_non_root_in_another_with_a_working_healthcheck()
 {
    let all = instructions(&read("deploy/container/Containerfile"));
    let args = global_args(&all);
    let stages = stages(&all);
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, runtime) = (stages[0], stages[stages.len() - 1]);
    // Both base images come from global ARGs, so a digest pin passed with --build-arg always applies, and the
    // file says how to pin them.
    let image_of = |from: &str| -> String {
        let name = from.split_whitespace().next().unwrap_or_default();
        let arg = name
            .strip_prefix("${")
            .and_then(|n| n.strip_suffix('}'))
            .unwrap_or_else(|| {
                panic!("FROM {from}: the image is a global ARG (pinnable by digest at build time)")
            });
        args.get(arg)
            .cloned()
            .unwrap_or_else(|| panic!("no ARG {arg}"))
    };
    let build_image = image_of(&build[0].args);
    let runtime_image = image_of(&runtime[0].args);
    let text = read("deploy/container/Containerfile");
    assert!(
        text.contains("@sha256:"),
        "the Containerfile says how to pin the images by digest"
    );

    let build_name = build[0]
        .args
        .rsplit_once(" AS ")
        .or_else(|| build[0].args.rsplit_once(" as "))
        .map(|(_, name)| name.to_string())
        .expect("the build stage is named (FROM ... AS build)");
    assert!(
        build_image.contains("rust:"),
        "the build stage uses a Rust image"
    );
    assert!(
        build
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")),
        "the binary is built with the locked dependency versions"
    );
    // Everything the build copies in must exist (a renamed directory would break the image build).
    for copy in build.iter().filter(|i| i.keyword == "COPY") {
        let parts: Vec<&str> = copy.args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo(source).exists(),
                "COPY {source}: no such path in the repository"
            );
        }
    }

    assert!(
        !runtime_image.contains("rust:"),
        "the runtime image carries no toolchain"
    );
    assert!(
        runtime_image.contains("distroless"),
        "the runtime image has no shell or package manager: {runtime_image}"
    );
    for i in runtime {
        assert!(
            i.keyword != "RUN",
            "the runtime stage runs nothing (no package manager to run): RUN {}",
            i.args
        );
        assert!(
            !i.args.contains("curl"),
            "no curl in the runtime image: {} {}",
            i.keyword,
            i.args
        );
    }
    assert!(
        runtime.iter().any(|i| i.keyword == "COPY"
            && i.args.starts_with(&format!("--from={build_name} "))
            && i.args.ends_with(INSTALLED_BINARY)),
        "the runtime stage copies the binary from the build stage to {INSTALLED_BINARY}"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "ENTRYPOINT" && i.args.contains(INSTALLED_BINARY))
    );

    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|n| n != 0),
        "USER {user}: a numeric non-root uid, so Kubernetes' runAsNonRoot can verify it"
    );

    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .map(|i| i.args.clone())
        .expect("the runtime stage has a HEALTHCHECK");
    // stacksetd's own probe: it reads `listen` (the image's STACKSETD_LISTEN) and asks loopback.
    assert!(
        healthcheck.contains(&format!("[\"{INSTALLED_BINARY}\", \"health\"]")),
        "HEALTHCHECK runs `stacksetd health`: {healthcheck}"
    );
    // Credentials never as plain -e in the documented run line.
    for secret in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            !text.contains(&format!("-e {secret}")),
            "the Containerfile passes {secret} with -e"
        );
        for doc in ["README.md", "docs/operations.md"] {
            assert!(
                !read(doc).contains(&format!("-e {secret}")),
                "{doc} passes {secret} with -e"
            );
        }
    }
    assert!(
        runtime.iter().any(|i| i.keyword == "ENV"
            && i.args
                .contains(&format!("STACKSETD_LISTEN=0.0.0.0:{HTTP_PORT}"))),
        "in a container the daemon must listen beyond loopback"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "EXPOSE" && i.args == HTTP_PORT.to_string())
    );

    let ignored = read(".dockerignore");
    for heavy in ["target", ".git", ".venv"] {
        assert!(
            ignored.lines().any(|l| l.trim() == heavy),
            ".dockerignore keeps {heavy} out of the build context"
        );
    }
}

/// Every file the build reads lies under a path the build stage copies. What the build reads is what the compiler
/// itself recorded: the dep-info files of every workspace crate (every source file and every
/// `include_str!`/`include_bytes!` target rustc opened), the build script, the manifests and lock file, and
/// the bench targets the manifest declares
/// (cargo loads them with the manifest). The image build was once broken by a data/ directory the Containerfile
/// did not copy, while a test only saw that what it copies exists. (No container tool runs on the CI machine, so
/// the build itself is not run here.)
#[test]
fn the_build_stage_copies_every_file_the_build_reads() {
    let all = instructions(&read("deploy/container/Containerfile"));
    let stages = stages(&all);
    let copied: Vec<String> = stages[0]
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| {
            let parts: Vec<&str> = i.args.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|p| p.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let root = std::fs::canonicalize(repo(".")).unwrap();
    let mut read_by_build: Vec<String> = workspace_dep_info()
        .iter()
        .flat_map(|deps| {
            deps.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        // rustc names a workspace crate's files relative to the workspace root, where cargo runs it.
        .filter_map(|p| {
            let path = std::path::Path::new(&p);
            let relative = if path.is_absolute() {
                path.strip_prefix(&root).ok()?
            } else {
                path
            };
            Some(normalize(relative))
        })
        // build.rs reads the commit from .git when there is one; the image gets it as --build-arg GIT_COMMIT.
        .filter(|p| !p.starts_with(".git/"))
        // A dep-info file of an older build may name a file since removed; what exists now is what a build reads.
        .filter(|p| repo(p).exists())
        .collect();
    read_by_build.sort();
    read_by_build.dedup();
    assert!(
        read_by_build.iter().any(|f| f.starts_with("src/"))
            && read_by_build.iter().any(|f| f.starts_with("data/")),
        "the dep-info lists the sources and the guard's data: {read_by_build:?}"
    );
    read_by_build.extend(["Cargo.toml", "Cargo.lock", "build.rs"].map(String::from));
    let manifest = read("Cargo.toml");
    // The workspace's member crates: cargo loads each one's manifest.
    for line in manifest.lines().map(str::trim) {
        if let Some(list) = line.strip_prefix("members = [") {
            for member in list.trim_end_matches(']').split(',') {
                read_by_build.push(format!("{}/Cargo.toml", member.trim().trim_matches('"')));
            }
        }
    }
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(name) = line.strip_prefix("name = ") {
            read_by_build.push(format!("benches/{}.rs", name.trim_matches('"')));
        }
    }
    for file in &read_by_build {
        assert!(
            repo(file).exists(),
            "{file} is read by the build but does not exist"
        );
        assert!(
            copied
                .iter()
                .any(|c| file == c || file.starts_with(&format!("{c}/"))),
            "the build reads {file}, which the Containerfile's build stage does not copy (it copies {copied:?})"
        );
    }
}

/// The dependency lists of rustc's dep-info files (`target/<profile>/deps/<crate>-<hash>.d`) of every workspace
/// crate. `cargo test` always writes these; the merged `target/debug/stacksetd.d` beside the binary is written only
/// by `cargo build`, so a clean clone's test run (CI) has none.
fn workspace_dep_info() -> Vec<String> {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stacksetd"));
    let deps_dir = binary
        .parent()
        .expect("the binary's directory")
        .join("deps");
    let crates: Vec<String> = read("Cargo.toml")
        .lines()
        .chain(read("crates/core/Cargo.toml").lines())
        .chain(read("crates/cloud/Cargo.toml").lines())
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter(|n| n.starts_with("stacksetd"))
        .map(|n| n.trim_end_matches('"').replace('-', "_"))
        .collect();
    let mut lists = Vec::new();
    for entry in
        std::fs::read_dir(&deps_dir).unwrap_or_else(|e| panic!("{}: {e}", deps_dir.display()))
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".d") else {
            continue;
        };
        let Some((krate, _hash)) = stem.rsplit_once('-') else {
            continue;
        };
        if !crates.iter().any(|c| c == krate) {
            continue;
        }
        // `output: dep dep ...` lines, one per output; then each dep's own empty rule. A test harness (`--test`)
        // also reads what only tests include (the README, the docs), so only what the image builds counts: the
        // library (an .rlib; `cargo check` of the tests writes only an .rmeta) and the binary (its root is
        // src/main.rs).
        let text = std::fs::read_to_string(&path).unwrap();
        let rules: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(": ")).collect();
        let library = rules.iter().any(|(out, _)| out.ends_with(".rlib"));
        let binary = rules
            .iter()
            .any(|(_, deps)| deps.split_whitespace().next() == Some("src/main.rs"));
        if library || binary {
            lists.extend(rules.iter().map(|(_, deps)| deps.to_string()));
        }
    }
    assert!(
        crates.len() >= 3 && !lists.is_empty(),
        "no dep-info of the workspace crates {crates:?} under {}",
        deps_dir.display()
    );
    lists
}

/// `src/guard/../../data/x.tsv` as `data/x.tsv`: rustc records an `include_str!` path as written.
fn normalize(path: &std::path::Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_string_lossy().to_string()),
        }
    }
    parts.join("/")
}
