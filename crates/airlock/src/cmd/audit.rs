//! `airlock audit verify|tail|export|prove`.
//!
//! Everything here opens the database read-only and never changes the audit
//! data. Exit codes: 0 ok, 1 verification found a problem, 2 unusable input.

use crate::ctx::{Ctx, EXIT_CHECK_FAILED, EXIT_OK};
use airlock_audit::{InclusionProof, ProofError, Report};
use airlock_store::{AuditStore, SqliteStore};
use airlock_types::TenantId;
use anyhow::Context as _;
use std::io::Write as _;
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

/// The log's store: PostgreSQL when `[store]` names one, else the data
/// directory's database (read-only).
fn open_read_only(ctx: &Ctx) -> anyhow::Result<Box<dyn AuditStore>> {
    ctx.require_initialized()?;
    let settings = ctx.load_config()?.audit.store;
    if let Some(pg) = airlock_runtime::audit::open_pg(&settings)? {
        return Ok(Box::new(pg));
    }
    Ok(Box::new(SqliteStore::open_read_only(&ctx.db_path())?))
}

/// The tenant whose log is read (`--tenant`, else the CLI's own) and its
/// checkpoint file.
fn log_of(ctx: &Ctx) -> anyhow::Result<(TenantId, PathBuf)> {
    let tenant = ctx.tenant_id()?;
    let store = ctx.load_config()?.audit.store;
    let path = airlock_runtime::audit::checkpoint_path(ctx, &tenant, &store);
    Ok((tenant, path))
}

fn verify_log(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let (tenant, checkpoints) = log_of(ctx)?;
    let key_path = a.pubkey.unwrap_or_else(|| ctx.audit_pubkey_path());
    let key = airlock_audit::load_public_key(&key_path)?;
    // One consistent view while other processes may be appending.
    let report = airlock_audit::verify_log(&*store, &tenant, &key, &checkpoints)?;
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
    let (tenant, _) = log_of(ctx)?;
    let count = store.record_count(&tenant)?;
    let from = count.saturating_sub(a.n);
    let format = if a.json {
        airlock_audit::ExportFormat::RecordJsonl
    } else {
        airlock_audit::ExportFormat::Text
    };
    stream(&*store, &tenant, from, format)
}

fn export(ctx: &Ctx, a: ExportArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let (tenant, _) = log_of(ctx)?;
    let ExportFormat::Jsonl = a.format;
    stream(
        &*store,
        &tenant,
        a.from,
        airlock_audit::ExportFormat::OcsfJsonl,
    )
}

/// Stream records from `from` on to stdout. A closed pipe (`| head`) ends
/// the stream quietly.
fn stream(
    store: &dyn AuditStore,
    tenant: &TenantId,
    from: u64,
    format: airlock_audit::ExportFormat,
) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let exported = airlock_audit::export(store, tenant, from, format, &mut out);
    let flushed = out.flush();
    match exported {
        Err(e) if e.is_broken_pipe() => return Ok(EXIT_OK),
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    match flushed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(e).context("cannot write to stdout"),
        Ok(()) => Ok(EXIT_OK),
    }
}

fn prove(ctx: &Ctx, a: ProveArgs) -> anyhow::Result<u8> {
    let store = open_read_only(ctx)?;
    let (tenant, checkpoints) = log_of(ctx)?;
    let file = airlock_audit::read_checkpoint_file(&checkpoints)?;
    let cp = airlock_audit::latest_checkpoint(&*store, &tenant, &file)?
        .context("no signed checkpoint exists yet; nothing can be proven")?;
    let proof = airlock_audit::prove(&*store, &tenant, a.index, &cp)?;
    let text = serde_json::to_string_pretty(&proof).context("cannot serialize the proof")?;
    println!("{text}");
    Ok(EXIT_OK)
}
