//! The pure sandbox plan: everything `apply` will do, as data.
//!
//! [`SandboxPlan::build`] turns validated settings plus a few host facts
//! ([`HostFacts`]) into a plan without touching the kernel, so the plan can be
//! unit-tested, printed with `airlock run --explain`, and shipped to the init
//! process as JSON. The init only executes it.

use crate::seccomp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the workspace appears inside the sandbox.
pub const WORKSPACE_DIR: &str = "/workspace";
/// The agent's (empty) home directory inside the sandbox.
pub const HOME_DIR: &str = "/home/agent";
/// The CA bundle path inside the sandbox (host roots + the proxy's CA).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The user the agent runs as inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
/// The host uid/gid the agent runs as by default when Airlock runs as root
/// (`nobody`): never 0, so no host file is the agent's as root's.
pub const DEFAULT_HOST_ID: u32 = 65534;
/// The group the agent runs as inside the sandbox.
pub const SANDBOX_GID: u32 = 1000;
/// `PATH` inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host directories mounted read-only when they exist (or re-created as the
/// same symlink when they are symlinks, as on merged-/usr systems).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Host files under `/etc` that carry no secrets and that ordinary tools need
/// (dynamic linker cache, time zone, service names). Everything else under the
/// host's `/etc` is simply absent.
pub const ETC_PASSTHROUGH: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/ssl/openssl.cnf",
];

/// Environment variables the sandbox sets itself; `--env` may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
];

/// A Linux namespace the init unshares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    /// User namespace: the agent is uid 1000 inside, mapped to the caller outside.
    User,
    /// Mount namespace: a private mount table and a new root.
    Mount,
    /// PID namespace: the agent sees only its own processes.
    Pid,
    /// IPC namespace: no shared System V IPC or POSIX queues with the host.
    Ipc,
    /// UTS namespace: own host name.
    Uts,
    /// Cgroup namespace: the agent's cgroup looks like the root.
    Cgroup,
    /// Network namespace: loopback only.
    Net,
}

/// All namespaces, in the order the plan lists them.
pub const ALL_NAMESPACES: &[Namespace] = &[
    Namespace::User,
    Namespace::Mount,
    Namespace::Pid,
    Namespace::Ipc,
    Namespace::Uts,
    Namespace::Cgroup,
    Namespace::Net,
];

/// One filesystem step, executed in order inside the new mount namespace.
/// Targets are paths inside the new root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountStep {
    /// A fresh tmpfs.
    Tmpfs {
        target: PathBuf,
        size_bytes: u64,
        mode: u32,
    },
    /// A bind mount of a host path (`nosuid` always; read-only unless `writable`).
    Bind {
        source: PathBuf,
        target: PathBuf,
        writable: bool,
    },
    /// A writable host directory (the workspace, `sandbox.read_write`),
    /// opened without following symlinks and attached as a detached mount
    /// (`open_tree` + `move_mount`), always `nosuid,nodev`. With `idmap`, the
    /// mount is id-mapped: the host owner's files appear as the agent's, and
    /// what the agent creates is stored as the host owner. Id-mapping needs
    /// host privileges, so stage 1 prepares it before it leaves the host's
    /// user namespace.
    Attach {
        source: PathBuf,
        target: PathBuf,
        idmap: Option<IdMap>,
    },
    /// A bind mount of a host device node (keeps the device usable).
    Device { source: PathBuf, target: PathBuf },
    /// A fresh procfs for the new PID namespace.
    Proc { target: PathBuf },
    /// A private devpts instance.
    Devpts { target: PathBuf },
    /// A symbolic link.
    Symlink { link: PathBuf, points_to: PathBuf },
    /// A generated file.
    File {
        target: PathBuf,
        contents: FileContents,
        mode: u32,
    },
    /// Make a mount read-only (after its files were written).
    ReadOnly { target: PathBuf },
    /// Detach the host's root, kept reachable only while the steps above
    /// copied from it; nothing of the host remains reachable afterwards.
    DetachHost,
}

/// The id-mapping of an [`MountStep::Attach`] mount: host owner ⇄ agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The directory's owner on the host: its files appear as the agent's,
    /// and files the agent creates are stored as this uid.
    pub host_uid: u32,
    /// The directory's group on the host, likewise.
    pub host_gid: u32,
    /// The agent's host uid/gid (the plan's `outside_uid`/`outside_gid`),
    /// which the owner's files map to.
    pub agent_uid: u32,
    pub agent_gid: u32,
}

/// Where the agent's standard input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdinSource {
    /// Airlock's own standard input (a pipe or file, or a terminal with `--interactive`).
    Inherit,
    /// `/dev/null`: Airlock's standard input is a terminal and `--interactive` was not given.
    Null,
    /// A new pipe the caller writes ([`crate::Running::take_stdin`]): a
    /// server the supervisor speaks to (an MCP tool server).
    Piped,
}

/// The contents of a generated file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileContents {
    /// Literal text.
    Text { text: String },
    /// The host's CA bundle (if any) followed by extra PEM certificates.
    CaBundle {
        host_bundle: Option<PathBuf>,
        extra_pem: String,
    },
}

