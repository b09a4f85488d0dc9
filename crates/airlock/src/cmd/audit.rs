//! `airlock audit verify|tail|export|prove`.
//!
//! Everything here opens the database read-only and never changes the audit
//! data. Exit codes: 0 ok, 1 verification found a problem, 2 unusable input.

use crate::auditing;
use crate::ctx::{Ctx, EXIT_CHECK_FAILED, EXIT_OK};
use airlock_audit::{InclusionProof, ProofError, Report, canonical};
use airlock_store::{AuditStore, SqliteStore};
use airlock_types::AuditEvent;
use anyhow::Context as _;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Recompute the chain, Merkle tree and checkpoint signatures; name the
    /// first bad record or checkpoint. With --proof, check one inclusion proof offline.
    Verify(VerifyArgs),
    /// Print the last records.
    Tail(TailArgs),
    /// Stream every record for a SIEM.
    Export(ExportArgs),
    /// Print an inclusion proof of one record against the latest signed checkpoint.
    Prove(ProveArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check this inclusion proof (from `airlock audit prove`) instead of the whole log.
    #[arg(long, value_name = "FILE")]
    pub proof: Option<PathBuf>,
    /// Public key to check signatures with [default: <data-dir>/keys/audit-signing.pub].
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// How many records.
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_name = "N")]
    pub n: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One OCSF-shaped JSON object per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Start at this record index.
    #[arg(long, default_value_t = 0, value_name = "INDEX")]
    pub from: u64,
}

#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// The record's index.
    #[arg(long, value_name = "N")]
    pub index: u64,
}

pub fn run(ctx: &Ctx, cmd: AuditCmd) -> anyhow::Result<u8> {
    match cmd {
        AuditCmd::Verify(a) if a.proof.is_some() => verify_proof(ctx, a),
        AuditCmd::Verify(a) => verify_log(ctx, a),
        AuditCmd::Tail(a) => tail(ctx, a),
        AuditCmd::Export(a) => export(ctx, a),
        AuditCmd::Prove(a) => prove(ctx, a),
    }
}

fn open_read_only(ctx: &Ctx) -> anyhow::Result<SqliteStore> {
    ctx.require_initialized()?;
    Ok(SqliteStore::open_read_only(&ctx.db_path())?)
}

fn verify_log(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let key_path = a.pubkey.unwrap_or_else(|| ctx.audit_pubkey_path());
    let key = airlock_audit::load_public_key(&key_path)?;
    // One consistent view while other processes may be appending.
    let report =
        airlock_audit::verify_log(&store, &auditing::tenant(), &key, &ctx.checkpoint_path())?;
    if a.json {
        let mut v = serde_json::to_value(&report).context("cannot serialize the report")?;
        if let Some(o) = v.as_object_mut() {
            o.insert("ok".into(), report.ok().into());
            let msgs: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
            o.insert("messages".into(), msgs.into());
        }
        println!("{v}");
    } else {
        print_report(&report);
    }
    Ok(if report.ok() {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    })
}

fn print_report(r: &Report) {
    if r.ok() {
        println!(
            "audit log ok: {} records, {} signed checkpoints, root {}",
            r.records, r.checkpoints, r.root
        );
        let unsigned = r.records - r.signed_records;
        if unsigned > 0 {
            println!(
                "note: the last {unsigned} records are chained but not yet covered by a signed checkpoint"
            );
        }
        return;
    }
    println!(
        "audit log FAILED verification ({} records read):",
        r.records
    );
    for p in &r.problems {
        println!("  {p}");
    }
}

/// Largest proof file read (a proof is one record and at most 64 hashes).
const MAX_PROOF_BYTES: usize = 1 << 20;

fn verify_proof(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<u8> {
    let path = a.proof.context("invariant: --proof given")?;
    let bytes = airlock_store::read_limited(&path, MAX_PROOF_BYTES)
        .with_context(|| format!("{}: cannot read proof", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{}: not an Airlock inclusion proof: not UTF-8",
            path.display()
        )
    })?;
    let proof: InclusionProof = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an Airlock inclusion proof: {e}", path.display()))?;
    let key_path = a.pubkey.unwrap_or_else(|| ctx.audit_pubkey_path());
    let key = airlock_audit::load_public_key(&key_path)?;
    let result = airlock_audit::verify_proof(&proof, &key);
    if let Err(ProofError::Format(e)) = &result {
        anyhow::bail!("{}: {e}", path.display());
    }
    if a.json {
        let v = serde_json::json!({
            "ok": result.is_ok(),
            "index": proof.index,
            "tree_size": proof.checkpoint.size,
            "checkpoint": proof.checkpoint.seq,
            "error": result.as_ref().err().map(|e| e.to_string()),
        });
        println!("{v}");
    } else {
        match &result {
            Ok(()) => println!(
                "proof ok: record {} is in the signed tree of {} records (checkpoint {}, key {})",
                proof.index,
                proof.checkpoint.size,
                proof.checkpoint.seq,
                key.to_hex()
            ),
            Err(e) => println!("proof FAILED: {e}"),
        }
    }
    Ok(if result.is_ok() {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    })
}

