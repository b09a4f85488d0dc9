//! The PostgreSQL backend against a real cluster (scripts/test starts one;
//! skipped locally without it, failing in CI). Run a second time with
//! `--features test-no-app-filter`: the application's tenant filter is gone
//! from every query and the isolation tests must still pass, because
//! row-level security alone stops them.

mod pg_support;

use airlock_store::{
    AccountStore, ApiTokenRow, AuditStore, CheckpointRow, ControlStore, NewRecord,
    PgConnectOptions, PgStore, RunRow, RunState, SessionRow, StoreError, UserDeleted, UserRow,
};
use airlock_types::TenantId;
use pg_support::{APP, OWNER, TestDb, admin_url};
use std::ops::ControlFlow;

fn t(s: &str) -> TenantId {
    TenantId::new(s).expect("tenant id")
}

fn token(tenant: &TenantId, id: &str, seed: u8, created_at: i64) -> ApiTokenRow {
    ApiTokenRow {
        id: id.into(),
        tenant: tenant.clone(),
        sha256: [seed; 32],
        scopes: vec!["runs:read".into(), "audit:read".into()],
        agents: vec!["a1".into()],
        nodes: vec![],
        description: format!("token {id}"),
        expires_at: Some(9_999),
        revoked_at: None,
        created_at,
        last_used_at: None,
    }
}

fn run_row(id: &str, started_at: i64) -> RunRow {
    RunRow {
        id: id.into(),
        agent: Some("a1".into()),
        command: vec!["prog".into(), "arg; DROP TABLE runs; --".into()],
        node: "node-1".into(),
        state: RunState::Running,
        exit_code: None,
        started_at,
        ended_at: None,
    }
}

/// The same objects, with the same names, in a tenant.
fn populate(s: &mut PgStore, tenant: &TenantId, seed: u8) {
    assert!(s.tenant_create(tenant, 1).expect("tenant"));
    assert!(s.team_create(tenant, "core", 2).expect("team"));
    assert!(
        s.agent_create(tenant, "a1", Some("core"), 3)
            .expect("agent")
    );
    let v = s
        .policy_put(tenant, "a1", &format!("# {tenant}"), "ab", "op", 4)
        .expect("policy");
    assert_eq!(v, Some(1));
    assert!(s.policy_activate(tenant, "a1", 1).expect("activate"));
    s.token_insert(&token(tenant, &format!("tok_{tenant}"), seed, 5))
        .expect("token");
    s.run_insert(tenant, &run_row("run-1", 6)).expect("run");
    s.append_records(
        tenant,
        &[NewRecord {
            index: 0,
            body: tenant.as_str().as_bytes(),
            chain: [seed; 32],
        }],
    )
    .expect("audit");
    s.append_checkpoint(
        tenant,
        &CheckpointRow {
            seq: 0,
            tree_size: 1,
            body: format!("cp {tenant}"),
        },
    )
    .expect("checkpoint");
    assert!(
        s.user_create(&UserRow {
            username: format!("admin@{tenant}"),
            tenant: tenant.clone(),
            password_hash: format!("hash of {tenant}"),
            admin: true,
            must_change_password: true,
            created_at: 7,
        })
        .expect("user")
    );
    s.session_insert(&SessionRow {
        sha256: [seed ^ 0xff; 32],
        tenant: tenant.clone(),
        username: format!("admin@{tenant}"),
        created_at: 8,
        last_seen_at: 8,
        expires_at: 1_000,
        revoked_at: None,
    })
    .expect("session");
}