/// What a Landlock path rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsAccess {
    /// List directories only (granted on `/`, whose every directory is the sandbox's own).
    List,
    /// Read files and list directories.
    Read,
    /// Read and execute.
    ReadExec,
    /// Read and write a device file (no directory changes).
    Device,
    /// Everything (create, write, remove, rename within the grant, execute).
    ReadWrite,
}

/// One Landlock filesystem rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRule {
    /// A path inside the new root.
    pub path: PathBuf,
    /// What it grants beneath that path.
    pub access: FsAccess,
}

/// The Landlock part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockPlan {
    /// Refuse to run when the kernel's Landlock ABI is below this.
    pub min_abi: u8,
    /// Filesystem grants; everything else is denied.
    pub fs: Vec<FsRule>,
    /// The only TCP ports `connect` may reach.
    pub connect_tcp: Vec<u16>,
    /// Deny connecting to abstract UNIX sockets outside the sandbox (ABI ≥ 6).
    pub scope_abstract_unix: bool,
    /// Deny signals to processes outside the sandbox (ABI ≥ 6).
    pub scope_signals: bool,
}

/// Resource limit kinds the plan sets with `setrlimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlimitKind {
    /// RLIMIT_CORE: no core dumps (they could leak memory contents to disk).
    Core,
    /// RLIMIT_FSIZE: largest file the agent may write.
    Fsize,
    /// RLIMIT_NOFILE: open files.
    Nofile,
}

/// One resource limit (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub kind: RlimitKind,
    pub value: u64,
}

/// Cgroup limits, applied by the supervisor before the init starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// Memory limit in bytes (no swap).
    pub memory_bytes: u64,
    /// Maximum number of tasks.
    pub pids_max: u64,
    /// CPU quota in percent of one CPU (100 = one full core).
    pub cpu_percent: u32,
}

/// The network part of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The port of the proxy listener the init binds on 127.0.0.1 inside the
    /// sandbox's network namespace and hands to the supervisor.
    pub proxy_port: u16,
}

/// Timeouts enforced by the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// End the run after this many seconds in total (0 = none).
    pub wall_secs: u64,
    /// End the run after this many seconds without output (0 = none).
    pub idle_secs: u64,
}

/// The complete plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    /// The run this plan belongs to.
    pub run_id: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The agent's entire environment.
    pub env: BTreeMap<String, String>,
    /// The agent's working directory inside the sandbox.
    pub cwd: PathBuf,
    /// The host directory mounted read-write at [`WORKSPACE_DIR`].
    pub workspace: PathBuf,
    /// Namespaces to unshare.
    pub namespaces: Vec<Namespace>,
    /// uid/gid inside the sandbox.
    pub inside_uid: u32,
    pub inside_gid: u32,
    /// The uid/gid they map to outside: the caller, or the unprivileged
    /// `sandbox.host_uid`/`host_gid` when Airlock runs as root.
    pub outside_uid: u32,
    pub outside_gid: u32,
    /// Where the agent's standard input comes from.
    pub stdin: StdinSource,
    /// The most a run may add to the file systems of its writable host
    /// directories, bytes (enforced by the supervisor).
    pub write_limit_bytes: u64,
    /// Host name inside.
    pub hostname: String,
    /// Filesystem steps, in order.
    pub mounts: Vec<MountStep>,
    pub network: NetworkPlan,
    pub landlock: LandlockPlan,
    /// Names of the seccomp rules (the filter itself is [`seccomp::RULES`]).
    pub seccomp_rules: Vec<String>,
    /// SHA-256 of the compiled seccomp filter, hex.
    pub seccomp_digest: String,
    pub rlimits: Vec<Rlimit>,
    pub cgroup: CgroupLimits,
    pub timeouts: Timeouts,
    /// Controls that may be skipped when unavailable (development only).
    pub allow_weaker: bool,
}

/// Validated inputs from the configuration and the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    pub run_id: String,
    pub argv: Vec<String>,
    /// The host workspace directory (absolute, canonical).
    pub workspace: PathBuf,
    /// Extra variables for the agent, already resolved to values.
    pub extra_env: Vec<(String, String)>,
    /// Extra host paths mounted read-only at the same path.
    pub extra_ro: Vec<PathBuf>,
    /// Extra host paths mounted read-write at the same path.
    pub extra_rw: Vec<PathBuf>,
    pub min_landlock_abi: u8,
    pub proxy_port: u16,
    /// The proxy's CA certificate (PEM) to trust inside.
    pub proxy_ca_pem: String,
    pub cgroup: CgroupLimits,
    pub timeouts: Timeouts,
    /// Largest file the agent may write, bytes.
    pub max_file_bytes: u64,
    /// Open files.
    pub max_open_files: u64,
    /// Size of each tmpfs (`/tmp`, home), bytes.
    pub tmpfs_bytes: u64,
    /// The most a run may add to its writable host directories' file systems, bytes.
    pub max_write_bytes: u64,
    /// The host uid/gid the agent runs as when Airlock runs as root (never 0).
    pub host_uid: u32,
    pub host_gid: u32,
    /// `--interactive`: give the agent a terminal on standard input.
    pub interactive: bool,
    pub allow_weaker: bool,
}

