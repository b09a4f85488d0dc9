//! Which host directory may become the agent's read-write workspace.
//!
//! The agent is hostile, and everything in its workspace is its to read and
//! rewrite. So the workspace may not be `/`, a system directory, a home
//! directory (the caller's or any user's), or a directory that contains — or
//! lies inside — something Airlock itself depends on: the data directory
//! (database, audit log, checkpoints, keys), the configuration file, a policy
//! file, a key file, the upstream CA file, or the `airlock` binary.
//!
//! [`check`] is pure: it compares canonical paths gathered by
//! [`Protected::gather`] (which resolves symlinks and `..`, also for paths
//! that do not exist yet). Comparing canonical paths does not see a second
//! name for the same directory made by a bind mount on the host.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Directories that, with everything beneath them, belong to the system.
pub const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/backups",
    "/var/cache",
    "/var/log",
    "/var/mail",
    "/var/run",
    "/var/spool",
];

/// Shared directories that may hold a workspace below them but are never one
/// themselves (nor is any directory above them).
pub const SHARED_DIRS: &[&str] = &[
    "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp",
];

/// Directories whose every direct child is a service's state (`/var/lib/docker`,
/// `/var/lib/postgresql`): such a child is not a workspace either.
pub const SERVICE_STATE_PARENTS: &[&str] = &["/var/lib"];

/// Something the workspace must neither contain nor lie inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPath {
    /// What it is, for the message ("the Airlock data directory").
    pub what: String,
    /// Its canonical path.
    pub path: PathBuf,
}

/// What the workspace is checked against, all canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    /// Home directories: the caller's (`$HOME`, its passwd entry) and every
    /// user's from `/etc/passwd`.
    pub homes: Vec<PathBuf>,
    /// Airlock's own files and directories.
    pub paths: Vec<ProtectedPath>,
}

impl Protected {
    /// Canonicalize `airlock_paths` and gather the home directories of the
    /// caller and of every user in `/etc/passwd`.
    pub fn gather(airlock_paths: &[(&str, &Path)]) -> Protected {
        let mut homes = Vec::new();
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            homes.push(resolve(Path::new(&h)));
        }
        if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::geteuid()) {
            homes.push(resolve(&u.dir));
        }
        if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
            for line in text.lines() {
                if let Some(dir) = line.split(':').nth(5).filter(|d| d.starts_with('/')) {
                    homes.push(resolve(Path::new(dir)));
                }
            }
        }
        homes.sort();
        homes.dedup();
        let paths = airlock_paths
            .iter()
            .map(|(what, p)| ProtectedPath {
                what: (*what).to_owned(),
                path: resolve(p),
            })
            .collect();
        Protected { homes, paths }
    }
}

/// Why a directory cannot be the workspace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    /// The host's root.
    #[error(
        "workspace /: the agent would read and write the whole host; run from a project directory or pass --workspace DIR"
    )]
    Root,
    /// A system directory or something inside one.
    #[error(
        "workspace {}: {} is a system directory; run from a project directory or pass --workspace DIR",
        .workspace.display(), .system.display()
    )]
    System { workspace: PathBuf, system: PathBuf },
    /// A shared directory such as `/home` or `/tmp`, or a service's state.
    #[error(
        "workspace {}: a shared directory, not a project; run from a project directory or pass --workspace DIR",
        .0.display()
    )]
    Shared(PathBuf),
    /// A home directory, or a directory that contains one.
    #[error(
        "workspace {}: {} the home directory {} (the agent would read ~/.ssh, Airlock's data and everything else there); run from a project directory or pass --workspace DIR",
        .workspace.display(),
        if .workspace == .home { "is" } else { "contains" },
        .home.display()
    )]
    Home { workspace: PathBuf, home: PathBuf },
    /// Contains one of Airlock's own files.
    #[error(
        "workspace {}: contains {} {} (the agent could read or rewrite it); run from a project directory or pass --workspace DIR",
        .workspace.display(), .what, .path.display()
    )]
    Contains {
        workspace: PathBuf,
        what: String,
        path: PathBuf,
    },
    /// Lies inside one of Airlock's own directories.
    #[error(
        "workspace {}: is inside {} {}; run from a project directory or pass --workspace DIR",
        .workspace.display(), .what, .path.display()
    )]
    Inside {
        workspace: PathBuf,
        what: String,
        path: PathBuf,
    },
}

