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

// --- the workspace may not hold Airlock itself ----------------------------

/// The last `sandbox.refused` record in the audit log of `data`.
fn refusal_in(env: &Env, data: &std::path::Path) -> serde_json::Value {
    let mut cmd = env.command(&["audit", "tail", "--json", "-n", "5"]);
    cmd.env("AIRLOCK_DATA_DIR", data);
    let out = support::run_bounded(cmd);
    assert!(out.status.success(), "audit tail: {out:?}");
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| r["event"].clone())
        .rfind(|e| e["action"] == "sandbox.refused")
        .expect("refusal audited")
}

/// `airlock run` refused the workspace: exit 2, one line naming the
/// conflict and `--workspace DIR`, a `sandbox.refused` record, and the
/// command never ran.
#[track_caller]
fn assert_workspace_refused(env: &Env, data: &std::path::Path, out: &support::Out, needle: &str) {
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stdout, "", "the command ran: {out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains(needle), "{out:?}");
    assert!(out.stderr.contains("pass --workspace DIR"), "{out:?}");
    let refused = refusal_in(env, data);
    assert_eq!(refused["details"]["control"], "workspace", "{refused:#}");
    assert_eq!(refused["reason"], "sandbox_control_failed");
}

#[test]
fn run_from_home_cannot_read_the_master_key() {
    // The review's reproduction: the data directory at its default place
    // (~/.local/share/airlock) and `airlock run` started from ~.
    let env = Env::new();
    let data = env.home.join(".local/share/airlock");
    let with_default_data = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env_remove("AIRLOCK_DATA_DIR").current_dir(&env.home);
        support::run_bounded(cmd)
    };
    let out = with_default_data(&["init"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        data.join("keys/master.key").exists(),
        "test setup: no master key"
    );
    let out = with_default_data(&[
        "run",
        "--",
        "cat",
        "/workspace/.local/share/airlock/keys/master.key",
    ]);
    let home = std::fs::canonicalize(&env.home).expect("home");
    assert_workspace_refused(
        &env,
        &data,
        &out,
        &format!("workspace {0}: is the home directory {0}", home.display()),
    );
}

#[test]
fn whole_host_workspace_is_refused() {
    let env = Env::new();
    let out = env.run(&["--workspace", "/"], &["cat", "/workspace/etc/shadow"]);
    assert_workspace_refused(
        &env,
        &env.data,
        &out,
        "workspace /: the agent would read and write the whole host",
    );
}

#[test]
fn system_directory_workspace_is_refused() {
    let env = Env::new();
    for dir in ["/etc", "/usr/bin", "/var/log", "/tmp", "/dev/shm"] {
        let out = env.run(&["--workspace", dir], &["true"]);
        assert_workspace_refused(&env, &env.data, &out, &format!("workspace {dir}: "));
    }
}

#[test]
fn workspace_containing_the_data_dir_is_refused() {
    let env = Env::new();
    // env.dir holds the data directory (and the fake home).
    let out = env.run(
        &["--workspace", path_str(env.dir.path())],
        &["cat", "/workspace/data/keys/audit-signing.key"],
    );
    let dir = std::fs::canonicalize(env.dir.path()).expect("dir");
    assert_workspace_refused(
        &env,
        &env.data,
        &out,
        &format!("workspace {}: contains", dir.display()),
    );
}

#[test]
fn workspace_inside_the_data_dir_is_refused() {
    let env = Env::new();
    let keys = env.data.join("keys");
    let out = env.run(
        &["--workspace", path_str(&keys)],
        &["cat", "/workspace/master.key"],
    );
    let data = std::fs::canonicalize(&env.data).expect("data");
    assert_workspace_refused(
        &env,
        &env.data,
        &out,
        &format!("is inside the Airlock data directory {}", data.display()),
    );
}

#[test]
fn workspace_given_as_a_symlink_or_with_dotdot_is_judged_by_its_target() {
    let env = Env::new();
    let link = env.ws.join("home-link");
    std::os::unix::fs::symlink(&env.home, &link).expect("symlink");
    let out = env.run(
        &["--workspace", path_str(&link)],
        &["ls", "/workspace/.ssh"],
    );
    assert_workspace_refused(&env, &env.data, &out, "is the home directory");
    let up = format!("{}/..", path_str(&env.ws));
    let out = env.run(&["--workspace", &up], &["ls", "/workspace/data/keys"]);
    assert_workspace_refused(&env, &env.data, &out, ": contains");
}

