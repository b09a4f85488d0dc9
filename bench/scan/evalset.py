#!/usr/bin/env python3
"""Generate the labelled evaluation set for the scrubber (issue 15).

  evalset.py OUT_DIR [SEED]

Needs `faker` (PyPI; e.g. python3 -m venv /work/venv-scrub &&
/work/venv-scrub/bin/pip install faker). Writes

  OUT_DIR/labelled/NNNN.txt   one snippet per file
  OUT_DIR/labels.json         {file: {"category": "secret"|"pii"|"none",
                                      "tier": "shaped"|"keyword"|"pii"|"negative",
                                      "types": [...], "kind": "..."}}

the same layout gen.py writes, plus `tier` and `kind`, so eval.py reads
either. Nothing token-shaped is committed: every credential body is drawn
from a seeded generator at run time, checksummed formats are made valid
(GitHub/npm CRC32, Luhn, IBAN mod-97), and the shapes follow each
provider's documented format (the `source` of the rules in
crates/airlock-scrub/rules/secrets.toml). Phones, names, addresses, IBANs
and SSNs come from faker in several locales; negatives are hand-written
classes of look-alikes (placeholders, templates, redactions, identifiers
next to keywords, hashes, near-miss prose and numbers).
"""
import base64
import json
import os
import random
import string
import sys
import zlib

from faker import Faker

OUT = sys.argv[1]
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 20261201
rng = random.Random(SEED)
Faker.seed(SEED)
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "en_AU", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_CA", "en_IE"]
fakers = {loc: Faker(loc) for loc in LOCALES}
fk = fakers["en_US"]

AN = string.ascii_letters + string.digits
LOW = string.ascii_lowercase
UP = string.ascii_uppercase
HEX = "0123456789abcdef"
B64 = AN + "+/"
B64URL = AN + "_-"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def r(alpha, n):
    return "".join(rng.choice(alpha) for _ in range(n))


def crc_token(prefix):
    body = r(AN, 30)
    n = zlib.crc32(body.encode()) & 0xFFFFFFFF
    s = ""
    for _ in range(6):
        s = BASE62[n % 62] + s
        n //= 62
    return f"{prefix}_{body}{s}"


def jwt():
    e = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    h = e(b'{"alg":"HS256","typ":"JWT"}')
    c = e(json.dumps({"sub": str(rng.randrange(10**9)), "name": fk.name(), "iat": 1700000000 + rng.randrange(10**7)}).encode())
    return f"{h}.{c}.{r(B64URL, 43)}"


def pem():
    body = "\n".join(r(B64, 64) for _ in range(rng.randrange(8, 14)))
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def pem_in_source():
    """A key pasted into source: concatenated literals or escaped breaks."""
    lines = [r(B64, 64) for _ in range(rng.randrange(8, 14))]
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    if rng.random() < 0.5:
        body = " +\n".join(f'"{l}"' for l in lines)
        return f'"-----BEGIN {kind}-----" +\n{body} +\n"-----END {kind}-----"'
    nl = rng.choice(["\\n", "\\r\\n"])
    return f'"-----BEGIN {kind}-----{nl}' + nl.join(lines) + f'{nl}-----END {kind}-----"'