/// Check a canonical workspace path against the system directories, the
/// homes and Airlock's own paths. Pure.
pub fn check(workspace: &Path, protected: &Protected) -> Result<(), WorkspaceError> {
    let ws = workspace;
    if ws.parent().is_none() {
        return Err(WorkspaceError::Root);
    }
    for sys in SYSTEM_TREES.iter().map(Path::new) {
        if ws.starts_with(sys) {
            return Err(WorkspaceError::System {
                workspace: ws.to_owned(),
                system: sys.to_owned(),
            });
        }
    }
    // A home itself first: `/root` is also a shared directory, but "the
    // home directory" is the clearer refusal.
    if let Some(home) = protected.homes.iter().find(|h| h.as_path() == ws) {
        return Err(WorkspaceError::Home {
            workspace: ws.to_owned(),
            home: home.clone(),
        });
    }
    // Above a system directory (only `/` is, and `/var` for its trees).
    for sys in SYSTEM_TREES.iter().chain(SHARED_DIRS).map(Path::new) {
        if sys.starts_with(ws) {
            return Err(WorkspaceError::Shared(ws.to_owned()));
        }
    }
    if let Some(parent) = ws.parent()
        && SERVICE_STATE_PARENTS.iter().any(|p| Path::new(p) == parent)
    {
        return Err(WorkspaceError::Shared(ws.to_owned()));
    }
    for home in &protected.homes {
        // A home of `/` (some system users) is covered by the root check.
        if home.parent().is_some() && home.starts_with(ws) {
            return Err(WorkspaceError::Home {
                workspace: ws.to_owned(),
                home: home.clone(),
            });
        }
    }
    for p in &protected.paths {
        if p.path.starts_with(ws) {
            return Err(WorkspaceError::Contains {
                workspace: ws.to_owned(),
                what: p.what.clone(),
                path: p.path.clone(),
            });
        }
        if ws.starts_with(&p.path) {
            return Err(WorkspaceError::Inside {
                workspace: ws.to_owned(),
                what: p.what.clone(),
                path: p.path.clone(),
            });
        }
    }
    Ok(())
}

