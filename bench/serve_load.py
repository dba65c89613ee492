"""Load test of a running letter service (serve.py): requests/s and latency at 1, 4 and 8 concurrent clients.

Each level sends a fixed number of POST /v1/letters requests (--requests, default 16) from that many client
threads, then stops; nothing runs open-ended. Per level: requests/s, new tokens/s, p50/p95/max latency,
the mean batch size the service reported, and generate calls per letter (from /healthz before and after).
Concurrency 1 is the sequential baseline: the speedup column is each level's requests/s over it.
With --stream the clients call POST /v1/letters/stream instead (what the extension does) and the time to
the first `token` event is measured too (p50/p95 TTFT).

Run (from the repository root), against a service already started on 127.0.0.1:
  python serve.py --run runs/demo &                              # or: python serve.py  (embedded SmolLM2)
  python bench/serve_load.py --url http://127.0.0.1:8765
  python bench/serve_load.py --levels 1,4,8 --requests 24 --max_new_tokens 128 --out runs/demo/serve_load.json
  python bench/serve_load.py --stream --levels 1,4 --requests 8 --max_new_tokens 64

Only the standard library is used; --token (or COVERLORA_TOKEN) for a service started with a token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# Realistic, varied inputs (each request gets the next one): prompt lengths differ as they would.
JOBS = [
    ({"title": "Data Analyst", "company": "Acme Corp", "preferred_qualifications": "3+ years of SQL and Tableau; "
      "experience with A/B testing and stakeholder reporting."},
     {"name": "Ana Silva", "current_experience": "Data Analyst at Bar Inc for 3 years: dashboards, SQL, churn models.",
      "past_experience": "Junior Analyst at Foo Ltd for 2 years.", "skills": "SQL, Tableau, Python, Excel",
      "qualifications": "BSc in Statistics"}),
    ({"title": "Backend Engineer", "company": "Globex", "preferred_qualifications": "Go, PostgreSQL, Kubernetes."},
     {"name": "Ben Okafor", "current_experience": "Software Engineer at Initech for 4 years (Go services).",
      "past_experience": "", "skills": "Go, PostgreSQL, Docker", "qualifications": "BEng in Computer Science"}),
    ({"title": "Registered Nurse", "company": "Umbrella Health", "preferred_qualifications": "",
      "posting": "We are hiring a Registered Nurse for our cardiology ward. You will provide patient care, "
                 "administer medication and work with physicians. BLS certification required."},
     {"name": "Dana Kim", "current_experience": "Staff Nurse at City Hospital for 5 years.",
      "past_experience": "Nursing assistant for 2 years.", "skills": "Patient care, BLS, EHR",
      "qualifications": "BSN, RN license"}),
    ({"title": "Product Manager", "company": "Stark Industries",
      "preferred_qualifications": "5+ years of product management, roadmaps, Jira."},
     {"name": "Chen Wei", "current_experience": "Product Manager at Wayne Finance for 6 years.",
      "past_experience": "Business Analyst for 3 years.", "skills": "Roadmaps, Jira, user research",
      "qualifications": "MBA"}),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


class Client:
    def __init__(self, url: str, token: str | None, timeout: float, stream: bool = False):
        self.url, self.timeout, self.stream = url.rstrip("/"), timeout, stream
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)

    def letter(self, body: dict) -> tuple[int, dict, float]:
        """(status, the LetterResponse or {detail}, seconds); over a stream the payload also has `ttft_s`."""
        path = "/v1/letters/stream" if self.stream else "/v1/letters"
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=self.headers,
                                         method="POST")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
                payload = read_stream(response, started) if self.stream else json.load(response)
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, {"detail": exc.read().decode("utf-8", "replace")[:200]}
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            status, payload = 0, {"detail": str(exc)}
        if status == 200 and "error" in payload:
            status = 0  # the stream ended in an `error` event
        return status, payload, time.perf_counter() - started


def read_stream(response, started: float) -> dict:
    """The `done` event's answer plus `ttft_s` (seconds to the first `token` event) and `queued` (queued events)."""
    event, ttft, queued, done = "message", None, 0, {"error": "the stream ended before `done`"}
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:])
            if event == "token" and ttft is None:
                ttft = time.perf_counter() - started
            elif event == "queued":
                queued += 1
            elif event == "done":
                done = data
            elif event == "error":
                done = {"error": data.get("detail"), "detail": data.get("detail")}
    return {**done, "ttft_s": ttft, "queued_events": queued}