fn tail(ctx: &Ctx, a: TailArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let tenant = auditing::tenant();
    let count = store.record_count(&tenant)?;
    let from = count.saturating_sub(a.n);
    stream(&store, from, |out, index, event| {
        if a.json {
            serde_json::to_writer(
                &mut *out,
                &serde_json::json!({ "index": index, "event": event }),
            )?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", text_line(index, event))?;
        }
        Ok(())
    })
}

fn export(ctx: &Ctx, a: ExportArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let ExportFormat::Jsonl = a.format;
    stream(&store, a.from, |out, index, event| {
        serde_json::to_writer(&mut *out, &ocsf(index, event))?;
        writeln!(out)?;
        Ok(())
    })
}

/// Decode records from `from` on and hand each to `write`, streaming to stdout.
/// A closed pipe (`| head`) ends the stream quietly.
fn stream(
    store: &SqliteStore,
    from: u64,
    mut write: impl FnMut(&mut dyn std::io::Write, u64, &AuditEvent) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<anyhow::Error> = None;
    store.for_each_record(&auditing::tenant(), from, &mut |r| {
        let res = canonical::decode(r.body)
            .map_err(|e| anyhow::anyhow!("record {}: cannot decode: {e}", r.index))
            .and_then(|event| write(&mut out, r.index, &event));
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    let flushed = out.flush();
    if let Some(e) = failed {
        if is_broken_pipe(&e) {
            return Ok(EXIT_OK);
        }
        return Err(e);
    }
    match flushed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(e).context("cannot write to stdout"),
        Ok(()) => Ok(EXIT_OK),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

fn text_line(index: u64, e: &AuditEvent) -> String {
    let decision = e.decision.map(|d| d.as_str()).unwrap_or("-");
    let result = serde_json::to_value(e.result)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let kind = serde_json::to_value(e.actor.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{index:>6} {} {}:{} {} {} decision={decision} reason={} result={result}",
        rfc3339(e.time.as_micros()),
        kind,
        e.actor.id,
        e.action,
        e.resource,
        e.reason.code(),
    )
}

/// An OCSF-shaped (API Activity, class 6003) rendering of one record. The
/// original event travels unchanged under `unmapped.airlock`.
fn ocsf(index: u64, e: &AuditEvent) -> serde_json::Value {
    use airlock_types::{EventResult, Outcome};
    let (status, status_id) = match e.result {
        EventResult::Success => ("Success", 1),
        EventResult::Denied | EventResult::Failure => ("Failure", 2),
    };
    let (disposition, disposition_id) = match e.decision {
        Some(Outcome::Allow) => ("Allowed", 1),
        Some(Outcome::Deny) => ("Blocked", 2),
        Some(Outcome::Ask) => ("Approval Required", 99),
        None => ("Unknown", 0),
    };
    let severity_id = if matches!(e.result, EventResult::Success) {
        1
    } else {
        3
    };
    serde_json::json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": 99,
        "activity_name": e.action,
        "type_uid": 600399,
        "time": e.time.as_micros() / 1000,
        "severity_id": severity_id,
        "status": status,
        "status_id": status_id,
        "status_code": e.reason.code(),
        "disposition": disposition,
        "disposition_id": disposition_id,
        "actor": { "user": { "uid": e.actor.id, "type": e.actor.kind } },
        "api": { "operation": e.action },
        "resources": [ { "name": e.resource } ],
        "metadata": {
            "version": "1.1.0",
            "uid": index.to_string(),
            "tenant_uid": e.tenant,
            "correlation_uid": e.run_id,
            "product": { "name": "Airlock", "vendor_name": "Airlock", "version": env!("CARGO_PKG_VERSION") },
        },
        "unmapped": { "airlock": { "index": index, "request_id": e.request_id, "event": e } },
    })
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch (UTC).
fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn prove(ctx: &Ctx, a: ProveArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let tenant = auditing::tenant();
    let file = airlock_audit::read_checkpoint_file(&ctx.checkpoint_path())?;
    let cp = airlock_audit::latest_checkpoint(&store, &tenant, &file)?
        .context("no signed checkpoint exists yet; nothing can be proven")?;
    let proof = airlock_audit::prove(&store, &tenant, a.index, &cp)?;
    let text = serde_json::to_string_pretty(&proof).context("cannot serialize the proof")?;
    println!("{text}");
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            rfc3339(1_795_305_600_123_456),
            "2026-11-22T00:00:00.123456Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }
}
