//! The escape battery: real attacks executed inside `airlock run`, each
//! asserting that it failed (and, where the attempt goes through the proxy,
//! that it was audited). Every attempt is a distinct test, named for the
//! attack. Attempts print `ESCAPED` if they succeed and `BLOCKED <errno>` if
//! they fail; where it matters, the test also checks the host side (the
//! listener got no connection, the file was not written, the process lives).

#[path = "sandbox_support.rs"]
mod support;

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt as _;
use std::time::Duration;
use support::{CANARY, Env, assert_blocked, is_root, path_str};

const NET: &[&str] = &[
    "ENETUNREACH",
    "EACCES",
    "EPERM",
    "ECONNREFUSED",
    "EADDRNOTAVAIL",
    "EHOSTUNREACH",
];

// --- network: direct ------------------------------------------------------

#[test]
fn tcp_to_outside_address_is_unroutable() {
    let env = Env::new();
    // 192.0.2.0/24 is TEST-NET-1: never routed, so nothing leaves even if this failed.
    let out = env.attempt(
        "",
        "socket.create_connection(('192.0.2.1', 443), timeout=3)",
    );
    assert_blocked(&out, NET);
}

#[test]
fn tcp_to_host_loopback_service_fails_and_host_sees_nothing() {
    let env = Env::new();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let out = env.attempt(
        "",
        &format!("socket.create_connection(('127.0.0.1', {port}), timeout=3)"),
    );
    assert_blocked(&out, NET);
    assert!(
        l.accept().is_err(),
        "the host listener received a connection"
    );
}

#[test]
fn tcp_to_host_service_on_other_loopback_address_fails() {
    let env = Env::new();
    let l = TcpListener::bind("127.0.0.2:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let out = env.attempt(
        "",
        &format!("socket.create_connection(('127.0.0.2', {port}), timeout=3)"),
    );
    assert_blocked(&out, NET);
    assert!(
        l.accept().is_err(),
        "the host listener received a connection"
    );
}

#[test]
fn tcp_to_proxy_port_on_host_is_not_the_host() {
    // Even the one allowed port reaches only the sandbox's own listener.
    let env = Env::new();
    let out = env.attempt(
        "",
        "s = socket.create_connection(('127.0.0.2', 3128), timeout=3)",
    );
    assert_blocked(&out, NET);
}

#[test]
fn udp_to_host_loopback_service_never_arrives() {
    let env = Env::new();
    let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = u.local_addr().expect("addr").port();
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let out = env.py(&format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         try:\n    s.sendto(b'leak', ('127.0.0.1', {port})); print('SENT')\nexcept OSError as e:\n    print('BLOCKED', e)\n"
    ));
    assert_eq!(out.code(), 0, "{out:?}");
    let mut buf = [0u8; 16];
    assert!(
        u.recv_from(&mut buf).is_err(),
        "the host received a datagram from the sandbox"
    );
}

#[test]
fn udp_dns_query_to_outside_is_unroutable() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01', ('192.0.2.53', 53))",
    );
    assert_blocked(&out, NET);
}

#[test]
fn name_resolution_inside_fails() {
    let env = Env::new();
    let out = env.attempt("", "socket.getaddrinfo('example.com', 443)");
    assert!(out.stdout.contains("BLOCKED gai"), "{out:?}");
}

#[test]
fn resolv_conf_has_no_nameserver() {
    let env = Env::new();
    let out = env.sh("cat /etc/resolv.conf");
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stdout.contains("nameserver"), "{out:?}");
}

#[test]
fn raw_socket_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn ipv6_raw_socket_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn packet_socket_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn netlink_socket_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn vsock_socket_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "socket.socket(40, socket.SOCK_STREAM, 0)");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn ipv6_to_host_loopback_service_fails() {
    let env = Env::new();
    let Ok(l) = TcpListener::bind("[::1]:0") else {
        return;
    };
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let out = env.attempt(
        "",
        &format!("socket.create_connection(('::1', {port}), timeout=3)"),
    );
    assert_blocked(&out, NET);
    assert!(
        l.accept().is_err(),
        "the host listener received a connection"
    );
}

