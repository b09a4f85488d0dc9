//! Reading the key files and the plain-text checkpoint file.

use crate::checkpoint::{Checkpoint, PublicKey, Signer};
use crate::error::AuditError;
use airlock_store::read_limited;
use airlock_types::Secret;
use std::path::Path;

/// Largest key file read: an Ed25519 PKCS#8 key is 85 bytes, a public key
/// file 86.
const MAX_KEY_FILE: usize = 4096;

/// Load the signing key (PKCS#8 DER) from `path` (a regular file of at most
/// 4 KiB).
pub fn load_signer(path: &Path) -> Result<Signer, AuditError> {
    let bytes =
        Secret::new(
            read_limited(path, MAX_KEY_FILE).map_err(|source| AuditError::KeyRead {
                path: path.to_owned(),
                source,
            })?,
        );
    Signer::from_pkcs8(&bytes).map_err(|detail| AuditError::KeyInvalid {
        path: path.to_owned(),
        detail,
    })
}

/// Load a public key file (`airlock-audit-ed25519 <hex>`; a regular file of
/// at most 4 KiB).
pub fn load_public_key(path: &Path) -> Result<PublicKey, AuditError> {
    let bytes = read_limited(path, MAX_KEY_FILE).map_err(|source| AuditError::PubkeyRead {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    PublicKey::parse(&text).map_err(|detail| AuditError::PubkeyInvalid {
        path: path.to_owned(),
        detail,
    })
}

/// One checkpoint read from the checkpoint file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheckpoint {
    /// 1-based line in the file.
    pub line: usize,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// Read every checkpoint in the checkpoint file. A missing file reads as
/// empty; any line that is not a checkpoint is an error naming the line.
pub fn read_checkpoint_file(path: &Path) -> Result<Vec<FileCheckpoint>, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::CheckpointFileRead {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse_checkpoints(path, &bytes, 0)
}

/// Parse checkpoint-file bytes whose first line is line `lines_before + 1`
/// of the file. Every line must be complete (end in a newline).
pub(crate) fn parse_checkpoints(
    path: &Path,
    bytes: &[u8],
    lines_before: usize,
) -> Result<Vec<FileCheckpoint>, AuditError> {
    let invalid = |line: usize, detail: String| AuditError::CheckpointFileInvalid {
        path: path.to_owned(),
        line: lines_before + line,
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        invalid(line, "not UTF-8 text".into())
    })?;
    if !text.is_empty() && !text.ends_with('\n') {
        let line = text.lines().count();
        return Err(invalid(
            line,
            "last line is incomplete (no newline): a torn or edited write".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let checkpoint = Checkpoint::parse(l).map_err(|d| invalid(i + 1, d))?;
        out.push(FileCheckpoint {
            line: lines_before + i + 1,
            checkpoint,
        });
    }
    Ok(out)
}
