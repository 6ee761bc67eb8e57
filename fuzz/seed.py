#!/usr/bin/env python3
"""Writes each fuzz target's seed corpus into fuzz/corpus/<target>/ from the repository's own
examples: the golden fixtures (tests/fixtures), the shipped and documented configs, and the
hand-written seeds in fuzz/seeds/<target>/ for what no fixture covers. Streams the fixtures keep
as JSON lists (OpenAI chunks, Bedrock events) are written out in their wire form here, so nothing
generated is committed. Files already in a corpus (what earlier runs found) are kept.

Also writes a libFuzzer dictionary per target (fuzz/dict/<target>.dict): the keys and short
string values of its seeds, and its format's tokens, for the mutator to splice in (without a
sanitizer, libFuzzer does not see the string comparisons the parsers make).

Usage: fuzz/seed.py [REPO_ROOT]
"""

import json
import re
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
FIX = ROOT / "tests" / "fixtures"
DIALECTS = ["anthropic", "gemini", "bedrock"]
CORPUS = ROOT / "fuzz" / "corpus"
DICT = ROOT / "fuzz" / "dict"

FORMAT_TOKENS = {
    "json": ['{', '}', '[', ']', ':', ',', '""', 'null', 'true', 'false', '0', '-1', '1e400', '0.5',
             '"\\u0000"', '"\\ud800"', '"\\u005b"'],
    "sse": ["data:", "data: ", "event:", "id:", "retry:", ":", "\n", "\r", "\r\n", "\n\n", "[DONE]"],
    "yaml": [": ", "- ", "---", "&a", "*a", "<<: *a", "!!str", "|", ">", "{}", "[]", "${", "${X:-d}", "~", "\n  "],
    # The detector's triggers and what stands around them (guard/detect/prefilter.rs).
    "pii": ["password", "Passwort ist ", "mot de passe est ", "contraseña", "CONTRASEÑA", "senha ", "kennwort",
            "pwd", "pass", " = ", ": ", " is ", "secret", "aws_secret_access_key", "AKIA", "eyJ", "sk-",
            "ghp_", "glpat-", "xoxb-", "sk_live_", "AccountKey=", "\"private_key_id\"", "-----BEGIN ",
            " PRIVATE KEY-----", "@example.com", "+44 20 ", "4111 1111 ", "DE89 3704 ", "123-45-", "born ",
            "date of birth ", "12 March 1990", "social security number ", "fe80::", "://", "\u00a0",
            "\u017f", "\u212a", "[EMAIL_1]"],
}
# Which tokens each target's dictionary gets besides its seeds' own.
FORMATS = {
    "client_request": ["json"],
    "provider_response": ["json"],
    "provider_stream": ["json", "sse"],
    "eventstream": ["json"],
    "sse": ["sse"],
    "config": ["yaml"],
    "pii_restore": ["json", "sse", "pii"],
}


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def strings_of(value, out):
    """The keys and short string values of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(json.dumps(k))
            strings_of(v, out)
    elif isinstance(value, list):
        for v in value:
            strings_of(v, out)
    elif isinstance(value, str) and 0 < len(value) <= 32 and " " not in value:
        out.add(json.dumps(value))


def tokens_of(data):
    """Dictionary tokens of one seed: JSON keys and values (of the whole, or of each SSE data
    line), YAML keys and scalars, event-stream header names and event types."""
    out = set()
    text = data.decode("utf-8", "replace")
    docs = [text] + [l[5:].strip() for l in text.splitlines() if l.startswith("data:")]
    for d in docs:
        try:
            strings_of(json.loads(d), out)
        except ValueError:
            pass
    out.update(m for m in re.findall(r"^\s*-?\s*([A-Za-z_][A-Za-z0-9_]*):", text, re.M))
    out.update(m for m in re.findall(r":\s+([a-z_]{3,24})\s*$", text, re.M))
    out.update(m.decode() for m in re.findall(rb":[a-z-]{4,20}", data))
    # Inside binary frames: quoted keys, and camelCase event and exception names.
    out.update(m.decode() for m in re.findall(rb'"[A-Za-z_][A-Za-z0-9_.-]{0,30}"', data))
    out.update(m.decode() for m in re.findall(rb"[a-z]+[A-Z][A-Za-z]+", data))
    return out


def dict_entry(token):
    body = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                   "".join(f"\\x{b:02x}" for b in c.encode()) for c in token)
    return f'"{body}"'


def write_dicts():
    DICT.mkdir(parents=True, exist_ok=True)
    for target, formats in FORMATS.items():
        d = CORPUS / target
        tokens = set()
        for f in sorted(d.glob("seed-*")) if d.is_dir() else []:
            tokens |= tokens_of(f.read_bytes())
        entries = {dict_entry(t) for t in tokens if 0 < len(t.encode()) <= 64}
        for fmt in formats:
            entries |= {dict_entry(t) for t in FORMAT_TOKENS[fmt]}
        (DICT / f"{target}.dict").write_text("".join(e + "\n" for e in sorted(entries)))


def fixtures(pattern):
    return sorted(p for dialect in DIALECTS for p in (FIX / dialect).glob(pattern))


def openai_sse(chunks):
    return "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"


def frame(headers, payload):
    """One AWS event-stream frame; `headers` are (name, string value) pairs."""
    h = b"".join(
        struct.pack(">B", len(n)) + n.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for n, v in headers
    )
    total = 16 + len(h) + len(payload)
    prelude = struct.pack(">II", total, len(h))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + h + payload
    return head + struct.pack(">I", zlib.crc32(head))


def bedrock_stream(events):
    out = b""
    for e in events:
        payload = json.dumps(e["payload"]).encode()
        if "exception" in e:
            kind = [(":exception-type", e["exception"]), (":message-type", "exception")]
        else:
            kind = [(":event-type", e["event"]), (":message-type", "event")]
        out += frame(kind + [(":content-type", "application/json")], payload)
    return out


def readme_yaml():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def configmap_yaml():
    """The config embedded in the Kubernetes ConfigMap (the block under `tollgate.yaml: |`)."""
    lines = (ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text().splitlines()
    out, indent = [], None
    for line in lines:
        if indent is None:
            if line.strip().startswith("tollgate.yaml: |"):
                indent = len(line) - len(line.lstrip()) + 2
            continue
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        out.append(line[indent:])
    return "\n".join(out) + "\n" if out else None


def main():
    openai_streams = {p.stem: openai_sse(json.loads(p.read_text())) for p in fixtures("*chunks.json")}
    sse_fixtures = {p.parent.name + "-" + p.stem: p.read_bytes() for p in fixtures("*.sse")}

    for p in fixtures("*request*.json") + fixtures("embeddings_*.openai.json"):
        put("client_request", f"{p.parent.name}-{p.name}", p.read_bytes())

    for p in fixtures("*.json"):
        if not p.name.endswith(("events.json", "chunks.json")):
            put("provider_response", f"{p.parent.name}-{p.name}", p.read_bytes())

    for name, data in sse_fixtures.items():
        put("provider_stream", name, data)
        put("sse", name, data)
    for name, data in openai_streams.items():
        put("provider_stream", f"openai-{name}", data)
        put("sse", f"openai-{name}", data)

    for p in fixtures("*.events.json"):
        put("eventstream", p.stem, bedrock_stream(json.loads(p.read_text())))

    configs = [(ROOT / "conf" / "tollgate.yaml").read_text()] + readme_yaml()
    cm = configmap_yaml()
    if cm:
        configs.append(cm)
    for i, c in enumerate(configs):
        put("config", f"{i:02}.yaml", c)

    # The restorer sees the client's format: OpenAI chunks and Anthropic events, with the
    # placeholders a redacting route put in the request (one split across two events).
    def with_placeholders(text):
        return text.replace("Bonjour", "Bonjour [EMAIL_2]", 1).replace("Paris", "[PERS", 1).replace(
            " !", "ON_1] !", 1
        )

    for name, data in list(openai_streams.items()) + list(sse_fixtures.items()):
        if name.startswith(("anthropic", "stream")):
            put("pii_restore", name, with_placeholders(data if isinstance(data, str) else data.decode()))
    for p in fixtures("*response*.json"):
        put("pii_restore", f"{p.parent.name}-{p.name}", with_placeholders(p.read_text()))

    # The detector's prefilter is checked against the whole-text scan on what the target gets:
    # prompts of the labelled corpus, entities and hard negatives.
    corpus = ROOT / "tests" / "fixtures" / "guard" / "corpus.jsonl"
    for i, line in enumerate(corpus.read_text().splitlines()[:200] if corpus.exists() else []):
        put("pii_restore", f"guard-corpus-{i}", json.loads(line)["text"])

    seeds = ROOT / "fuzz" / "seeds"
    for d in sorted(seeds.iterdir()) if seeds.is_dir() else []:
        for f in sorted(d.iterdir()):
            put(d.name, f.name, f.read_bytes())

    write_dicts()
    for d in sorted(CORPUS.iterdir()):
        print(f"seed.py: {d.name}: {sum(1 for _ in d.iterdir())} files", file=sys.stderr)


if __name__ == "__main__":
    CORPUS.mkdir(parents=True, exist_ok=True)
    main()
