//! `airlock scan`: find secrets and personal data in files or stdin.
//!
//! Default output is the input with every finding masked (streamed, so any
//! size works and bytes that are not UTF-8 pass through). `--json` prints one
//! object listing the findings; `--jsonl` reads one JSON object with a
//! `"text"` field per line and writes one `{"findings":[…]}` line per input
//! line. Exit status: 0 nothing found, 1 findings, 2 error.

use crate::ctx::{Ctx, EXIT_CHECK_FAILED, EXIT_OK};
use airlock_scrub::{Category, Finding, Scrubber};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// Credentials, tokens, keys, passwords.
    Secrets,
    /// Personal data.
    Pii,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files to scan [default: stdin]. `-` also means stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Look for one category only.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Print one JSON object with all findings instead of the redacted text.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Input is JSON Lines with a "text" field; print one findings object per line.
    #[arg(long)]
    pub jsonl: bool,
    /// With --json/--jsonl, also include the redacted text.
    #[arg(long)]
    pub redact: bool,
}

/// Read size for the redacting stream. Each stream step rescans about
/// `2 × hold_back` (≈ 35 KB with the built-in rules) of look-behind and
/// pays a fixed cost per step: 4 MiB keeps both under 1 % (a 32 MB scan
/// took 2.8 % more instructions at 1 MiB, ≈ 13 % more at 256 KiB), for
/// ≈ 8 MiB of buffers.
const CHUNK: usize = 4 * 1024 * 1024;

pub fn run(_ctx: &Ctx, args: ScanArgs) -> anyhow::Result<u8> {
    let mut builder = Scrubber::builder();
    match args.only {
        Some(Only::Secrets) => builder = builder.only(Category::Secret),
        Some(Only::Pii) => builder = builder.only(Category::Pii),
        None => {}
    }
    let scrubber = builder.build().context("loading scrubbing rules")?;
    let inputs: Vec<Option<&Path>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    None
                } else {
                    Some(p.as_path())
                }
            })
            .collect()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut found = 0u64;
    if args.jsonl {
        for input in &inputs {
            found += scan_jsonl(&scrubber, *input, args.redact, &mut out)?;
        }
    } else if args.json {
        let mut all = Vec::new();
        let mut redacted = Vec::new();
        for input in &inputs {
            let bytes = read_all(*input)?;
            let findings = scrubber.scan_bytes(&bytes);
            found += findings.len() as u64;
            let line_starts: Vec<usize> = std::iter::once(0)
                .chain(
                    bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect();
            for f in &findings {
                let mut v = finding_json(f, &bytes);
                let line = line_starts.partition_point(|&s| s <= f.start);
                v["file"] = json!(display(*input));
                v["line"] = json!(line);
                all.push(v);
            }
            if args.redact {
                let r = scrubber.redact_bytes(&bytes);
                redacted.push(
                    json!({"file": display(*input), "text": String::from_utf8_lossy(&r.bytes)}),
                );
            }
        }
        let mut doc = json!({ "findings": all });
        if args.redact {
            doc["redacted"] = Value::Array(redacted);
        }
        serde_json::to_writer(&mut out, &doc).context("writing output")?;
        out.write_all(b"\n").context("writing output")?;
    } else {
        for input in &inputs {
            found += redact_stream(&scrubber, *input, &mut out)?;
        }
    }
    out.flush().context("writing output")?;
    Ok(if found > 0 {
        EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    })
}

fn display(input: Option<&Path>) -> String {
    input.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

fn open(input: Option<&Path>) -> anyhow::Result<Box<dyn Read>> {
    Ok(match input {
        None => Box::new(std::io::stdin()),
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?,
        ),
    })
}

fn read_all(input: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    open(input)?
        .read_to_end(&mut buf)
        .with_context(|| format!("{}: read failed", display(input)))?;
    Ok(buf)
}

fn finding_json(f: &Finding, text: &[u8]) -> Value {
    json!({
        "start": f.start,
        "end": f.end,
        "value": String::from_utf8_lossy(f.value(text)),
        "category": f.category.as_str(),
        "type": f.kind,
        "rule": f.rule,
    })
}

/// Stream one input through the scrubber to `out`; returns the number of findings.
fn redact_stream(
    scrubber: &Scrubber,
    input: Option<&Path>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut reader = open(input)?;
    let mut stream = scrubber.stream();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: read failed", display(input))),
        };
        let emitted = stream
            .push(&buf[..n])
            .with_context(|| format!("{}: scrubbing", display(input)))?;
        out.write_all(&emitted).context("writing output")?;
    }
    let (tail, stats) = stream
        .finish()
        .with_context(|| format!("{}: scrubbing", display(input)))?;
    out.write_all(&tail).context("writing output")?;
    Ok(stats.total())
}

/// JSON Lines: each line an object with a string `"text"`.
fn scan_jsonl(
    scrubber: &Scrubber,
    input: Option<&Path>,
    redact: bool,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let reader = BufReader::new(open(input)?);
    let mut found = 0;
    for (n, line) in reader.split(b'\n').enumerate() {
        let where_ = || format!("{}:{}", display(input), n + 1);
        let line = line.with_context(|| format!("{}: read failed", where_()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let obj: Value = serde_json::from_slice(&line)
            .with_context(|| format!("{}: not a JSON object", where_()))?;
        let Some(text) = obj.get("text").and_then(Value::as_str) else {
            anyhow::bail!(
                "{}: expected an object with a string \"text\" field",
                where_()
            );
        };
        let findings = scrubber.scan(text);
        found += findings.len() as u64;
        let list: Vec<Value> = findings
            .iter()
            .map(|f| finding_json(f, text.as_bytes()))
            .collect();
        let mut doc = json!({ "findings": list });
        if redact {
            doc["text"] = json!(scrubber.redact(text).text);
        }
        serde_json::to_writer(&mut *out, &doc).context("writing output")?;
        out.write_all(b"\n").context("writing output")?;
    }
    Ok(found)
}
