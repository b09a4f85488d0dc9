//! The only module with `unsafe`: raw system calls that neither `nix` nor
//! `std` expose safely. Each block carries a `// SAFETY:` note. Everything
//! else in the crate calls these small safe wrappers.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The kernel's Landlock ABI version, or a negative errno when Landlock is
/// missing (`-ENOSYS`) or disabled (`-EOPNOTSUPP`).
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // call only returns an integer; no memory is read or written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOSYS)
    } else {
        r as i32
    }
}

/// Which child of `fork` we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent; the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// `fork(2)`. Only called from the single-threaded init.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the init process is single-threaded (it is a fresh exec of our
    // binary that starts no threads before this point), so the child cannot
    // inherit a lock held by another thread. The child only makes system
    // calls and allocates, which is sound in a single-threaded child.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket() call; the returned fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags inside `req`,
    // which lives on our stack for the duration of the call.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) };
    let result = if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel filled the flags member of the union above.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads `req`, which is valid for the call.
        let r = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: fd is ours and closed exactly once.
    unsafe { libc::close(fd) };
    result
}

/// Mark every fd from 3 upwards close-on-exec.
pub fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `prctl(PR_SET_DUMPABLE, 0)`: our /proc files become inaccessible to the
/// agent (it cannot read the init's environment or memory).
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Let `fd` survive the `exec` of `cmd` (clear its close-on-exec flag in the
/// child only), so the parent keeps it close-on-exec for every other spawn.
pub fn keep_fd_across_exec(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs between fork and exec and calls only fcntl,
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Start the child of `cmd` with an empty signal mask (the init blocks the
/// signals it forwards; the agent must not inherit that).
pub fn unblock_signals_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and calls only
    // sigemptyset and pthread_sigmask, which are async-signal-safe, on a
    // sigset_t on the child's own stack.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let r = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok(())
        });
    }
}

/// Take ownership of an fd inherited from the supervisor or received over
/// SCM_RIGHTS, after checking that it is open.
pub fn own_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the fd's flags; it fails with EBADF when the
    // number is not an open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and was handed to us alone
    // (inherited by a fresh exec, or just installed by recvmsg): nothing else
    // refers to it, so taking sole ownership cannot double-close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open `path` as an `O_PATH` descriptor, refusing (`ELOOP`) if any
/// component of it is a symlink: the path was checked in its canonical
/// form, and a symlink planted since would lead somewhere else.
pub fn open_path_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: open_how is plain old data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` is a NUL-terminated string and `how` a properly sized
    // struct, both alive for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `open_tree(fd, "", OPEN_TREE_CLONE)`: a detached copy of the mount at
/// `fd` (not its submounts), close-on-exec.
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH makes the call
    // act on `fd`, which is open for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `mount_setattr` on the detached mount `fd`: set `attrs`
/// (`MOUNT_ATTR_*`), with `userns` as the id-mapping when `attrs` holds
/// `MOUNT_ATTR_IDMAP`.
pub fn set_mount_attrs(
    fd: BorrowedFd<'_>,
    attrs: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    // SAFETY: `attr` is a properly sized struct alive for the call; the
    // empty path with AT_EMPTY_PATH makes the call act on `fd`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach
/// the detached mount `fd` at `target`.
pub fn move_mount(fd: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let t = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: both paths are NUL-terminated strings alive for the call; `fd`
    // is open for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// End a forked helper process at once, without running exit handlers or
/// flushing buffers that belong to the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landlock_abi_reports_a_number() {
        let abi = landlock_abi();
        assert!(abi != 0, "ABI 0 is not a valid answer");
    }
}
