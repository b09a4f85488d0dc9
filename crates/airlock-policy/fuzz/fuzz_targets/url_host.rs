//! URL / host / authority normalization: agent-controlled text.
//!
//! Properties checked on every input, beyond "does not panic":
//! - a parsed host is canonical: re-parsing its printed form gives the same
//!   host (so the guard and the matcher judge one form, whatever the input);
//! - domains are lowercase ASCII without a trailing dot or empty label;
//! - the decision over a parsed URL is total (never panics) for any method.
#![no_main]

use airlock_policy::{
    EgressPolicy, EgressRequest, Host, parse_authority, parse_host, parse_url,
    parse_url_with_userinfo,
};
use libfuzzer_sys::fuzz_target;

fn check_canonical(h: &Host) {
    let printed = h.to_string();
    assert_eq!(
        parse_host(&printed).as_ref(),
        Ok(h),
        "not canonical: {printed:?}"
    );
    if let Host::Domain(d) = h {
        assert!(
            d.is_ascii() && !d.ends_with('.') && !d.contains("..") && d == &d.to_ascii_lowercase(),
            "{d:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = parse_host(s) {
        check_canonical(&h);
    }
    if let Ok((h, port)) = parse_authority(s, 443) {
        check_canonical(&h);
        assert!(port > 0);
    }
    for candidate in [s.to_owned(), format!("http://{s}"), format!("https://{s}/")] {
        // parse_url is parse_url_with_userinfo that refuses userinfo.
        if let Ok(u) = parse_url(&candidate) {
            assert!(u.userinfo.is_none());
        }
        if let Ok(u) = parse_url_with_userinfo(&candidate) {
            check_canonical(&u.host);
            assert!(u.path.starts_with('/'));
            let addrs = u.host.ip().into_iter().collect::<Vec<_>>();
            let policy = EgressPolicy::read_public();
            let method = s.split_whitespace().next().unwrap_or("GET");
            let _ = policy.decide(&EgressRequest {
                method,
                scheme: u.scheme,
                host: &u.host,
                port: u.port,
                path: &u.path,
                addrs: &addrs,
                run: None,
                userinfo: u.userinfo.is_some(),
            });
            let _ = policy.decide_connect(&u.host, u.port, &addrs);
        }
    }
});
