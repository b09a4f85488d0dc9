#!/usr/bin/env python3
"""Recall and precision of each tool on the labelled samples.

  eval.py OUT_DIR AIRLOCK_BIN [VENV_BIN]

Without VENV_BIN (or with --airlock-only) only Airlock runs. When the
labels carry a `tier` (bench/scan/evalset.py writes them), Airlock's recall
is also printed per tier (self-identifying shape, keyword-anchored, PII)
and per type, with the share of negative samples flagged, by class. With
EVAL_SHOW=1 it also lists every missed or flagged sample, and the PII types
reported on samples that hold none (or besides the labelled ones).

OUT_DIR is what gen.py wrote (labelled/, labels.json). Each sample is one
file; a tool "flags" a file when it reports anything in it. For secrets, the
positives are the secret samples and everything else (PII and negative
samples) should stay unflagged; likewise for PII. Third-party binaries run
under `unshare -n` (no network). Prints a Markdown table and a JSON line.
"""
import glob
import json
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a != "--airlock-only"]
out_dir, airlock = args[0], args[1]
venv = args[2] if len(args) > 2 and "--airlock-only" not in sys.argv else None
lab_dir = os.path.join(out_dir, "labelled")
labels = json.load(open(os.path.join(out_dir, "labels.json")))
files = sorted(glob.glob(os.path.join(lab_dir, "*.txt")))


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def airlock_findings(only):
    r = run([airlock, "scan", "--json", "--only", only, *files])
    if r.returncode not in (0, 1):
        sys.exit(f"airlock failed: {r.stderr}")
    return json.loads(r.stdout)["findings"]


def airlock_flags(only):
    return {os.path.basename(f["file"]) for f in airlock_findings(only)}


def breakdown():
    """Recall per tier and type, negatives flagged per class (Airlock)."""
    sec = airlock_findings("secrets")
    pii = airlock_findings("pii")
    flagged_sec = {os.path.basename(f["file"]) for f in sec}
    pii_types = {}
    for f in pii:
        pii_types.setdefault(os.path.basename(f["file"]), set()).add(f["type"])
    flagged_any = flagged_sec | set(pii_types)
    rows = []
    def pct(a, b):
        return f"{100 * a / max(1, b):.1f} % ({a}/{b})"
    tiers = {}
    for name, l in labels.items():
        tiers.setdefault(l["tier"], []).append(name)
    for tier in ("shaped", "keyword"):
        names = tiers.get(tier, [])
        found = sum(n in flagged_sec for n in names)
        rows.append((f"secrets, {tier}", pct(found, len(names))))
        kinds = {}
        for n in names:
            kinds.setdefault(labels[n]["kind"], []).append(n)
        missed = {k: len([n for n in v if n not in flagged_sec]) for k, v in kinds.items()}
        worst = sorted(((m, k) for k, m in missed.items() if m), reverse=True)[:8]
        if worst:
            rows.append((f"  most missed ({tier})", ", ".join(f"{k} {m}/{len(kinds[k])}" for m, k in worst)))
    names = tiers.get("pii", [])
    found_right = sum(bool(set(labels[n]["types"]) & pii_types.get(n, set())) for n in names)
    rows.append(("PII, all types (right type)", pct(found_right, len(names))))
    by_type = {}
    for n in names:
        for t in labels[n]["types"]:
            by_type.setdefault(t, []).append(n)
    for t, ns in sorted(by_type.items()):
        rows.append((f"  {t}", pct(sum(t in pii_types.get(n, set()) for n in ns), len(ns))))
    pii_flagged = [n for n in labels if n in pii_types]
    right = sum(labels[n]["category"] == "pii" for n in pii_flagged)
    rows.append(("PII precision (flagged samples that hold PII)", pct(right, len(pii_flagged))))
    negs = tiers.get("negative", [])
    rows.append(("negatives flagged as secret", pct(sum(n in flagged_sec for n in negs), len(negs))))
    rows.append(("negatives flagged at all (secret or PII)", pct(sum(n in flagged_any for n in negs), len(negs))))
    kinds = {}
    for n in negs:
        kinds.setdefault(labels[n]["kind"], []).append(n)
    for k, ns in sorted(kinds.items()):
        rows.append((f"  {k}", pct(sum(n in flagged_any for n in ns), len(ns))))
    print("| Airlock on the evaluation set | figure |")
    print("|---|---|")
    for a, b in rows:
        print(f"| {a} | {b} |")
    print()
    if os.environ.get("EVAL_SHOW"):
        for n in sorted(labels):
            l = labels[n]
            hit = n in flagged_sec if l["category"] != "pii" else bool(set(l["types"]) & pii_types.get(n, set()))
            bad = (l["category"] == "none" and n in flagged_any) or (l["category"] != "none" and not hit)
            if bad:
                print(n, l["tier"], l["kind"], "FLAGGED" if l["category"] == "none" else "MISSED",
                      repr(open(os.path.join(lab_dir, n), encoding="utf-8").read()[:160]))
        # What lowers PII precision or counts as a wrong type: PII types
        # reported on samples that hold none, or besides the labelled ones.
        for n in sorted(pii_types):
            l = labels[n]
            extra = pii_types[n] - set(l.get("types", []))
            if extra:
                why = "PII_ON_NON_PII" if l["category"] != "pii" else "WRONG_TYPE"
                print(n, l["tier"], l["kind"], why, ",".join(sorted(extra)),
                      repr(open(os.path.join(lab_dir, n), encoding="utf-8").read()[:120]))


