//! `airlock init`: create the data directory and everything in it. Idempotent.

use crate::config::DEFAULT_TOML;
use crate::ctx::{Ctx, EXIT_OK};
use anyhow::Context as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: InitArgs) -> anyhow::Result<u8> {
    let mut created: Vec<String> = Vec::new();

    if !ctx.data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&ctx.data_dir)
            .with_context(|| format!("{}: cannot create data directory", ctx.data_dir.display()))?;
        // The parent dirs get the umask's mode; the data dir itself must be 0700.
        fs::set_permissions(&ctx.data_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", ctx.data_dir.display()))?;
        created.push(ctx.data_dir.display().to_string());
    } else if !ctx.data_dir.is_dir() {
        anyhow::bail!("{}: exists and is not a directory", ctx.data_dir.display());
    }

    let keys = ctx.path("keys");
    if !keys.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&keys)
            .with_context(|| format!("{}: cannot create key directory", keys.display()))?;
        created.push(keys.display().to_string());
    }

    if write_new(&ctx.config_path, DEFAULT_TOML.as_bytes(), 0o600)? {
        created.push(ctx.config_path.display().to_string());
    }

    report(args.json, &ctx.data_dir, &created);
    Ok(EXIT_OK)
}

/// Create `path` with `contents` and `mode` unless it exists. Returns whether it was created.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<bool> {
    let mut f = match fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot create", path.display())),
    };
    f.write_all(contents).and_then(|()| f.sync_all()).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(true)
}

fn report(json: bool, data_dir: &Path, created: &[String]) {
    if json {
        let v = serde_json::json!({ "data_dir": data_dir.display().to_string(), "created": created, "changed": !created.is_empty() });
        println!("{v}");
    } else if created.is_empty() {
        println!("{}: already initialized; nothing changed", data_dir.display());
    } else {
        for c in created {
            println!("created {c}");
        }
    }
}
