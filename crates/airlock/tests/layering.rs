//! The crate layering, checked mechanically so it cannot drift.
//!
//! Dependencies point one way: vocabulary at the bottom; pure logic and
//! storage above it; vault and audit above storage; the boundaries that touch
//! the outside world above those; the control plane above them; the binary on
//! top; the run machinery (`airlock-runtime`) sits between the boundaries and the
//! control plane. `airlock-testkit` is only ever a dev-dependency. `airlock-fixtures`
//! (the local CA, servers and DNS responder) sits just under the binary, so
//! no library can ship it: only the binary (for `airlock demo`) and the test
//! kit use it. Only `airlock-sandbox` may contain `unsafe`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The layer of every crate in the workspace. A new crate must be added here.
fn layer(name: &str) -> Option<u8> {
    Some(match name {
        "airlock-types" => 0,
        // The broker needs no storage; the vault (2) builds its grants.
        "airlock-policy" | "airlock-scrub" | "airlock-store" | "airlock-broker"
        | "airlock-hook" => 1,
        "airlock-audit" | "airlock-vault" | "airlock-approval" => 2,
        "airlock-sandbox" | "airlock-proxy" | "airlock-gateway" | "airlock-mcp" => 3,
        // Runs a run over the boundaries; every front end uses it.
        "airlock-runtime" => 4,
        "airlock-api" => 5,
        // Local stand-ins for upstreams and DNS: below the binary only, so
        // no library (layers 0-5) can depend on it, even for its tests.
        "airlock-fixtures" => 5,
        // The web dashboard: a front end over the API's state.
        "airlock-dashboard" => 6,
        "airlock" => 7,
        "airlock-testkit" => 5,
        _ => return None,
    })
}

struct Pkg {
    name: String,
    manifest: PathBuf,
    deps: Vec<(String, Option<String>)>, // (name, kind: None = normal, "dev", "build")
}

fn workspace() -> Vec<Pkg> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    v["packages"]
        .as_array()
        .expect("packages array")
        .iter()
        .map(|p| Pkg {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            manifest: PathBuf::from(p["manifest_path"].as_str().unwrap_or_default()),
            deps: p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap_or_default().to_owned(),
                        d["kind"].as_str().map(str::to_owned),
                    )
                })
                .collect(),
        })
        .collect()
}

#[test]
fn every_workspace_crate_has_a_layer() {
    for p in workspace() {
        assert!(
            layer(&p.name).is_some(),
            "crate {} is not in the layering table of tests/layering.rs",
            p.name
        );
    }
}

#[test]
fn dependencies_only_point_down() {
    let mut violations = Vec::new();
    for p in workspace() {
        let Some(mine) = layer(&p.name) else { continue };
        for (dep, kind) in &p.deps {
            if !dep.starts_with("airlock") {
                continue;
            }
            let theirs = layer(dep).unwrap_or(u8::MAX);
            if dep == "airlock-testkit" {
                if kind.as_deref() != Some("dev") {
                    violations.push(format!(
                        "{} depends on airlock-testkit outside [dev-dependencies]",
                        p.name
                    ));
                }
                continue;
            }
            if dep == "airlock" {
                violations.push(format!("{} depends on the airlock binary crate", p.name));
                continue;
            }
            if theirs >= mine && p.name != "airlock-testkit" {
                violations.push(format!("{} (layer {mine}) depends on {dep} (layer {theirs}): dependencies must point down", p.name));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target" || n == "fuzz") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn unsafe_is_fenced_in_the_sandbox_crate() {
    let mut offenders = BTreeMap::new();
    for p in workspace() {
        let dir = p
            .manifest
            .parent()
            .expect("manifest has a parent")
            .to_owned();
        let lib = dir.join("src/lib.rs");
        if lib.exists() && p.name != "airlock-sandbox" {
            let text = std::fs::read_to_string(&lib).expect("lib.rs readable");
            assert!(
                text.starts_with("//!"),
                "{}: lib.rs must open with a //! crate doc",
                p.name
            );
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "{}: lib.rs must #![forbid(unsafe_code)]",
                p.name
            );
        }
        if p.name == "airlock-sandbox" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            // Spelled in pieces so this file does not match itself.
            let needles = [
                concat!("allow(", "unsafe_code)"),
                concat!("unsafe", " {"),
                concat!("unsafe", " fn"),
            ];
            if needles.iter().any(|n| text.contains(n)) {
                offenders.insert(f.display().to_string(), p.name.clone());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside airlock-sandbox: {offenders:?}"
    );
}
