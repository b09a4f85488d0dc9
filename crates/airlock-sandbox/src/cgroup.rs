//! Cgroup limits (memory, pids, cpu) for cgroup v2 and the v1/hybrid layout,
//! with plain file writes.
//!
//! [`detect`] is pure: from `/proc/self/mountinfo`, `/proc/self/cgroup` and
//! the v2 `cgroup.controllers` of our own cgroup it decides, per controller,
//! which hierarchy and directory to use. On the hybrid layout (v1 controllers
//! plus an empty v2 at `/sys/fs/cgroup/unified`) every controller lands on
//! v1; on pure v2 they all land in one v2 directory. A new child cgroup
//! `airlock-<run>` is created under the caller's own cgroup in each
//! hierarchy, so limits nest under whatever already constrains the caller.

use crate::plan::CgroupLimits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A controller the sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

const NEEDED: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

/// Which hierarchy a controller lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    V1,
    V2,
}

/// Where a controller's limits are written: the caller's own cgroup directory
/// in that hierarchy (the sandbox's cgroup is created beneath it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub version: Version,
    pub parent: PathBuf,
}

/// The detected layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub controllers: BTreeMap<Controller, Placement>,
}

/// A cgroup step failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "controller {0} is available neither in cgroup v2 nor as a v1 hierarchy (mount it, or enable it in the parent's cgroup.subtree_control)"
    )]
    Missing(&'static str),
    #[error("cannot create {}: {error} (run as root, or from a delegated cgroup, e.g. `systemd-run --user --scope -p Delegate=yes`)", path.display())]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {value:?} to {}: {error} (on cgroup v2, run airlock in a cgroup of its own, e.g. `systemd-run --user --scope -p Delegate=yes airlock run ...`)", path.display())]
    Write {
        path: PathBuf,
        value: String,
        error: std::io::Error,
    },
}

/// One mount of a cgroup hierarchy, from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgMount {
    root: String,
    mount_point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn parse_mountinfo(text: &str) -> Vec<CgMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(CgMount {
            root: unescape(l[3]),
            mount_point: PathBuf::from(unescape(l[4])),
            v2,
            options: r[2].split(',').map(str::to_owned).collect(),
        });
    }
    out
}

/// `/proc/self/cgroup`: (v1 controller → path, v2 path).
fn parse_self_cgroup(text: &str) -> (BTreeMap<String, String>, Option<String>) {
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_owned());
        } else {
            for c in ctrls.split(',') {
                v1.insert(c.to_owned(), path.to_owned());
            }
        }
    }
    (v1, v2)
}

/// The directory of `own` (a path relative to the hierarchy's root) under a
/// mount whose root is `mount.root`.
fn dir_under(mount: &CgMount, own: &str) -> PathBuf {
    let rel = own.strip_prefix(mount.root.as_str()).unwrap_or(own);
    mount.mount_point.join(rel.trim_start_matches('/'))
}

/// Decide the layout. Pure. `v2_controllers` is the content of
/// `cgroup.controllers` in our own v2 cgroup, when there is a v2 mount.
pub fn detect(
    mountinfo: &str,
    self_cgroup: &str,
    v2_controllers: Option<&str>,
) -> Result<Layout, CgroupError> {
    let mounts = parse_mountinfo(mountinfo);
    let (own_v1, own_v2) = parse_self_cgroup(self_cgroup);
    let v2_available: Vec<&str> = v2_controllers
        .map(|t| t.split_whitespace().collect())
        .unwrap_or_default();
    let v2_mount = mounts.iter().find(|m| m.v2);
    let mut controllers = BTreeMap::new();
    for c in NEEDED {
        let name = c.name();
        let placement = match (v2_mount, &own_v2) {
            (Some(m), Some(own)) if v2_available.contains(&name) => Some(Placement {
                version: Version::V2,
                parent: dir_under(m, own),
            }),
            _ => mounts
                .iter()
                .find(|m| !m.v2 && m.options.iter().any(|o| o == name))
                .map(|m| Placement {
                    version: Version::V1,
                    parent: dir_under(m, own_v1.get(name).map(String::as_str).unwrap_or("/")),
                }),
        };
        controllers.insert(c, placement.ok_or(CgroupError::Missing(name))?);
    }
    Ok(Layout { controllers })
}

