//! Formats as the world writes them (issue 15): placeholders and
//! look-alikes that must stay unflagged, keyword-anchored credentials in
//! the places configs and scripts put them, phones validated with
//! libphonenumber metadata, every card scheme, SSNs with spaces or dots,
//! and street addresses. Token bodies are built at run time from a seeded
//! generator; nothing token-shaped is committed.

use airlock_scrub::{Category, Scrubber};
use std::sync::OnceLock;

fn builtin() -> &'static Scrubber {
    static S: OnceLock<Scrubber> = OnceLock::new();
    S.get_or_init(Scrubber::builtin)
}

/// A deterministic random string over `alpha` (xorshift64*).
fn rand(seed: u64, alpha: &[u8], n: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            char::from(alpha[(v >> 33) as usize % alpha.len()])
        })
        .collect()
}

const AN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// The findings of one category in `text`, as `(type, value)`.
fn found(text: &str, cat: Category) -> Vec<(String, String)> {
    builtin()
        .scan_bytes(text.as_bytes())
        .into_iter()
        .filter(|f| f.category == cat)
        .map(|f| {
            (
                f.kind.clone(),
                String::from_utf8_lossy(f.value(text.as_bytes())).into_owned(),
            )
        })
        .collect()
}

fn secret_values(text: &str) -> Vec<String> {
    found(text, Category::Secret)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn pii_of(text: &str, kind: &str) -> Vec<String> {
    found(text, Category::Pii)
        .into_iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn placeholders_templates_and_redactions_are_not_secrets() {
    for text in [
        "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "api_key: XXXXXXXXXXXXXXXXXXXXXXXX",
        "password = \"********\"",
        "SENDGRID_API_KEY=\"your-sendgrid-api-key-here\"",
        "token: <token>",
        "client_secret = ${CLIENT_SECRET}",
        "DB_PASSWORD=$DB_PASSWORD",
        "api_key: \"{{ vault_api_key }}\"",
        "secret = \"%s\" % value",
        "auth_token = \"[REDACTED]\"",
        "access_token: ya29.a0Af…",
        "password: 0000000000000000",
        "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
        "mailgun_api_key = \"1234567890abcdef1234567890abcdef\"",
        "PUSHER_KEY=abcdefghijklmnopqrstuvwxyz",
        "--api-key=<your_api_key>",
        "curl -u admin:changeme https://api.example.net/",
        "db_password = \"$(cat /run/secrets/db)\"",
        "apiKey: \"{{ .Values.api.key }}\"",
        "token = \"${env:DEPLOY_TOKEN}\"",
    ] {
        assert_eq!(secret_values(text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn identifiers_next_to_keywords_are_not_secrets() {
    for text in [
        "api_key = get_api_key()",
        "secret = Secret::new(value)",
        "token = self.config.token",
        "const token: string = req.headers.authorization;",
        "credential_id: 123e4567-e89b-12d3-a456-426614174000",
        "secret_arn = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123\"",
        ".password-field { border: 1px solid #ccc; }",
        "<label for=\"password\">Password:</label>",
        "password_hash = bcrypt.hashpw(password, salt)",
        "keyboard_layout = \"dvorak-programmer\"",
        "docker run -u 1000:1000 image",
        "key_path = \"/etc/ssl/private/server.key\"",
    ] {
        assert_eq!(secret_values(text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn random_values_stay_findings() {
    let hex = rand(1, HEX, 32);
    let an = rand(2, AN, 40);
    // A vendor-prefixed format keeps matching whatever its body holds.
    let stripe = format!("sk_live_{}", rand(3, AN, 24));
    for (text, want) in [
        (format!("ACME_API_KEY={hex}"), hex.clone()),
        (format!("stripe: {stripe}"), stripe.clone()),
        (format!("\"zendeskToken\": \"{an}\""), an.clone()),
    ] {
        assert!(secret_values(&text).contains(&want), "{text}");
    }
}

#[test]
fn keyword_anchored_secrets_in_configs_scripts_and_headers() {
    let v = rand(7, AN, 32);
    let pw = format!("{}!{}", rand(8, AN, 9), rand(9, AN, 4));
    for text in [
        format!("SENDGRID_KEY={v}"),
        format!("db_pass: \"{pw}\""),
        format!("define('ACME_API_KEY', '{v}');"),
        format!("client.setPassword(\"{pw}\")"),
        format!("<add key=\"PaymentApiKey\" value=\"{v}\" />"),
        format!("<password>{pw}</password>"),
        format!("mycli login --api-key {v}"),
        format!("deploy --client-secret=\"{v}\""),
        format!("curl -u deploy:{pw} https://ci.example.org/api"),
        format!("curl --user 'deploy:{pw}' https://ci.example.org/api"),
        format!("Authorization: Token {v}"),
        format!("smb://backup:{pw}@files.example.org/share"),
        format!("redis://:{pw}@cache.internal:6379/0"),
    ] {
        let got = secret_values(&text);
        assert!(
            got.iter().any(|g| g.contains(&v) || g.contains(&pw)),
            "{text}: {got:?}"
        );
    }
}

#[test]
fn phones_as_written_around_the_world() {
    for (text, want) in [
        ("Call (415) 867-5309 today", "(415) 867-5309"),
        ("phone: +44 20 7946 0958", "+44 20 7946 0958"),
        ("Tel. 020 7946 0958", "020 7946 0958"),
        ("Mobile 07700 900123", "07700 900123"),
        ("Appelez le 01 42 68 53 00", "01 42 68 53 00"),
        ("Telefon: 030 901820", "030 901820"),
        ("office +61 2 9374 4000", "+61 2 9374 4000"),
        ("cell: 98765 43210", "98765 43210"),
        ("+1-415-867-5309 ext. 204", "+1-415-867-5309"),
        // Stated by a phone word: an area code in parentheses, digits that
        // happen to ascend.
        ("Contact: (07) 3124 5567 (desk)", "(07) 3124 5567"),
        ("Mobile: 01 23 45 67 89", "01 23 45 67 89"),
    ] {
        let got = pii_of(text, "PHONE");
        assert!(got.iter().any(|g| g.contains(want)), "{text}: {got:?}");
    }
    for text in [
        "version 2026.11.22 build 1234567890",
        "order 1234567890 shipped",
        "call 0000 000 000",
        "Read chapter 12 in section 4.2 on page 118.",
        "Invoice 051170-3921 total 18.40 EUR",
    ] {
        assert_eq!(pii_of(text, "PHONE"), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn phone_regions_are_configurable() {
    let us_only = Scrubber::builder()
        .phone_regions(&["US"])
        .build()
        .expect("US is a region");
    // A bare national number is validated for the configured regions:
    // German, not American.
    let text = "Büro 030 901820";
    assert_eq!(pii_of(text, "PHONE"), vec!["030 901820".to_string()]);
    assert!(us_only.scan_bytes(text.as_bytes()).is_empty());
    // One a phone word states is validated for any region: a Danish
    // number is found by a US-only scrubber after "Phone:", not bare.
    let stated = "Phone: 33 12 45 78";
    let got: Vec<String> = us_only
        .scan_bytes(stated.as_bytes())
        .into_iter()
        .map(|f| String::from_utf8_lossy(f.value(stated.as_bytes())).into_owned())
        .collect();
    assert_eq!(got, vec!["33 12 45 78".to_string()]);
    assert!(us_only.scan_bytes(b"Order 33 12 45 78 shipped").is_empty());
    let err = Scrubber::builder()
        .phone_regions(&["XX"])
        .build()
        .expect_err("XX is no region");
    assert_eq!(
        err.to_string(),
        "phone region \"XX\" is not a known ISO 3166-1 alpha-2 code"
    );
}

/// An IBAN with check digits computed here (ISO 13616 mod 97-10), in
/// groups of four; `wrong` makes the check digits off by one.
fn iban(cc: &str, bban: &str, wrong: bool) -> String {
    let rearranged = format!("{bban}{cc}00");
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    let check = 98 - rem + u32::from(wrong);
    let compact = format!("{cc}{check:02}{bban}");
    compact
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn checksummed_numbers_outrank_phone_shapes_inside_them() {
    // Each BBAN holds groups a national phone shape also reads
    // (`0111 0200 4000`, `0401 …`); the IBAN wins the merged finding.
    for (cc, bban) in [
        ("LT", "7300011102004000"),
        ("PT", "003504010002345678912"),
        ("MC", "30004012340111025648127"),
        ("MT", "VALL22013000000040012345123"),
    ] {
        let good = iban(cc, bban, false);
        let text = format!("Pay to {good} by Friday");
        assert_eq!(
            found(&text, Category::Pii),
            vec![("IBAN".to_string(), good.clone())],
            "{text}"
        );
        // Wrong check digits: no IBAN, and its groups are no phone number.
        let bad = iban(cc, bban, true);
        let text = format!("Pay to {bad} by Friday");
        assert_eq!(found(&text, Category::Pii), vec![], "{text}");
    }
    // A card number that fails Luhn is no card, and its tail no phone.
    for text in [
        "Card: 3056 9312 0402 0007 exp 01/29",
        "card 5412 7534 0001 0402",
    ] {
        assert_eq!(found(text, Category::Pii), vec![], "{text}");
    }
    // A trunk prefix or country code before a parenthesized area code
    // still leaves a phone number.
    assert!(!pii_of("call 8 (916) 527-14-83 after six", "PHONE").is_empty());
}

#[test]
fn ssn_shapes_are_never_phones() {
    // Invalid SSNs (group 00, serial 0000) are nothing at all.
    for text in ["ref 512-00-7781", "ref 512-44-0000", "ref 512 00 7781"] {
        assert_eq!(found(text, Category::Pii), vec![], "{text}");
    }
    // A number given as an SSN is masked even when it is one famous from
    // advertising; bare, it is not flagged; the filler 123-45-6789 never.
    assert_eq!(
        pii_of("his social security number is 219-09-9999", "US_SSN"),
        vec!["219-09-9999".to_string()]
    );
    assert_eq!(found("sample 219-09-9999 printed", Category::Pii), vec![]);
    assert_eq!(found("SSN: 123-45-6789", Category::Pii), vec![]);
}

#[test]
fn ip_addresses_in_prose() {
    assert_eq!(
        pii_of("mapped from ::ffff:192.0.2.33 today", "IP_ADDRESS"),
        vec!["::ffff:192.0.2.33".to_string()]
    );
    assert_eq!(
        pii_of("client fe80::1ff:fe23:4567:890a.", "IP_ADDRESS"),
        vec!["fe80::1ff:fe23:4567:890a".to_string()]
    );
    // An embedded dotted quad out of range is no address, nor its head.
    assert_eq!(found("bogus ::ffff:300.1.2.3 here", Category::Pii), vec![]);
}

#[test]
fn cards_of_every_scheme_and_test_numbers() {
    for card in [
        "4111 1111 1111 1111",
        "3530 1113 3330 0000",
        "6200 0000 0000 0005",
        "3056 9309 0259 04",
        "3782 822463 10005",
        "2223 0031 2200 3222",
        "6011-1111-1111-1117",
        "5555555555554444",
    ] {
        let text = format!("charged to {card} yesterday");
        assert_eq!(pii_of(&text, "CARD"), vec![card.to_string()], "{text}");
    }
    assert_eq!(
        pii_of("card 4111 1111 1111 1112", "CARD"),
        Vec::<String>::new()
    );
}

#[test]
fn ssns_with_dashes_spaces_or_dots() {
    for ssn in ["536-22-1234", "536 22 1234", "536.22.1234"] {
        let text = format!("SSN {ssn} on file");
        assert_eq!(pii_of(&text, "US_SSN"), vec![ssn.to_string()], "{text}");
    }
    assert_eq!(
        pii_of("ref 666.22.1234 and 000 12 3456", "US_SSN"),
        Vec::<String>::new()
    );
}

#[test]
fn street_addresses_us_uk_and_military() {
    for (text, want) in [
        (
            "Ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500 today",
            "1600 Pennsylvania Avenue",
        ),
        (
            "Office: 350 Fifth Ave, Suite 2100, New York, NY 10118",
            "350 Fifth Ave, Suite 2100",
        ),
        (
            "8911 Jennifer Forks Apt. 373\nNew Tiffany, MO 45209",
            "8911 Jennifer Forks Apt. 373",
        ),
        (
            "We moved to 10 Downing Street, London SW1A 2AA.",
            "10 Downing Street, London SW1A 2AA",
        ),
        (
            "PSC 1234, Box 5678\nAPO AE 09204",
            "PSC 1234, Box 5678\nAPO AE 09204",
        ),
        ("USNS Comfort\nFPO AP 96601", "USNS Comfort\nFPO AP 96601"),
        ("Springfield, IL 62704", "Springfield, IL 62704"),
    ] {
        let got = pii_of(text, "ADDRESS");
        assert!(got.iter().any(|g| g.contains(want)), "{text}: {got:?}");
    }
    for text in [
        "Step 3 Click View and pick 2 Settings Panels.",
        "We ran 5 Miles yesterday.",
        "Read 12 Angry Men tonight",
    ] {
        assert_eq!(pii_of(text, "ADDRESS"), Vec::<String>::new(), "{text}");
    }
}

/// Names that say what a value is about (an id, a file, a size, a public
/// or primary key, a CSRF token) or ordinary words holding a keyword are
/// not secret names, whatever the value looks like (external check set,
/// session 12: the gitleaks generic-api-key false positives as a class).
#[test]
fn names_about_a_secret_do_not_make_a_secret() {
    let v = rand(21, AN, 30);
    for text in [
        format!("signing_key_id = \"{v}\""),
        format!("SECRET_NAME={v}"),
        format!("tls.KeyFile=/etc/tls/{v}.pem"),
        format!("cfg.keySize = {v}"),
        format!("publicKey: \"{v}\""),
        format!("partitionKey = \"{v}\""),
        format!("csrf_token: {v}"),
        format!("credentialsId: '{v}'"),
        format!("oauth_token_url = \"https://login.example.org/{v}\""),
        format!("author = \"{v}\""),
        format!("monkeys-island:{v}"),
        "Authentication-Results: mx4.mail.example.org".to_string(),
        "<entry key=\"build.cache.v2_enabled\" value=\"true\"/>".to_string(),
        "notes = \"artifact io.jsonwebtoken:jjwt-impl-0.12.6\"".to_string(),
        "KeyPair = Curve25519.KeyPair".to_string(),
    ] {
        assert_eq!(secret_values(&text), Vec::<String>::new(), "{text}");
    }
}

/// The same values after secret names stay findings; a UUID is a secret
/// when the name ends in a secret word (Heroku, HubSpot and Snyk API keys
/// are UUIDs), and an identifier otherwise.
#[test]
fn uuids_after_secret_names_are_keys() {
    let u = format!(
        "{}-{}-4{}-a{}-{}",
        rand(31, HEX, 8),
        rand(32, HEX, 4),
        rand(33, HEX, 3),
        rand(34, HEX, 3),
        rand(35, HEX, 12)
    );
    for text in [
        format!("HEROKU_API_KEY={u}"),
        format!("hubspotToken = \"{u}\""),
        format!("snyk secret {u}"),
    ] {
        assert!(secret_values(&text).contains(&u), "{text}");
    }
    for text in [
        format!("report_access_id: {u}"),
        format!("jobCredentialsId: '{u}'"),
    ] {
        assert_eq!(secret_values(&text), Vec::<String>::new(), "{text}");
    }
}

/// Assignment shapes of make, PHP, Go, CSV, escaped JSON, aligned columns,
/// YAML block scalars, XML elements on their own line, and long-tail
/// vendors' `<vendor> key <value>` lines.
#[test]
fn assignment_shapes_configs_and_code_write() {
    let v = rand(41, AN, 32);
    for text in [
        format!("ACME_TOKEN ::= \"{v}\""),
        format!("ACME_TOKEN :::= \"{v}\""),
        format!("ACME_TOKEN += \"{v}\""),
        format!("$acmeToken .= \"{v}\";"),
        format!("var acmeToken string = \"{v}\""),
        format!("acmeToken,{v},"),
        format!("{{\\\"acme_token\\\": \\\"{v}\\\"}}"),
        format!(":api_key          => '{v}',"),
        format!("acme_token: |\n  {v}\n"),
        format!("acme_token: >-\n    {v}\n"),
        format!("<acmeToken>\n    {v}\n</acmeToken>"),
        format!("acme secret {v}"),
        format!("acmeAccessKey \"{v}\""),
    ] {
        let got = secret_values(&text);
        assert!(got.iter().any(|g| g.contains(&v)), "{text}: {got:?}");
    }
    // Prose after the word is not a value; nor is a type name.
    for text in [
        "Rotate the secret regularly and store it in the vault.",
        "the api key field is required for this request",
        "var acmeToken string = getToken()",
        "for key, value in pairs(config) do",
    ] {
        assert_eq!(secret_values(text), Vec::<String>::new(), "{text}");
    }
}

/// Passwords in documentation prose and in .NET credential constructors.
#[test]
fn passwords_in_prose_and_credential_constructors() {
    let pw = format!("{}{}", rand(51, AN, 8), 7);
    for text in [
        format!("The default password is '{pw}'."),
        format!("Make sure the password for user 'deploy' is \"{pw}\"."),
        format!("var c = new NetworkCredential(\"svc-backup\", \"{pw}\");"),
        format!("new DirectoryEntry(\"LDAP://dc1.corp.example\", \"CORP\\\\svc\", \"{pw}\")"),
    ] {
        assert!(secret_values(&text).contains(&pw), "{text}");
    }
    for text in [
        "The password is '<your password>'.",
        "new NetworkCredential(\"user\", \"${PASSWORD}\")",
        "The password is required.",
    ] {
        assert_eq!(secret_values(text), Vec::<String>::new(), "{text}");
    }
}

/// The PEM body class: base64 lines as a file holds them.
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[test]
fn private_keys_pasted_into_source_as_string_literals() {
    let lines: Vec<String> = (0..6).map(|i| rand(900 + i, B64, 64)).collect();
    let (begin, end) = (
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
    );
    // Concatenated literals, one line each (Java, JavaScript, C#).
    let concat = format!(
        "String key = \"{begin}\" +\n{}\n    \"{end}\";\n",
        lines
            .iter()
            .map(|l| format!("    \"{l}\" +"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // One literal with escaped line breaks (JSON, .env, YAML flow strings).
    let escaped = format!(
        "\"key\": \"{begin}\\r\\n{}\\r\\n{end}\"\n",
        lines.join("\\r\\n")
    );
    let pkcs8 = escaped
        .replace("RSA PRIVATE", "PRIVATE")
        .replace("\\r\\n", "\\n");
    for text in [&concat, &escaped, &pkcs8] {
        let f = found(text, Category::Secret);
        assert_eq!(f.len(), 1, "{text}: {f:?}");
        assert_eq!(f[0].0, "private_key", "{text}");
        assert!(f[0].1.contains(&lines[3]), "{text}");
    }
    // A header quoted in prose with no key material is not a key.
    assert!(
        secret_values(&format!(
            "the file starts with \"{begin}\" and ends with \"{end}\"\n"
        ))
        .is_empty()
    );
}

#[test]
fn checksummed_tokens_with_a_random_body_and_a_bad_checksum_are_still_tokens() {
    // The exact GitHub shape with a body that looks random: a fixture's fake
    // or a token copied with a typo; the checksum cannot vouch, the shape does.
    for (i, p) in ["ghp", "gho", "ghu", "ghs"].iter().enumerate() {
        let t = format!("{p}_{}", rand(70 + i as u64, AN, 36));
        assert_eq!(
            secret_values(&format!("token: {t}\n")),
            vec![t.clone()],
            "{t}"
        );
        let url = format!("git clone https://{t}@github.com/o/r.git\n");
        assert!(secret_values(&url).contains(&t), "{url}");
    }
    // Shapes that say they are placeholders stay unflagged.
    for t in [
        "ghp_".to_owned() + &"x".repeat(36),
        "ghp_".to_owned() + &"0".repeat(36),
    ] {
        assert!(secret_values(&format!("token: {t}\n")).is_empty(), "{t}");
    }
}

#[test]
fn vendor_token_shapes_as_issuers_and_scanners_write_them() {
    let lower = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let cases = [
        // Slack's legacy bot token: team id, then the random part.
        format!("xoxb-{}-{}", rand(1, b"0123456789", 12), rand(2, AN, 24)),
        format!("xai-{}", rand(3, b"ABCDEFabcdef0123456789_", 80)),
        format!("bkua_{}", rand(4, lower, 40)),
        format!("CCIPAT_{}_{}", rand(5, AN, 22), rand(6, lower, 40)),
        format!("pk_{}_{}", rand(7, b"0123456789", 8), rand(8, upper, 32)),
        format!("pk.{}.{}", rand(9, lower, 60), rand(10, lower, 22)),
        format!("A3T{}{}", rand(11, upper, 1), rand(12, upper, 16)),
    ];
    for t in &cases {
        let text = format!("value = {t}\n");
        assert_eq!(secret_values(&text), vec![t.clone()], "{text}");
    }
    let secret = rand(13, B64, 44);
    let conn = format!(
        "Endpoint=https://shop-prod.azconfig.io;Id={}:{};Secret={secret}\n",
        rand(14, AN, 4),
        rand(15, AN, 20)
    );
    assert_eq!(secret_values(&conn), vec![secret], "{conn}");
    // Near misses: too short, or a public key id of another shape.
    for t in [
        format!("pk_{}_{}", rand(16, b"0123456789", 8), rand(17, upper, 20)),
        "pk.test.value".to_owned(),
    ] {
        assert!(secret_values(&format!("value = {t}\n")).is_empty(), "{t}");
    }
}

#[test]
fn passwords_holding_brackets_are_secrets_and_templates_are_not() {
    // Passwords of printable punctuation, as generators and people write
    // them: wrapped in brackets, holding more of them.
    let punct = b"abcdefghijkmnpqrstuvwxyz(){}[]<>$#!";
    for (i, (open, close)) in [("{{", "}}"), ("(", ")"), ("[", "]"), ("<", ">"), ("{", "}")]
        .iter()
        .enumerate()
    {
        let pw = format!("{open}{}{close}", rand(300 + i as u64, punct, 18));
        for line in [
            format!("db_password = \"{pw}\"\n"),
            format!("api_key: {pw}\n"),
            format!("settings[\"secret\"] = '{pw}'\n"),
        ] {
            assert_eq!(secret_values(&line), vec![pw.clone()], "{line}");
        }
    }
    // Templates, references and code stay unflagged, with brackets or not.
    for line in [
        "password={{db_password}}\n",
        "password: \"{{{vault_db_password}}}\"\n",
        "api_key: ${{ secrets.API_KEY }}\n",
        "token=${API_TOKEN:-unset}\n",
        "token=${CI_JOB_TOKEN}\n",
        "password=<your-password>\n",
        "api_key = \"<API_KEY>\"\n",
        "secret=<%= ENV['SECRET'] %>\n",
        "password=$(cat /run/secrets/db_password)\n",
        "password = (get_db_password())\n",
        "secret = [redacted]\n",
        "token = {token}\n",
        "password = [hidden-in-vault]\n",
        "apikey = (optional)\n",
    ] {
        assert!(secret_values(line).is_empty(), "{line}");
    }
}
