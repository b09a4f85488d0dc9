//! What the name in front of a keyword-anchored value says about it.
//!
//! Generic rules find `name = value` where the name holds a keyword (`key`,
//! `token`, `secret`, `pass`, `auth`, `cred`). Many such names do not name a
//! secret: they name something *about* one (`key_id`, `secret_name`,
//! `token_url`, `KeySize`, `keystore.file`), a different kind of key
//! (`public_key`, `primaryKey`, `schemaKey`, `csrf-token`), or an English
//! word that merely contains the keyword (`monkeys`, `author`, `keying`,
//! `Authentication-Results`). This is the classification gitleaks'
//! generic-api-key allowlist and detect-secrets' keyword plugin make, done
//! on the identifier's words rather than by listing whole names:
//!
//! * the identifier is the run of name bytes around the keyword (at most
//!   [`LOOK_BACK`] bytes before it: a bounded look-behind the stream keeps);
//! * it is split into words at `_ - .`, case changes and letter/digit
//!   boundaries;
//! * it does not name a secret when its last word is a qualifier
//!   ([`AFTER`]: `id`, `name`, `url`, `file`, `size`, …), when a word that
//!   holds a keyword is followed by such a qualifier or preceded by a kind
//!   ([`BEFORE`]: `public`, `primary`, `csrf`, …) — also inside one word
//!   (`pubkey`, `keystore`, `tokenid`) — or when the word the match starts
//!   in is an ordinary word that contains a keyword ([`ORDINARY`]).
//!
//! [`Name::secret_tail`] tells whether the identifier *ends* in a secret
//! word (`herokuToken`, `api_key`, `private-key`): a UUID is then a
//! credential (Heroku, HubSpot and Snyk keys are UUIDs), while next to any
//! other name (`credentialsId`, `report_access_id`) it is an identifier.

use crate::head::is_name_byte;

/// How far before the match start the identifier may begin.
pub(crate) const LOOK_BACK: usize = 48;
/// How far after the match start the identifier may run.
const LOOK_AHEAD: usize = 64;

/// Word stems that make a word secret-like.
const STEMS: &[&str] = &[
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "auth",
    "cred",
    "signature",
];

/// Words whose being last, or right after a secret word, means the name is
/// about the secret rather than the secret.
const AFTER: &[&str] = &[
    "id",
    "ids",
    "name",
    "names",
    "size",
    "length",
    "len",
    "file",
    "files",
    "filename",
    "path",
    "dir",
    "url",
    "uri",
    "endpoint",
    "type",
    "hash",
    "pair",
    "store",
    "vault",
    "event",
    "down",
    "up",
    "press",
    "pressed",
    "source",
    "results",
    "field",
    "label",
    "selector",
    "format",
    "mode",
    "version",
    "count",
    "prefix",
    "column",
    "index",
    "idx",
    "ring",
    "board",
    "code",
    "frame",
    "alias",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "timeout",
    "hint",
    "regex",
    "pattern",
    "placeholder",
    "location",
    "ref",
    "arn",
    "policy",
    "rotation",
    "algorithm",
    "algo",
    "bits",
    "usage",
    "header",
    "param",
    "spec",
    "schema",
    "resolver",
    "provider",
    "manager",
    "service",
    "class",
    "input",
    "button",
    "link",
    "required",
    "enabled",
    "valid",
    "changed",
    "reset",
    "expired",
    "strength",
    "policy",
    "min",
    "max",
    "var",
    "env",
];

/// Kinds of key or token that are not credentials.
const BEFORE: &[&str] = &[
    "public",
    "pub",
    "primary",
    "foreign",
    "schema",
    "sequence",
    "bucket",
    "idx",
    "natural",
    "hot",
    "csrf",
    "xsrf",
    "issuer",
    "sort",
    "partition",
    "cache",
    "lookup",
    "map",
    "row",
    "dict",
    "composite",
    "unique",
    "surrogate",
    "shortcut",
    "hash",
    "range",
    "next",
    "page",
    "continuation",
    "pagination",
    "cursor",
    "sync",
    "idempotency",
    "dedup",
    "routing",
];

/// Ordinary words that contain a stem.
const ORDINARY: &[&str] = &[
    "monkey",
    "monkeys",
    "donkey",
    "donkeys",
    "turkey",
    "hockey",
    "jockey",
    "whiskey",
    "keying",
    "keyword",
    "keywords",
    "keyboard",
    "keyboards",
    "keystroke",
    "keystrokes",
    "keynote",
    "keystone",
    "author",
    "authors",
    "authored",
    "authority",
    "authorities",
    "authentication",
    "passage",
    "passages",
    "passenger",
    "passengers",
    "bypass",
    "compass",
    "surpass",
    "passive",
    "tokenizer",
    "tokenize",
    "tokenized",
    "jsonwebtoken",
    "credit",
    "credits",
];

