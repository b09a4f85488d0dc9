#!/usr/bin/env python3
"""Generate the scrubbing benchmark inputs.

  gen.py OUT_DIR [MEGABYTES]

Writes
  OUT_DIR/mixed.txt        a mix of source code, logs, JSON and prose with
                           secrets and PII sprinkled in (default 32 MB)
  OUT_DIR/labelled/*.txt   one file per labelled sample of the corpus in
                           crates/airlock-scrub/tests/corpus (templates
                           expanded the same way as the Rust tests do)
  OUT_DIR/labels.json      {file: {"category": "secret"|"pii"|"none", "types": [...]}}

Everything is synthetic and deterministic (fixed seed). Token bodies are
random; checksummed formats (GitHub, npm, Luhn, IBAN) are made valid.
"""
import base64
import json
import os
import random
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "crates", "airlock-scrub", "tests", "corpus")

CLASSES = {
    "an": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "lower": "abcdefghijklmnopqrstuvwxyz",
    "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "digits": "0123456789",
    "b64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "b64url": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    "lowan": "abcdefghijklmnopqrstuvwxyz0123456789",
    "upan": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "age": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github(prefix, rng):
    body = "".join(rng.choice(CLASSES["an"]) for _ in range(30))
    n = zlib.crc32(body.encode()) & 0xFFFFFFFF
    s = ""
    for _ in range(6):
        s = BASE62[n % 62] + s
        n //= 62
    return f"{prefix}_{body}{s}"


def luhn_ok(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = d * 2 if i % 2 == 1 else d
        total += v - 9 if v > 9 else v
    return total % 10 == 0


def card(prefix, length, rng):
    d = [int(c) for c in prefix]
    while len(d) < length - 1:
        d.append(rng.randrange(10))
    for c in range(10):
        if luhn_ok(d + [c]):
            return "".join(map(str, d + [c]))
    raise AssertionError


def iban(cc, length, rng):
    bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    num = "".join(str(int(ch, 36)) for ch in bban + cc + "00")
    check = 98 - int(num) % 97
    return f"{cc}{check:02d}{bban}"


def jwt(rng):
    e = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    header = e(b'{"alg":"HS256","typ":"JWT"}')
    claims = e(('{"sub":"%d","iat":1700000000}' % rng.randrange(10**9, 10**10)).encode())
    return f"{header}.{claims}." + "".join(rng.choice(CLASSES["b64url"]) for _ in range(43))


def expand(sample, rng):
    out, rest = [], sample
    while "{{" in rest:
        i = rest.index("{{")
        j = rest.index("}}", i)
        out.append(rest[:i])
        t = rest[i + 2 : j].split(":")
        if t[0] == "rand":
            s = "".join(rng.choice(CLASSES[t[1]]) for _ in range(int(t[2])))
        elif t[0] == "github":
            s = github(t[1], rng)
        elif t[0] == "card":
            s = card(t[1], int(t[2]), rng)
        elif t[0] == "iban":
            s = iban(t[1], int(t[2]), rng)
        elif t[0] == "jwt":
            s = jwt(rng)
        else:
            s = rest[i : j + 2]
        out.append(s)
        rest = rest[j + 2 :]
    out.append(rest)
    return "".join(out).replace("\\n", "\n")


def load_corpus():
    samples = []
    for name in ("secrets.txt", "pii.txt", "negatives.txt"):
        with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                label, text = line.split("\t", 1)
                types = label[1:].split(",") if label.startswith("+") else []
                samples.append((types, text))
    return samples


def category(types):
    if not types:
        return "none"
    return "pii" if all(t.isupper() for t in types) else "secret"


WORDS = ("the of and to in is was for on that with as by at from this be are or an which it "
         "system request service user data value result config build release deploy network "
         "agent policy token handler module review update change version support issue test").split()


def prose(rng):
    n = rng.randrange(25, 90)
    s = " ".join(rng.choice(WORDS) for _ in range(n))
    return s[0].upper() + s[1:] + ".\n"


def source(rng):
    name = rng.choice(["handler", "parse_config", "load", "render", "connect", "retry"])
    return rng.choice([
        f"fn {name}(ctx: &Context, input: &[u8]) -> Result<Output, Error> {{\n    let n = input.len() * {rng.randrange(2, 64)};\n    ctx.metrics.record(\"{name}\", n);\n}}\n",
        f"def {name}(self, items, timeout={rng.randrange(1, 60)}):\n    for i, item in enumerate(items):\n        self.queue.put((i, item))\n    return len(items)\n",
        f"export async function {name}(req, res) {{\n  const id = req.params.id ?? '{rng.randrange(10**5)}';\n  res.json({{ ok: true, id }});\n}}\n",
        f"    if (buf[{rng.randrange(100)}] == 0x{rng.randrange(256):02x} && len > {rng.randrange(4096)}) {{ return -EINVAL; }}\n",
    ])


def log(rng):
    ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    return (f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z "
            f"{rng.choice(['INFO', 'WARN', 'DEBUG', 'ERROR'])} req={rng.getrandbits(64):016x} "
            f"path=/api/v{rng.randrange(1, 3)}/{rng.choice(WORDS)} status={rng.choice([200, 200, 201, 204, 301, 404, 500])} "
            f"dur={rng.randrange(1, 5000) / 10}ms client={ip}\n")


def js(rng):
    rec = {"id": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
           "name": rng.choice(WORDS), "count": rng.randrange(10**6), "ratio": rng.random(),
           "tags": [rng.choice(WORDS) for _ in range(rng.randrange(1, 5))],
           "sha": f"{rng.getrandbits(160):040x}", "ok": rng.random() < 0.9}
    return json.dumps(rec) + "\n"


def main():
    out = sys.argv[1]
    megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 32
    rng = random.Random(20261122)
    samples = load_corpus()
    os.makedirs(os.path.join(out, "labelled"), exist_ok=True)
    labels = {}
    for i, (types, text) in enumerate(samples):
        name = f"{i:04d}.txt"
        with open(os.path.join(out, "labelled", name), "w", encoding="utf-8") as f:
            f.write(expand(text, rng) + "\n")
        labels[name] = {"category": category(types), "types": types}
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1, sort_keys=True)

    positives = [t for ty, t in samples if ty]
    target = int(megabytes * 1_000_000)
    written = 0
    gens = [prose, source, log, log, js]
    with open(os.path.join(out, "mixed.txt"), "w", encoding="utf-8") as f:
        buf = []
        since = 0
        while written < target:
            piece = rng.choice(gens)(rng)
            since += len(piece)
            if since > 4000:  # one secret or PII sample per ~4 KB
                piece += expand(rng.choice(positives), rng) + "\n"
                since = 0
            buf.append(piece)
            written += len(piece)
            if len(buf) > 2000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))


if __name__ == "__main__":
    main()