#[test]
fn control_store_every_method() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "control");
    let mut s = db.app();
    let a = t("acme");

    assert!(s.tenant_create(&a, 10).expect("create"));
    assert!(
        !s.tenant_create(&a, 11).expect("create again"),
        "exists: Ok(false)"
    );
    assert_eq!(
        s.tenant(&a).expect("tenant").map(|r| (r.id, r.created_at)),
        Some((a.clone(), 10))
    );
    assert_eq!(s.tenant(&t("nobody")).expect("tenant"), None);
    assert!(s.tenant_create(&t("beta"), 12).expect("create"));
    let all: Vec<String> = s
        .tenants()
        .expect("tenants")
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(all, ["acme", "beta"]);

    assert!(s.team_create(&a, "zeta", 1).expect("team"));
    assert!(s.team_create(&a, "alpha", 2).expect("team"));
    assert!(!s.team_create(&a, "alpha", 3).expect("team again"));
    let teams: Vec<(String, i64)> = s
        .teams(&a)
        .expect("teams")
        .into_iter()
        .map(|r| (r.name, r.created_at))
        .collect();
    assert_eq!(teams, [("alpha".into(), 2), ("zeta".into(), 1)]);

    assert!(s.agent_create(&a, "bot", Some("alpha"), 5).expect("agent"));
    assert!(s.agent_create(&a, "aaa", None, 6).expect("agent"));
    assert!(!s.agent_create(&a, "bot", None, 7).expect("agent again"));
    let bot = s.agent(&a, "bot").expect("agent").expect("exists");
    assert_eq!(
        (bot.team.as_deref(), bot.active_policy, bot.created_at),
        (Some("alpha"), None, 5)
    );
    assert_eq!(s.agent(&a, "ghost").expect("agent"), None);
    let names: Vec<String> = s
        .agents(&a)
        .expect("agents")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["aaa", "bot"]);

    assert_eq!(
        s.policy_put(&a, "ghost", "x", "h", "op", 1).expect("put"),
        None
    );
    assert_eq!(
        s.policy_put(&a, "bot", "v1 ' OR 1=1 --", "h1", "op", 8)
            .expect("put"),
        Some(1)
    );
    assert_eq!(
        s.policy_put(&a, "bot", "v2", "h2", "tok_x", 9)
            .expect("put"),
        Some(2)
    );
    let v1 = s.policy_version(&a, "bot", 1).expect("v1").expect("exists");
    assert_eq!(
        (
            v1.agent.as_str(),
            v1.version,
            v1.text.as_str(),
            v1.sha256.as_str(),
            v1.author.as_str(),
            v1.created_at
        ),
        ("bot", 1, "v1 ' OR 1=1 --", "h1", "op", 8)
    );
    assert_eq!(s.policy_version(&a, "bot", 3).expect("v3"), None);
    assert_eq!(s.policy_version(&a, "bot", u32::MAX).expect("huge"), None);
    let versions: Vec<u32> = s
        .policy_versions(&a, "bot")
        .expect("versions")
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    assert!(!s.policy_activate(&a, "bot", 3).expect("no such version"));
    assert!(!s.policy_activate(&a, "ghost", 1).expect("no such agent"));
    assert!(s.policy_activate(&a, "bot", 2).expect("activate"));
    assert_eq!(
        s.agent(&a, "bot")
            .expect("agent")
            .expect("exists")
            .active_policy,
        Some(2)
    );

    let tok1 = token(&a, "tok_1", 1, 100);
    let tok2 = token(&a, "tok_2", 2, 200);
    s.token_insert(&tok1).expect("insert");
    s.token_insert(&tok2).expect("insert");
    assert!(
        matches!(s.token_insert(&tok1), Err(StoreError::Postgres { .. })),
        "a duplicate id or hash is refused"
    );
    assert_eq!(
        s.token_by_hash(&[1; 32]).expect("by hash"),
        Some(tok1.clone())
    );
    assert_eq!(s.token_by_hash(&[9; 32]).expect("by hash"), None);
    let ids: Vec<String> = s
        .tokens(&a)
        .expect("tokens")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["tok_2", "tok_1"], "newest first");
    s.token_touch(&a, "tok_1", 150).expect("touch");
    assert!(s.token_revoke(&a, "tok_1", 160).expect("revoke"));
    assert!(!s.token_revoke(&a, "tok_1", 170).expect("revoke twice"));
    assert!(!s.token_revoke(&a, "tok_none", 170).expect("revoke missing"));
    let got = s
        .token_by_hash(&[1; 32])
        .expect("by hash")
        .expect("revoked still returned");
    assert_eq!((got.last_used_at, got.revoked_at), (Some(150), Some(160)));

    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        s.run_insert(&a, &run_row(id, 1000 + i as i64))
            .expect("run insert");
    }
    assert!(
        s.run_insert(&a, &run_row("r1", 5)).is_err(),
        "run id must be new"
    );
    assert!(
        s.run_finish(&a, "r2", RunState::Exited, Some(3), 2000)
            .expect("finish")
    );
    assert!(
        !s.run_finish(&a, "r2", RunState::Stopped, None, 2001)
            .expect("not running")
    );
    assert!(
        !s.run_finish(&a, "nope", RunState::Stopped, None, 2001)
            .expect("missing")
    );
    let r2 = s.run(&a, "r2").expect("run").expect("exists");
    assert_eq!(
        r2,
        RunRow {
            state: RunState::Exited,
            exit_code: Some(3),
            ended_at: Some(2000),
            ..run_row("r2", 1001)
        }
    );
    assert_eq!(s.run(&a, "nope").expect("run"), None);
    let page: Vec<String> = s
        .runs(&a, 2, None)
        .expect("runs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ["r3", "r2"]);
    let page: Vec<String> = s
        .runs(&a, 2, Some(1001))
        .expect("runs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ["r1"]);
}

/// Two tenants with the same names: each sees only its own rows, and every
/// call naming the other's object behaves as if it did not exist. With
/// `--features test-no-app-filter` only RLS enforces this.
#[test]
fn tenants_never_see_each_other() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "isolation");
    let mut s = db.app();
    let (a, b) = (t("tenant-a"), t("tenant-b"));
    populate(&mut s, &a, 0xa);
    populate(&mut s, &b, 0xb);

    for (me, other, seed) in [(&a, &b, 0xa), (&b, &a, 0xb)] {
        assert_eq!(
            s.tenant(me).expect("tenant").map(|r| r.id),
            Some(me.clone())
        );
        assert_eq!(s.teams(me).expect("teams").len(), 1);
        assert_eq!(s.agents(me).expect("agents").len(), 1);
        assert_eq!(s.policy_versions(me, "a1").expect("versions").len(), 1);
        assert_eq!(
            s.policy_version(me, "a1", 1).expect("v").map(|p| p.text),
            Some(format!("# {me}"))
        );
        let toks = s.tokens(me).expect("tokens");
        assert_eq!(
            toks.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [format!("tok_{me}")]
        );
        assert_eq!(toks[0].sha256, [seed; 32]);
        assert_eq!(s.runs(me, 100, None).expect("runs").len(), 1);
        assert_eq!(s.record_count(me).expect("count"), 1);
        let mut bodies = Vec::new();
        s.for_each_record(me, 0, &mut |r| {
            bodies.push(r.body.to_vec());
            ControlFlow::Continue(())
        })
        .expect("records");
        assert_eq!(bodies, [me.as_str().as_bytes().to_vec()]);
        let cps = s.checkpoints(me).expect("checkpoints");
        assert_eq!(
            cps.iter().map(|c| c.body.clone()).collect::<Vec<_>>(),
            [format!("cp {me}")]
        );

        // Naming the other tenant's objects: nothing there, nothing changed.
        let other_tok = format!("tok_{other}");
        assert!(!s.token_revoke(me, &other_tok, 99).expect("revoke other's"));
        s.token_touch(me, &other_tok, 99).expect("touch other's");
        assert_eq!(s.tokens(me).expect("tokens").len(), 1);

        // Accounts: a tenant lists only its own users and cannot delete,
        // re-password or end the sessions of another's.
        let users = s.users(me).expect("users");
        assert_eq!(
            users.iter().map(|u| u.username.clone()).collect::<Vec<_>>(),
            [format!("admin@{me}")]
        );
        let other_user = format!("admin@{other}");
        assert_eq!(
            s.user_delete(me, &other_user, 50).expect("delete other's"),
            UserDeleted::NotFound
        );
        assert!(
            !s.user_set_password(me, &other_user, "mine")
                .expect("password of other's")
        );
        assert!(
            !s.user_create(&UserRow {
                username: other_user.clone(),
                tenant: me.clone(),
                password_hash: "x".into(),
                admin: true,
                must_change_password: false,
                created_at: 9,
            })
            .expect("create taken"),
            "a username is unique in the installation"
        );
    }
    // The lookups made before the tenant is known find one row each, and
    // the other tenant's user and session are as they were.
    for (tenant, seed) in [(&a, 0xau8), (&b, 0xb)] {
        let u = s
            .user(&format!("admin@{tenant}"))
            .expect("user")
            .expect("exists");
        assert_eq!(
            (&u.tenant, u.password_hash.as_str(), u.must_change_password),
            (tenant, format!("hash of {tenant}").as_str(), true)
        );
        let h = [seed ^ 0xff; 32];
        s.session_touch(&h, 20).expect("touch");
        let row = s.session_by_hash(&h).expect("session").expect("exists");
        assert_eq!(
            (&row.tenant, row.last_seen_at, row.revoked_at),
            (tenant, 20, None)
        );
    }
    assert!(s.session_revoke(&[0xa ^ 0xff; 32], 30).expect("revoke"));
    assert!(!s.session_revoke(&[0xa ^ 0xff; 32], 31).expect("again"));
    // The last administrator is kept (the deletion's transaction locks the
    // administrators while it counts them); with a second one it goes.
    assert_eq!(
        s.user_delete(&a, "admin@tenant-a", 40).expect("delete own"),
        UserDeleted::LastAdmin
    );
    assert!(
        s.user_create(&UserRow {
            username: "ops@tenant-a".into(),
            tenant: a.clone(),
            password_hash: "h".into(),
            admin: true,
            must_change_password: false,
            created_at: 39,
        })
        .expect("second admin")
    );
    assert_eq!(
        s.user_delete(&a, "admin@tenant-a", 40).expect("delete own"),
        UserDeleted::Deleted
    );
    assert_eq!(s.user("admin@tenant-a").expect("user"), None);
    assert!(s.user("admin@tenant-b").expect("user").is_some());
    // The other tenant's token was neither revoked nor touched.
    for (tenant, seed) in [(&a, 0xa), (&b, 0xb)] {
        let tok = s.token_by_hash(&[seed; 32]).expect("hash").expect("exists");
        assert_eq!(
            (&tok.tenant, tok.revoked_at, tok.last_used_at),
            (tenant, None, None)
        );
    }

    // Objects that exist only in tenant b are invisible to tenant a.
    let c = t("tenant-c");
    assert!(s.agent_create(&b, "only-b", None, 1).expect("agent"));
    assert_eq!(
        s.policy_put(&b, "only-b", "x", "h", "op", 1).expect("put"),
        Some(1)
    );
    s.run_insert(&b, &run_row("run-only-b", 7)).expect("run");
    assert_eq!(s.agent(&a, "only-b").expect("agent"), None);
    assert_eq!(
        s.policy_put(&a, "only-b", "y", "h", "op", 2).expect("put"),
        None
    );
    assert_eq!(s.policy_version(&a, "only-b", 1).expect("version"), None);
    assert!(
        s.policy_versions(&a, "only-b")
            .expect("versions")
            .is_empty()
    );
    assert!(!s.policy_activate(&a, "only-b", 1).expect("activate"));
    assert_eq!(s.run(&a, "run-only-b").expect("run"), None);
    assert!(
        !s.run_finish(&a, "run-only-b", RunState::Stopped, None, 9)
            .expect("finish")
    );
    assert_eq!(
        s.run(&b, "run-only-b").expect("run").map(|r| r.state),
        Some(RunState::Running)
    );
    // A tenant with nothing sees nothing.
    assert_eq!(s.tenant(&c).expect("tenant"), None);
    assert!(s.agents(&c).expect("agents").is_empty());
    assert!(s.tokens(&c).expect("tokens").is_empty());
    assert!(s.runs(&c, 100, None).expect("runs").is_empty());
    assert_eq!(s.record_count(&c).expect("count"), 0);
    assert!(s.checkpoints(&c).expect("checkpoints").is_empty());
    // Each tenant's log is its own chain: tenant a appends at its own length.
    let rec = [NewRecord {
        index: 1,
        body: b"next",
        chain: [1; 32],
    }];
    s.append_records(&a, &rec).expect("a's second record");
    assert_eq!(s.record_count(&b).expect("count"), 1);
}