# Credentials whose shape identifies them (documented prefixes/structure).
SHAPED = {
    "github_pat": lambda: crc_token("ghp"),
    "github_oauth": lambda: crc_token("gho"),
    "npm": lambda: crc_token("npm"),
    "github_fine_grained": lambda: f"github_pat_{r(AN, 22)}_{r(AN, 59)}",
    "gitlab_pat": lambda: f"glpat-{r(AN + '_-', 20)}",
    "slack_bot": lambda: f"xoxb-{r(string.digits, 11)}-{r(string.digits, 12)}-{r(AN, 24)}",
    "slack_webhook": lambda: f"https://hooks.slack.com/services/T{r(UP + string.digits, 8)}/B{r(UP + string.digits, 10)}/{r(AN, 24)}",
    "stripe_live": lambda: f"sk_live_{r(AN, 24)}",
    "stripe_restricted": lambda: f"rk_live_{r(AN, 24)}",
    "aws_access_key_id": lambda: f"AKIA{r(UP + '234567', 16)}",
    "google_api_key": lambda: f"AIza{r(AN + '_-', 35)}",
    "openai_project": lambda: f"sk-proj-{r(AN + '_-', 74)}T3BlbkFJ{r(AN + '_-', 74)}",
    "anthropic": lambda: f"sk-ant-api03-{r(AN + '_-', 93)}AA",
    "huggingface": lambda: f"hf_{r(AN, 34)}",
    "sendgrid": lambda: f"SG.{r(AN + '_-', 22)}.{r(AN + '_-', 43)}",
    "shopify": lambda: f"shpat_{r(HEX, 32)}",
    "digitalocean": lambda: f"dop_v1_{r(HEX, 64)}",
    "linear": lambda: f"lin_api_{r(AN, 40)}",
    "postman": lambda: f"PMAK-{r(HEX, 24)}-{r(HEX, 34)}",
    "databricks": lambda: f"dapi{r(HEX, 32)}",
    "new_relic": lambda: f"NRAK-{r(UP + string.digits, 27)}",
    "age": lambda: f"AGE-SECRET-KEY-1{r('QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L', 58)}",
    "jwt": jwt,
    "private_key": pem,
    "private_key_in_source": pem_in_source,
    # The exact shape with a checksum that fails (a fixture's fake, a typo).
    "github_pat_bad_checksum": lambda: f"ghp_{r(AN, 36)}",
    "slack_bot_legacy": lambda: f"xoxb-{r(string.digits, 12)}-{r(AN, 24)}",
    "db_url": lambda: f"{rng.choice(['postgres', 'postgresql', 'mysql', 'mongodb', 'redis', 'amqp'])}://{fk.user_name()}:{r(AN, rng.randrange(10, 24))}@{fk.domain_name()}:{rng.randrange(1000, 9999)}/{fk.word()}",
    "url_credentials": lambda: f"{rng.choice(['https', 'ftp', 'sftp', 'smtp', 'ldap', 'git+ssh', 'svn+ssh', 'webdav'])}://{fk.user_name()}:{r(AN + '!$', rng.randrange(10, 20))}@{fk.domain_name()}/{fk.word()}",
}

SHAPED_CONTEXTS = [
    "{v}",
    "export TOKEN_VALUE={v}",
    'config = {{"credential": "{v}"}}',
    "  - value: {v}",
    "Using {v} for the deploy step",
    "curl -H 'X-Token: {v}' https://api.{d}/v1/me",
    '"{v}",',
]

# Keyword-anchored: the value is random, only the name says what it is.
VENDORS = ["acme", "stripe", "sendgrid", "twilio", "mailgun", "datadog", "algolia", "pusher", "mapbox", "segment",
           "sentry", "zendesk", "hubspot", "contentful", "airtable", "asana", "braintree", "cloudinary", "firebase",
           "okta", "auth0", "pagerduty", "rollbar", "salesforce", "intercom", "mixpanel", "plaid", "xero", "zoom", "box"]
NAMES = ["api_key", "apikey", "api-key", "secret", "secret_key", "client_secret", "token", "access_token", "auth_token",
         "password", "passwd", "private_key", "app_secret", "key", "pass", "pwd", "credentials", "signing_secret"]


def random_value():
    k = rng.random()
    if k < 0.3:
        return r(HEX, rng.choice([32, 40, 64]))
    if k < 0.6:
        return r(AN, rng.choice([20, 24, 32, 40]))
    if k < 0.8:
        return base64.b64encode(rng.randbytes(rng.choice([24, 30, 33]))).decode()
    if k < 0.85:
        # Generated passwords wrapped in and holding brackets.
        o, c = rng.choice(["{}", "()", "[]", "<>"])
        return o + r(LOW + "(){}[]<>$#!", rng.randrange(12, 24)) + c
    # Passwords people set.
    return r(AN, rng.randrange(6, 10)) + rng.choice("!@#$%^&*") + r(string.digits, 2) + r(AN, 2)