/// The v2 directory of the caller's cgroup, if there is a v2 mount (used to
/// read its `cgroup.controllers` before [`detect`]).
pub fn own_v2_dir(mountinfo: &str, self_cgroup: &str) -> Option<PathBuf> {
    let mounts = parse_mountinfo(mountinfo);
    let (_, own) = parse_self_cgroup(self_cgroup);
    let m = mounts.iter().find(|m| m.v2)?;
    Some(dir_under(m, &own?))
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|error| CgroupError::Read {
        path: path.to_owned(),
        error,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|error| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        error,
    })
}

/// Detect the layout of the running system.
pub fn detect_host() -> Result<Layout, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let self_cgroup = read(Path::new("/proc/self/cgroup"))?;
    let controllers = own_v2_dir(&mountinfo, &self_cgroup)
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok());
    detect(&mountinfo, &self_cgroup, controllers.as_deref())
}

/// Enable `value` (`+memory +pids ...`) for the children of `parent`.
///
/// cgroup v2 refuses this (`EBUSY`) while `parent` itself holds processes
/// ("no internal processes"). When the only process there is the supervisor
/// (a delegated scope, e.g. `systemd-run --user --scope -p Delegate=yes`),
/// the supervisor moves itself into a leaf `airlock-supervisor-<pid>` first
/// and tries again; it stays there (the scope removes it at its end).
fn enable_v2_controllers(parent: &Path, value: &str) -> Result<(), CgroupError> {
    let control = parent.join("cgroup.subtree_control");
    let busy = match write(&control, value) {
        Ok(()) => return Ok(()),
        Err(CgroupError::Write { error, .. }) if error.raw_os_error() == Some(libc::EBUSY) => error,
        Err(e) => return Err(e),
    };
    let me = std::process::id().to_string();
    let procs = read(&parent.join("cgroup.procs"))?;
    if procs.lines().any(|p| p.trim() != me) {
        return Err(CgroupError::Write {
            path: control,
            value: value.to_owned(),
            error: busy,
        });
    }
    let leaf = parent.join(format!("airlock-supervisor-{me}"));
    if let Err(error) = std::fs::create_dir(&leaf)
        && error.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(CgroupError::Create { path: leaf, error });
    }
    write(&leaf.join("cgroup.procs"), &me)?;
    write(&control, value)
}

/// What the supervisor applied, for the attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupReport {
    /// `v1`, `v2` or `v1+v2` (mixed).
    pub layout: String,
    /// The directories created.
    pub dirs: Vec<PathBuf>,
    pub limits: CgroupLimits,
    /// How long creating the cgroups and writing the limits took.
    pub setup_micros: u64,
}

/// Resource peaks read at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peaks {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// The sandbox's cgroups, removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    dirs: BTreeMap<Controller, (Version, PathBuf)>,
    report: CgroupReport,
}