/// RLS itself, below the application: the app role with a tenant set sees
/// only that tenant's rows, with none set sees nothing, and cannot write or
/// move a row into another tenant (WITH CHECK).
#[test]
fn row_level_security_refuses_cross_tenant_reads_and_writes() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "rls");
    let mut s = db.app();
    populate(&mut s, &t("tenant-a"), 0xa);
    populate(&mut s, &t("tenant-b"), 0xb);
    let mut c = db.raw(APP);

    let count = |c: &mut postgres::Client, table: &str| -> i64 {
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .expect("count")
            .get(0)
    };
    let tables = [
        "tenants",
        "teams",
        "agents",
        "policy_versions",
        "api_tokens",
        "runs",
        "audit_heads",
        "audit_records",
        "audit_checkpoints",
        "dashboard_users",
        "dashboard_sessions",
    ];
    // No tenant set: nothing at all.
    for table in tables {
        assert_eq!(count(&mut c, table), 0, "{table} without a tenant");
    }
    let mut tx = c.transaction().expect("tx");
    tx.execute("SELECT set_config('airlock.tenant', 'tenant-a', true)", &[])
        .expect("set");
    for table in tables {
        let n: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} WHERE {} <> 'tenant-a'",
                    if table == "tenants" { "id" } else { "tenant" }
                ),
                &[],
            )
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{table}: another tenant's rows are visible");
    }
    // An UPDATE aimed at tenant b's rows touches none of them.
    let n = tx
        .execute(
            "UPDATE runs SET state = 'stopped' WHERE tenant = 'tenant-b'",
            &[],
        )
        .expect("update");
    assert_eq!(n, 0);
    tx.commit().expect("commit");
    assert_eq!(
        s.run(&t("tenant-b"), "run-1")
            .expect("run")
            .map(|r| r.state),
        Some(RunState::Running)
    );

    // Writing a row with another tenant's id: refused by WITH CHECK.
    let refused = [
        "INSERT INTO teams (tenant, name, created_at) VALUES ('tenant-b', 'evil', 1)",
        "INSERT INTO tenants (id, created_at) VALUES ('tenant-z', 1)",
        "INSERT INTO audit_records (tenant, idx, body, chain) VALUES ('tenant-b', 1, 'x', decode(repeat('00', 32), 'hex'))",
        "INSERT INTO api_tokens (id, tenant, sha256, scopes, agents, nodes, description, created_at) \
         VALUES ('tok_evil', 'tenant-b', decode(repeat('ee', 32), 'hex'), '{admin}', '{}', '{}', '', 1)",
        "INSERT INTO dashboard_users (username, tenant, password_hash, admin, must_change_password, created_at) \
         VALUES ('evil@tenant-b', 'tenant-b', 'x', true, false, 1)",
        "INSERT INTO dashboard_sessions (sha256, tenant, username, created_at, last_seen_at, expires_at) \
         VALUES (decode(repeat('dd', 32), 'hex'), 'tenant-b', 'admin@tenant-b', 1, 1, 9)",
        // Moving one's own row into another tenant.
        "UPDATE audit_heads SET tenant = 'tenant-b' WHERE tenant = 'tenant-a'",
    ];
    for sql in refused {
        let mut tx = c.transaction().expect("tx");
        tx.execute("SELECT set_config('airlock.tenant', 'tenant-a', true)", &[])
            .expect("set");
        let e = tx.batch_execute(sql).expect_err(sql);
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(
            msg.contains("violates row-level security policy"),
            "{sql}: {msg}"
        );
    }
    // And without any tenant set, no insert at all passes.
    let e = c
        .batch_execute("INSERT INTO teams (tenant, name, created_at) VALUES ('tenant-a', 'x', 1)")
        .expect_err("no tenant");
    assert_eq!(
        e.code(),
        Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(
        s.teams(&t("tenant-b")).expect("teams").len(),
        1,
        "nothing was written"
    );
}