#[test]
fn workspace_containing_the_policy_or_the_config_is_refused() {
    let env = Env::new().with_config("");
    let policy = env.ws.join("policy.toml");
    std::fs::write(&policy, "mode = \"read_public\"\n").expect("policy");
    let out = env.run(&["--policy", path_str(&policy)], &["true"]);
    assert_workspace_refused(&env, &env.data, &out, "contains the policy file");
    std::fs::remove_file(&policy).expect("rm policy");
    let mut cmd = env.command(&["run", "--", "true"]);
    let config = env.ws.join("airlock.toml");
    std::fs::write(&config, "").expect("config");
    cmd.env("AIRLOCK_CONFIG", &config);
    let out = support::run_bounded(cmd);
    assert_workspace_refused(&env, &env.data, &out, "contains the configuration file");
}

#[test]
fn extra_read_write_path_holding_the_data_dir_is_refused() {
    let env = Env::new();
    let config = format!("[sandbox]\nread_write = [{:?}]\n", path_str(&env.data));
    let env = env.with_config(&config);
    let out = env.run(&[], &["true"]);
    assert_eq!(out.code(), 2, "{out:?}");
    let data = std::fs::canonicalize(&env.data).expect("data");
    assert_eq!(
        out.stderr,
        format!(
            "airlock: error: refusing to run: sandbox extra path {0} -> {1}: contains the Airlock data directory {1} (the agent could read or rewrite it); remove it from sandbox.read_only / sandbox.read_write\n",
            env.data.display(),
            data.display()
        ),
        "{out:?}"
    );
    let refused = refusal_in(&env, &env.data);
    assert_eq!(refused["details"]["control"], "workspace", "{refused:#}");
}

// --- the agent's host identity --------------------------------------------

/// Host pids whose command line contains `marker`.
fn host_pids_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn agent_is_not_host_root() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let marker = format!("{}.{}", 40 + std::process::id() % 50, std::process::id());
    let mut cmd = env.command(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        &format!("sleep {marker} & echo ready; wait"),
    ]);
    cmd.stderr(std::process::Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().expect("stdout"),
    ));
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let pids: Vec<u32> = host_pids_with(&marker)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .collect();
    assert_eq!(pids.len(), 1, "test setup: the sleep is not running");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(field("Uid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Gid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Groups:"), "", "{status}");
}

#[test]
fn root_owned_file_in_the_workspace_is_not_the_agents() {
    if !is_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    // The operator (uid 4242) owns the workspace; a root-owned file lies in it.
    let chown = |p: &std::path::Path, u: u32| {
        std::os::unix::fs::chown(p, Some(u), Some(u)).expect("chown");
    };
    chown(&env.ws, 4242);
    let victim = env.ws.join("root-owned.sh");
    std::fs::write(&victim, "echo original\n").expect("victim");
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    // Its owner is not mapped into the sandbox: the kernel refuses to act on
    // it as anyone's (EOVERFLOW), and it is not writable by others.
    let out = env.attempt("", "open('/workspace/root-owned.sh', 'a').write('id\\n')");
    assert_blocked(&out, &["EACCES", "EPERM", "EOVERFLOW"]);
    let out = env.attempt("", "os.chmod('/workspace/root-owned.sh', 0o777)");
    assert_blocked(&out, &["EACCES", "EPERM", "EOVERFLOW"]);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "echo original\n"
    );
    assert_eq!(
        std::fs::metadata(&victim).expect("meta").mode() & 0o7777,
        0o644
    );
    // What the agent creates belongs to the workspace's owner on the host.
    let out = env.sh("echo made > /workspace/made.txt");
    assert!(out.status.success(), "{out:?}");
    let made = std::fs::metadata(env.ws.join("made.txt")).expect("made");
    assert_eq!((made.uid(), made.gid()), (4242, 4242));
}

#[test]
fn workspace_is_mounted_nosuid_nodev() {
    let env = Env::new();
    let out = env.sh("grep ' /workspace ' /proc/self/mountinfo");
    assert!(out.status.success(), "{out:?}");
    let opts = out
        .stdout
        .split_whitespace()
        .nth(5)
        .unwrap_or("")
        .to_owned();
    let opts: Vec<&str> = opts.split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{out:?}"
    );
    if is_root() {
        assert!(opts.contains(&"idmapped"), "{out:?}");
    }
}