def name_for(vendor, kw, style):
    if style == "upper":
        return f"{vendor}_{kw}".upper().replace("-", "_")
    if style == "camel":
        parts = (vendor + "_" + kw).replace("-", "_").split("_")
        return parts[0] + "".join(p.title() for p in parts[1:])
    if style == "kebab":
        return f"{vendor}-{kw}".replace("_", "-")
    return f"{vendor}_{kw}".replace("-", "_")


KEYWORD_CONTEXTS = [
    ("upper", "{n}={v}"),
    ("upper", "export {n}=\"{v}\""),
    ("snake", "{n} = \"{v}\""),
    ("snake", "{n}: {v}"),
    ("snake", "{n}: '{v}'"),
    ("camel", "\"{n}\": \"{v}\","),
    ("camel", "const {n} = '{v}';"),
    ("camel", "{n} := \"{v}\""),
    ("upper", "ENV {n}={v}"),
    ("upper", "docker run -e {n}={v} app"),
    ("snake", "<{n}>{v}</{n}>"),
    ("camel", "<add key=\"{n}\" value=\"{v}\" />"),
    ("upper", "define('{n}', '{v}');"),
    ("kebab", "mycli login --{n} {v}"),
    ("kebab", "tool --{n}={v} --verbose"),
    ("snake", "settings.{n} = \"{v}\""),
    ("upper", "os.environ[\"{n}\"] = \"{v}\""),
    ("camel", "{n} => '{v}',"),
    ("snake", "{n}    =    {v}"),
]

EXTRA_KEYWORD = [
    lambda: f"curl -u {fk.user_name()}:{random_value()} https://api.{fk.domain_name()}/v2/items",
    lambda: f"curl --user '{fk.user_name()}:{random_value()}' https://{fk.domain_name()}/",
    lambda: f"Authorization: Basic {base64.b64encode((fk.user_name() + ':' + r(AN, 14)).encode()).decode()}",
    lambda: f"-H \"Authorization: Bearer {r(AN + '._-', 40)}\"",
    lambda: f"Authorization: Token {r(HEX, 40)}",
]

PLACEHOLDERS = [
    lambda: "x" * rng.randrange(16, 40), lambda: "X" * rng.randrange(16, 40), lambda: "*" * rng.randrange(8, 30),
    lambda: rng.choice("0a1zZ") * rng.randrange(12, 40), lambda: "your-api-key-here", lambda: "your_token_here",
    lambda: "<your-secret>", lambda: "<token>", lambda: "<API_KEY>", lambda: "${API_TOKEN}", lambda: "$SECRET_KEY",
    lambda: "{{ secret_key }}", lambda: "{{ .Values.apiKey }}", lambda: "%s", lambda: "%(password)s",
    lambda: "[REDACTED]", lambda: "***REDACTED***", lambda: r(AN, 6) + "…", lambda: r(AN, 4) + "****" + r(AN, 4),
    lambda: "sk_live_" + "x" * 24, lambda: "AKIAIOSFODNN7EXAMPLE", lambda: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    lambda: "changeme", lambda: "CHANGE_ME_PLEASE", lambda: "example-token-123", lambda: "dummy_secret_value",
    lambda: "1234567890abcdef", lambda: "abcdefghijklmnopqrstuvwxyz", lambda: "0123456789", lambda: "ghp_" + "x" * 36,
    lambda: "process.env.API_KEY", lambda: "os.getenv('SECRET')", lambda: "null", lambda: "undefined",
    lambda: "secrets.GITHUB_TOKEN", lambda: "${{ secrets.NPM_TOKEN }}", lambda: "sample-password",
    lambda: "{{db_password}}", lambda: "{{{vault_api_key}}}", lambda: "<%= ENV['API_KEY'] %>",
    lambda: "$(cat /run/secrets/api_key)", lambda: "${API_TOKEN:-unset}", lambda: "<YOUR_API_KEY>",
]