/// Facts about the host the plan depends on, gathered by [`HostFacts::probe`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// Effective uid and gid of the caller.
    pub uid: u32,
    pub gid: u32,
    /// `LANG` and `TERM` of the caller, if set.
    pub lang: Option<String>,
    pub term: Option<String>,
    /// For each of [`SYSTEM_DIRS`] that exists: `None` for a directory,
    /// `Some(target)` for a symlink.
    pub system_dirs: Vec<(PathBuf, Option<PathBuf>)>,
    /// Which of [`ETC_PASSTHROUGH`] exist.
    pub etc_present: Vec<PathBuf>,
    /// The host's CA bundle, if there is one.
    pub host_ca_bundle: Option<PathBuf>,
    /// Whether our standard input is a terminal.
    pub stdin_is_terminal: bool,
    /// Owner uid/gid of the writable host directories (see [`HostFacts::probe_owners`]).
    pub owners: BTreeMap<PathBuf, (u32, u32)>,
}

impl HostFacts {
    /// Gather the facts from the running system.
    pub fn probe() -> HostFacts {
        let mut system_dirs = Vec::new();
        for d in SYSTEM_DIRS {
            let p = Path::new(d);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(p) {
                        system_dirs.push((p.to_owned(), Some(t)));
                    }
                }
                Ok(m) if m.is_dir() => system_dirs.push((p.to_owned(), None)),
                _ => {}
            }
        }
        let etc_present = ETC_PASSTHROUGH
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        let host_ca_bundle = [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
        let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        HostFacts {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            lang: non_empty("LANG"),
            term: non_empty("TERM"),
            system_dirs,
            etc_present,
            host_ca_bundle,
            stdin_is_terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
            owners: BTreeMap::new(),
        }
    }

    /// Record the owners of `paths` (the writable host directories).
    pub fn probe_owners<'a>(&mut self, paths: impl IntoIterator<Item = &'a Path>) {
        use std::os::unix::fs::MetadataExt;
        for p in paths {
            if let Ok(m) = std::fs::metadata(p) {
                self.owners.insert(p.to_owned(), (m.uid(), m.gid()));
            }
        }
    }
}

/// The plan could not be built from its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No command was given.
    #[error("no command given: use `airlock run [OPTIONS] -- CMD [ARGS...]`")]
    NoCommand,
    /// The workspace path is not absolute.
    #[error("workspace {}: must be an absolute path", .0.display())]
    WorkspaceNotAbsolute(PathBuf),
    /// An extra path is not absolute or would shadow a path the sandbox owns.
    #[error("extra path {}: {}", .path.display(), .why)]
    BadExtraPath { path: PathBuf, why: &'static str },
    /// `--env` tried to set a variable the sandbox owns.
    #[error("environment variable {0}: set by the sandbox itself and cannot be overridden")]
    ReservedEnv(String),
    /// An environment variable name is empty or contains `=` or NUL.
    #[error("environment variable {0:?}: invalid name")]
    BadEnvName(String),
    /// The minimum Landlock ABI is outside what this build knows.
    #[error("minimum Landlock ABI {0}: must be between 1 and 7")]
    BadLandlockAbi(u8),
    /// The proxy port is 0.
    #[error("proxy port 0: must be between 1 and 65535")]
    BadProxyPort,
    /// The agent would run as host root.
    #[error("sandbox.host_uid/host_gid 0: the agent may not run as host root")]
    RootHostId,
    /// The owner of a writable host directory is unknown.
    #[error("{}: cannot read its owner (does it exist?)", .0.display())]
    OwnerUnknown(PathBuf),
}

/// Paths the sandbox itself owns; extra paths may not be or sit under them.
const OWNED_ROOTS: &[&str] = &["/", "/etc", "/proc", "/dev", "/tmp", "/home", WORKSPACE_DIR];

fn check_extra(path: &Path) -> Result<(), PlanError> {
    if !path.is_absolute() {
        return Err(PlanError::BadExtraPath {
            path: path.to_owned(),
            why: "must be an absolute path",
        });
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PlanError::BadExtraPath {
            path: path.to_owned(),
            why: "must not contain `..`",
        });
    }
    for owned in OWNED_ROOTS {
        let owned = Path::new(owned);
        if path == owned || (owned != Path::new("/") && path.starts_with(owned)) {
            return Err(PlanError::BadExtraPath {
                path: path.to_owned(),
                why: "is (or is under) a path the sandbox provides itself",
            });
        }
    }
    for sys in SYSTEM_DIRS {
        if path.starts_with(sys) {
            return Err(PlanError::BadExtraPath {
                path: path.to_owned(),
                why: "is under a system directory that is already mounted read-only",
            });
        }
    }
    Ok(())
}