/// The canonical form of `p`: the longest prefix that exists is
/// canonicalized (symlinks and `..` resolved as the kernel would), and the
/// rest, which does not exist yet, is appended with `.` and `..` applied
/// lexically. Relative paths are taken from the current directory.
pub fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    };
    let parts: Vec<Component<'_>> = abs.components().collect();
    for k in (0..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        let Ok(mut out) = std::fs::canonicalize(if k == 0 { Path::new("/") } else { &prefix })
        else {
            continue;
        };
        for c in &parts[k..] {
            match c {
                Component::Normal(n) => out.push(n),
                Component::ParentDir => {
                    out.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        return out;
    }
    abs
}

impl fmt::Display for ProtectedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn protected() -> Protected {
        Protected {
            homes: vec![p("/home/me"), p("/root"), p("/var/lib/postgresql"), p("/")],
            paths: vec![
                ProtectedPath {
                    what: "the Airlock data directory".into(),
                    path: p("/home/me/.local/share/airlock"),
                },
                ProtectedPath {
                    what: "the configuration file".into(),
                    path: p("/etc/airlock/airlock.toml"),
                },
                ProtectedPath {
                    what: "the policy file".into(),
                    path: p("/srv/policies/agent.toml"),
                },
                ProtectedPath {
                    what: "the airlock binary".into(),
                    path: p("/opt/airlock/bin/airlock"),
                },
            ],
        }
    }

    fn refused(ws: &str) -> WorkspaceError {
        check(Path::new(ws), &protected()).expect_err(ws)
    }

    #[test]
    fn project_directories_are_accepted() {
        for ws in [
            "/home/me/project",
            "/home/me/src/airlock-agent",
            "/tmp/build-1234",
            "/var/tmp/x/y",
            "/srv/app",
            "/opt/other",
            "/var/lib/jenkins/workspace/job",
            "/root/project",
            "/home/me/.local/share/other",
        ] {
            assert_eq!(check(Path::new(ws), &protected()), Ok(()), "{ws}");
        }
    }

    #[test]
    fn root_is_refused() {
        assert_eq!(refused("/"), WorkspaceError::Root);
        assert!(refused("/").to_string().contains("--workspace DIR"));
    }

    #[test]
    fn system_directories_and_their_insides_are_refused() {
        for (ws, sys) in [
            ("/usr", "/usr"),
            ("/usr/local/bin", "/usr"),
            ("/etc", "/etc"),
            ("/etc/ssh", "/etc"),
            ("/bin", "/bin"),
            ("/lib64", "/lib64"),
            ("/boot", "/boot"),
            ("/dev/shm", "/dev"),
            ("/proc/1", "/proc"),
            ("/sys", "/sys"),
            ("/var/log/app", "/var/log"),
            ("/run/user/1000", "/run"),
        ] {
            assert_eq!(
                refused(ws),
                WorkspaceError::System {
                    workspace: p(ws),
                    system: p(sys)
                },
                "{ws}"
            );
        }
    }

    #[test]
    fn shared_directories_are_refused() {
        for ws in [
            "/home", "/tmp", "/var", "/var/tmp", "/var/lib", "/mnt", "/opt", "/srv",
        ] {
            assert_eq!(refused(ws), WorkspaceError::Shared(p(ws)), "{ws}");
        }
        assert_eq!(
            refused("/var/lib/docker"),
            WorkspaceError::Shared(p("/var/lib/docker"))
        );
    }

    #[test]
    fn a_home_or_a_directory_above_one_is_refused() {
        assert_eq!(
            refused("/home/me"),
            WorkspaceError::Home {
                workspace: p("/home/me"),
                home: p("/home/me")
            }
        );
        assert_eq!(
            refused("/root"),
            WorkspaceError::Home {
                workspace: p("/root"),
                home: p("/root")
            },
            "root's home is refused as a home, though /root is also shared"
        );
        let mut prot = protected();
        prot.homes = vec![p("/data/users/me")];
        assert_eq!(
            check(Path::new("/data/users"), &prot),
            Err(WorkspaceError::Home {
                workspace: p("/data/users"),
                home: p("/data/users/me")
            })
        );
        let msg = check(Path::new("/data/users/me"), &prot)
            .expect_err("home")
            .to_string();
        assert_eq!(
            msg,
            "workspace /data/users/me: is the home directory /data/users/me (the agent would read ~/.ssh, Airlock's data and everything else there); run from a project directory or pass --workspace DIR"
        );
    }

    #[test]
    fn airlock_files_may_not_be_inside_and_the_workspace_not_inside_them() {
        assert_eq!(
            refused("/home/me/.local"),
            WorkspaceError::Contains {
                workspace: p("/home/me/.local"),
                what: "the Airlock data directory".into(),
                path: p("/home/me/.local/share/airlock"),
            }
        );
        assert_eq!(
            refused("/home/me/.local/share/airlock/keys"),
            WorkspaceError::Inside {
                workspace: p("/home/me/.local/share/airlock/keys"),
                what: "the Airlock data directory".into(),
                path: p("/home/me/.local/share/airlock"),
            }
        );
        assert_eq!(
            refused("/srv/policies"),
            WorkspaceError::Contains {
                workspace: p("/srv/policies"),
                what: "the policy file".into(),
                path: p("/srv/policies/agent.toml"),
            }
        );
        assert!(matches!(
            refused("/opt/airlock"),
            WorkspaceError::Contains { what, .. } if what == "the airlock binary"
        ));
    }

    #[test]
    fn resolve_follows_symlinks_and_dot_dot_even_for_missing_tails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canon");
        std::fs::create_dir(real.join("a")).expect("a");
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).expect("link");
        assert_eq!(resolve(&real.join("link")), real.join("a"));
        assert_eq!(resolve(&real.join("link/../a/./x/y")), real.join("a/x/y"));
        assert_eq!(
            resolve(&real.join("link/missing/file")),
            real.join("a/missing/file")
        );
        assert_eq!(resolve(Path::new("/nonexistent/../x")), p("/x"));
    }
}