impl Cgroup {
    /// Create `airlock-<name>` in each hierarchy and write the limits.
    pub fn create(
        layout: &Layout,
        name: &str,
        limits: CgroupLimits,
    ) -> Result<Cgroup, CgroupError> {
        let start = Instant::now();
        let mut dirs: BTreeMap<Controller, (Version, PathBuf)> = BTreeMap::new();
        let leaf = format!("airlock-{name}");
        // v2: enable the controllers for children of our cgroup, once.
        let v2_parent = layout
            .controllers
            .values()
            .find(|p| p.version == Version::V2)
            .map(|p| p.parent.clone());
        if let Some(parent) = &v2_parent {
            let want: Vec<String> = layout
                .controllers
                .iter()
                .filter(|(_, p)| p.version == Version::V2)
                .map(|(c, _)| format!("+{}", c.name()))
                .collect();
            let current = read(&parent.join("cgroup.subtree_control")).unwrap_or_default();
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !current.split_whitespace().any(|c| c == &w[1..]))
                .collect();
            if !missing.is_empty() {
                let value = missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                enable_v2_controllers(parent, &value)?;
            }
        }
        let mut cg = Cgroup {
            dirs: BTreeMap::new(),
            report: CgroupReport {
                layout: String::new(),
                dirs: Vec::new(),
                limits,
                setup_micros: 0,
            },
        };
        for (c, p) in &layout.controllers {
            let dir = p.parent.join(&leaf);
            if !cg.report.dirs.contains(&dir) {
                std::fs::create_dir(&dir).map_err(|error| CgroupError::Create {
                    path: dir.clone(),
                    error,
                })?;
                cg.report.dirs.push(dir.clone());
            }
            dirs.insert(*c, (p.version, dir));
        }
        cg.dirs = dirs;
        for (c, (v, dir)) in &cg.dirs {
            match (c, v) {
                (Controller::Memory, Version::V1) => {
                    write(
                        &dir.join("memory.limit_in_bytes"),
                        &limits.memory_bytes.to_string(),
                    )?;
                    // No swap: memsw exists only with swap accounting.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &limits.memory_bytes.to_string())?;
                    }
                    let swappiness = dir.join("memory.swappiness");
                    if swappiness.exists() {
                        let _ = std::fs::write(swappiness, "0");
                    }
                }
                (Controller::Memory, Version::V2) => {
                    write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                (Controller::Pids, _) => {
                    write(&dir.join("pids.max"), &limits.pids_max.to_string())?
                }
                (Controller::Cpu, Version::V1) => {
                    write(&dir.join("cpu.cfs_period_us"), "100000")?;
                    write(
                        &dir.join("cpu.cfs_quota_us"),
                        &(u64::from(limits.cpu_percent) * 1000).to_string(),
                    )?;
                }
                (Controller::Cpu, Version::V2) => {
                    write(
                        &dir.join("cpu.max"),
                        &format!("{} 100000", u64::from(limits.cpu_percent) * 1000),
                    )?;
                }
            }
        }
        let versions: Vec<Version> = cg.dirs.values().map(|(v, _)| *v).collect();
        cg.report.layout = match (
            versions.contains(&Version::V1),
            versions.contains(&Version::V2),
        ) {
            (true, true) => "v1+v2".into(),
            (false, true) => "v2".into(),
            _ => "v1".into(),
        };
        cg.report.setup_micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(cg)
    }

    /// Move a process (and its future children) into every cgroup.
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in &self.report.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// What was applied.
    pub fn report(&self) -> &CgroupReport {
        &self.report
    }

    /// Peak memory and task count so far.
    pub fn peaks(&self) -> Peaks {
        let num = |p: PathBuf| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let mut peaks = Peaks::default();
        if let Some((v, dir)) = self.dirs.get(&Controller::Memory) {
            peaks.memory_bytes = match v {
                Version::V1 => num(dir.join("memory.max_usage_in_bytes")),
                Version::V2 => num(dir.join("memory.peak")),
            };
        }
        if let Some((_, dir)) = self.dirs.get(&Controller::Pids) {
            peaks.pids = num(dir.join("pids.peak"));
        }
        peaks
    }

    /// Kill every process still in the cgroups.
    pub fn kill_all(&self) {
        for dir in &self.report.dirs {
            let kill = dir.join("cgroup.kill");
            if kill.exists() && std::fs::write(&kill, "1").is_ok() {
                continue;
            }
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.report.dirs {
            // A cgroup can be busy for a moment after its last task exits.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_layout_uses_v1_for_every_controller() {
        let layout = detect(HYBRID_MOUNTINFO, HYBRID_SELF, Some("")).expect("layout");
        let p = |c| layout.controllers[&c].clone();
        assert_eq!(
            p(Controller::Memory),
            Placement {
                version: Version::V1,
                parent: "/sys/fs/cgroup/memory/process_api/abc".into()
            }
        );
        assert_eq!(
            p(Controller::Pids),
            Placement {
                version: Version::V1,
                parent: "/sys/fs/cgroup/pids/".into()
            }
        );
        assert_eq!(
            p(Controller::Cpu),
            Placement {
                version: Version::V1,
                parent: "/sys/fs/cgroup/cpu/".into()
            }
        );
    }

    #[test]
    fn pure_v2_layout_uses_one_v2_directory() {
        let mountinfo = "40 25 0:35 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let self_cg = "0::/user.slice/user-1000.slice/session-2.scope\n";
        let layout = detect(
            mountinfo,
            self_cg,
            Some("cpuset cpu io memory hugetlb pids rdma misc\n"),
        )
        .expect("layout");
        for c in NEEDED {
            assert_eq!(
                layout.controllers[&c],
                Placement {
                    version: Version::V2,
                    parent: "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope".into()
                }
            );
        }
        assert_eq!(
            own_v2_dir(mountinfo, self_cg),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"
            ))
        );
    }

    #[test]
    fn container_mount_root_is_stripped() {
        let mountinfo = "40 25 0:35 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let layout =
            detect(mountinfo, "0::/docker/abc\n", Some("memory pids cpu")).expect("layout");
        assert_eq!(
            layout.controllers[&Controller::Pids].parent,
            PathBuf::from("/sys/fs/cgroup/")
        );
    }

    #[test]
    fn missing_controller_is_named() {
        let mountinfo = "40 25 0:35 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = detect(mountinfo, "0::/\n", Some("memory pids")).expect_err("cpu is missing");
        assert!(matches!(err, CgroupError::Missing("cpu")), "{err}");
    }
}