IDENTIFIER_NEGATIVES = [
    lambda: f"api_key = get_api_key()",
    lambda: f"token = self.config.token",
    lambda: f"password = user.password",
    lambda: f"const token: string = req.headers.authorization;",
    lambda: f"secret_key: Optional[str] = None",
    lambda: f"client_id = \"{fk.uuid4()}\"",
    lambda: f"credential_id: {fk.uuid4()}",
    lambda: f"secret_arn = \"arn:aws:secretsmanager:us-east-1:{r(string.digits, 12)}:secret:{fk.word()}-{r(AN, 6)}\"",
    lambda: f"role_arn: arn:aws:iam::{r(string.digits, 12)}:role/{fk.word()}",
    lambda: f".password-field {{ border: 1px solid #ccc; }}",
    lambda: f"#token-input:focus {{ outline: none; }}",
    lambda: f"<label for=\"password\">Password:</label>",
    lambda: f"Password: Enter your password",
    lambda: f"token_type = \"bearer\"",
    lambda: f"password_hash = bcrypt.hashpw(password, salt)",
    lambda: f"secret = Secret::new(value)",
    lambda: f"def rotate_token(token_id, ttl=3600):",
    lambda: f"key_path = \"/etc/ssl/private/{fk.word()}.key\"",
    lambda: f"api_key_header = \"X-API-Key\"",
    lambda: f"TOKEN_URL=https://oauth2.googleapis.com/token",
    lambda: f"password_min_length = 12",
    lambda: f"keyboard_layout = \"{fk.word()}\"",
    lambda: f"monkey_patch = {fk.word()}_handler",
]

HASH_NEGATIVES = [
    lambda: f"commit {r(HEX, 40)}",
    lambda: f"sha256:{r(HEX, 64)}",
    lambda: f"\"integrity\": \"sha512-{base64.b64encode(rng.randbytes(64)).decode()}\"",
    lambda: f"id: {fk.uuid4()}",
    lambda: f"request_id={r(HEX, 16)} status=200",
    lambda: f"etag: W/\"{r(HEX, 32)}\"",
    lambda: f"md5sum {r(HEX, 32)}  {fk.file_name()}",
    lambda: f"docker pull {fk.word()}@sha256:{r(HEX, 64)}",
]

PROSE_NEGATIVES = [
    lambda: f"The token expires after {rng.randrange(1, 48)} hours; request a new one from the console.",
    lambda: f"Rotate the API key every {rng.randrange(30, 90)} days and never commit it.",
    lambda: f"If the password is wrong three times, the account is locked.",
    lambda: f"Set the secret in your environment before running {fk.word()}.py.",
    lambda: f"See the docs at https://{fk.domain_name()}/docs/authentication for how keys work.",
    lambda: f"ghp_ is the prefix GitHub uses for personal access tokens.",
    lambda: f"Use `{fk.word()} auth login` and paste the token when prompted.",
]