#[test]
fn ipv6_to_outside_is_unroutable() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "socket.create_connection(('2001:db8::1', 443), timeout=3)",
    );
    assert_blocked(&out, NET);
}

#[test]
fn abstract_unix_socket_of_the_host_is_unreachable() {
    let env = Env::new();
    let name = format!("airlock-test-{}", std::process::id());
    let l = std::os::unix::net::UnixListener::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract"),
    )
    .expect("bind abstract socket");
    l.set_nonblocking(true).expect("nonblocking");
    let out = env.attempt(
        "",
        &format!("s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.connect('\\0{name}')"),
    );
    assert_blocked(&out, &["ECONNREFUSED", "EPERM", "EACCES"]);
    assert!(
        l.accept().is_err(),
        "the host's abstract socket received a connection"
    );
}

#[test]
fn host_unix_socket_file_is_not_visible() {
    let env = Env::new();
    let path = env.dir.path().join("host.sock");
    let _l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let out = env.attempt(
        "",
        &format!(
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.connect('{}')",
            path_str(&path)
        ),
    );
    assert_blocked(&out, &["ENOENT", "EACCES"]);
}

// --- network: through the proxy (audited) ---------------------------------

/// GET `url` through the sandbox's proxy with curl; prints the response head.
fn proxied_get(env: &Env, url: &str) -> support::Out {
    env.sh(&format!(
        "curl -sS --max-time 10 -D - -o /dev/null '{url}'; echo curl=$?"
    ))
}

#[test]
fn proxy_refuses_host_loopback_service_and_audits_it() {
    let env = Env::new();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let out = proxied_get(&env, &format!("http://127.0.0.1:{port}/"));
    assert!(out.stdout.starts_with("HTTP/1.1 403"), "{out:?}");
    assert!(
        out.stdout
            .to_lowercase()
            .contains("x-airlock-reason: loopback_address"),
        "{out:?}"
    );
    assert!(
        l.accept().is_err(),
        "the proxy connected to a loopback service"
    );
    let denied: Vec<_> = env
        .audit_tail(30)
        .into_iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["reason"] == "loopback_address" && e["result"] == "denied")
        .collect();
    assert!(!denied.is_empty(), "no audit record of the denied request");
}

#[test]
fn proxy_refuses_cloud_metadata_and_audits_it() {
    let env = Env::new();
    let out = proxied_get(&env, "http://169.254.169.254/latest/meta-data/");
    assert!(out.stdout.starts_with("HTTP/1.1 403"), "{out:?}");
    assert!(
        out.stdout
            .to_lowercase()
            .contains("x-airlock-reason: link_local_address"),
        "{out:?}"
    );
    let denied: Vec<_> = env
        .audit_tail(30)
        .into_iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["reason"] == "link_local_address" && e["result"] == "denied")
        .collect();
    assert!(!denied.is_empty(), "no audit record of the denied request");
}

// --- credentials and host files -------------------------------------------