def gitleaks_flags():
    r = run(["unshare", "-n", os.path.join(venv, "gitleaks"), "dir", lab_dir, "--no-banner", "-f", "json", "-r", "-", "--exit-code", "0", "-l", "error"])
    return {os.path.basename(f["File"]) for f in json.loads(r.stdout or "[]")}


def kingfisher_flags():
    r = run(["unshare", "-n", os.path.join(venv, "kingfisher"), "scan", lab_dir, "--no-validate", "--format", "json", "-j", "1", "--no-update-check"])
    if r.returncode not in (0, 200, 205) and not r.stdout.strip():
        r = run(["unshare", "-n", os.path.join(venv, "kingfisher"), "scan", lab_dir, "--no-validate", "--format", "json", "-j", "1"])
    # Output is a sequence of JSON documents; collect findings from all.
    flagged, text, dec, i = set(), r.stdout, json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        doc, i = dec.raw_decode(text, i)
        fs = doc.get("findings") if isinstance(doc, dict) else None
        for f in fs if isinstance(fs, list) else []:
            flagged.add(os.path.basename(f["finding"]["path"]))
    return flagged


PRESIDIO = r'''
import sys, json, glob, os, spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngine, NlpArtifacts

class BlankNlp(NlpEngine):
    """Tokenisation only (spacy.blank): no model can be downloaded here, so
    only Presidio's regex/pattern recognizers can fire."""
    def __init__(self):
        self.nlp = spacy.blank("en")
    def load(self): pass
    def is_loaded(self): return True
    def process_text(self, text, language):
        doc = self.nlp(text)
        return NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc], lemmas=[t.text for t in doc], nlp_engine=self, language=language)
    def process_batch(self, texts, language, batch_size=1, n_process=1, **kw):
        for t in texts: yield t, self.process_text(t, language)
    def is_stopword(self, word, language): return False
    def is_punct(self, word, language): return False
    def get_supported_entities(self): return []
    def get_supported_languages(self): return ["en"]

engine = AnalyzerEngine(nlp_engine=BlankNlp(), supported_languages=["en"])
mode = sys.argv[1]
if mode == "files":
    flagged = []
    for f in sys.argv[2:]:
        res = engine.analyze(text=open(f, encoding="utf-8", errors="replace").read(), language="en", score_threshold=0.3)
        if res: flagged.append(os.path.basename(f))
    print(json.dumps(flagged))
else:
    import time
    text = open(sys.argv[2], encoding="utf-8", errors="replace").read()
    t = time.perf_counter(); n = 0
    for i in range(0, len(text), 20000):
        n += len(engine.analyze(text=text[i:i+20000], language="en", score_threshold=0.3))
    dt = time.perf_counter() - t
    print(json.dumps({"bytes": len(text.encode()), "secs": dt, "findings": n}))
'''


def presidio_flags():
    r = run(["unshare", "-n", os.path.join(venv, "python"), "-c", PRESIDIO, "files", *files])
    if r.returncode != 0:
        sys.exit(f"presidio failed: {r.stderr[-2000:]}")
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def score(flagged, category):
    pos = {f for f, l in labels.items() if l["category"] == category}
    tp = len(pos & flagged)
    fp = len(flagged - pos)
    fn = len(pos - flagged)
    return {"tp": tp, "fp": fp, "fn": fn, "recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp)}


if any("tier" in l for l in labels.values()):
    breakdown()
if venv is None:
    sys.exit(0)

results = {}
air_secrets = airlock_flags("secrets")
air_pii = airlock_flags("pii")
results["airlock secrets"] = score(air_secrets, "secret")
results["airlock pii"] = score(air_pii, "pii")
gl = gitleaks_flags()
results["gitleaks"] = score(gl, "secret")
kf = kingfisher_flags()
results["kingfisher"] = score(kf, "secret")
try:
    pr = presidio_flags()
    results["presidio (regex only)"] = score(pr, "pii")
except SystemExit as e:
    print(f"presidio skipped: {e}", file=sys.stderr)

secret_pos = {f for f, l in labels.items() if l["category"] == "secret"}
shared = gl & secret_pos
results["airlock on gitleaks-detected secrets"] = {"tp": len(shared & air_secrets), "fn": len(shared - air_secrets), "fp": 0,
    "recall": len(shared & air_secrets) / max(1, len(shared)), "precision": float("nan")}
missed_by_airlock = sorted((secret_pos & (gl | kf)) - air_secrets)

print("| tool | category | TP | FP | FN | recall | precision |")
print("|---|---|---|---|---|---|---|")
for name, r in results.items():
    cat = "pii" if ("pii" in name or "presidio" in name) else "secret"
    print(f"| {name} | {cat} | {r['tp']} | {r['fp']} | {r['fn']} | {r['recall']:.3f} | {r['precision']:.3f} |")
print()
print("secret samples found by gitleaks or kingfisher but not airlock:", missed_by_airlock or "none")
print("JSON " + json.dumps(results))