PII_NEGATIVES = [
    lambda: f"version {rng.randrange(1, 9)}.{rng.randrange(20)}.{rng.randrange(100)}.{rng.randrange(10000)} released",
    lambda: f"Order #{r(string.digits, 13)} shipped on {fk.date()}",
    lambda: f"[{fk.date_time().isoformat()}] INFO took {rng.randrange(1, 900)}ms",
    lambda: f"Build {r(string.digits, 10)} finished in {rng.randrange(1, 99)} s",
    lambda: f"Step 3: Click View and choose Settings.",
    lambda: f"We have {rng.randrange(2, 900)} open issues in {rng.randrange(2, 40)} repositories.",
    lambda: f"Invoice {r(string.digits, 6)}-{r(string.digits, 4)} total {rng.randrange(10, 999)}.{rng.randrange(10, 99)} EUR",
    lambda: f"Copyright (c) 2019-2026 {fk.company()}",
    lambda: f"Read chapter 12 in section 4.2 on page 118.",
    lambda: f"Part no. A{rng.randrange(10, 99)} {rng.randrange(1, 9)}XY and model {rng.choice(UP)}{rng.randrange(1, 9)} rev {rng.randrange(2, 9)}",
    lambda: f"We ran {rng.randrange(2, 9)} Miles and then took {rng.randrange(2, 9)} Main Steps.",
    lambda: f"ISBN 978-{r(string.digits, 1)}-{r(string.digits, 3)}-{r(string.digits, 5)}-{r(string.digits, 1)}",
    lambda: f"lat {fk.latitude()} lon {fk.longitude()}",
    lambda: f"npm install {fk.word()}@{rng.randrange(1, 20)}.{rng.randrange(9)}.{rng.randrange(9)}",
]


def luhn_complete(prefix, length):
    d = [int(c) for c in prefix]
    while len(d) < length - 1:
        d.append(rng.randrange(10))
    for c in range(10):
        t = d + [c]
        s = sum((x * 2 - 9 if x * 2 > 9 else x * 2) if i % 2 == 1 else x for i, x in enumerate(reversed(t)))
        if s % 10 == 0:
            return "".join(map(str, t))


CARD_SCHEMES = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
                ("6011", 16), ("65", 16), ("3528", 16), ("3589", 16), ("62", 16), ("62", 19), ("36", 14),
                ("300", 14), ("2200", 16), ("6759", 16)]
TEST_CARDS = ["4111111111111111", "4242424242424242", "5555555555554444", "378282246310005", "6011111111111117",
              "3530111333300000", "30569309025904"]


def fmt_card(n):
    k = rng.random()
    if len(n) == 15 and k < 0.5:
        return f"{n[:4]} {n[4:10]} {n[10:]}"
    if k < 0.4:
        return " ".join(n[i:i + 4] for i in range(0, len(n), 4))
    if k < 0.6:
        return "-".join(n[i:i + 4] for i in range(0, len(n), 4))
    return n


def phone():
    loc = rng.choice(LOCALES)
    f = fakers[loc]
    p = f.phone_number()
    return loc, p


def ssn():
    while True:
        a, g, s = rng.randrange(1, 900), rng.randrange(1, 100), rng.randrange(1, 10000)
        if a != 666:
            break
    sep = rng.choice(["-", "-", " ", "."])
    return f"{a:03d}{sep}{g:02d}{sep}{s:04d}"


def address():
    loc = rng.choice(["en_US", "en_US", "en_US", "en_GB"])
    f = fakers[loc]
    k = rng.random()
    if loc == "en_US" and k < 0.15:
        unit = f.military_apo() if rng.random() < 0.5 else f.military_dpo()
        return loc, f"{unit}{rng.choice([', ', chr(10)])}{rng.choice(['APO', 'FPO', 'DPO'])} {f.military_state()} {f.postcode()}"
    a = f.address()
    return loc, a.replace("\n", rng.choice([", ", "\n"]))