#[test]
fn ssh_key_of_the_host_home_is_absent() {
    let env = Env::new();
    let key = env.home.join(".ssh/id_rsa");
    let out = env.attempt("", &format!("open('{}').read()", path_str(&key)));
    assert_blocked(&out, &["ENOENT", "EACCES"]);
    let out = env.attempt("", "open(os.path.expanduser('~/.ssh/id_rsa')).read()");
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn aws_credentials_are_absent() {
    let env = Env::new();
    let creds = env.home.join(".aws/credentials");
    let out = env.attempt("", &format!("open('{}').read()", path_str(&creds)));
    assert_blocked(&out, &["ENOENT", "EACCES"]);
}

#[test]
fn etc_shadow_is_absent() {
    let env = Env::new();
    let out = env.attempt("", "open('/etc/shadow').read()");
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn root_home_is_absent() {
    let env = Env::new();
    let out = env.attempt("", "os.listdir('/root')");
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn airlock_data_dir_is_absent() {
    let env = Env::new();
    let key = env.data.join("keys/audit-signing.key");
    assert!(
        key.exists(),
        "test setup: no signing key at {}",
        key.display()
    );
    let out = env.attempt("", &format!("open('{}', 'rb').read()", path_str(&key)));
    assert_blocked(&out, &["ENOENT", "EACCES"]);
}

#[test]
fn host_environment_is_not_inherited() {
    let env = Env::new();
    let out = env.sh("env; cat /proc/self/environ | tr '\\0' '\\n'");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stdout.contains(CANARY),
        "host variable leaked: {out:?}"
    );
    assert!(
        !out.stdout.contains("AIRLOCK_DATA_DIR"),
        "host variable leaked: {out:?}"
    );
}

#[test]
fn init_environment_is_unreadable() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "d = open('/proc/1/environ', 'rb').read()\nassert b'canary' not in d\nprint(d)",
    );
    assert_blocked(&out, &["EACCES", "EPERM"]);
}

#[test]
fn host_process_root_is_unreachable() {
    let env = Env::new();
    let me = std::process::id();
    let out = env.attempt("", &format!("os.listdir('/proc/{me}/root/etc')"));
    // Our pid is not in the sandbox's PID namespace (pid 1 and 2 are).
    assert!(me > 2);
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn only_sandbox_processes_are_visible() {
    let env = Env::new();
    let out =
        env.py("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))");
    assert!(out.status.success(), "{out:?}");
    let pids: Vec<u32> = out
        .stdout
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(
        pids.len() <= 3 && pids.iter().all(|p| *p <= 10),
        "host processes visible: {out:?}"
    );
}

#[test]
fn no_sysfs() {
    let env = Env::new();
    let out = env.attempt("", "os.listdir('/sys/class/net')");
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn no_raw_devices() {
    let env = Env::new();
    let out = env.attempt("", "open('/dev/mem', 'rb')");
    assert_blocked(&out, &["ENOENT"]);
}

#[test]
fn sysrq_trigger_is_not_writable() {
    let env = Env::new();
    let out = env.attempt("", "open('/proc/sysrq-trigger', 'w').write('h')");
    assert_blocked(&out, &["EACCES", "EROFS", "EPERM", "ENOENT"]);
}

// --- privilege and kernel surface -----------------------------------------

#[test]
fn ptrace_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.ptrace(16, 1, 0, 0))  # PTRACE_ATTACH to pid 1",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn process_vm_readv_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.syscall(310, 1, 0, 0, 0, 0, 0))  # process_vm_readv",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn mount_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn umount_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.umount2(b'/etc', 2))  # MNT_DETACH uncovers the host /etc?",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn unshare_user_namespace_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.unshare(0x10000000))  # CLONE_NEWUSER");
    assert_blocked(&out, &["EPERM"]);
    let out = env.sh("unshare -r id 2>&1; echo status=$?");
    assert!(!out.stdout.contains("uid=0"), "{out:?}");
}

#[test]
fn clone_with_new_namespace_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.syscall(56, 0x40000000 | 17, 0, 0, 0, 0))  # clone(CLONE_NEWNET|SIGCHLD)",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn setns_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\ncheck(libc.setns(fd, 0))",
    );
    assert_blocked(&out, &["EPERM", "EACCES"]);
}