impl SandboxPlan {
    /// Build the plan. Pure: the only inputs are `input` and `facts`.
    pub fn build(input: &PlanInput, facts: &HostFacts) -> Result<SandboxPlan, PlanError> {
        if input.argv.is_empty() || input.argv[0].is_empty() {
            return Err(PlanError::NoCommand);
        }
        if !input.workspace.is_absolute() {
            return Err(PlanError::WorkspaceNotAbsolute(input.workspace.clone()));
        }
        if !(1..=7).contains(&input.min_landlock_abi) {
            return Err(PlanError::BadLandlockAbi(input.min_landlock_abi));
        }
        if input.proxy_port == 0 {
            return Err(PlanError::BadProxyPort);
        }
        for p in input.extra_ro.iter().chain(&input.extra_rw) {
            check_extra(p)?;
        }
        // As root, the agent becomes an unprivileged host user and reaches its
        // writable directories through id-mapped mounts; otherwise it is the
        // caller (who cannot map to anyone else) on plain mounts.
        let (outside_uid, outside_gid) = if facts.uid == 0 {
            if input.host_uid == 0 || input.host_gid == 0 {
                return Err(PlanError::RootHostId);
            }
            (input.host_uid, input.host_gid)
        } else {
            (facts.uid, facts.gid)
        };
        let idmap = |p: &Path| -> Result<Option<IdMap>, PlanError> {
            if facts.uid != 0 {
                return Ok(None);
            }
            let (host_uid, host_gid) = facts
                .owners
                .get(p)
                .copied()
                .ok_or_else(|| PlanError::OwnerUnknown(p.to_owned()))?;
            Ok(Some(IdMap {
                host_uid,
                host_gid,
                agent_uid: outside_uid,
                agent_gid: outside_gid,
            }))
        };
        let mut idmaps = BTreeMap::new();
        for p in std::iter::once(&input.workspace).chain(&input.extra_rw) {
            idmaps.insert(p.clone(), idmap(p)?);
        }

        let env = build_env(input, facts)?;
        let mounts = build_mounts(input, facts, &idmaps);
        let landlock = build_landlock(input, facts);
        let compiled = seccomp::compile().expect("invariant: the built-in seccomp rules compile");

        Ok(SandboxPlan {
            run_id: input.run_id.clone(),
            argv: input.argv.clone(),
            env,
            cwd: PathBuf::from(WORKSPACE_DIR),
            workspace: input.workspace.clone(),
            namespaces: ALL_NAMESPACES.to_vec(),
            inside_uid: SANDBOX_UID,
            inside_gid: SANDBOX_GID,
            outside_uid,
            outside_gid,
            stdin: if facts.stdin_is_terminal && !input.interactive {
                StdinSource::Null
            } else {
                StdinSource::Inherit
            },
            write_limit_bytes: input.max_write_bytes,
            hostname: "airlock".into(),
            mounts,
            network: NetworkPlan {
                proxy_port: input.proxy_port,
            },
            landlock,
            seccomp_rules: seccomp::RULES.iter().map(|r| r.name().to_owned()).collect(),
            seccomp_digest: compiled.digest_hex(),
            rlimits: vec![
                Rlimit {
                    kind: RlimitKind::Core,
                    value: 0,
                },
                Rlimit {
                    kind: RlimitKind::Fsize,
                    // One file may not exceed what the whole run may write.
                    value: input.max_file_bytes.min(input.max_write_bytes),
                },
                Rlimit {
                    kind: RlimitKind::Nofile,
                    value: input.max_open_files,
                },
            ],
            cgroup: input.cgroup,
            timeouts: input.timeouts,
            allow_weaker: input.allow_weaker,
        })
    }