def run_level(client: Client, concurrency: int, requests: int, max_new_tokens: int | None) -> dict:
    bodies = []
    for i in range(requests):
        job, resume = JOBS[i % len(JOBS)]
        body = {"job": dict(job), "resume": dict(resume)}
        if max_new_tokens:
            body["max_new_tokens"] = max_new_tokens
        bodies.append(body)
    before = client.get("/healthz")["generate_calls"]
    results: list[tuple[int, dict, float]] = []
    lock = threading.Lock()
    next_index = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            result = client.letter(bodies[i])
            with lock:
                results.append(result)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    wall = time.perf_counter() - started
    calls = client.get("/healthz")["generate_calls"] - before
    ok = [(payload, seconds) for status, payload, seconds in results if status == 200]
    errors = [f"{status}: {payload.get('detail')}" for status, payload, _ in results if status != 200]
    latencies = [seconds for _, seconds in ok]
    tokens = sum(payload["new_tokens"] for payload, _ in ok)
    ttfts = [payload["ttft_s"] for payload, _ in ok if payload.get("ttft_s") is not None]
    return {
        "concurrency": concurrency, "requests": requests, "ok": len(ok), "errors": len(errors),
        "first_errors": errors[:3], "wall_s": round(wall, 3), "requests_per_s": round(len(ok) / wall, 3),
        "new_tokens_per_s": round(tokens / wall, 1),
        "latency_p50_s": round(percentile(latencies, 0.5), 3), "latency_p95_s": round(percentile(latencies, 0.95), 3),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "mean_batch_size": round(statistics.mean(p["batch_size"] for p, _ in ok), 2) if ok else None,
        "mean_new_tokens": round(tokens / len(ok), 1) if ok else None,
        "generate_calls": calls,
        **({"ttft_p50_s": round(percentile(ttfts, 0.5), 3), "ttft_p95_s": round(percentile(ttfts, 0.95), 3),
            "queued_events": sum(payload.get("queued_events", 0) for payload, _ in ok)} if client.stream else {}),
    }


def table_line(row: dict | None, stream: bool) -> str:
    """One line of the printed table (the header when `row` is None); a stream run adds the TTFT columns."""
    columns = [("clients", 7, "concurrency", "d"), ("req/s", 7, "requests_per_s", ".2f"),
               ("speedup", 7, "speedup_vs_1", ".2f"), ("tok/s", 8, "new_tokens_per_s", ".1f"),
               ("p50 s", 7, "latency_p50_s", ".2f"), ("p95 s", 7, "latency_p95_s", ".2f"),
               ("max s", 7, "latency_max_s", ".2f"), ("batch", 6, "mean_batch_size", ".2f"),
               ("calls", 6, "generate_calls", "d"), ("errors", 6, "errors", "d")]
    if stream:
        columns[3:3] = [("tok x", 6, "tokens_speedup_vs_1", ".2f"), ("ttft50", 7, "ttft_p50_s", ".2f"),
                        ("ttft95", 7, "ttft_p95_s", ".2f")]
    if row is None:
        return " ".join(f"{name:>{width}}" for name, width, _, _ in columns)
    return " ".join(f"{row[key]:>{width}{fmt}}" if row.get(key) is not None else f"{'-':>{width}}"
                    for _, width, key, fmt in columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765", help="the running service")
    parser.add_argument("--levels", default="1,4,8", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (bounded run)")
    parser.add_argument("--max_new_tokens", type=int, default=0, help="per-request cap (0 = the service's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request before it counts as failed")
    parser.add_argument("--token", default=os.environ.get("COVERLORA_TOKEN"), help="bearer token, if the service has one")
    parser.add_argument("--no-warmup", action="store_true", help="skip the one untimed warm-up request")
    parser.add_argument("--stream", action="store_true", help="POST /v1/letters/stream and time the first token")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",") if level.strip()]
    if args.requests < 1 or not levels or min(levels) < 1:
        parser.error("--requests and every level must be positive")

    client = Client(args.url, args.token, args.timeout, args.stream)
    try:
        health = client.get("/healthz")
    except (urllib.error.URLError, ConnectionError) as exc:
        print(f"error: no service at {args.url} ({exc}); start it with: python serve.py", file=sys.stderr)
        return 2
    print(f"service: {args.url}  model: {health['model']}  max_new_tokens: "
          f"{args.max_new_tokens or health['limits']['max_new_tokens']}  requests per level: {args.requests}")
    if not args.no_warmup:
        status, payload, seconds = client.letter({"job": JOBS[0][0], "resume": JOBS[0][1],
                                                  **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {})})
        if status != 200:
            print(f"error: warm-up request failed: {status} {payload.get('detail')}", file=sys.stderr)
            return 1
        print(f"warm-up: {seconds:.2f} s, {payload['new_tokens']} new tokens")

    rows = []
    print(table_line(None, args.stream))
    for level in levels:
        row = run_level(client, level, args.requests, args.max_new_tokens or None)
        base = rows[0] if rows and rows[0]["concurrency"] == 1 else None
        for key, rate in (("speedup_vs_1", "requests_per_s"), ("tokens_speedup_vs_1", "new_tokens_per_s")):
            row[key] = round(row[rate] / base[rate], 2) if base and base[rate] else (1.0 if level == 1 else None)
        rows.append(row)
        print(table_line(row, args.stream))
        for error in row["first_errors"]:
            print(f"        error: {error}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"url": args.url, "model": health["model"], "levels": rows}, handle, indent=2)
        print(f"results: {args.out}")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
