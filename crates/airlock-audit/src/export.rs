//! Rendering records for people and SIEMs: pure functions from a record to
//! bytes on a writer, and [`export`], which streams a tenant's records
//! through one of them. Nothing here changes the log.

use airlock_store::{AuditStore, StoreError};
use airlock_types::{AuditEvent, EventResult, Outcome, TenantId};
use std::io::Write;
use std::ops::ControlFlow;

/// How one record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One OCSF-shaped (API Activity, class 6003) JSON object per line; see [`ocsf`].
    OcsfJsonl,
    /// One `{"index": N, "event": {...}}` JSON object per line.
    RecordJsonl,
    /// One human-readable line per record; see [`text_line`].
    Text,
}

/// Exporting failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A stored record is not a canonical event.
    #[error("record {index}: cannot decode: {detail}")]
    Decode { index: u64, detail: String },
    /// The writer failed (a closed pipe is [`ExportError::is_broken_pipe`]).
    #[error("cannot write: {0}")]
    Write(#[from] std::io::Error),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExportError {
    /// The reader went away (`| head`): callers usually end quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ExportError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Write one record in `format`, newline-terminated.
pub fn write_record(
    out: &mut dyn Write,
    format: ExportFormat,
    index: u64,
    event: &AuditEvent,
) -> std::io::Result<()> {
    match format {
        ExportFormat::OcsfJsonl => serde_json::to_writer(&mut *out, &ocsf(index, event))?,
        ExportFormat::RecordJsonl => serde_json::to_writer(
            &mut *out,
            &serde_json::json!({ "index": index, "event": event }),
        )?,
        ExportFormat::Text => out.write_all(text_line(index, event).as_bytes())?,
    }
    writeln!(out)
}

/// Decode the tenant's records from index `from` on and write each in
/// `format`. Stops at the first record that does not decode or write.
pub fn export(
    store: &dyn AuditStore,
    tenant: &TenantId,
    from: u64,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let mut failed: Option<ExportError> = None;
    store.for_each_record(tenant, from, &mut |r| {
        let res = crate::canonical::decode(r.body)
            .map_err(|e| ExportError::Decode {
                index: r.index,
                detail: e.to_string(),
            })
            .and_then(|event| Ok(write_record(out, format, r.index, &event)?));
        match res {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// `index time kind:actor action resource decision=… reason=… result=…`.
pub fn text_line(index: u64, e: &AuditEvent) -> String {
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
pub fn ocsf(index: u64, e: &AuditEvent) -> serde_json::Value {
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
pub fn rfc3339(micros: i64) -> String {
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
