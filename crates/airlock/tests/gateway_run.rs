//! The LLM gateway inside `airlock run`: an agent in the sandbox uses the
//! official `openai` and `anthropic` Python SDKs unchanged, with a handle as
//! its API key, through the egress proxy to a local HTTPS provider that
//! speaks the real wire formats. The provider must receive the real key (the
//! credential hook) and no e-mail, card or IBAN (the gateway hook ahead of
//! it); the agent must get its original values back, streamed and not; every
//! call is audited as `gateway.call` under the run.
//!
//! Needs `AIRLOCK_TEST_PYTHON` (a Python with the SDKs; `scripts/test`
//! makes it). A copy of its site-packages goes into the run's workspace
//! and the sandbox's own `python3` runs them.

#[path = "sandbox_support.rs"]
mod support;

use airlock_testkit::{DnsAnswer, DnsResponder, LlmUpstream, TestCa};
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use support::{Env, Out, run_bounded};

const UPSTREAM_IP: &str = "127.0.0.3";
const OPENAI_HOST: &str = "api.openai.test";
const ANTHROPIC_HOST: &str = "api.anthropic.test";
const OPENAI_KEY: &str = "sk-proj-RunHeldProviderKeyAbCdEf0123456789xyz";
const ANTHROPIC_KEY: &str = "sk-ant-api03-RunHeldProviderKeyAbCdEf0123456789xyz";
const EMAIL: &str = "jane.doe@example.org";
const CARD: &str = "4111 1111 1111 1111";
const IBAN: &str = "DE89370400440532013000";

const AGENT: &str = r#"
import os, sys, openai, anthropic
text = "Customer %s paid with %s from %s." % (sys.argv[1], sys.argv[2], sys.argv[3])
o = openai.OpenAI(base_url="https://%s/v1" % os.environ["OPENAI_HOST"], max_retries=0)
r = o.chat.completions.create(model="gpt-4o-mini", max_tokens=200,
                              messages=[{"role": "user", "content": text}])
print("OPENAI", r.choices[0].message.content)
s = o.chat.completions.create(model="gpt-4o-mini", max_tokens=200, stream=True,
                              messages=[{"role": "user", "content": text}])
print("OPENAI-STREAM", "".join((c.choices[0].delta.content or "") for c in s if c.choices))
a = anthropic.Anthropic(base_url="https://%s" % os.environ["ANTHROPIC_HOST"], max_retries=0)
m = a.messages.create(model="claude-3-5-haiku-latest", max_tokens=200,
                      messages=[{"role": "user", "content": text}])
print("ANTHROPIC", m.content[0].text)
with a.messages.stream(model="claude-3-5-haiku-latest", max_tokens=200,
                       messages=[{"role": "user", "content": text}]) as st:
    print("ANTHROPIC-STREAM", "".join(st.text_stream))
"#;

/// Where the SDKs are installed, and the `anthropic` package's major version.
fn sdk_site_packages() -> Option<(String, u32)> {
    let Some(py) = std::env::var_os("AIRLOCK_TEST_PYTHON") else {
        assert!(
            std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
            "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PYTHON is not"
        );
        eprintln!("*** SKIPPED: AIRLOCK_TEST_PYTHON is not set (scripts/test sets it)");
        return None;
    };
    let out = Command::new(py)
        .args([
            "-c",
            "import sysconfig, openai, anthropic; print(sysconfig.get_paths()['purelib']); print(anthropic.__version__)",
        ])
        .output()
        .expect("run AIRLOCK_TEST_PYTHON");
    assert!(out.status.success(), "the SDKs are not importable: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let site = lines.next().unwrap_or_default().trim().to_owned();
    let major = lines
        .next()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .expect("anthropic.__version__");
    Some((site, major))
}

/// `airlock secret set NAME --host HOST ARGS...` with the value on stdin.
fn secret_set(env: &Env, name: &str, host: &str, args: &[&str], value: &str) {
    let mut all = vec!["secret", "set", name, "--host", host];
    all.extend_from_slice(args);
    let mut cmd = env.command(&all);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "secret set {name}: {out:?}");
}