#[test]
fn setuid_and_setgid_files_cannot_be_made_in_the_workspace() {
    let env = Env::new();
    std::fs::copy("/bin/true", env.ws.join("tool")).expect("copy");
    // Every call that can set the bits, each tried on its own.
    let out = env.py(
        "import os, ctypes, errno\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def raw(n, *a):\n    \
             a = [ctypes.c_long(x) if isinstance(x, int) else x for x in a]\n    \
             r = libc.syscall(n, *a)\n    \
             if r == -1:\n        \
                 e = ctypes.get_errno(); raise OSError(e, os.strerror(e))\n\
         AT = -100\n\
         tries = [\n\
          ('chmod u+s', lambda: os.chmod('/workspace/tool', 0o4755)),\n\
          ('chmod g+s', lambda: os.chmod('/workspace/tool', 0o2755)),\n\
          ('fchmod', lambda: os.fchmod(os.open('/workspace/tool', os.O_RDONLY), 0o6755)),\n\
          ('fchmodat', lambda: raw(268, AT, b'/workspace/tool', 0o4755)),\n\
          ('fchmodat2', lambda: raw(452, AT, b'/workspace/tool', 0o4755, 0)),\n\
          ('chmod high bits', lambda: raw(90, b'/workspace/tool', 0x100004755)),\n\
          ('open O_CREAT', lambda: os.open('/workspace/a', os.O_CREAT | os.O_WRONLY, 0o4755)),\n\
          ('openat O_CREAT', lambda: raw(257, AT, b'/workspace/b', os.O_CREAT | os.O_WRONLY, 0o2755)),\n\
          ('open O_TMPFILE', lambda: os.open('/workspace', os.O_TMPFILE | os.O_WRONLY, 0o4755)),\n\
          ('creat', lambda: raw(85, b'/workspace/c', 0o4755)),\n\
          ('mknod', lambda: os.mknod('/workspace/d', 0o100000 | 0o4755)),\n\
          ('mknodat', lambda: raw(259, AT, b'/workspace/e', 0o100000 | 0o2755, 0)),\n\
          ('mknod char device', lambda: os.mknod('/workspace/null', 0o20000 | 0o666, os.makedev(1, 3))),\n\
         ]\n\
         for name, f in tries:\n    \
             try:\n        \
                 f(); print(name, 'ESCAPED')\n    \
             except OSError as e:\n        \
                 print(name, errno.errorcode.get(e.errno, e.errno))\n",
    );
    assert!(out.status.success(), "{out:?}");
    let want = "chmod u+s EPERM\nchmod g+s EPERM\nfchmod EPERM\nfchmodat EPERM\nfchmodat2 EPERM\n\
                chmod high bits EPERM\nopen O_CREAT EPERM\nopenat O_CREAT EPERM\nopen O_TMPFILE EPERM\n\
                creat EPERM\nmknod EPERM\nmknodat EPERM\nmknod char device EPERM\n";
    assert_eq!(out.stdout, want, "{out:?}");
    // On the host: nothing setuid/setgid, nothing created.
    use std::os::unix::fs::MetadataExt;
    let names: Vec<String> = std::fs::read_dir(&env.ws)
        .expect("ws")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["tool".to_owned()]);
    let mode = std::fs::metadata(env.ws.join("tool")).expect("tool").mode();
    assert_eq!(mode & 0o6000, 0, "mode {mode:o}");
    // Ordinary modes still work.
    let out = env.sh("cp /bin/true /workspace/t2 && chmod 755 /workspace/t2 && umask 022 && : > /workspace/f && ls -l /workspace/t2 /workspace/f | cut -c1-10");
    assert_eq!(out.stdout, "-rw-r--r--\n-rwxr-xr-x\n", "{out:?}");
}

// --- disk and terminal ----------------------------------------------------

