//! `airlock policy check`, run as a user runs it: the real binary over the
//! shared egress case table, config/`--policy` selection, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TABLE: &str = include_str!("../../airlock-policy/tests/data/egress_cases.toml");

fn airlock(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .output()
        .expect("run airlock")
}

fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Write each table policy to its own `--policy` file.
fn write_policies(dir: &Path, table: &toml::Table) -> std::collections::BTreeMap<String, PathBuf> {
    let mut files = std::collections::BTreeMap::new();
    let policies = table
        .get("policies")
        .and_then(|p| p.as_table())
        .expect("table has [policies]");
    for (name, body) in policies {
        let path = dir.join(format!("{name}.toml"));
        let text =
            toml::to_string(body.as_table().expect("policy is a table")).expect("serialize policy");
        std::fs::write(&path, text).expect("write policy file");
        files.insert(name.clone(), path);
    }
    files
}

#[test]
fn cli_agrees_with_every_case_in_the_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let table: toml::Table = toml::from_str(TABLE).expect("table parses");
    let files = write_policies(tmp.path(), &table);
    let cases = table
        .get("case")
        .and_then(|c| c.as_array())
        .expect("table has [[case]]");
    let mut failures = Vec::new();
    for c in cases {
        let get = |k: &str| c.get(k).and_then(|v| v.as_str());
        let (method, url) = (get("method").expect("method"), get("url").expect("url"));
        let (want_outcome, want_reason) = (
            get("outcome").expect("outcome"),
            get("reason").expect("reason"),
        );
        let mut args: Vec<String> = vec!["policy".into(), "check".into(), "--json".into()];
        args.extend(["--method".into(), method.into(), "--url".into(), url.into()]);
        if let Some(name) = get("policy") {
            args.extend(["--policy".into(), files[name].display().to_string()]);
        }
        if let Some(list) = c.get("resolve").and_then(|v| v.as_array()) {
            let ips: Vec<&str> = list
                .iter()
                .map(|v| v.as_str().expect("ip string"))
                .collect();
            args.push(format!("--resolve={}", ips.join(",")));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = airlock(tmp.path(), &argv);
        let want_code = match want_outcome {
            "allow" => 0,
            "deny" => 3,
            "ask" => 4,
            other => panic!("unknown outcome {other}"),
        };
        if out.status.code() != Some(want_code) {
            failures.push(format!(
                "{method} {url}: exit {:?}, want {want_code}; stderr {}",
                out.status.code(),
                stderr(&out)
            ));
            continue;
        }
        let v = json(&out);
        if v["outcome"] != want_outcome || v["reason"] != want_reason {
            failures.push(format!(
                "{method} {url}: got {} {}, want {want_outcome} {want_reason}",
                v["outcome"], v["reason"]
            ));
        }
    }
    assert!(cases.len() >= 150);
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn text_output_and_exit_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--method",
            "GET",
            "--url",
            "http://0x7f.1/",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deny loopback_address  GET http://127.0.0.1:80/ -> 127.0.0.1\npolicy: read_public (built-in)\n"
    );
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--method",
            "GET",
            "--url",
            "https://example.com/",
            "--resolve",
            "93.184.215.14",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some(
            "allow public_read  GET https://example.com:443/ -> 93.184.215.14  (CONNECT: intercept)"
        )
    );
}

#[test]
fn json_carries_the_decision_and_never_the_userinfo_or_query() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--json",
            "--method",
            "POST",
            "--url",
            "https://bob:hunter2@example.com/x?token=s3cret",
            "--resolve",
            "93.184.215.14,2606:2800:21f:cb07:6820:80da:af6b:8b2c",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("s3cret") && !stdout.contains("bob"),
        "{stdout}"
    );
    assert_eq!(
        json(&out),
        serde_json::json!({
            "outcome": "deny", "reason": "userinfo_in_url", "method": "POST",
            // The URL is shown canonical, without userinfo or query; the
            // policy refused it (no rule has `allow_userinfo`). A CONNECT
            // carries no userinfo, so its plan is the host's.
            "url": "https://example.com:443/x", "host": "example.com", "port": 443,
            "addrs": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "connect": "intercept",
            "policy": "read_public (built-in)",
            "error": null,
        })
    );
}

#[test]
fn ip_literal_is_judged_as_itself_even_with_resolve() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--json",
            "--method",
            "GET",
            "--url",
            "http://[::ffff:a9fe:a9fe]/",
            "--resolve",
            "8.8.8.8",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(
        (v["reason"].as_str(), v["addrs"].clone()),
        (
            Some("link_local_address"),
            serde_json::json!(["::ffff:169.254.169.254"])
        )
    );
}

