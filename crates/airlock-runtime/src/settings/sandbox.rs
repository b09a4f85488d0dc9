//! `[sandbox]` section: what a run grants beyond its defaults, and its
//! limits.

use super::in_range;
use airlock_policy::document::{DocumentError, SourceText};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::path::PathBuf;
use std::time::Duration;

/// Raw `[sandbox]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// Extra host paths mounted read-only at the same path (absolute; not under /etc, /proc, /dev, /tmp, /home or the system directories).
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub read_only: Option<Vec<Spanned<String>>>,
    /// Extra host paths mounted read-write at the same path (same rules as `read_only`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub read_write: Option<Vec<Spanned<String>>>,
    /// Host environment variables passed to the agent (by name; the value is read when the run starts).
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub env_passthrough: Option<Vec<Spanned<String>>>,
    /// Memory limit in MiB (default 2048).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 16, max = 1_048_576))
    )]
    pub memory_mib: Option<Spanned<u64>>,
    /// Maximum number of processes and threads (default 512).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 8, max = 1_000_000))
    )]
    pub pids_max: Option<Spanned<u64>>,
    /// CPU quota in percent of one core (default 200).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 10, max = 100_000))
    )]
    pub cpu_percent: Option<Spanned<u64>>,
    /// Largest file the agent may write, in MiB (default 4096).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 16_777_216))
    )]
    pub max_file_mib: Option<Spanned<u64>>,
    /// Open files per process (default 4096).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 64, max = 1_048_576))
    )]
    pub max_open_files: Option<Spanned<u64>>,
    /// Size of the tmpfs mounted at /tmp and at the agent's home, in MiB (default 512).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 1_048_576))
    )]
    pub tmpfs_mib: Option<Spanned<u64>>,
    /// The most a run may add to the file systems of its workspace and `read_write` paths, in MiB (default 10240); past it the run is ended. Each file is also limited to this size.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 16_777_216))
    )]
    pub max_write_mib: Option<Spanned<u64>>,
    /// Host uid the agent runs as when Airlock runs as root (default 65534, `nobody`; 0 is refused). The workspace is id-mapped so that its owner's files are the agent's.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 4_294_967_294_u64))
    )]
    pub host_uid: Option<Spanned<u64>>,
    /// Host gid the agent runs as when Airlock runs as root (default 65534; 0 is refused).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 4_294_967_294_u64))
    )]
    pub host_gid: Option<Spanned<u64>>,
    /// Refuse to run when the kernel's Landlock ABI is lower (default 6: scoping of abstract UNIX sockets and signals).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 7))
    )]
    pub min_landlock_abi: Option<Spanned<u64>>,
    /// Port of the proxy listener inside the sandbox (default 3128).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 65_535))
    )]
    pub proxy_port: Option<Spanned<u64>>,
    /// End the run after this many seconds (default 0 = no limit; `--timeout` overrides).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 0, max = 31_536_000))
    )]
    pub timeout_secs: Option<Spanned<u64>>,
    /// End the run after this many seconds without output (default 1800; 0 = no limit).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 0, max = 31_536_000))
    )]
    pub idle_timeout_secs: Option<Spanned<u64>>,
}

use crate::SandboxSettings;

impl Default for SandboxSettings {
    fn default() -> Self {
        let src = SourceText::new("<built-in>", "");
        validate(&RawSandbox::default(), &src).expect("invariant: sandbox defaults are valid")
    }
}