/// The app role has no way around RLS: it cannot turn it off, drop a
/// policy, read the tables through the lookup functions' policy, or change
/// the audit log.
#[test]
fn app_role_cannot_bypass_or_rewrite() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "bypass");
    let mut s = db.app();
    populate(&mut s, &t("tenant-a"), 0xa);
    let mut c = db.raw(APP);
    for sql in [
        "ALTER TABLE runs DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE runs NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON runs",
        "SET row_security = off; SELECT count(*) FROM runs",
        "SET ROLE airlock_test_owner",
        "UPDATE audit_records SET body = 'x'",
        "DELETE FROM audit_records",
        "TRUNCATE audit_records",
        "DELETE FROM api_tokens",
        "DROP TRIGGER audit_records_no_update ON audit_records",
        "CREATE TABLE evil (x int)",
    ] {
        let e = c.batch_execute(sql).expect_err(sql);
        let code = e.code().cloned();
        assert!(
            code == Some(postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
    }
}

/// Serving as a role that could bypass RLS is refused with a clear error:
/// the superuser, the owner, a BYPASSRLS role, a member of the owner.
#[test]
fn roles_that_could_bypass_rls_are_refused() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "roles");
    let mut su = db.superuser();
    let _ = su.batch_execute(
        "DO $$ BEGIN CREATE ROLE airlock_test_bypass LOGIN BYPASSRLS IN ROLE airlock_app; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    );
    let _ = su.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE airlock_test_owner_member LOGIN IN ROLE airlock_app, {OWNER}; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ));
    let su_name = {
        let r = su.query_one("SELECT current_user::text", &[]).expect("who");
        r.get::<_, String>(0)
    };
    for (role, want) in [
        (su_name.as_str(), "SUPERUSER"),
        (OWNER, "owns"),
        ("airlock_test_bypass", "BYPASSRLS"),
        ("airlock_test_owner_member", "owns"),
    ] {
        match PgStore::connect(&db.opts(role)) {
            Err(e @ StoreError::UnsafeRole { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{role}: {msg}");
                assert!(
                    msg.contains(&format!("refusing to serve as role \"{role}\"")),
                    "{msg}"
                );
            }
            other => panic!("{role}: expected UnsafeRole, got {other:?}"),
        }
    }
    // The app role is accepted.
    db.app();
    // RLS switched off on one table by the owner: the app refuses to serve.
    db.raw(OWNER)
        .batch_execute("ALTER TABLE runs NO FORCE ROW LEVEL SECURITY")
        .expect("owner may");
    match PgStore::connect(&db.opts(APP)) {
        Err(StoreError::UnsafeRole { detail, .. }) => {
            assert!(
                detail.contains("not enabled and forced on table runs"),
                "{detail}"
            )
        }
        other => panic!("expected UnsafeRole, got {other:?}"),
    }
}