#[test]
fn filling_the_disk_is_stopped_and_audited() {
    let env = Env::new().with_config("[sandbox]\nmax_write_mib = 16\n");
    // Many files, none past RLIMIT_FSIZE (which the limit also caps): the
    // run is ended once it wrote more than the limit.
    let out = env.py("import os, time\n\
         for i in range(512):\n    \
             with open(f'/workspace/f{i}', 'wb') as f:\n        \
                 f.write(os.urandom(1 << 20))\n    \
             time.sleep(0.01)\n\
         print('ESCAPED')\n");
    assert!(!out.stdout.contains("ESCAPED"), "{out:?}");
    assert_eq!(out.code(), 137, "{out:?}");
    assert!(
        out.stderr
            .contains("ended: it wrote more than sandbox.max_write_mib (16 MiB)"),
        "{out:?}"
    );
    let written: u64 = std::fs::read_dir(&env.ws)
        .expect("ws")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(written < 128 << 20, "the run wrote {written} bytes");
    let end = env.audited("run.end", 5).pop().expect("run.end");
    assert_eq!(end["reason"], "limit_exceeded", "{end:#}");
    assert_eq!(end["details"]["ended_by"], "write_limit", "{end:#}");
}

/// Run `airlock ARGS` on a new pseudo-terminal (stdin, stdout and stderr);
/// returns everything it printed there, and its exit code.
fn on_a_terminal(env: &Env, args: &[&str]) -> (Vec<u8>, i32) {
    let script = "import os, pty, sys\n\
                  pid, fd = pty.fork()\n\
                  if pid == 0:\n    \
                      os.execv(sys.argv[1], sys.argv[1:])\n\
                  out = b''\n\
                  while True:\n    \
                      try:\n        \
                          d = os.read(fd, 65536)\n    \
                      except OSError:\n        \
                          break\n    \
                      if not d:\n        \
                          break\n    \
                      out += d\n\
                  _, st = os.waitpid(pid, 0)\n\
                  print(out.hex())\n\
                  print(os.waitstatus_to_exitcode(st))\n";
    let mut cmd = env.command(&[]);
    let mut py = std::process::Command::new("python3");
    py.env_clear()
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .current_dir(&env.ws)
        .arg("-c")
        .arg(script)
        .arg(support::BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let _ = &mut cmd;
    let out = support::run_bounded(py);
    let mut lines = out.stdout.lines();
    let hex = lines.next().unwrap_or_default();
    let code = lines
        .next()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(-1);
    let bytes = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    (bytes, code)
}

const EVIL_OUTPUT: &str = "printf 'before\\033]0;pwned\\007\\033]52;c;ZWNobyBwd25lZA==\\007\\033[2J\\233\\061J after\\n'; printf 'err\\033[8mhidden\\n' >&2";

#[test]
fn escape_sequences_do_not_reach_the_operators_terminal() {
    let env = Env::new();
    let (out, code) = on_a_terminal(&env, &["run", "--", "/bin/sh", "-c", EVIL_OUTPUT]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    let text = String::from_utf8_lossy(&out);
    assert!(
        !out.contains(&0x1b) && !out.contains(&0x07),
        "raw control bytes: {text:?}"
    );
    assert!(
        text.contains("before^[]0;pwned^G^[]52;c;ZWNobyBwd25lZA==^G^[[2J\\x9b1J after"),
        "{text:?}"
    );
    assert!(text.contains("err^[[8mhidden"), "{text:?}");
}

#[test]
fn raw_output_keeps_escape_sequences_on_request() {
    let env = Env::new();
    let (out, code) = on_a_terminal(
        &env,
        &["run", "--raw-output", "--", "/bin/sh", "-c", EVIL_OUTPUT],
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    let needle = b"before\x1b]0;pwned\x07";
    assert!(
        out.windows(needle.len()).any(|w| w == needle),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn the_operators_terminal_is_not_the_agents_stdin() {
    let env = Env::new();
    let probe = "if [ -t 0 ]; then echo STDIN-TERMINAL; else echo STDIN-NOT-TERMINAL; fi; readlink /proc/self/fd/0";
    let (out, code) = on_a_terminal(&env, &["run", "--", "/bin/sh", "-c", probe]);
    assert_eq!(code, 0);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("STDIN-NOT-TERMINAL\r\n/dev/null"), "{text:?}");
    let (out, code) = on_a_terminal(
        &env,
        &["run", "--interactive", "--", "/bin/sh", "-c", probe],
    );
    assert_eq!(code, 0);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("STDIN-TERMINAL\r\n"), "{text:?}");
}