#[test]
fn official_sdks_in_a_run_reach_the_provider_redacted_with_the_real_key_and_get_originals_back() {
    let Some((site, anthropic_major)) = sdk_site_packages() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ip: IpAddr = UPSTREAM_IP.parse().expect("ip");
    let ca = TestCa::new();
    let up = rt.block_on(LlmUpstream::start_https(
        ip,
        &ca,
        &[OPENAI_HOST, ANTHROPIC_HOST],
    ));
    let port = up.addr().port();
    let dns = DnsResponder::start();
    dns.set(OPENAI_HOST, DnsAnswer::Fixed(vec![ip]));
    dns.set(ANTHROPIC_HOST, DnsAnswer::Fixed(vec![ip]));

    let base = Env::new();
    let dir = base.dir.path().to_owned();
    // A copy in the workspace, where the agent's files are (the venv may sit
    // in a 0700 home); the agent runs from there.
    let copy = base.ws.join("site-packages");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&site)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(cp.success(), "cannot copy {site}");
    let ca_path = ca.write_pem(&dir, "upstream-ca.pem");
    let env = base.with_config(&format!(
        "[proxy]\nnameservers = [\"{}\"]\nupstream_ca_file = {:?}\n\n\
         [gateway.providers.openai]\nkind = \"openai\"\nbase_url = \"https://{OPENAI_HOST}:{port}\"\n\n\
         [gateway.providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"https://{ANTHROPIC_HOST}:{port}\"\n",
        dns.addr(),
        ca_path.display().to_string(),
    ));
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "mode = \"deny_all\"\nallow_private = [\"{UPSTREAM_IP}/32\"]\n\n\
             [[rules]]\nhosts = [\"{OPENAI_HOST}\", \"{ANTHROPIC_HOST}\"]\nports = [{port}]\naction = \"allow\"\n"
        ),
    )
    .expect("policy");
    let openai_host = format!("{OPENAI_HOST}:{port}");
    secret_set(
        &env,
        "openai",
        &openai_host,
        &["--env", "OPENAI_API_KEY"],
        OPENAI_KEY,
    );
    // Anthropic's SDK sends the key as `x-api-key` before 2.0 and as
    // `Authorization: Bearer` from 2.0 on: the secret is bound where the
    // installed SDK puts it (a handle anywhere else is refused).
    let anthropic_host = format!("{ANTHROPIC_HOST}:{port}");
    let binding: &[&str] = if anthropic_major >= 2 {
        &["--env", "ANTHROPIC_API_KEY"]
    } else {
        &[
            "--env",
            "ANTHROPIC_API_KEY",
            "--header",
            "x-api-key",
            "--format",
            "{}",
        ]
    };
    secret_set(&env, "anthropic", &anthropic_host, binding, ANTHROPIC_KEY);

    let hosts = (
        format!("OPENAI_HOST={OPENAI_HOST}:{port}"),
        format!("ANTHROPIC_HOST={ANTHROPIC_HOST}:{port}"),
        "PYTHONPATH=site-packages".to_owned(),
    );
    let policy_s = policy.display().to_string();
    let args = [
        "run",
        "--timeout",
        "90s",
        "--policy",
        &policy_s,
        "--secret",
        "openai",
        "--secret",
        "anthropic",
        "--env",
        &hosts.0,
        "--env",
        &hosts.1,
        "--env",
        &hosts.2,
        "--",
        "python3",
        "-c",
        AGENT,
        EMAIL,
        CARD,
        IBAN,
    ];
    let out: Out = run_bounded(env.command(&args));
    assert_eq!(out.code(), 0, "{out:?}");
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(
            !out.stdout.contains(key) && !out.stderr.contains(key),
            "a provider key reached the agent: {out:?}"
        );
    }
    // The agent gets its own values back, streamed and not.
    let want = format!("Customer {EMAIL} paid with {CARD} from {IBAN}.");
    for label in ["OPENAI", "OPENAI-STREAM", "ANTHROPIC", "ANTHROPIC-STREAM"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_once(' ').is_some_and(|(l0, _)| l0 == label))
            .unwrap_or_else(|| panic!("no {label} line: {out:?}"));
        assert!(line.contains(&want), "{label}: {line}");
    }

    // The provider saw placeholders and the real keys, never the values.
    let seen = up.received();
    assert_eq!(seen.len(), 4, "one request per call: {seen:?}");
    for r in &seen {
        let body = String::from_utf8_lossy(&r.body);
        for v in [EMAIL, CARD, IBAN] {
            assert!(!body.contains(v), "{v} reached the provider: {body}");
        }
        let key = r
            .header("authorization")
            .or_else(|| r.header("x-api-key"))
            .unwrap_or("");
        assert!(
            key.ends_with(OPENAI_KEY) || key.ends_with(ANTHROPIC_KEY),
            "the provider got {key:?}, not the real key"
        );
        assert!(
            r.header("idempotency-key").is_some(),
            "no Idempotency-Key: {r:?}"
        );
    }

    // Every call is audited under the run, without the prompt's text.
    let calls = env.audited("gateway.call", 60);
    assert_eq!(calls.len(), 4, "{calls:?}");
    for c in &calls {
        assert!(
            c["run_id"].as_str().is_some_and(|r| r.starts_with("run-")),
            "{c}"
        );
        let text = c.to_string();
        for v in [EMAIL, CARD, IBAN, OPENAI_KEY, ANTHROPIC_KEY] {
            assert!(!text.contains(v), "{v} in the audit record: {text}");
        }
    }
}
