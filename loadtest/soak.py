#!/usr/bin/env python3
"""The soak's client and its checks (loadtest/soak.sh runs it; stdlib only, except `plot`).

  soak.py load PORT SECONDS TALLY.json [SCALE]
      the steady mixed load (CLASSES, each rate × SCALE); writes per class the requests sent,
      what came back and what was expected; the limited class's key comes from SOAK_LIMITED_KEY
  soak.py ledger LEDGER.db TALLY.json N
      the ledger against the tally: one record per request sent, per class, each with the class's
      signature, and N more (the smoke requests)
  soak.py classes TALLY.json     the tally as a table, one row per class
  soak.py outcomes TALLY.json    no unexpected failure; every class that injects one did
  soak.py sent TALLY.json        the number of requests sent
  soak.py memory SAMPLES.csv WARMUP WINDOW DURATION RSS_PCT FD_SLACK
      RSS, fds and threads: plateau or growth
  soak.py plot SAMPLES.csv WARMUP WINDOW DURATION RSS_PCT OUT.png     (needs matplotlib)

`ledger`, `outcomes` and `memory` print one `| ok | check | detail |` row per check
(`| **FAIL** |` when it fails, and then exit 1), as loadtest/ledger.sh does.

The load is an open loop per class: request k of a class is due at start + k / rate, whatever the
latency (a worker that falls behind sends at once; the largest lag is reported). Each request
carries `x-tollgate-feature: <class>`, so the ledger's records can be told apart by class.
"""

import asyncio
import csv
import json
import os
import random
import sqlite3
import statistics
import sys
import time

# ---------------------------------------------------------------------------------- the classes

# name: (requests/s, workers, what it is). Workers are keep-alive connections (disconnect: a new
# connection per request). Injected failures: error, limited (429), stream_cut, disconnect.
CLASSES = {
    "json": (70.0, 4, "non-streamed chat, a new prompt each (1-80 words)"),
    "stream": (45.0, 4, "streamed chat with include_usage"),
    "cached": (35.0, 3, "temperature 0, one of 16 prompts, route with an exact cache (ttl 2m)"),
    "redacted": (12.0, 3, "an email and a phone number, route with pii+secrets redact; the mock echoes"),
    "big": (2.0, 2, "a 200 KB prompt"),
    "fallback": (10.0, 3, "first target answers 503 (twice: one retry), then the fallback alias"),
    "error": (6.0, 2, "the only target answers 500 (twice: one retry): the client gets 500"),
    "limited": (4.0, 2, "a virtual key with rpm 30 × this rate (120 at 4/s): about half get 429"),
    "stream_cut": (4.0, 2, "the provider drops the stream after 2 content events: an error event"),
    "disconnect": (4.0, 4, "the client goes away: mid-stream after 3 events, or before the header"),
}

EMAIL, PHONE = "jane.doe@example.com", "+1 415 555 0100"
WORDS = "ledger spend token price team model usage cost gate toll soak plateau memory".split()
CACHED_PROMPTS = [f"Cached question number {i}: what is the toll?" for i in range(16)]
BIG_TEXT = " ".join(WORDS[i % len(WORDS)] for i in range(40000))[:200_000]