#[test]
fn migrations_are_versioned_idempotent_and_race_free() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::unmigrated(&admin, "migrate");
    // Serving before migrating: a clear schema-version error.
    match PgStore::connect(&db.opts(APP)) {
        Err(e @ StoreError::SchemaVersion { found: 0, .. }) => {
            assert!(e.to_string().contains("airlock db migrate"), "{e}")
        }
        other => panic!("expected SchemaVersion, got {other:?}"),
    }
    // Three replicas start together: one migrates, the others find it done.
    let applied: Vec<Vec<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| airlock_store::pg_migrate(&db.opts(OWNER)).expect("migrate")))
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut all: Vec<u32> = applied.iter().flatten().copied().collect();
    all.sort();
    let every: Vec<u32> = (1..=airlock_store::LATEST_PG_VERSION).collect();
    assert_eq!(
        all, every,
        "each migration applied exactly once: {applied:?}"
    );
    assert_eq!(
        airlock_store::pg_migrate(&db.opts(OWNER)).expect("again"),
        Vec::<u32>::new()
    );
    let rows: Vec<(i32, String)> = db
        .raw(OWNER)
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("versions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "control_audit".into()),
            (2, "budgets".into()),
            (3, "budget_reservations".into()),
            (4, "accounts".into())
        ]
    );
    db.app();
}