fn paths(
    src: &SourceText<'_>,
    field: &str,
    v: Option<&Vec<Spanned<String>>>,
) -> Result<Vec<PathBuf>, DocumentError> {
    let mut out = Vec::new();
    for s in v.into_iter().flatten() {
        let p = PathBuf::from(s.get_ref());
        if !p.is_absolute() {
            return Err(src.error(
                s.span(),
                field,
                format!("{:?} must be an absolute path", s.get_ref()),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn secs(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_secs(v))
}

pub fn validate(raw: &RawSandbox, src: &SourceText<'_>) -> Result<SandboxSettings, DocumentError> {
    let mut env = Vec::new();
    for name in raw.env_passthrough.iter().flatten() {
        let n = name.get_ref();
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(src.error(
                name.span(),
                "sandbox.env_passthrough",
                format!("{n:?} is not a variable name"),
            ));
        }
        env.push(n.clone());
    }
    let mib = 1024 * 1024;
    let r = |field: &str, v: Option<&Spanned<u64>>, min, max, default| {
        in_range(src, field, v, min, max, default)
    };
    Ok(SandboxSettings {
        read_only: paths(src, "sandbox.read_only", raw.read_only.as_ref())?,
        read_write: paths(src, "sandbox.read_write", raw.read_write.as_ref())?,
        env_passthrough: env,
        memory_bytes: r(
            "sandbox.memory_mib",
            raw.memory_mib.as_ref(),
            16,
            1_048_576,
            2048,
        )? * mib,
        pids_max: r("sandbox.pids_max", raw.pids_max.as_ref(), 8, 1_000_000, 512)?,
        cpu_percent: r(
            "sandbox.cpu_percent",
            raw.cpu_percent.as_ref(),
            10,
            100_000,
            200,
        )? as u32,
        max_file_bytes: r(
            "sandbox.max_file_mib",
            raw.max_file_mib.as_ref(),
            1,
            16_777_216,
            4096,
        )? * mib,
        max_open_files: r(
            "sandbox.max_open_files",
            raw.max_open_files.as_ref(),
            64,
            1_048_576,
            4096,
        )?,
        tmpfs_bytes: r(
            "sandbox.tmpfs_mib",
            raw.tmpfs_mib.as_ref(),
            1,
            1_048_576,
            512,
        )? * mib,
        max_write_bytes: r(
            "sandbox.max_write_mib",
            raw.max_write_mib.as_ref(),
            1,
            16_777_216,
            10_240,
        )? * mib,
        host_uid: r(
            "sandbox.host_uid",
            raw.host_uid.as_ref(),
            1,
            4_294_967_294,
            u64::from(airlock_sandbox::DEFAULT_HOST_ID),
        )? as u32,
        host_gid: r(
            "sandbox.host_gid",
            raw.host_gid.as_ref(),
            1,
            4_294_967_294,
            u64::from(airlock_sandbox::DEFAULT_HOST_ID),
        )? as u32,
        min_landlock_abi: r(
            "sandbox.min_landlock_abi",
            raw.min_landlock_abi.as_ref(),
            1,
            7,
            6,
        )? as u8,
        proxy_port: r(
            "sandbox.proxy_port",
            raw.proxy_port.as_ref(),
            1,
            65_535,
            3128,
        )? as u16,
        timeout: secs(r(
            "sandbox.timeout_secs",
            raw.timeout_secs.as_ref(),
            0,
            31_536_000,
            0,
        )?),
        idle_timeout: secs(r(
            "sandbox.idle_timeout_secs",
            raw.idle_timeout_secs.as_ref(),
            0,
            31_536_000,
            1800,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default)]
    struct Doc {
        #[serde(default)]
        sandbox: RawSandbox,
    }

    fn parse(text: &str) -> Result<SandboxSettings, DocumentError> {
        let src = SourceText::new("t.toml", text);
        let raw: Doc = src.deserialize()?;
        validate(&raw.sandbox, &src)
    }

    #[test]
    fn defaults() {
        let s = parse("").expect("defaults");
        assert_eq!(s.memory_bytes, 2048 << 20);
        assert_eq!(s.min_landlock_abi, 6);
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(s.timeout, None);
    }

    #[test]
    fn relative_extra_path_is_located() {
        let msg = parse("[sandbox]\nread_only = [\"/opt/a\", \"rel\"]\n")
            .expect_err("must be rejected")
            .to_string();
        assert_eq!(
            msg,
            "t.toml:2:24: sandbox.read_only: \"rel\" must be an absolute path"
        );
    }

    #[test]
    fn landlock_abi_out_of_range_is_located() {
        let msg = parse("[sandbox]\nmin_landlock_abi = 9\n")
            .expect_err("must be rejected")
            .to_string();
        assert_eq!(
            msg,
            "t.toml:2:20: sandbox.min_landlock_abi: must be between 1 and 7, got 9"
        );
    }

    #[test]
    fn agent_host_identity_defaults_to_nobody_and_refuses_root() {
        let s = parse("").expect("defaults");
        assert_eq!((s.host_uid, s.host_gid), (65534, 65534));
        assert_eq!(s.max_write_bytes, 10_240 << 20);
        let msg = parse("[sandbox]\nhost_uid = 0\n")
            .expect_err("must be rejected")
            .to_string();
        assert_eq!(
            msg,
            "t.toml:2:12: sandbox.host_uid: must be between 1 and 4294967294, got 0"
        );
        let s = parse("[sandbox]\nhost_uid = 200000\nhost_gid = 200001\nmax_write_mib = 64\n")
            .expect("valid");
        assert_eq!(
            (s.host_uid, s.host_gid, s.max_write_bytes),
            (200000, 200001, 64 << 20)
        );
    }

    #[test]
    fn bad_env_name_is_located() {
        let msg = parse("[sandbox]\nenv_passthrough = [\"A-B\"]\n")
            .expect_err("must be rejected")
            .to_string();
        assert_eq!(
            msg,
            "t.toml:2:20: sandbox.env_passthrough: \"A-B\" is not a variable name"
        );
    }
}