def prompt(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def chat(model, content, stream=False, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------------- HTTP/1.1


class Conn:
    """One keep-alive HTTP/1.1 connection to the gateway."""

    def __init__(self, port):
        self.port, self.r, self.w = port, None, None

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None

    async def send(self, body, headers):
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        head = "POST /v1/chat/completions HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.w.write(head.encode() + body)
        await self.w.drain()

    async def head(self):
        line = await self.r.readline()
        if not line:
            raise ConnectionError("closed before the status line")
        status = int(line.split()[1])
        hdrs = {}
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed in the header")
            if line in (b"\r\n", b"\n"):
                return status, hdrs
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()

    async def pieces(self, hdrs):
        """The body, piece by piece (a chunk of a chunked body: an SSE event here)."""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.r.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await self.r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                yield (await self.r.readexactly(size + 2))[:-2]
        elif "content-length" in hdrs:
            yield await self.r.readexactly(int(hdrs["content-length"]))
        else:
            yield await self.r.read()
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()

    async def body(self, hdrs):
        return b"".join([p async for p in self.pieces(hdrs)])


# ---------------------------------------------------------------------------------- one request per class
# Each returns the verdict: "ok" (a normal answer), "injected" (the failure the class injects, as
# expected) or raises / returns "unexpected: why".


def is_chat(b):
    try:
        return bool(json.loads(b)["choices"])
    except (ValueError, KeyError, TypeError):
        return False


def is_stream(b):
    return b.rstrip().endswith(b"data: [DONE]") and b'"error"' not in b


async def run_one(cls, k, conn, ctx, tally):
    rng = ctx["rng"]
    hdrs = {"x-tollgate-feature": cls, "x-tollgate-team": f"team-{k % 5}", "x-tollgate-user": f"user-{k % 50}"}
    mt = {"max_tokens": rng.randint(1, 40)}
    if cls == "json":
        body = chat("demo", f"#{k} {prompt(rng, rng.randint(1, 80))}", **mt)
    elif cls == "stream":
        body = chat("demo", f"#{k} {prompt(rng, rng.randint(1, 80))}", stream=True, **mt)
    elif cls == "cached":
        body = chat("cached", CACHED_PROMPTS[k % len(CACHED_PROMPTS)], temperature=0)
    elif cls == "redacted":
        body = chat("guarded", f"#{k} mail {EMAIL} or call {PHONE} about {prompt(rng, 5)} [[mock: echo]]")
    elif cls == "big":
        body = chat("demo", f"#{k} {BIG_TEXT}", max_tokens=8)
    elif cls == "fallback":
        body = chat("fallback", f"#{k} {prompt(rng, 10)}", **mt)
    elif cls == "error":
        body = chat("failing", f"#{k} {prompt(rng, 10)}", **mt)
    elif cls == "limited":
        body = chat("demo", f"#{k} {prompt(rng, 10)}", **mt)
        hdrs["authorization"] = f"Bearer {ctx['limited_key']}"
    elif cls == "stream_cut":
        body = chat("demo", f"#{k} {prompt(rng, 10)} [[mock: close_after=2]]", stream=True)
    elif cls == "disconnect":
        if k % 2 == 0:  # mid-stream: 40 events 50 ms apart, the client leaves after 3
            body = chat("demo", f"#{k} [[mock: chunks=40 chunk_delay_ms=50]]", stream=True)
        else:  # before the header: the provider takes 1 s, the client leaves after 100 ms
            body = chat("demo", f"#{k} [[mock: latency_ms=1000]]")
    else:
        raise ValueError(cls)

    tally["sent"] += 1
    await conn.send(body, hdrs)

    if cls == "disconnect":
        if k % 2 == 0:
            status, h = await conn.head()
            if status != 200:
                await conn.body(h)
                return f"unexpected: status {status}"
            n = 0
            async for _ in conn.pieces(h):
                n += 1
                if n == 3:
                    break
            conn.close()
            return "injected" if n == 3 else f"unexpected: the stream ended after {n} events"
        try:
            status, h = await asyncio.wait_for(conn.head(), 0.1)
        except asyncio.TimeoutError:
            conn.close()
            return "injected"
        return f"unexpected: status {status} within 100 ms"

    status, h = await conn.head()
    b = await conn.body(h)
    tally["statuses"][str(status)] = tally["statuses"].get(str(status), 0) + 1
    if cls == "error":
        if status == 500 and b'"error"' in b:
            return "injected"
        return f"unexpected: status {status}"
    if cls == "limited" and status == 429:
        return "injected"
    if status != 200:
        return f"unexpected: status {status}: {b[:200]!r}"
    if cls == "stream_cut":
        if b'"code":"stream_cut"' in b and b"[DONE]" not in b:
            return "injected"
        return f"unexpected: no stream_cut error event: {b[-200:]!r}"
    if cls == "stream":
        return "ok" if is_stream(b) else f"unexpected: incomplete stream: {b[-200:]!r}"
    if not is_chat(b):
        return f"unexpected: no choices: {b[:200]!r}"
    if cls == "cached":
        c = h.get("x-tollgate-cache", "none")
        tally["cache"][c] = tally["cache"].get(c, 0) + 1
    elif cls == "redacted":
        text = json.loads(b)["choices"][0]["message"]["content"]
        if EMAIL not in text or PHONE not in text:
            return f"unexpected: the echo lacks the restored email or phone: {text[:200]!r}"
    elif cls == "fallback":
        a = h.get("x-tollgate-attempts", "")
        if not (a.startswith("broken:503") and a.endswith("mock:200")):
            return f"unexpected: attempts {a!r}"
    return "ok"


async def worker(cls, rate, port, ctx, tally, t0, end):
    conn = Conn(port)
    while True:
        k = tally["next"]
        due = t0 + k / rate
        if due >= end:
            break
        tally["next"] = k + 1
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            tally["max_lag_s"] = max(tally["max_lag_s"], now - due)
        try:
            verdict = await asyncio.wait_for(run_one(cls, k, conn, ctx, tally), 30)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError) as e:
            conn.close()
            verdict = f"unexpected: {type(e).__name__}: {e}"
        if verdict.startswith("unexpected"):
            tally["unexpected"] += 1
            if len(tally["examples"]) < 5:
                tally["examples"].append(f"#{k}: {verdict}")
        else:
            tally[verdict] += 1
    conn.close()


async def load(port, seconds, scale, limited_key):
    tallies = {
        c: {"sent": 0, "ok": 0, "injected": 0, "unexpected": 0, "statuses": {}, "cache": {},
            "max_lag_s": 0.0, "examples": [], "next": 0, "rate": r * scale, "what": what}
        for c, (r, _, what) in CLASSES.items()
    }
    ctx = {"rng": random.Random(42), "limited_key": limited_key}
    t0 = time.monotonic()
    end = t0 + seconds
    tasks = [
        asyncio.create_task(worker(c, r * scale, port, ctx, tallies[c], t0, end))
        for c, (r, n, _) in CLASSES.items()
        for _ in range(n)
    ]

    async def progress():
        while True:
            await asyncio.sleep(60)
            sent = sum(t["sent"] for t in tallies.values())
            bad = sum(t["unexpected"] for t in tallies.values())
            print(f"soak.py: {time.monotonic() - t0:5.0f} s: {sent} sent, {bad} unexpected", file=sys.stderr, flush=True)

    p = asyncio.create_task(progress())
    await asyncio.gather(*tasks)
    p.cancel()
    for t in tallies.values():
        del t["next"]
    return tallies


# ---------------------------------------------------------------------------------- checks

FAILED = False


def row(ok, name, detail):
    global FAILED
    FAILED |= not ok
    print(f"| {'ok' if ok else '**FAIL**'} | {name} | {detail} |")


def ledger(db, tally_file, extra):
    """One record per request sent, per class, each with its class's signature."""
    tallies = json.load(open(tally_file))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    q = lambda sql, *a: con.execute(sql, a).fetchone()[0]  # noqa: E731
    sent = sum(t["sent"] for t in tallies.values())
    total = q("SELECT count(*) FROM usage_records")
    other = q(f"SELECT count(*) FROM usage_records WHERE feature IS NULL OR feature NOT IN ({','.join('?' * len(tallies))})", *tallies)
    row(total == sent + extra and other == extra, "ledger records = requests sent",
        f"{total} records for {sent} requests sent by the load + {extra} smoke ({other} records outside the load's classes)")
    # Per class: the count, then what every record of the class must show.
    sig = {
        "json": ("status = 200 AND error IS NULL AND stream = 0", "200, no error"),
        "stream": ("status = 200 AND error IS NULL AND stream = 1", "200 streamed, no error"),
        "cached": ("status = 200 AND error IS NULL", "200"),
        "redacted": ("status = 200 AND error IS NULL AND guard_redactions >= 2", "200, >= 2 redactions"),
        "big": ("status = 200 AND error IS NULL AND prompt_tokens > 20000", "200, > 20,000 prompt tokens"),
        "fallback": ("status = 200 AND attempts = 'broken:503,broken:503,mock:200'", "200 after broken:503,broken:503"),
        "error": ("status = 500 AND attempts = 'flaky:500,flaky:500'", "500 after flaky:500,flaky:500"),
        "limited": ("status IN (200, 429) AND key_id = 'limited'", "200 or 429, key limited"),
        "stream_cut": ("status = 200 AND error = 'stream_cut'", "200, error stream_cut"),
        "disconnect": ("error = 'client_gone'", "error client_gone"),
    }
    for cls, t in tallies.items():
        n = q("SELECT count(*) FROM usage_records WHERE feature = ?", cls)
        where, what = sig[cls]
        good = q(f"SELECT count(*) FROM usage_records WHERE feature = ? AND {where}", cls)
        extra = ""
        ok = n == t["sent"] == good
        if cls == "limited":
            n429 = q("SELECT count(*) FROM usage_records WHERE feature = ? AND status = 429", cls)
            ok = ok and n429 == t["statuses"].get("429", 0) and n429 > 0
            extra = f"; 429 in the ledger {n429}, seen by the client {t['statuses'].get('429', 0)}"
        elif cls == "cached":
            hits = q("SELECT count(*) FROM usage_records WHERE feature = ? AND cache = 'hit'", cls)
            ok = ok and hits == t["cache"].get("hit", 0) and hits > 0
            extra = f"; hits in the ledger {hits}, seen by the client {t['cache'].get('hit', 0)}"
        elif cls == "disconnect":
            s = con.execute("SELECT status, count(*) FROM usage_records WHERE feature = ? GROUP BY status", (cls,)).fetchall()
            extra = "; by status " + ", ".join(f"{a}: {b}" for a, b in s)
        row(ok, f"ledger: {cls}", f"{n} records for {t['sent']} sent; {good} with {what}{extra}")
    return 1 if FAILED else 0


def read_samples(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def trend(rows):
    """The least-squares slope of RSS over ROWS, in MiB per hour."""
    xs, ys = [r["t_s"] for r in rows], [r["rss_kib"] / 1024 for r in rows]
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600 if sxx else 0.0


def windows(samples, warmup, window, duration):
    """The samples of the last WINDOW s of the warm-up, and of the last WINDOW s of the load."""
    warm = [s for s in samples if warmup - window <= s["t_s"] <= warmup]
    end = [s for s in samples if duration - window <= s["t_s"] <= duration]
    return warm, end


def memory(path, warmup, window, duration, rss_pct, fd_slack):
    samples = read_samples(path)
    warm, end = windows(samples, warmup, window, duration)
    if not warm or not end:
        row(False, "samples", f"{len(samples)} samples: none in a window")
        return 1
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    rw, re_ = med(warm, "rss_kib") / 1024, med(end, "rss_kib") / 1024
    after = [s for s in samples if warmup <= s["t_s"] <= duration]
    peak = max(s["rss_kib"] for s in after) / 1024
    # Least-squares slopes of RSS in MiB per hour (information, not checks): after the warm-up,
    # and over the second half of that (a step early on weighs on the first, not the second).
    slope = trend(after)
    slope2 = trend([s for s in after if s["t_s"] >= (warmup + duration) / 2])
    d = (re_ - rw) / rw * 100
    row(abs(d) <= rss_pct, f"RSS plateau (±{rss_pct:g} %)",
        f"median of t = {warmup - window:g}-{warmup:g} s (end of warm-up) {rw:.1f} MiB, of t = "
        f"{duration - window:g}-{duration:g} s (end of the load) {re_:.1f} MiB: {d:+.1f} %; before the load "
        f"{samples[0]['rss_kib'] / 1024:.1f} MiB, peak after warm-up {peak:.1f} MiB, trend after warm-up "
        f"{slope:+.2f} MiB/h, over its second half {slope2:+.2f} MiB/h (least squares); {len(samples)} samples")
    fw, fe = med(warm, "fds"), med(end, "fds")
    fmax_w, fmax_e = max(r["fds"] for r in warm), max(r["fds"] for r in end)
    row(fe <= fw + fd_slack, f"no fd growth (slack {fd_slack:g})",
        f"open fds, median (max) of the same windows: {fw:.0f} ({fmax_w:.0f}) after warm-up, {fe:.0f} ({fmax_e:.0f}) at the end; "
        f"during the load {min(s['fds'] for s in samples if s['t_s'] <= duration):.0f}-"
        f"{max(s['fds'] for s in samples if s['t_s'] <= duration):.0f}, after it {samples[-1]['fds']:.0f} (before: {samples[0]['fds']:.0f})")
    tw, te = med(warm, "threads"), med(end, "threads")
    row(te <= tw, "no thread growth", f"{tw:.0f} after warm-up, {te:.0f} at the end")
    mw, me = med(warm, "mock_rss_kib") / 1024, med(end, "mock_rss_kib") / 1024
    print(f"| info | the mock's RSS | {mw:.1f} MiB after warm-up, {me:.1f} MiB at the end |")
    return 1 if FAILED else 0


INJECTING = ["error", "limited", "stream_cut", "disconnect"]


def classes(tally_file):
    """The per-class table of the tally."""
    t = json.load(open(tally_file))
    print("| class | what | req/s | sent | ok | injected | unexpected | statuses | max lag s |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for c, v in t.items():
        st = ", ".join(f"{k}: {n}" for k, n in sorted(v["statuses"].items())) or "-"
        if v["cache"]:
            st += " (cache " + ", ".join(f"{k} {n}" for k, n in sorted(v["cache"].items())) + ")"
        print(f"| {c} | {v['what']} | {v['rate']:g} | {v['sent']} | {v['ok']} | {v['injected']} | "
              f"{v['unexpected']} | {st} | {v['max_lag_s']:.2f} |")
    s = lambda k: sum(v[k] for v in t.values())  # noqa: E731
    print(f"| **all** | | {sum(v['rate'] for v in t.values()):g} | {s('sent')} | {s('ok')} | {s('injected')} | "
          f"{s('unexpected')} | | |")
    for c, v in t.items():
        for e in v["examples"]:
            print(f"\n{c}: {e}")


def outcomes(tally_file):
    """No unexpected failure; every class that injects one did."""
    t = json.load(open(tally_file))
    bad = {c: v["unexpected"] for c, v in t.items() if v["unexpected"]}
    row(not bad, "no unexpected failure",
        f"{sum(bad.values())} requests failed in a way their class does not inject"
        + (f" ({', '.join(f'{c}: {n}' for c, n in bad.items())}; examples under the table)" if bad else ""))
    none = [c for c in INJECTING if t[c]["injected"] == 0]
    row(not none, "every injected failure happened",
        ", ".join(f"{c} {t[c]['injected']}" for c in INJECTING) + (f"; none in {', '.join(none)}" if none else ""))
    return 1 if FAILED else 0


def plot(path, warmup, window, duration, rss_pct, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = read_samples(path)
    m = [r["t_s"] / 60 for r in s]
    fig, (a, b, c) = plt.subplots(3, 1, sharex=True, figsize=(9, 7.5), height_ratios=[3, 2, 1.5])
    a.plot(m, [r["rss_kib"] / 1024 for r in s], color="tab:blue", lw=1.2)
    warm, _ = windows(s, warmup, window, duration)
    if warm:
        base = statistics.median(r["rss_kib"] for r in warm) / 1024
        a.axhspan(base * (1 - rss_pct / 100), base * (1 + rss_pct / 100), color="tab:blue", alpha=0.08,
                  label=f"±{rss_pct:g} % of the RSS after warm-up")
        a.legend(loc="lower right")
    a.set_ylabel("gateway RSS (MiB)")
    a.set_ylim(bottom=0)
    b.plot(m, [r["fds"] for r in s], color="tab:orange", lw=1.2)
    b.set_ylabel("open fds")
    b.set_ylim(bottom=0)
    rate = [float("nan")] + [
        (s[i]["requests"] - s[i - 1]["requests"]) / (s[i]["t_s"] - s[i - 1]["t_s"]) for i in range(1, len(s))
    ]
    c.plot(m, rate, color="tab:green", lw=0.8)
    c.set_ylabel("req/s")
    c.set_ylim(bottom=0)
    c.set_xlabel("minutes since the load started")
    for ax in (a, b, c):
        ax.axvline(warmup / 60, color="grey", ls="--", lw=1)
        ax.axvspan((warmup - window) / 60, warmup / 60, color="grey", alpha=0.15)
        ax.axvspan((duration - window) / 60, duration / 60, color="grey", alpha=0.15)
        ax.grid(alpha=0.3)
    a.text(warmup / 60, a.get_ylim()[1] * 0.02, " end of warm-up", color="grey", va="bottom")
    a.set_title("Tollgate soak: gateway RSS, open fds and load (shaded: the compared windows)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "load":
        port, seconds, out = int(argv[2]), float(argv[3]), argv[4]
        scale = float(argv[5]) if len(argv) > 5 else 1.0
        t = asyncio.run(load(port, seconds, scale, os.environ.get("SOAK_LIMITED_KEY", "")))
        json.dump(t, open(out, "w"), indent=1)
        return 0
    if cmd == "ledger":
        return ledger(argv[2], argv[3], int(argv[4]))
    if cmd == "memory":
        return memory(argv[2], *map(float, argv[3:8]))
    if cmd == "classes":
        return classes(argv[2]) or 0
    if cmd == "outcomes":
        return outcomes(argv[2])
    if cmd == "sent":
        print(sum(v["sent"] for v in json.load(open(argv[2])).values()))
        return 0
    if cmd == "plot":
        plot(argv[2], *map(float, argv[3:7]), argv[7])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