    /// The plan as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("invariant: a plan serializes")
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

fn build_env(input: &PlanInput, facts: &HostFacts) -> Result<BTreeMap<String, String>, PlanError> {
    let proxy = format!("http://127.0.0.1:{}", input.proxy_port);
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), v.to_owned());
    };
    set("PATH", SANDBOX_PATH);
    set("HOME", HOME_DIR);
    set("USER", "agent");
    set("LOGNAME", "agent");
    set("LANG", facts.lang.as_deref().unwrap_or("C.UTF-8"));
    if let Some(term) = &facts.term {
        set("TERM", term);
    }
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        set(k, &proxy);
    }
    // Empty on purpose: every destination, loopback included, goes to the
    // proxy, which decides (and audits). Direct connections could only reach
    // the sandbox's own loopback, where Landlock allows only the proxy port.
    for k in ["NO_PROXY", "no_proxy"] {
        set(k, "");
    }
    for k in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
    ] {
        set(k, CA_BUNDLE);
    }
    for (k, v) in &input.extra_env {
        if !valid_env_name(k) || v.contains('\0') {
            return Err(PlanError::BadEnvName(k.clone()));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(PlanError::ReservedEnv(k.clone()));
        }
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn text(s: String) -> FileContents {
    FileContents::Text { text: s }
}

fn build_mounts(
    input: &PlanInput,
    facts: &HostFacts,
    idmaps: &BTreeMap<PathBuf, Option<IdMap>>,
) -> Vec<MountStep> {
    let idmap = |p: &PathBuf| idmaps.get(p).copied().flatten();
    let mut m = Vec::new();
    for (dir, link) in &facts.system_dirs {
        match link {
            Some(target) => m.push(MountStep::Symlink {
                link: dir.clone(),
                points_to: target.clone(),
            }),
            None => m.push(MountStep::Bind {
                source: dir.clone(),
                target: dir.clone(),
                writable: false,
            }),
        }
    }
    // /etc: a generated view.
    m.push(MountStep::Tmpfs {
        target: p("/etc"),
        size_bytes: 16 << 20,
        mode: 0o755,
    });
    let (u, g) = (SANDBOX_UID, SANDBOX_GID);
    let files = [
        ("/etc/passwd", format!("root:x:0:0:root:/root:/bin/sh\nagent:x:{u}:{g}:agent:{HOME_DIR}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")),
        ("/etc/group", format!("root:x:0:\nagent:x:{g}:\nnogroup:x:65534:\n")),
        ("/etc/hosts", "127.0.0.1\tlocalhost airlock\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned()),
        // No nameserver: names are resolved by the proxy, never inside.
        ("/etc/resolv.conf", "# Airlock: no DNS inside the sandbox; the proxy resolves names.\noptions timeout:1 attempts:1\n".to_owned()),
        ("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n".to_owned()),
        ("/etc/hostname", "airlock\n".to_owned()),
    ];
    for (path, contents) in files {
        m.push(MountStep::File {
            target: p(path),
            contents: text(contents),
            mode: 0o644,
        });
    }
    m.push(MountStep::File {
        target: p(CA_BUNDLE),
        contents: FileContents::CaBundle {
            host_bundle: facts.host_ca_bundle.clone(),
            extra_pem: input.proxy_ca_pem.clone(),
        },
        mode: 0o644,
    });
    for e in &facts.etc_present {
        m.push(MountStep::Bind {
            source: e.clone(),
            target: e.clone(),
            writable: false,
        });
    }
    m.push(MountStep::ReadOnly { target: p("/etc") });

    // /dev: minimal.
    m.push(MountStep::Tmpfs {
        target: p("/dev"),
        size_bytes: 1 << 20,
        mode: 0o755,
    });
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let path = PathBuf::from("/dev").join(d);
        m.push(MountStep::Device {
            source: path.clone(),
            target: path,
        });
    }
    m.push(MountStep::Devpts {
        target: p("/dev/pts"),
    });
    m.push(MountStep::Symlink {
        link: p("/dev/ptmx"),
        points_to: p("pts/ptmx"),
    });
    m.push(MountStep::Symlink {
        link: p("/dev/fd"),
        points_to: p("/proc/self/fd"),
    });
    m.push(MountStep::Symlink {
        link: p("/dev/stdin"),
        points_to: p("/proc/self/fd/0"),
    });
    m.push(MountStep::Symlink {
        link: p("/dev/stdout"),
        points_to: p("/proc/self/fd/1"),
    });
    m.push(MountStep::Symlink {
        link: p("/dev/stderr"),
        points_to: p("/proc/self/fd/2"),
    });
    m.push(MountStep::Tmpfs {
        target: p("/dev/shm"),
        size_bytes: input.tmpfs_bytes,
        mode: 0o1777,
    });
    m.push(MountStep::ReadOnly { target: p("/dev") });

    m.push(MountStep::Proc { target: p("/proc") });
    m.push(MountStep::Tmpfs {
        target: p("/tmp"),
        size_bytes: input.tmpfs_bytes,
        mode: 0o1777,
    });
    m.push(MountStep::Tmpfs {
        target: p("/home"),
        size_bytes: 1 << 20,
        mode: 0o755,
    });
    m.push(MountStep::Tmpfs {
        target: p(HOME_DIR),
        size_bytes: input.tmpfs_bytes,
        mode: 0o700,
    });
    m.push(MountStep::ReadOnly { target: p("/home") });
    m.push(MountStep::Attach {
        source: input.workspace.clone(),
        target: p(WORKSPACE_DIR),
        idmap: idmap(&input.workspace),
    });
    for x in &input.extra_ro {
        m.push(MountStep::Bind {
            source: x.clone(),
            target: x.clone(),
            writable: false,
        });
    }
    for x in &input.extra_rw {
        m.push(MountStep::Attach {
            source: x.clone(),
            target: x.clone(),
            idmap: idmap(x),
        });
    }
    m.push(MountStep::DetachHost);
    // Finally the new root itself becomes read-only.
    m.push(MountStep::ReadOnly { target: p("/") });
    m
}

fn build_landlock(input: &PlanInput, facts: &HostFacts) -> LandlockPlan {
    let mut fs = Vec::new();
    let mut rule = |path: PathBuf, access| fs.push(FsRule { path, access });
    rule(p("/"), FsAccess::List);
    for (dir, link) in &facts.system_dirs {
        if link.is_none() {
            rule(dir.clone(), FsAccess::ReadExec);
        }
    }
    rule(p("/etc"), FsAccess::Read);
    rule(p("/proc"), FsAccess::Read);
    for d in ["null", "zero", "full", "random", "urandom", "tty", "pts"] {
        rule(PathBuf::from("/dev").join(d), FsAccess::Device);
    }
    rule(p("/dev/shm"), FsAccess::ReadWrite);
    rule(p("/tmp"), FsAccess::ReadWrite);
    rule(p(HOME_DIR), FsAccess::ReadWrite);
    rule(p(WORKSPACE_DIR), FsAccess::ReadWrite);
    for x in &input.extra_ro {
        rule(x.clone(), FsAccess::ReadExec);
    }
    for x in &input.extra_rw {
        rule(x.clone(), FsAccess::ReadWrite);
    }
    LandlockPlan {
        min_abi: input.min_landlock_abi,
        fs,
        connect_tcp: vec![input.proxy_port],
        scope_abstract_unix: true,
        scope_signals: true,
    }
}

impl fmt::Display for SandboxPlan {
    /// The human-readable form printed by `airlock run --explain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sandbox plan for run {}", self.run_id)?;
        writeln!(f, "  command:     {:?}", self.argv)?;
        writeln!(
            f,
            "  workspace:   {} -> {} (read-write)",
            self.workspace.display(),
            WORKSPACE_DIR
        )?;
        let ns: Vec<_> = self
            .namespaces
            .iter()
            .map(|n| format!("{n:?}").to_lowercase())
            .collect();
        writeln!(f, "  namespaces:  {}", ns.join(", "))?;
        writeln!(
            f,
            "  identity:    uid {} gid {} inside = uid {} gid {} outside; no supplementary groups; all capabilities dropped; no_new_privs",
            self.inside_uid, self.inside_gid, self.outside_uid, self.outside_gid
        )?;
        writeln!(
            f,
            "  stdin:       {}",
            match self.stdin {
                StdinSource::Inherit => "inherited from airlock (not a terminal, or --interactive)",
                StdinSource::Null =>
                    "/dev/null (airlock's stdin is a terminal; --interactive passes it)",
                StdinSource::Piped => "a pipe from the supervisor",
            }
        )?;
        writeln!(
            f,
            "  writes:      at most {} MiB added to the writable host directories' file systems (the run is ended past it); no setuid/setgid files (seccomp)",
            self.write_limit_bytes >> 20
        )?;
        writeln!(
            f,
            "  network:     loopback only; proxy listener 127.0.0.1:{} served by the supervisor; no DNS",
            self.network.proxy_port
        )?;
        writeln!(f, "  filesystem:")?;
        for m in &self.mounts {
            match m {
                MountStep::Tmpfs {
                    target,
                    size_bytes,
                    mode,
                } => writeln!(
                    f,
                    "    tmpfs    {} (size {} KiB, mode {mode:o})",
                    target.display(),
                    size_bytes / 1024
                )?,
                MountStep::Bind {
                    source,
                    target,
                    writable,
                } => writeln!(
                    f,
                    "    bind     {} <- {} ({})",
                    target.display(),
                    source.display(),
                    if *writable {
                        "read-write, nosuid"
                    } else {
                        "read-only, nosuid"
                    }
                )?,
                MountStep::Attach {
                    source,
                    target,
                    idmap,
                } => match idmap {
                    Some(m) => writeln!(
                        f,
                        "    attach   {} <- {} (read-write, nosuid, nodev, no symlinks followed; id-mapped: host uid {} gid {} <-> agent uid {} gid {} on the host)",
                        target.display(),
                        source.display(),
                        m.host_uid,
                        m.host_gid,
                        m.agent_uid,
                        m.agent_gid
                    )?,
                    None => writeln!(
                        f,
                        "    attach   {} <- {} (read-write, nosuid, nodev, no symlinks followed; the agent acts as the caller)",
                        target.display(),
                        source.display()
                    )?,
                },
                MountStep::Device { source, target } => writeln!(
                    f,
                    "    device   {} <- {}",
                    target.display(),
                    source.display()
                )?,
                MountStep::Proc { target } => writeln!(
                    f,
                    "    proc     {} (new PID namespace only)",
                    target.display()
                )?,
                MountStep::Devpts { target } => {
                    writeln!(f, "    devpts   {} (private instance)", target.display())?
                }
                MountStep::Symlink { link, points_to } => writeln!(
                    f,
                    "    symlink  {} -> {}",
                    link.display(),
                    points_to.display()
                )?,
                MountStep::File {
                    target, contents, ..
                } => match contents {
                    FileContents::Text { text } => writeln!(
                        f,
                        "    file     {} ({} bytes, generated)",
                        target.display(),
                        text.len()
                    )?,
                    FileContents::CaBundle { host_bundle, .. } => writeln!(
                        f,
                        "    file     {} (host roots from {} + the proxy CA)",
                        target.display(),
                        host_bundle
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "nowhere".into())
                    )?,
                },
                MountStep::ReadOnly { target } => writeln!(f, "    readonly {}", target.display())?,
                MountStep::DetachHost => writeln!(
                    f,
                    "    detach   the host root (nothing of the host remains reachable)"
                )?,
            }
        }
        writeln!(
            f,
            "  landlock:    ABI >= {} required",
            self.landlock.min_abi
        )?;
        for r in &self.landlock.fs {
            writeln!(
                f,
                "    {:<10} {}",
                format!("{:?}", r.access).to_lowercase(),
                r.path.display()
            )?;
        }
        writeln!(
            f,
            "    tcp connect only to ports {:?}",
            self.landlock.connect_tcp
        )?;
        writeln!(
            f,
            "    scoped: abstract unix sockets {}, signals {}",
            self.landlock.scope_abstract_unix, self.landlock.scope_signals
        )?;
        writeln!(
            f,
            "  seccomp:     {} rules, filter sha256 {}",
            self.seccomp_rules.len(),
            self.seccomp_digest
        )?;
        for r in seccomp::RULES {
            writeln!(f, "    {:<28} {:<6} {}", r.name(), r.action.as_str(), r.why)?;
        }
        let rl: Vec<_> = self
            .rlimits
            .iter()
            .map(|r| format!("{:?}={}", r.kind, r.value).to_lowercase())
            .collect();
        writeln!(f, "  rlimits:     {}", rl.join(", "))?;
        writeln!(
            f,
            "  cgroup:      memory {} MiB (no swap), pids {}, cpu {}% of one core",
            self.cgroup.memory_bytes >> 20,
            self.cgroup.pids_max,
            self.cgroup.cpu_percent
        )?;
        let t = |s: u64| {
            if s == 0 {
                "none".to_owned()
            } else {
                format!("{s}s")
            }
        };
        writeln!(
            f,
            "  timeouts:    wall {}, idle {}",
            t(self.timeouts.wall_secs),
            t(self.timeouts.idle_secs)
        )?;
        let env: Vec<_> = self.env.keys().cloned().collect();
        writeln!(f, "  environment: {}", env.join(" "))?;
        if self.allow_weaker {
            writeln!(
                f,
                "  WARNING:     --dangerously-allow-weaker-sandbox: unavailable Landlock/cgroups are skipped"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PlanInput {
        PlanInput {
            run_id: "run-1".into(),
            argv: vec!["python3".into(), "-c".into(), "print(1)".into()],
            workspace: p("/home/me/project"),
            extra_env: vec![("FOO".into(), "bar".into())],
            extra_ro: vec![p("/opt/models")],
            extra_rw: vec![],
            min_landlock_abi: 6,
            proxy_port: 3128,
            proxy_ca_pem: "-----BEGIN CERTIFICATE-----\n...\n".into(),
            cgroup: CgroupLimits {
                memory_bytes: 1 << 30,
                pids_max: 256,
                cpu_percent: 100,
            },
            timeouts: Timeouts {
                wall_secs: 0,
                idle_secs: 1800,
            },
            max_file_bytes: 1 << 30,
            max_open_files: 1024,
            tmpfs_bytes: 64 << 20,
            max_write_bytes: 256 << 20,
            host_uid: DEFAULT_HOST_ID,
            host_gid: DEFAULT_HOST_ID,
            interactive: false,
            allow_weaker: false,
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            uid: 0,
            gid: 0,
            lang: None,
            term: Some("xterm".into()),
            system_dirs: vec![(p("/usr"), None), (p("/bin"), Some(p("usr/bin")))],
            etc_present: vec![p("/etc/ld.so.cache")],
            host_ca_bundle: Some(p("/etc/ssl/certs/ca-certificates.crt")),
            stdin_is_terminal: false,
            owners: [(p("/home/me/project"), (1001, 1002))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn environment_is_minimal_and_points_at_the_proxy() {
        let plan = SandboxPlan::build(&input(), &facts()).expect("plan");
        let keys: Vec<&str> = plan.env.keys().map(String::as_str).collect();
        let mut want = vec![
            "ALL_PROXY",
            "CURL_CA_BUNDLE",
            "FOO",
            "GIT_SSL_CAINFO",
            "HOME",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "LANG",
            "LOGNAME",
            "NODE_EXTRA_CA_CERTS",
            "NO_PROXY",
            "PATH",
            "PIP_CERT",
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "TERM",
            "USER",
            "all_proxy",
            "http_proxy",
            "https_proxy",
            "no_proxy",
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(plan.env["HTTPS_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(plan.env["SSL_CERT_FILE"], CA_BUNDLE);
        assert_eq!(plan.env["LANG"], "C.UTF-8");
    }

    #[test]
    fn env_cannot_override_proxy_variables() {
        let mut i = input();
        i.extra_env = vec![("HTTPS_PROXY".into(), "http://evil".into())];
        assert_eq!(
            SandboxPlan::build(&i, &facts()),
            Err(PlanError::ReservedEnv("HTTPS_PROXY".into()))
        );
        i.extra_env = vec![("A=B".into(), "x".into())];
        assert_eq!(
            SandboxPlan::build(&i, &facts()),
            Err(PlanError::BadEnvName("A=B".into()))
        );
    }

    #[test]
    fn missing_command_is_refused() {
        let mut i = input();
        i.argv.clear();
        assert_eq!(SandboxPlan::build(&i, &facts()), Err(PlanError::NoCommand));
    }

    #[test]
    fn extra_paths_may_not_shadow_sandbox_paths() {
        for bad in [
            "/etc/ssh",
            "/",
            "/proc/1",
            "/usr/local/x",
            "relative",
            "/opt/../etc",
        ] {
            let mut i = input();
            i.extra_rw = vec![p(bad)];
            assert!(
                matches!(
                    SandboxPlan::build(&i, &facts()),
                    Err(PlanError::BadExtraPath { .. })
                ),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn filesystem_plan_orders_mounts_and_grants() {
        let plan = SandboxPlan::build(&input(), &facts()).expect("plan");
        assert_eq!(
            plan.mounts[0],
            MountStep::Bind {
                source: p("/usr"),
                target: p("/usr"),
                writable: false
            }
        );
        assert_eq!(
            plan.mounts[1],
            MountStep::Symlink {
                link: p("/bin"),
                points_to: p("usr/bin")
            }
        );
        assert_eq!(
            plan.mounts.last(),
            Some(&MountStep::ReadOnly { target: p("/") })
        );
        // The workspace is the only host path mounted writable, and it is
        // id-mapped (the facts say Airlock runs as root).
        let writable: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    MountStep::Bind { writable: true, .. } | MountStep::Attach { .. }
                )
            })
            .cloned()
            .collect();
        assert_eq!(
            writable,
            vec![MountStep::Attach {
                source: p("/home/me/project"),
                target: p(WORKSPACE_DIR),
                idmap: Some(IdMap {
                    host_uid: 1001,
                    host_gid: 1002,
                    agent_uid: DEFAULT_HOST_ID,
                    agent_gid: DEFAULT_HOST_ID,
                }),
            }]
        );
        // Nothing of the host's /etc except the listed pass-through files.
        let etc_binds: Vec<_> = plan
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountStep::Bind { source, .. } if source.starts_with("/etc") => {
                    Some(source.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(etc_binds, vec![p("/etc/ld.so.cache")]);
        assert_eq!(plan.landlock.connect_tcp, vec![3128]);
        assert!(plan.landlock.fs.contains(&FsRule {
            path: p(WORKSPACE_DIR),
            access: FsAccess::ReadWrite
        }));
        assert!(plan.landlock.fs.contains(&FsRule {
            path: p("/opt/models"),
            access: FsAccess::ReadExec
        }));
    }

    #[test]
    fn as_root_the_agent_is_an_unprivileged_host_user() {
        let plan = SandboxPlan::build(&input(), &facts()).expect("plan");
        assert_eq!(
            (
                plan.inside_uid,
                plan.inside_gid,
                plan.outside_uid,
                plan.outside_gid
            ),
            (1000, 1000, 65534, 65534)
        );
        let text = plan.to_string();
        assert!(
            text.contains("attach   /workspace <- /home/me/project (read-write, nosuid, nodev, no symlinks followed; id-mapped: host uid 1001 gid 1002 <-> agent uid 65534 gid 65534 on the host)"),
            "{text}"
        );
        let mut i = input();
        i.host_uid = 0;
        assert_eq!(SandboxPlan::build(&i, &facts()), Err(PlanError::RootHostId));
        let mut f = facts();
        f.owners.clear();
        assert_eq!(
            SandboxPlan::build(&input(), &f),
            Err(PlanError::OwnerUnknown(p("/home/me/project")))
        );
    }

    #[test]
    fn as_another_user_the_agent_is_the_caller_on_a_plain_mount() {
        let mut f = facts();
        f.uid = 1001;
        f.gid = 1002;
        let plan = SandboxPlan::build(&input(), &f).expect("plan");
        assert_eq!((plan.outside_uid, plan.outside_gid), (1001, 1002));
        assert!(plan.mounts.contains(&MountStep::Attach {
            source: p("/home/me/project"),
            target: p(WORKSPACE_DIR),
            idmap: None,
        }));
    }

    #[test]
    fn a_terminal_on_stdin_is_passed_only_when_interactive() {
        let mut f = facts();
        assert_eq!(
            SandboxPlan::build(&input(), &f).expect("plan").stdin,
            StdinSource::Inherit
        );
        f.stdin_is_terminal = true;
        assert_eq!(
            SandboxPlan::build(&input(), &f).expect("plan").stdin,
            StdinSource::Null
        );
        let mut i = input();
        i.interactive = true;
        assert_eq!(
            SandboxPlan::build(&i, &f).expect("plan").stdin,
            StdinSource::Inherit
        );
    }

    #[test]
    fn no_single_file_may_exceed_the_write_limit() {
        let plan = SandboxPlan::build(&input(), &facts()).expect("plan");
        assert!(plan.rlimits.contains(&Rlimit {
            kind: RlimitKind::Fsize,
            value: 256 << 20
        }));
        assert_eq!(plan.write_limit_bytes, 256 << 20);
    }

    #[test]
    fn plan_round_trips_through_json_and_explains() {
        let plan = SandboxPlan::build(&input(), &facts()).expect("plan");
        let back: SandboxPlan = serde_json::from_str(&plan.to_json_pretty()).expect("json");
        assert_eq!(back, plan);
        let text = plan.to_string();
        assert!(text.contains("proxy listener 127.0.0.1:3128"), "{text}");
        assert!(text.contains(&plan.seccomp_digest), "{text}");
        assert_eq!(plan.seccomp_digest.len(), 64);
    }
}