#[test]
fn io_uring_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "p = ctypes.create_string_buffer(120)\ncheck(libc.syscall(425, 8, p))  # io_uring_setup",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn bpf_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "a = ctypes.create_string_buffer(128)\ncheck(libc.syscall(321, 0, a, 128))  # bpf(MAP_CREATE)");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn keyctl_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.syscall(250, 0, -3, 0))  # keyctl(GET_KEYRING_ID, session)",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn add_key_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "check(libc.syscall(248, b'user', b'k', b'v', 1, -3))  # add_key",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn perf_event_open_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "a = ctypes.create_string_buffer(128)\ncheck(libc.syscall(298, a, 0, -1, -1, 0))",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn userfaultfd_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.syscall(323, 0))");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn open_by_handle_at_is_refused() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "h = ctypes.create_string_buffer(136)\ncheck(libc.syscall(304, -100, h, 0))",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn tiocsti_keystroke_injection_is_refused() {
    let env = Env::new();
    // Filtered before the fd is even looked at: EPERM, not EBADF/ENOTTY.
    let out = env.attempt(
        "",
        "c = ctypes.c_char(b'x')\ncheck(libc.ioctl(0, 0x5412, ctypes.byref(c)))",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn chroot_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.chroot(b'/tmp'))");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn setuid_root_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.setuid(0))");
    assert_blocked(&out, &["EPERM", "EINVAL"]);
}

#[test]
fn x32_abi_is_refused() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.syscall(0x40000000 + 39))  # x32 getpid");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn kernel_module_loading_kills_the_process() {
    let env = Env::new();
    let out = env.attempt("", "libc.syscall(175, None, 0, b'')  # init_module");
    assert!(!out.stdout.contains("ESCAPED"), "{out:?}");
    assert_eq!(out.code(), 128 + 31, "expected SIGSYS: {out:?}");
}

#[test]
fn kexec_kills_the_process() {
    let env = Env::new();
    let out = env.attempt("", "libc.syscall(246, 0, 0, None, 0)  # kexec_load");
    assert_eq!(out.code(), 128 + 31, "expected SIGSYS: {out:?}");
}

#[test]
fn kernel_log_is_unreadable() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "b = ctypes.create_string_buffer(4096)\ncheck(libc.klogctl(3, b, 4096))",
    );
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn setuid_binary_does_not_raise_privileges() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    // A setuid-root copy of `id` in the workspace: outside, it would print 0.
    let id = env.ws.join("id");
    std::fs::copy("/usr/bin/id", &id).expect("copy id");
    std::fs::set_permissions(&id, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
        .expect("chmod");
    let out = env.sh("/workspace/id -u; /workspace/id -u -r");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "1000\n1000\n", "{out:?}");
    let out = env.sh("su -c id root </dev/null 2>&1; echo done");
    assert!(!out.stdout.contains("uid=0"), "{out:?}");
}

#[test]
fn no_capabilities_and_no_new_privs() {
    let env = Env::new();
    let out = env.sh("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(out.status.success(), "{out:?}");
    let want = "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
                CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
    assert_eq!(out.stdout, want, "{out:?}");
}

// --- filesystem writes ----------------------------------------------------

#[test]
fn writes_outside_the_workspace_fail() {
    let env = Env::new();
    for path in [
        "/usr/bin/evil",
        "/etc/evil",
        "/evil",
        "/home/evil",
        "/proc/evil",
    ] {
        let out = env.attempt("", &format!("open('{path}', 'w').write('x')"));
        assert_blocked(&out, &["EROFS", "EACCES", "ENOENT", "EPERM"]);
    }
}

#[test]
fn host_paths_outside_the_workspace_are_not_written() {
    let env = Env::new();
    let outside = env.dir.path().join("outside.txt");
    let out = env.attempt(
        "",
        &format!("open('{}', 'w').write('x')", path_str(&outside)),
    );
    assert_blocked(&out, &["ENOENT", "EROFS", "EACCES"]);
    assert!(
        !outside.exists(),
        "a file outside the workspace was written"
    );
}

#[test]
fn symlink_planted_in_workspace_does_not_lead_out() {
    let env = Env::new();
    let target = env.dir.path().join("victim.txt");
    std::fs::write(&target, "original").expect("victim");
    // A symlink created on the host inside the workspace, pointing outside it.
    std::os::unix::fs::symlink(&target, env.ws.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/etc", env.ws.join("etc-link")).expect("symlink");
    let out = env.attempt("", "open('/workspace/link', 'w').write('owned')");
    assert_blocked(&out, &["ENOENT", "EROFS", "EACCES"]);
    let out = env.attempt("", "open('/workspace/etc-link/shadow').read()");
    assert_blocked(&out, &["ENOENT"]);
    let mut s = String::new();
    std::fs::File::open(&target)
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, "original");
}

#[test]
fn symlink_made_inside_cannot_reach_host_root() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "os.symlink('/', '/workspace/r')\nopen('/workspace/r/../../etc/shadow').read()",
    );
    assert_blocked(&out, &["ENOENT"]);
    // The symlink itself landed in the workspace and points at the sandbox root only.
    assert_eq!(
        std::fs::read_link(env.ws.join("r")).expect("link"),
        std::path::PathBuf::from("/")
    );
}

