//! Agent-controlled header values and query strings through the broker.
//!
//! The input is split at the first NUL into a header name and a value; the
//! marker `HANDLE` in the value is replaced by a live handle, so the fuzzer
//! reaches the redeem path. Invariants: no panic; a destination outside the
//! binding never gets the real value; the output only ever contains the real
//! value where a handle was.
#![no_main]

use airlock_types::{RunId, Secret};
use airlock_broker::{Binding, Broker, Destination, Grant, RunLimits, find_handles};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const REAL: &str = "ghp_FuzzRealValue0123456789";

fn broker() -> &'static (Broker, String) {
    static B: OnceLock<(Broker, String)> = OnceLock::new();
    B.get_or_init(|| {
        let b = Broker::new();
        let binding = Binding::new(
            "T",
            vec!["api.github.com".into()],
            None,
            None,
            vec![],
            vec!["/repos/*".into()],
            None,
        )
        .expect("binding");
        let minted = b
            .start_run(
                &RunId::new("fuzz").expect("id"),
                vec![Grant::new("T", binding, Secret::new(REAL.into()))],
                RunLimits::default(),
            )
            .expect("start");
        let h = minted[0].handle.expose().clone();
        (b, h)
    })
}

fuzz_target!(|data: &[u8]| {
    let (b, handle) = broker();
    let text = String::from_utf8_lossy(data);
    let (name, value) = text.split_once('\0').unwrap_or(("Authorization", &text));
    let value = value.replace("HANDLE", handle);
    for h in find_handles(&value) {
        assert!(h.starts_with("alh_") && value.contains(h));
    }
    let evil = Destination {
        scheme: "https",
        host: "evil.test",
        port: 443,
        method: "GET",
        path: "/repos/x",
    };
    if let Ok(Some(v)) = b.inject_header(name, &value, &evil) {
        panic!(
            "a handle was redeemed for an unbound host: {}",
            v.value.expose().len()
        );
    }
    if let Ok(Some(_)) = b.inject_query(&value, &evil) {
        panic!("a query handle was redeemed for an unbound host");
    }
    let good = Destination {
        scheme: "https",
        host: "api.github.com",
        port: 443,
        method: "GET",
        path: "/repos/x",
    };
    let _ = b.inject_header(name, &value, &good);
    let _ = b.inject_query(&value, &good);
});
