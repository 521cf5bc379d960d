//! The repository documents itself, for someone who has only a clone:
//!
//! - no tracked file points outside the repository (a sibling folder, a
//!   machine's path) or names the project's history ("issue 3", "this
//!   round"): the contract is written in `docs/`, in the present tense;
//! - every file path that ARCHITECTURE.md, README.md and the pages of
//!   `docs/` name exists, and every relative link in them leads somewhere.
//!
//! Both read the files git tracks (`git ls-files`), so they check what a
//! clone would hold.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tracked files, as paths relative to the repository's root.
fn tracked() -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("git ls-files (these checks need git and a checkout)");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Phrases that point outside the repository or into its history. Each
/// comes with what to write instead.
fn deny_list() -> Vec<(Regex, &'static str)> {
    [
        (
            r"\.\./shared\b|\bshared/(SPEC|FACTS)|\bSPEC\.md\b|\bFACTS\.md\b",
            "a file outside the repository; point to docs/ instead",
        ),
        (
            r"\bSPEC\b",
            "a document outside the repository; point to docs/ (the contract is there)",
        ),
        (
            r"/work/(shared|main|wt|notes)\b",
            "a path on one machine; use a path inside the repository",
        ),
        (
            r"(?i)\bissues? #?[0-9]+\b",
            "project history; say what the code does and why, not which issue asked for it",
        ),
        (
            r"(?i)\b(this|the last|the previous|the next) round\b",
            "project history; describe the present behaviour",
        ),
    ]
    .into_iter()
    .map(|(re, why)| (Regex::new(re).expect("valid pattern"), why))
    .collect()
}