/// What the identifier in front of a value says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Name {
    /// The name does not name a secret.
    pub(crate) not_secret: bool,
    /// The name ends in a secret word.
    pub(crate) secret_tail: bool,
}

/// Most words an identifier is read for (the rest are ignored).
const MAX_WORDS: usize = 24;

/// Split an identifier into words at `_ - .`, case changes and
/// letter/digit boundaries: `(start, end)` spans into `ident`.
fn spans(ident: &[u8], out: &mut [(usize, usize); MAX_WORDS]) -> usize {
    let mut n = 0;
    let mut start: Option<usize> = None;
    let mut prev: u8 = 0;
    for (i, &b) in ident.iter().enumerate() {
        let alnum = b.is_ascii_alphanumeric();
        let split = !alnum
            || (start.is_some()
                && ((prev.is_ascii_lowercase() && b.is_ascii_uppercase())
                    || (prev.is_ascii_uppercase()
                        && b.is_ascii_uppercase()
                        && ident.get(i + 1).is_some_and(u8::is_ascii_lowercase))
                    || (prev.is_ascii_digit() != b.is_ascii_digit())));
        if split
            && let Some(st) = start.take()
            && n < MAX_WORDS
        {
            out[n] = (st, i);
            n += 1;
        }
        if alnum && start.is_none() {
            start = Some(i);
        }
        prev = b;
    }
    if let Some(st) = start
        && n < MAX_WORDS
    {
        out[n] = (st, ident.len());
        n += 1;
    }
    n
}

/// The words of an identifier, lower case (for the tests).
#[cfg(test)]
fn words(ident: &[u8]) -> Vec<(usize, String)> {
    let mut sp = [(0, 0); MAX_WORDS];
    let n = spans(ident, &mut sp);
    sp[..n]
        .iter()
        .map(|&(a, b)| {
            (
                a,
                String::from_utf8_lossy(&ident[a..b]).to_ascii_lowercase(),
            )
        })
        .collect()
}

fn in_list(list: &Words, w: &[u8]) -> bool {
    list.sorted
        .get_or_init(|| {
            let mut v: Vec<&'static [u8]> = list.words.iter().map(|x| x.as_bytes()).collect();
            v.sort_unstable();
            v
        })
        .binary_search_by(|x| (*x).cmp(w))
        .is_ok()
}

/// A word list, searched through a sorted copy made on first use
/// (`classify` runs for every generic candidate, and a linear scan of the
/// longer lists was most of its cost).
struct Words {
    words: &'static [&'static str],
    sorted: std::sync::OnceLock<Vec<&'static [u8]>>,
}

impl Words {
    const fn new(words: &'static [&'static str]) -> Words {
        Words {
            words,
            sorted: std::sync::OnceLock::new(),
        }
    }
}

static AFTER_WORDS: Words = Words::new(AFTER);
static BEFORE_WORDS: Words = Words::new(BEFORE);
static ORDINARY_WORDS: Words = Words::new(ORDINARY);

fn has_stem(w: &[u8]) -> bool {
    STEMS
        .iter()
        .any(|s| w.windows(s.len()).any(|x| x == s.as_bytes()))
}

/// A word that is a stem with a qualifier glued on (`keystore`, `tokenid`,
/// `pubkey`, `csrftoken`).
fn glued(w: &[u8]) -> bool {
    STEMS.iter().any(|s| {
        let s = s.as_bytes();
        (w.len() > s.len() && w.starts_with(s) && in_list(&AFTER_WORDS, &w[s.len()..]))
            || (w.len() > s.len()
                && w.ends_with(s)
                && in_list(&BEFORE_WORDS, &w[..w.len() - s.len()]))
            || (w.len() > s.len() + 1
                && w.ends_with(b"s")
                && w[..w.len() - 1].ends_with(s)
                && in_list(&BEFORE_WORDS, &w[..w.len() - 1 - s.len()]))
    })
}