PII_TEMPLATES = {
    "EMAIL": [lambda: f"Contact {fk.name()} at {fk.email()} for details.", lambda: f"reply-to: {fakers[rng.choice(LOCALES)].free_email()}"],
    "PHONE": [lambda: f"Call me on {phone()[1]} tomorrow.", lambda: f"phone: {phone()[1]}", lambda: f"{fk.name()}, {phone()[1]}",
              lambda: f"Mobile: {phone()[1]}", lambda: f"Tel. {phone()[1]}", lambda: f"You can reach the office at {phone()[1]}."],
    "CARD": [lambda: f"card={fmt_card(luhn_complete(*rng.choice(CARD_SCHEMES)))} exp {rng.randrange(1, 13):02d}/{rng.randrange(26, 32)}",
             lambda: f"Charged to {fmt_card(luhn_complete(*rng.choice(CARD_SCHEMES)))}.",
             lambda: f"{{\"pan\": \"{luhn_complete(*rng.choice(CARD_SCHEMES))}\"}}",
             lambda: f"Test payment with {fmt_card(rng.choice(TEST_CARDS))} succeeded"],
    "IBAN": [lambda: f"IBAN: {fakers[rng.choice(['de_DE', 'fr_FR', 'en_GB', 'es_ES', 'it_IT', 'nl_NL'])].iban()}",
             lambda: f"Please wire to {fakers[rng.choice(['de_DE', 'fr_FR', 'nl_NL'])].iban()} by Friday."],
    "US_SSN": [lambda: f"SSN: {ssn()}", lambda: f"Her social security number is {ssn()}.", lambda: f"ssn={ssn()}"],
    "IP_ADDRESS": [lambda: f"The request came from {fk.ipv4_public()} at noon.", lambda: f"client {fk.ipv6()} connected",
                   lambda: f"Blocked {fk.ipv4_private()}, retrying.", lambda: f"ssh admin@{fk.ipv4_public()}"],
    "ADDRESS": [lambda: f"Ship to: {address()[1]}", lambda: f"{fk.name()}\n{address()[1]}", lambda: f"Our office is at {address()[1]}."],
}


def main():
    os.makedirs(os.path.join(OUT, "labelled"), exist_ok=True)
    samples = []  # (category, tier, types, kind, text)
    for kind, gen in SHAPED.items():
        for _ in range(8):
            ctx = rng.choice(SHAPED_CONTEXTS)
            samples.append(("secret", "shaped", ["secret"], kind, ctx.format(v=gen(), d=fk.domain_name())))
    for _ in range(260):
        vendor, kw = rng.choice(VENDORS), rng.choice(NAMES)
        style, tmpl = rng.choice(KEYWORD_CONTEXTS)
        samples.append(("secret", "keyword", ["secret"], f"{style}:{tmpl.split('{')[0].strip() or 'assign'}",
                        tmpl.format(n=name_for(vendor, kw, style), v=random_value())))
    for g in EXTRA_KEYWORD:
        for _ in range(8):
            samples.append(("secret", "keyword", ["secret"], "http_auth", g()))
    for _ in range(220):
        vendor, kw = rng.choice(VENDORS), rng.choice(NAMES)
        style, tmpl = rng.choice(KEYWORD_CONTEXTS)
        samples.append(("none", "negative", [], "placeholder", tmpl.format(n=name_for(vendor, kw, style), v=rng.choice(PLACEHOLDERS)())))
    for group, kind, n in ((IDENTIFIER_NEGATIVES, "identifier", 4), (HASH_NEGATIVES, "hash", 6), (PROSE_NEGATIVES, "prose", 5), (PII_NEGATIVES, "number", 6)):
        for g in group:
            for _ in range(n):
                samples.append(("none", "negative", [], kind, g()))
    for t, gens in PII_TEMPLATES.items():
        for _ in range(60 if t in ("PHONE", "ADDRESS", "CARD") else 30):
            samples.append(("pii", "pii", [t], t, rng.choice(gens)()))
    rng.shuffle(samples)
    labels = {}
    for i, (cat, tier, types, kind, text) in enumerate(samples):
        name = f"{i:04d}.txt"
        with open(os.path.join(OUT, "labelled", name), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        labels[name] = {"category": cat, "tier": tier, "types": types, "kind": kind}
    with open(os.path.join(OUT, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1, sort_keys=True)
    print(f"{len(samples)} samples in {OUT}")


if __name__ == "__main__":
    main()