#[test]
fn audit_store_appends_reads_snapshots_and_guards() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "audit");
    let mut s = db.app();
    let a = t("acme");
    let bodies: Vec<Vec<u8>> = (0..2500u32)
        .map(|i| format!("event {i}").into_bytes())
        .collect();
    let recs: Vec<NewRecord<'_>> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| NewRecord {
            index: i as u64,
            body: b,
            chain: [(i % 251) as u8; 32],
        })
        .collect();
    s.append_records(&a, &[]).expect("empty batch");
    s.append_records(&a, &recs[..1]).expect("first");
    s.append_records(&a, &recs[1..])
        .expect("the rest, one statement");
    assert_eq!(s.record_count(&a).expect("count"), 2500);
    // A writer that missed records: HeadMoved, nothing written.
    match s.append_records(&a, &recs[100..101]) {
        Err(StoreError::HeadMoved {
            expected: 100,
            found: 2500,
            ..
        }) => {}
        other => panic!("expected HeadMoved, got {other:?}"),
    }
    assert_eq!(s.record_count(&a).expect("count"), 2500);
    // Reading across pages, from an offset, stopping early.
    let mut seen = Vec::new();
    s.for_each_record(&a, 990, &mut |r| {
        assert_eq!(r.body, format!("event {}", r.index).as_bytes());
        assert_eq!(r.chain, [(r.index % 251) as u8; 32]);
        seen.push(r.index);
        if r.index == 2100 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect("read");
    assert_eq!(seen, (990..=2100).collect::<Vec<u64>>());

    let cp = |seq: u64| CheckpointRow {
        seq,
        tree_size: seq * 10,
        body: format!("cp{seq}"),
    };
    assert_eq!(s.last_checkpoint(&a).expect("none"), None);
    s.append_checkpoint(&a, &cp(0)).expect("cp");
    s.append_checkpoint(&a, &cp(1)).expect("cp");
    assert!(
        s.append_checkpoint(&a, &cp(1)).is_err(),
        "a sequence number is stored once"
    );
    assert_eq!(s.checkpoints(&a).expect("cps"), [cp(0), cp(1)]);
    assert_eq!(s.last_checkpoint(&a).expect("last"), Some(cp(1)));

    // A snapshot does not see another connection's later append.
    let mut other = db.app();
    s.begin_snapshot().expect("begin");
    other
        .append_records(
            &a,
            &[NewRecord {
                index: 2500,
                body: b"late",
                chain: [0; 32],
            }],
        )
        .expect("other appends");
    assert_eq!(s.record_count(&a).expect("in snapshot"), 2500);
    match s.append_records(
        &a,
        &[NewRecord {
            index: 2501,
            body: b"x",
            chain: [0; 32],
        }],
    ) {
        Err(StoreError::PgSnapshotWrite { .. }) => {}
        other => panic!("expected a refused write in a snapshot, got {other:?}"),
    }
    s.end_snapshot().expect("end");
    s.end_snapshot().expect("end again is a no-op");
    assert_eq!(s.record_count(&a).expect("after"), 2501);

    // Guards: all present; dropping or disabling one (the owner can) is reported.
    assert!(s.missing_guards().expect("guards").is_empty());
    let mut owner = db.raw(OWNER);
    owner
        .batch_execute(
            "DROP TRIGGER audit_records_no_delete ON audit_records; \
             ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_no_update",
        )
        .expect("owner drops a guard");
    assert_eq!(
        s.missing_guards().expect("guards"),
        ["audit_records_no_delete", "audit_checkpoints_no_update"]
    );
    // The remaining guards still stop the owner.
    for sql in [
        "SELECT set_config('airlock.tenant', 'acme', false); UPDATE audit_records SET body = 'x'",
        "TRUNCATE audit_records",
        "SELECT set_config('airlock.tenant', 'acme', false); DELETE FROM audit_checkpoints",
    ] {
        let e = owner.batch_execute(sql).expect_err("guarded");
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("is append-only"), "{sql}: {msg}");
    }
    assert_eq!(s.record_count(&a).expect("count"), 2501);
}