#[test]
fn hardlink_to_a_file_outside_the_workspace_fails() {
    let env = Env::new();
    let out = env.attempt("", "os.link('/etc/passwd', '/workspace/pw')");
    assert_blocked(&out, &["EXDEV", "EACCES", "EPERM"]);
}

// --- processes ------------------------------------------------------------

#[test]
fn signals_to_host_processes_fail() {
    let env = Env::new();
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = victim.id();
    let out = env.attempt("", &format!("os.kill({pid}, 9)"));
    assert_blocked(&out, &["ESRCH", "EPERM"]);
    assert!(
        victim.try_wait().expect("try_wait").is_none(),
        "the host process was killed"
    );
    let _ = victim.kill();
    let _ = victim.wait();
}

#[test]
fn fork_bomb_is_contained() {
    let env = Env::new().with_config("[sandbox]\npids_max = 32\n");
    let out = env.py(
        "import os, time\nn = 0\ntry:\n    while n < 10000:\n        if os.fork() == 0:\n            time.sleep(30); os._exit(0)\n        n += 1\n    print('ESCAPED', n)\nexcept OSError as e:\n    print('BLOCKED', n, e)\n",
    );
    assert!(out.stdout.starts_with("BLOCKED"), "{out:?}");
    let n: u32 = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("count");
    assert!(n < 32, "forked {n} processes: {out:?}");
    // The sleeping children died with the run; it did not wait 30s for them.
    let end = env.audited("run.end", 5);
    let ms = end
        .last()
        .and_then(|e| e["details"]["duration_ms"].as_u64())
        .expect("run.end");
    assert!(ms < 20_000, "run lasted {ms} ms");
}

#[test]
fn memory_bomb_is_contained() {
    let env = Env::new().with_config("[sandbox]\nmemory_mib = 64\n");
    let out = env.py("x = []\nfor i in range(400):\n    x.append(bytearray(1 << 20))\nprint('ESCAPED', len(x))\n");
    assert!(!out.stdout.contains("ESCAPED"), "{out:?}");
    assert!(
        out.code() == 137 || out.stderr.contains("MemoryError"),
        "expected OOM kill: {out:?}"
    );
    let end = env.audited("run.end", 5);
    let peak = end
        .last()
        .and_then(|e| e["details"]["memory_peak_bytes"].as_u64())
        .expect("peak");
    assert!(peak <= 64 << 20, "memory peak {peak} above the limit");
}

#[test]
fn hostname_cannot_be_changed() {
    let env = Env::new();
    let out = env.attempt("", "check(libc.sethostname(b'evil', 4))");
    assert_blocked(&out, &["EPERM"]);
}

#[test]
fn pidfd_getfd_cannot_steal_descriptors() {
    let env = Env::new();
    let out = env.attempt(
        "",
        "pfd = check(libc.syscall(434, 1, 0))  # pidfd_open(pid 1)\ncheck(libc.syscall(438, pfd, 3, 0))  # pidfd_getfd",
    );
    assert_blocked(&out, &["EPERM"]);
}
