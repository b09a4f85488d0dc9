//! Issue 18 through `airlock policy check`, as a new user tries it: the
//! shared malformed-URL table (`crates/airlock-policy/tests/data/
//! malformed_urls.tsv`), URLs carrying userinfo, and one look-alike host per
//! class are refused with their reason; correct IDN hosts still pass.

use std::path::Path;
use std::process::{Command, Output};

const MALFORMED: &str = include_str!("../../airlock-policy/tests/data/malformed_urls.tsv");

fn check(data_dir: &Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["policy", "check", "--json", "--method", "GET", "--url", url])
        .arg("--resolve=93.184.215.14")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .output()
        .expect("run airlock")
}

fn verdict(out: &Output) -> (Option<i32>, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"));
    (
        out.status.code(),
        v["outcome"].as_str().unwrap_or("").to_owned(),
        v["reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn malformed_url_table_is_refused_by_policy_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in MALFORMED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (url, reason) = line.split_once('\t').expect("url<TAB>reason");
        let url = url.replace("\\s", " ");
        n += 1;
        let got = verdict(&check(tmp.path(), &url));
        let want = (Some(3), "deny".to_owned(), reason.to_owned());
        if got != want {
            failures.push(format!("{url}: got {got:?}, want {want:?}"));
        }
    }
    assert!(n >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn url_with_user_credentials_is_refused_without_echoing_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = check(tmp.path(), "https://bob:hunter2@example.com/x");
    assert_eq!(
        verdict(&out),
        (Some(3), "deny".to_owned(), "userinfo_in_url".to_owned())
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2") && !all.contains("bob"), "{all}");
}

#[test]
fn look_alike_hosts_are_refused_by_policy_check_and_correct_idn_hosts_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (host, reason) in [
        ("gooɡle.com", "idn_disallowed_character"),
        ("wi\u{0307}kipedia.org", "idn_disallowed_character"),
        ("pay\u{2010}pal.com", "idn_disallowed_character"),
        ("paypal\u{1F512}.com", "idn_disallowed_character"),
        ("pаypal.com", "mixed_script_host"),
        ("аррӏе.com", "idn_whole_script_confusable"),
        ("googleノcom.example", "idn_dangerous_pattern"),
        ("shop1\u{0967}.com", "idn_mixed_numbers"),
        ("gıthub.com", "idn_confusable"),
        ("ißuu.com", "idn_confusable"),
    ] {
        let got = verdict(&check(tmp.path(), &format!("https://{host}/")));
        assert_eq!(
            got,
            (Some(3), "deny".to_owned(), reason.to_owned()),
            "{host}"
        );
    }
    for host in [
        "пример.рф",
        "ελλάδα.gr",
        "bücher.de",
        "例え.jp",
        "türkçe.com.tr",
    ] {
        let got = verdict(&check(tmp.path(), &format!("https://{host}/")));
        assert_eq!(
            got,
            (Some(0), "allow".to_owned(), "public_read".to_owned()),
            "{host}"
        );
    }
}

#[test]
fn userinfo_passes_policy_check_only_where_a_rule_allows_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nhosts = [\"repo.example.com\"]\nmethods = [\"GET\"]\n\
         allow_userinfo = true\naction = \"allow\"\n",
    )
    .expect("write policy");
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--data-dir")
            .arg(tmp.path())
            .args(["policy", "check", "--json", "--method", "GET", "--url", url])
            .arg("--policy")
            .arg(&policy)
            .arg("--resolve=93.184.215.14")
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_ENV")
            .output()
            .expect("run airlock")
    };
    let allowed = run("https://bob:hunter2@repo.example.com/simple");
    assert_eq!(
        verdict(&allowed),
        (Some(0), "allow".to_owned(), "rule_allow".to_owned())
    );
    let refused = run("https://bob:hunter2@other.example.com/simple");
    assert_eq!(
        verdict(&refused),
        (Some(3), "deny".to_owned(), "userinfo_in_url".to_owned())
    );
    for out in [allowed, refused] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("hunter2") && !all.contains("bob"), "{all}");
    }
}