/// The database goes away: a clear "unavailable" error (an API answers 503),
/// and a transaction cut off in the middle leaves nothing behind.
#[test]
fn database_down_is_unavailable_and_writes_nothing() {
    let Some(admin) = admin_url() else { return };
    // Nothing listens: connect fails as unavailable.
    let dead = PgConnectOptions::new(
        "postgres://airlock@127.0.0.1:1/none?connect_timeout=2",
        None,
    )
    .expect("options");
    match PgStore::connect(&dead) {
        Err(e @ StoreError::Unavailable { .. }) => {
            assert!(e.to_string().contains("database unavailable"), "{e}");
            assert!(
                !e.to_string().contains("airlock@"),
                "no user or password: {e}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    let db = TestDb::new(&admin, "down");
    let victim_url = format!("{}&application_name=airlock_victim", db.url(APP));
    let mut s = PgStore::connect(&PgConnectOptions::new(&victim_url, None).expect("opts"))
        .expect("connect");
    let a = t("acme");
    s.append_records(
        &a,
        &[NewRecord {
            index: 0,
            body: b"0",
            chain: [0; 32],
        }],
    )
    .expect("first");
    // Another session holds the chain head: the victim's append waits inside
    // its transaction, after its own inserts could have begun.
    let mut holder = db.raw(OWNER);
    let mut hold = holder.transaction().expect("tx");
    hold.execute("SELECT set_config('airlock.tenant', 'acme', true)", &[])
        .expect("set");
    hold.query(
        "SELECT * FROM audit_heads WHERE tenant = 'acme' FOR UPDATE",
        &[],
    )
    .expect("lock head");
    let appender = std::thread::spawn(move || {
        let r = s.append_records(
            &a,
            &[
                NewRecord {
                    index: 1,
                    body: b"1",
                    chain: [1; 32],
                },
                NewRecord {
                    index: 2,
                    body: b"2",
                    chain: [2; 32],
                },
            ],
        );
        (s, r)
    });
    // Wait until the victim is blocked on the lock, then cut it off.
    let mut su = db.superuser();
    let mut waited = 0;
    loop {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'airlock_victim' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("activity")
            .get(0);
        if n == 1 {
            break;
        }
        waited += 1;
        assert!(waited < 200, "the appender never blocked on the chain head");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    su.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'airlock_victim'",
        &[],
    )
    .expect("terminate");
    let (mut s, r) = appender.join().expect("thread");
    match r {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    hold.rollback().expect("release");
    // Nothing of the cut-off batch was stored; the store reconnects and
    // the next append goes on at the right place.
    assert_eq!(s.record_count(&t("acme")).expect("reconnects"), 1);
    s.append_records(
        &t("acme"),
        &[NewRecord {
            index: 1,
            body: b"1",
            chain: [1; 32],
        }],
    )
    .expect("append after reconnect");
    assert_eq!(s.record_count(&t("acme")).expect("count"), 2);
}

/// Budgets: reservations from three connections at once never overspend.
#[test]
fn budget_reservations_never_overspend() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "budget");
    let a = t("acme");
    let mut s = db.app();
    s.budget_set(&a, "org", 1_000).expect("set");
    assert_eq!(s.budget_reserve(&a, "nope", 1).expect("missing"), None);
    assert_eq!(s.budget_reserve(&a, "org", -5).expect("negative"), None);
    let granted: Vec<i64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let db = &db;
                let a = &a;
                sc.spawn(move || {
                    let mut s = db.app();
                    let mut got = 0;
                    for _ in 0..400 {
                        if let Some(b) = s.budget_reserve(a, "org", 7).expect("reserve") {
                            assert!(b.spent_micros + b.reserved_micros <= b.limit_micros);
                            got += 7;
                        }
                    }
                    got
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let total: i64 = granted.iter().sum();
    assert_eq!(
        total,
        1_000 / 7 * 7,
        "every unit of headroom once: {granted:?}"
    );
    let b = s.budget(&a, "org").expect("read").expect("exists");
    assert_eq!((b.spent_micros, b.reserved_micros), (0, total));
    assert!(s.budget_settle(&a, "org", 7, 3).expect("settle"));
    assert_eq!(
        s.budget(&a, "org").expect("read"),
        Some(airlock_store::PgBudget {
            limit_micros: 1_000,
            spent_micros: 3,
            reserved_micros: total - 7
        })
    );
    // Another tenant's budget of the same name is a different row.
    assert_eq!(s.budget(&t("other"), "org").expect("read"), None);
    assert_eq!(
        s.budget_reserve(&t("other"), "org", 1).expect("other"),
        None
    );
}

/// The blocking client is usable from `spawn_blocking` (how the API calls it).
#[test]
fn usable_from_spawn_blocking() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "blocking");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // Connect outside the runtime's workers, call inside spawn_blocking.
    let mut s = db.app();
    let n = rt.block_on(async {
        tokio::task::spawn_blocking(move || {
            s.tenant_create(&t("acme"), 1).expect("create");
            s.tenants().expect("list").len()
        })
        .await
        .expect("join")
    });
    assert_eq!(n, 1);
}
