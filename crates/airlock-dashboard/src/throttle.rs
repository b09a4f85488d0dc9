//! Failed password checks, counted per username and per client address, in
//! this process's memory (lost on restart, not shared between replicas).
//!
//! [`Policy::free`] failures of a username ([`Policy::free_addr`] of an
//! address: many people may share one, behind NAT or a reverse proxy —
//! `X-Forwarded-For` is not trusted) lock it for [`Policy::base`]; each
//! further failure doubles that, up to [`Policy::max`]. While a key is locked no password is checked for it (no
//! Argon2id work), whatever the password, and the refusal looks the same
//! for known and unknown usernames. A key forgets its failures
//! [`Policy::forget`] after the last one (or after its lockout ends, if
//! later); a successful login clears its username. An IPv6 address counts
//! by its /64 (one host usually holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A username as typed (lower-cased), known or not.
    User(String),
    /// A client address (IPv6: its /64).
    Addr(IpAddr),
}

impl Key {
    pub(crate) fn user(name: &str) -> Key {
        Key::User(name.to_lowercase())
    }

    pub(crate) fn addr(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Addr(IpAddr::V4(v4)),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    Key::Addr(IpAddr::from(o))
                }
            },
            v4 => Key::Addr(v4),
        }
    }

    /// `username` or `address`, for the audit record.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Key::User(_) => "username",
            Key::Addr(_) => "address",
        }
    }
}

/// The limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Failures of a username that lock it.
    pub free: u32,
    /// Failures from an address that lock it.
    pub free_addr: u32,
    /// The first lockout.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget: Duration,
    /// Keys held at most (the oldest is dropped beyond).
    pub capacity: usize,
}

impl Default for Policy {
    /// 5 failures of a username (20 from an address) lock it for 30 s,
    /// doubling with each further failure up to 15 min; forgotten after 1 h; at most 100,000 keys.
    fn default() -> Self {
        Policy {
            free: 5,
            free_addr: 20,
            base: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
            forget: Duration::from_secs(3600),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn stale(&self, now: Instant, forget: Duration) -> bool {
        let since = self.locked_until.map_or(self.last, |u| u.max(self.last));
        now.saturating_duration_since(since) >= forget
    }
}

/// The counters (see the module documentation).
#[derive(Debug)]
pub(crate) struct Throttle {
    policy: Policy,
    keys: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    pub(crate) fn new(policy: Policy) -> Self {
        Throttle {
            policy,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // Counters only: a panic elsewhere leaves them usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first of `keys` that is locked at `now`, and for how long still.
    pub(crate) fn locked(&self, keys: &[Key], now: Instant) -> Option<(Key, Duration)> {
        let map = self.map();
        keys.iter().find_map(|k| {
            let until = map.get(k)?.locked_until?;
            (until > now).then(|| (k.clone(), until - now))
        })
    }

    /// Count a failed password check against each of `keys`.
    pub(crate) fn failed(&self, keys: &[Key], now: Instant) {
        let p = self.policy;
        let mut map = self.map();
        for k in keys {
            if !map.contains_key(k) && map.len() >= p.capacity {
                map.retain(|_, e| !e.stale(now, p.forget));
                if map.len() >= p.capacity
                    && let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, e)| e.last)
                        .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
            let e = map.entry(k.clone()).or_insert(Entry {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if e.stale(now, p.forget) {
                *e = Entry {
                    failures: 0,
                    last: now,
                    locked_until: None,
                };
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            let free = match k {
                Key::User(_) => p.free,
                Key::Addr(_) => p.free_addr,
            };
            if e.failures >= free {
                let doublings = (e.failures - free).min(20);
                let lock = p.base.saturating_mul(1 << doublings).min(p.max);
                e.locked_until = Some(now + lock);
            }
        }
    }

    /// A successful login: `key`'s failures are forgotten.
    pub(crate) fn succeeded(&self, key: &Key) {
        self.map().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            capacity: 30,
            ..Policy::default()
        }
    }

    #[test]
    fn five_failures_lock_then_the_lockout_doubles_up_to_the_cap() {
        let t = Throttle::new(policy());
        let u = [Key::user("Admin@Acme")];
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(t.locked(&u, t0), None, "before failure {i}");
            t.failed(&u, t0);
        }
        assert_eq!(
            t.locked(&[Key::user("admin@acme")], t0),
            Some((Key::user("admin@acme"), Duration::from_secs(30))),
            "case does not matter"
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(t.locked(&u, t1), None, "the lockout ends");
        t.failed(&u, t1);
        assert_eq!(t.locked(&u, t1).map(|x| x.1), Some(Duration::from_secs(60)));
        let mut now = t1;
        for _ in 0..10 {
            now += Duration::from_secs(1000);
            t.failed(&u, now);
        }
        assert_eq!(
            t.locked(&u, now).map(|x| x.1),
            Some(Duration::from_secs(900)),
            "capped at 15 minutes"
        );
        // An hour after the lockout ends, the slate is clean.
        let later = now + Duration::from_secs(900 + 3600);
        t.failed(&u, later);
        assert_eq!(t.locked(&u, later), None);
    }

    #[test]
    fn names_and_addresses_count_apart_and_success_clears_the_name() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        let a = Key::addr("192.0.2.7".parse().expect("ip"));
        // One address trying many names is locked by its address.
        for i in 0..20 {
            assert_eq!(
                t.locked(std::slice::from_ref(&a), now),
                None,
                "before failure {i}"
            );
            t.failed(&[Key::user(&format!("u{i}")), a.clone()], now);
        }
        assert_eq!(
            t.locked(&[Key::user("anyone"), a.clone()], now)
                .map(|x| x.0),
            Some(a.clone())
        );
        // Another address is not.
        let b = Key::addr("::ffff:192.0.2.8".parse().expect("ip"));
        assert_eq!(b, Key::addr("192.0.2.8".parse().expect("ip")));
        assert_eq!(t.locked(&[Key::user("anyone"), b], now), None);
        // A success clears its name's count only.
        let u = Key::user("u");
        for _ in 0..3 {
            t.failed(std::slice::from_ref(&u), now);
        }
        t.succeeded(&u);
        for _ in 0..4 {
            t.failed(std::slice::from_ref(&u), now);
        }
        assert_eq!(t.locked(&[u], now), None, "counted afresh");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_the_table_is_bounded() {
        assert_eq!(
            Key::addr("2001:db8:1:2:aaaa::1".parse().expect("ip")),
            Key::addr("2001:db8:1:2:bbbb::9".parse().expect("ip"))
        );
        assert_ne!(
            Key::addr("2001:db8:1:2::1".parse().expect("ip")),
            Key::addr("2001:db8:1:3::1".parse().expect("ip"))
        );
        let t = Throttle::new(Policy {
            capacity: 3,
            ..Policy::default()
        });
        let now = Instant::now();
        for i in 0..10 {
            t.failed(&[Key::user(&format!("u{i}"))], now + Duration::from_secs(i));
        }
        assert_eq!(t.map().len(), 3, "capacity");
        assert!(t.map().contains_key(&Key::user("u9")), "the newest kept");
    }
}