/// Classify the identifier around `at` (the start of a keyword-anchored
/// match) in `hay`. Allocation-free: it runs for every generic candidate.
pub(crate) fn classify(hay: &[u8], at: usize) -> Name {
    let at = at.min(hay.len());
    let mut s = at;
    while s > 0 && at - s < LOOK_BACK && is_name_byte(hay[s - 1]) {
        s -= 1;
    }
    let mut e = at;
    while e < hay.len() && e - at < LOOK_AHEAD && is_name_byte(hay[e]) {
        e += 1;
    }
    let mut low = [0u8; LOOK_BACK + LOOK_AHEAD];
    let ident = &hay[s..e];
    for (d, b) in low.iter_mut().zip(ident) {
        *d = b.to_ascii_lowercase();
    }
    let low = &low[..ident.len()];
    let mut sp = [(0, 0); MAX_WORDS];
    let n = spans(ident, &mut sp);
    let w = |i: usize| &low[sp[i].0..sp[i].1];
    if n == 0 {
        return Name {
            not_secret: false,
            secret_tail: false,
        };
    }
    let last = w(n - 1);
    let secret_tail = has_stem(last) && !in_list(&ORDINARY_WORDS, last) && !glued(last);
    let mut not_secret = in_list(&AFTER_WORDS, last);
    for i in 0..n {
        let word = w(i);
        if !has_stem(word) || in_list(&ORDINARY_WORDS, word) {
            continue;
        }
        if (i + 1 < n && in_list(&AFTER_WORDS, w(i + 1)))
            || (i > 0 && in_list(&BEFORE_WORDS, w(i - 1)))
            || glued(word)
        {
            not_secret = true;
        }
    }
    // The word the match starts in is an ordinary word (`monkeys`, `author`).
    let rel = at - s;
    if let Some(i) = (0..n).find(|&i| sp[i].0 <= rel && rel < sp[i].1)
        && in_list(&ORDINARY_WORDS, w(i))
    {
        not_secret = true;
    }
    Name {
        not_secret,
        secret_tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identifier starts at the keyword's word: classify at the first
    /// occurrence of `kw` in `line`.
    fn at(line: &str, kw: &str) -> Name {
        let p = line
            .to_ascii_lowercase()
            .find(kw)
            .expect("keyword in the line");
        classify(line.as_bytes(), p)
    }

    #[test]
    fn words_split_like_people_write_names() {
        let w: Vec<String> = words(b"GOOGLE_OAUTH2_ClientID.keyVaultName")
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(
            w,
            [
                "google", "oauth", "2", "client", "id", "key", "vault", "name"
            ]
        );
    }

    /// Names that say what the value is about, not that it is a secret.
    #[test]
    fn names_about_a_secret_are_not_secrets() {
        for (line, kw) in [
            ("db_password_file=/run/secrets/db", "password"),
            ("SECRET_NAME = \"prod-db-creds\"", "secret"),
            ("signingKeyId: 7f3c9a", "key"),
            (
                "oauth_token_url=https://login.example.org/oauth/token",
                "token",
            ),
            ("cfg.EncryptionKeySize = 256", "key"),
            ("release.keystore.path=app/release.jks", "key"),
            ("publicKey: MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", "key"),
            ("sortKey = created_at_7", "key"),
            ("xsrfToken=Zm9vYmFyYmF6cXV4MTIz", "token"),
            ("pubkey=ssh-ed25519AAAAC3Nza", "key"),
            ("tokenId: a81bc81b-dead-4e5d-abff-90865d1e13b1", "token"),
            ("monkeys-island:v2-final=ok", "key"),
            ("author = \"Jane Roe\"", "auth"),
            ("Authentication-Results: mx.example.net", "auth"),
            ("credentialsId: 'ci-deploy-2'", "cred"),
        ] {
            assert!(at(line, kw).not_secret, "{line}");
        }
    }

    #[test]
    fn secret_names_stay_secret_names() {
        for (line, kw, tail) in [
            ("DB_PASSWORD=Zq8!mW2x", "password", true),
            ("stripeSecretKey = \"…\"", "secret", true),
            ("heroku_api_key: 3f0c", "key", true),
            ("secret_key_base: 9a8b", "key", false),
            ("private-key: AAAA", "key", true),
            ("aws_secret_access_key = x", "secret", true),
            ("x-auth-token: 1a2b", "auth", true),
        ] {
            let n = at(line, kw);
            assert!(!n.not_secret, "{line}");
            assert_eq!(n.secret_tail, tail, "{line}");
        }
    }

    #[test]
    fn look_behind_is_bounded() {
        let long = format!("{}_key=1", "a".repeat(200));
        let p = long.find("key").expect("key");
        // Only LOOK_BACK bytes before the keyword are read.
        assert_eq!(
            classify(long.as_bytes(), p),
            classify(&long.as_bytes()[p - LOOK_BACK..], LOOK_BACK)
        );
    }
}
