//! First use just works: `airlock run -- true` with `AIRLOCK_DATA_DIR`
//! naming an empty directory (made with `mkdir`, so 0755) succeeds and
//! leaves it initialized and private, with a log that verifies.

#[path = "sandbox_support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt as _;
use support::Env;

#[test]
fn run_true_on_an_empty_data_dir_initializes_it_privately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env {
        data: dir.path().join("empty"),
        ws: dir.path().join("ws"),
        home: dir.path().join("home"),
        config: None,
        dir,
    };
    for d in [&env.data, &env.ws, &env.home] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::set_permissions(&env.data, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = env.run(&[], &["true"]);
    assert_eq!(out.code(), 0, "{out:?}");
    let mode = std::fs::metadata(&env.data)
        .expect("data")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "{out:?}");
    for f in [
        "airlock.db",
        "airlock.toml",
        "keys/audit-signing.key",
        "keys/master.key",
    ] {
        assert!(env.data.join(f).is_file(), "{f} missing: {out:?}");
    }
    let verify = env.airlock(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let ends = env.audited("run.end", 20);
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["details"]["exit_status"], 0, "{ends:#?}");
}