#[test]
fn system_resolver_is_used_without_resolve() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // `localhost` resolves locally (no network); with an opt-in for loopback
    // the answer decides.
    let p = tmp.path().join("p.toml");
    std::fs::write(&p, "allow_private = [\"127.0.0.0/8\", \"::1\"]\n").expect("write");
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--json",
            "--policy",
            p.to_str().expect("utf8"),
            "--method",
            "GET",
            "--url",
            "http://localhost/",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!json(&out)["addrs"].as_array().expect("addrs").is_empty());
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--json",
            "--method",
            "GET",
            "--url",
            "http://does-not-exist.invalid/",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)["reason"], "unresolvable_host");
}

#[test]
fn config_policy_applies_when_no_file_is_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("airlock.toml"),
        "[policy]\nmode = \"deny_all\"\n\n[[policy.rules]]\nhosts = [\"docs.example.com\"]\nmethods = [\"GET\"]\naction = \"allow\"\n",
    )
    .expect("write config");
    let check = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "check",
            "--json",
            "--method",
            "GET",
            "--url",
            url,
            "--resolve",
            "93.184.215.14",
        ];
        args.extend_from_slice(extra);
        json(&airlock(tmp.path(), &args))
    };
    assert_eq!(
        check("https://docs.example.com/", &[])["reason"],
        "rule_allow"
    );
    assert_eq!(check("https://example.com/", &[])["reason"], "deny_all");
    // --policy wins over the configuration.
    let p = tmp.path().join("open.toml");
    std::fs::write(&p, "mode = \"read_public\"\n").expect("write");
    assert_eq!(
        check(
            "https://example.com/",
            &["--policy", p.to_str().expect("utf8")]
        )["reason"],
        "public_read"
    );
}

#[test]
fn bad_policy_files_fail_at_load_with_location() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str)] = &[
        ("mode = \"open\"\n", ":1:8: mode: unknown variant `open`"),
        (
            "[[rules]]\nhosts = [\"a.com\", \"exa mple.com\"]\naction = \"allow\"\n",
            ":2:19: rules[0].hosts[1]: \"exa mple.com\": ",
        ),
        (
            "[[rules]]\nhosts = [\"a.com\"]\nmethods = [\"GET\", \"P O\"]\naction = \"allow\"\n",
            ":3:19: rules[0].methods[1]: \"P O\" is not an HTTP method token",
        ),
        (
            "[[rules]]\nhosts = [\"a.com\"]\npaths = [\"*.js\"]\naction = \"deny\"\n",
            ":3:10: rules[0].paths[0]: \"*.js\" must start with `/`",
        ),
        (
            "allow_private = [\"10.0.0.0/8\", \"192.168.1.1/16\"]\n",
            ":1:32: allow_private[1]: 192.168.1.1/16 has host bits set",
        ),
        (
            "[[rules]]\nhosts = [\"a.com\"]\n",
            ":1:1: rules: missing field `action`",
        ),
        (
            "inspect_all = \"yes\"\n",
            ":1:15: inspect_all: invalid type",
        ),
        (
            "[[rules]]\nhosts = [\"a.com\"]\naction = \"allow\"\nport = 443\n",
            ":4:1: rules.port: unknown field `port`",
        ),
        ("mode = \n", ":1:"),
    ];
    for (text, want) in cases {
        let p = tmp.path().join("bad.toml");
        std::fs::write(&p, text).expect("write");
        let out = airlock(
            tmp.path(),
            &[
                "policy",
                "check",
                "--policy",
                p.to_str().expect("utf8"),
                "--method",
                "GET",
                "--url",
                "https://example.com/",
                "--resolve",
                "93.184.215.14",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        let err = stderr(&out);
        let want = format!("airlock: error: {}{want}", p.display());
        assert!(
            err.starts_with(&want),
            "{text:?}\n got: {err}\nwant: {want}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = airlock(
        tmp.path(),
        &[
            "policy",
            "check",
            "--policy",
            "/nonexistent/p.toml",
            "--method",
            "GET",
            "--url",
            "https://example.com/",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("airlock: error: /nonexistent/p.toml: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for args in [
        &[
            "policy",
            "check",
            "--method",
            "GET",
            "--url",
            "ftp://example.com/",
        ][..],
        &[
            "policy",
            "check",
            "--method",
            "GET",
            "--url",
            "example.com/",
        ][..],
        &[
            "policy",
            "check",
            "--method",
            "GET",
            "--url",
            "https://example.com/",
            "--resolve",
            "1.2.3",
        ][..],
        &["policy", "check", "--url", "https://example.com/"][..],
    ] {
        let out = airlock(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