#[test]
fn no_tracked_file_points_outside_the_repository_or_names_project_history() {
    let this_file = "tests/docs.rs";
    let deny = deny_list();
    let mut problems = Vec::new();
    for path in tracked() {
        if path == this_file || path == "Cargo.lock" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root().join(&path)) else {
            continue; // binary, or removed in the working tree
        };
        for (n, line) in text.lines().enumerate() {
            for (re, why) in &deny {
                if let Some(m) = re.find(line) {
                    problems.push(format!("{path}:{}: {:?}: {why}", n + 1, m.as_str()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The pages whose file paths must be true.
fn pages(files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|p| {
            *p == "ARCHITECTURE.md"
                || *p == "README.md"
                || (p.starts_with("docs/") && p.ends_with(".md"))
        })
        .cloned()
        .collect()
}

/// The top-level folders of the repository: a path that starts with one of
/// them is a path into the repository.
const TOP: &[&str] = &[
    "bench/", "chaos/", "crates/", "deploy/", "docs/", "proto/", "src/", "tests/", "tools/",
    ".ci/", ".cargo/",
];

/// Endings of file names that docs mention.
const EXTENSIONS: &[&str] = &[
    ".rs", ".toml", ".md", ".proto", ".yml", ".yaml", ".json", ".sh", ".py",
];

/// What a code span names, if it names a file or folder of the repository:
/// `crates/etcd/src/extension.rs`, `gateway/src/service.rs` (below
/// `crates/`), `message.rs` (a file somewhere), `tests/run`. Placeholders
/// (`DIR/DRILL.md`, `bots/<name>`, `chaos/*.toml`), absolute paths (etcd
/// keys, URL paths) and URLs are not file paths.
fn path_in_span(span: &str) -> Option<String> {
    let span = span.trim().trim_start_matches("./");
    let span = span.split(['#', ':']).next().unwrap_or(span);
    if span.is_empty()
        || span.starts_with('/')
        || span.contains(|c: char| c.is_whitespace() || "<>*$%{}()=,`\"'".contains(c))
    {
        return None;
    }
    let segments: Vec<&str> = span.trim_end_matches('/').split('/').collect();
    let placeholder = segments[..segments.len() - 1]
        .iter()
        .any(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    if placeholder {
        return None;
    }
    let into_repo = TOP.iter().any(|t| span.starts_with(t));
    let a_file = EXTENSIONS.iter().any(|e| span.ends_with(e));
    (into_repo || a_file).then(|| span.to_owned())
}

/// Whether `path` (as a page names it) is a tracked file or folder: as
/// given from the root, or as the end of a tracked path.
fn exists(path: &str, files: &BTreeSet<String>) -> bool {
    let dir = path.ends_with('/');
    files.iter().any(|f| {
        if dir {
            f.starts_with(path) || f.contains(&format!("/{path}"))
        } else {
            f == path || f.ends_with(&format!("/{path}")) || f.starts_with(&format!("{path}/"))
        }
    })
}

fn ignored(path: &str) -> bool {
    Command::new("git")
        .args(["check-ignore", "-q", "--no-index", path])
        .current_dir(root())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_path_the_architecture_readme_and_docs_name_exists() {
    let files = tracked();
    let set: BTreeSet<String> = files.iter().cloned().collect();
    let span = Regex::new(r"`([^`\n]+)`").expect("valid");
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("valid");
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages(&files) {
        let text = std::fs::read_to_string(root().join(&page)).expect("readable page");
        let dir = Path::new(&page).parent().unwrap_or(Path::new(""));
        let mut in_block = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if in_block {
                continue; // commands and examples, not claims about the tree
            }
            for c in span.captures_iter(line) {
                if let Some(path) = path_in_span(&c[1]) {
                    checked += 1;
                    if !exists(&path, &set) && !ignored(&path) {
                        problems.push(format!("{page}:{}: `{path}` does not exist", n + 1));
                    }
                }
            }
            for c in link.captures_iter(line) {
                let target = &c[1];
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let target = target.split('#').next().unwrap_or(target);
                checked += 1;
                if !root().join(dir).join(target).exists() {
                    problems.push(format!("{page}:{}: link to {target} leads nowhere", n + 1));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the scan broken?"
    );
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_path_rules_tell_paths_from_placeholders() {
    assert_eq!(
        path_in_span("crates/etcd/src/extension.rs").as_deref(),
        Some("crates/etcd/src/extension.rs")
    );
    assert_eq!(path_in_span("message.rs").as_deref(), Some("message.rs"));
    assert_eq!(path_in_span("tests/run").as_deref(), Some("tests/run"));
    assert_eq!(
        path_in_span("docs/etcd.md#when").as_deref(),
        Some("docs/etcd.md")
    );
    for not_a_path in [
        "DIR/DRILL.md",
        "bots/<name>",
        "chaos/*.toml",
        "/shardgate/<cluster>/",
        "owners/",
        "https://api.telegram.org",
        "shardgate serve",
        "Scheduler::complete",
    ] {
        assert_eq!(path_in_span(not_a_path), None, "{not_a_path}");
    }
    let files: BTreeSet<String> = ["crates/gateway/src/service.rs".to_owned()].into();
    assert!(exists("gateway/src/service.rs", &files));
    assert!(exists("crates/gateway/", &files));
    assert!(!exists("gateway/src/routing_loop.rs", &files));
}

/// Every RPC, message, field and enum value of the public proto has its
/// entry in `docs/api.md`: an RPC or value named in code style, a message
/// under its own `### Message` heading, each field as a table row
/// `| number | `name` |` in that section.
#[test]
fn docs_api_md_documents_every_rpc_message_and_field_of_the_proto() {
    let proto = std::fs::read_to_string(root().join("proto/shardgate/v1/gateway.proto"))
        .expect("the proto");
    let api = std::fs::read_to_string(root().join("docs/api.md")).expect("docs/api.md");
    let block = Regex::new(r"^\s*(message|enum|service)\s+(\w+)\s*\{").expect("valid");
    let rpc = Regex::new(r"^\s*rpc\s+(\w+)\s*\(").expect("valid");
    let field = Regex::new(
        r"^\s*(?:repeated\s+|optional\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*[;\[]",
    )
    .expect("valid");
    let value = Regex::new(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*-?\d+\s*;").expect("valid");
    let section = |name: &str| -> Option<&str> {
        let heading = format!("### {name}\n");
        let start = api.find(&heading)? + heading.len();
        let end = api[start..].find("\n#").map_or(api.len(), |e| start + e);
        Some(&api[start..end])
    };
    let mut missing = Vec::new();
    let mut stack: Vec<(String, String)> = Vec::new(); // (kind, name)
    let mut seen = 0;
    for line in proto.lines() {
        let code = line.split("//").next().unwrap_or("");
        if let Some(c) = block.captures(code) {
            stack.push((c[1].to_owned(), c[2].to_owned()));
            if &c[1] == "message" && section(&c[2]).is_none() {
                missing.push(format!("no `### {}` section", &c[2]));
            }
        } else if let Some(c) = rpc.captures(code) {
            seen += 1;
            if !api.contains(&format!("`{}`", &c[1])) {
                missing.push(format!("RPC {}", &c[1]));
            }
        } else if let Some((kind, name)) = stack.last() {
            if kind == "message"
                && let Some(c) = field.captures(code)
            {
                seen += 1;
                let row = format!("| {} | `{}` |", &c[2], &c[1]);
                if !section(name).is_some_and(|s| s.contains(&row)) {
                    missing.push(format!("{name}.{} (a row `{row}`)", &c[1]));
                }
            } else if kind == "enum"
                && let Some(c) = value.captures(code)
            {
                seen += 1;
                if !api.contains(&format!("`{}`", &c[1])) {
                    missing.push(format!("enum value {name}.{}", &c[1]));
                }
            }
        }
        for _ in 0..code.matches('}').count() {
            stack.pop();
        }
    }
    assert!(
        seen > 30,
        "only {seen} entries read from the proto: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "docs/api.md does not document:\n{}\n",
        missing.join("\n")
    );
}

/// Every package of the workspace says what it is for: a `description` in
/// its Cargo.toml (what `cargo doc` and a registry show first) and a `//!`
/// comment opening its library or binary root (what a reader of the code
/// sees first).
#[test]
fn every_crate_has_a_description_and_a_root_doc_comment() {
    let files = tracked();
    let mut missing = Vec::new();
    let mut packages = 0;
    for manifest in files.iter().filter(|p| p.ends_with("Cargo.toml")) {
        let text = std::fs::read_to_string(root().join(manifest)).expect("a manifest");
        if !text.contains("[package]") {
            continue; // a virtual workspace's table
        }
        packages += 1;
        if !text
            .lines()
            .any(|l| l.trim_start().starts_with("description"))
        {
            missing.push(format!("{manifest}: no description"));
        }
        let dir = manifest.trim_end_matches("Cargo.toml");
        let roots = [format!("{dir}src/lib.rs"), format!("{dir}src/main.rs")];
        for r in roots.iter().filter(|r| files.contains(r)) {
            let code = std::fs::read_to_string(root().join(r)).expect("a crate root");
            if !code.trim_start().starts_with("//!") {
                missing.push(format!("{r}: does not open with a //! comment"));
            }
        }
    }
    assert!(
        packages > 10,
        "only {packages} packages found: is the scan broken?"
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
