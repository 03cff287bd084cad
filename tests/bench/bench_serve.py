#!/usr/bin/python3
"""`mmsearch serve` benchmark (issue 13): numbers, not assertions.

On one store: N imported BLIP-2 items (synthetic vectors shaped like a photo collection, the same
generator as bench_query.py) searched with the full-size deterministic-weight blip2-vitL text
model, plus the demo dishes indexed with dishes-tiny for the thumbnails (imported items have no
files). It reports
  * warm text-query latency, p50/p99, as the client sees it, split into the text forward (the
    server's own phases_ms.forward) and the rest (HTTP, JSON, tokenising, search, queueing);
  * thumbnails per second, cold (decode + resize + JPEG) and cached;
  * 20 concurrent clients for 60 s: requests, errors, throughput, latency, and the server's RSS
    sampled each second (first 10 s against the last 10 s).
Prints a markdown table; docs/PERFORMANCE.md holds the latest one.

Usage: tests/bench/bench_serve.py --bin build/mmsearch --models build/golden-models \\
           --work /tmp/bench-serve [--items 100000] [--clients 20] [--seconds 60]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_query  # noqa: E402  (the synthetic collection and the bench queries)

REPO = Path(__file__).resolve().parents[2]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def post(base, body, timeout=120):
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + "/api/query", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def get(base, path, timeout=60):
    with urllib.request.urlopen(base + path, timeout=timeout) as r:
        return r.read()


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path, help="holds blip2-vitL (full size)")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60, help="sequential warm queries")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    gen = argparse.Namespace(themes=2000, image_noise=1.0, query_noise=1.0)

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    home, root, dishes = work / "home", work / "imported", work / "dishes"
    env = dict(os.environ, MMSEARCH_MODELS=str(args.models), MMSEARCH_HOME=str(home),
               MMSEARCH_DTYPE=os.environ.get("MMSEARCH_DTYPE", "fp32"))
    model, per_item = bench_query.SHAPES["blip2"]
    queries = bench_query.query_vectors(args.bin, model, args.models, work)
    bench_query.generate(work / "import", args.items, per_item, queries, gen)
    (root / "img").mkdir(parents=True)
    subprocess.run([args.bin, "import", work / "import", "--model", model, "--root", root,
                    "--json"], env=env, check=True, capture_output=True)
    shutil.rmtree(work / "import")
    shutil.copytree(REPO / "data" / "dishes", dishes)
    subprocess.run([args.bin, "index", dishes, "--model", "dishes-tiny", "-q"], env=env, check=True)

    server = subprocess.Popen([args.bin, "serve", root, dishes, "--port", "0", "--json",
                               "--jobs", "2"], env=env, stdout=subprocess.PIPE,
                              stderr=open(work / "serve.log", "w"), text=True)
    info = json.loads(server.stdout.readline())
    base = f"http://127.0.0.1:{info['port']}"
    rows = {}
    try:
        # Warm-up: the first forwards of a TorchScript module are slower (profiling runs).
        for text in bench_query.QUERIES[:5]:
            post(base, {"text": text, "k": 10, "folder": str(root)})
        client_ms, forward_ms, rest_ms, search_ms = [], [], [], []
        for i in range(args.queries):
            text = bench_query.QUERIES[i % len(bench_query.QUERIES)]
            start = time.perf_counter()
            answer = post(base, {"text": text, "k": 24, "folder": str(root)})
            wall = (time.perf_counter() - start) * 1000
            client_ms.append(wall)
            forward_ms.append(answer["phases_ms"]["forward"])
            rest_ms.append(wall - answer["phases_ms"]["forward"])
            search_ms.append(answer["phases_ms"]["search"])
        rows["searched"] = answer["searched"]
        rows["latency"] = {"p50": pct(client_ms, 50), "p99": pct(client_ms, 99),
                           "forward_p50": pct(forward_ms, 50), "forward_p99": pct(forward_ms, 99),
                           "rest_p50": pct(rest_ms, 50), "rest_p99": pct(rest_ms, 99),
                           "search_p50": pct(search_ms, 50)}

        # Thumbnails of the dishes: every photo once cold, then again from the cache.
        photos = sorted(str(p) for p in dishes.rglob("*.jpg"))
        for label in ("cold", "cached"):
            start = time.perf_counter()
            for p in photos:
                get(base, "/api/thumbnail?path=" + urllib.parse.quote(p) + "&size=256")
            rows[f"thumbnails_{label}_per_s"] = len(photos) / (time.perf_counter() - start)

        # 20 clients for 60 s: text queries over the 100k items, with a thumbnail fetch and a
        # "more like this" now and then, as a page does.
        stop_at = time.monotonic() + args.seconds
        counts = {"requests": 0, "errors": 0}
        latencies, error_samples = [], []
        lock = threading.Lock()

        def client(seed):
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                kind = rng.random()
                start = time.perf_counter()
                try:
                    if kind < 0.7:
                        post(base, {"text": rng.choice(bench_query.QUERIES), "k": 24,
                                    "folder": str(root)})
                    elif kind < 0.9:
                        get(base, "/api/thumbnail?path=" + urllib.parse.quote(rng.choice(photos)))
                    else:
                        post(base, {"terms": [{"similar": rng.choice(photos)}], "k": 24,
                                    "folder": str(dishes)})
                    ok = True
                except Exception as e:  # noqa: BLE001 - counted
                    ok = False
                    with lock:
                        if len(error_samples) < 5:
                            error_samples.append(repr(e))
                with lock:
                    counts["requests"] += 1
                    counts["errors"] += 0 if ok else 1
                    if ok:
                        latencies.append((time.perf_counter() - start) * 1000)

        rss = []
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append(rss_mb(server.pid))
            time.sleep(1)
        for t in threads:
            t.join()
        health = json.loads(get(base, "/api/health"))
        rows["load"] = {"clients": args.clients, "seconds": args.seconds, **counts,
                        "per_s": counts["requests"] / args.seconds,
                        "p50": pct(latencies, 50), "p99": pct(latencies, 99),
                        "server_errors": health["server_errors"],
                        "client_errors": health["client_errors"],
                        "rss_first10_mb": max(rss[:10]) if rss else 0,
                        "rss_last10_mb": max(rss[-10:]) if rss else 0,
                        "rss_peak_mb": max(rss) if rss else 0, "error_samples": error_samples}
    finally:
        server.terminate()
        rows["exit_code"] = server.wait(timeout=60)

    lat, load = rows["latency"], rows["load"]
    print(f"\n`mmsearch serve`, {rows['searched']:,} imported BLIP-2 items (blip2-vitL text model, "
          f"full size, {env['MMSEARCH_DTYPE']}), {os.cpu_count()} cores\n")
    print("| measure | p50 | p99 |")
    print("|---|---:|---:|")
    print(f"| warm text query, client wall (ms) | {lat['p50']:.1f} | {lat['p99']:.1f} |")
    print(f"| of which text forward (ms) | {lat['forward_p50']:.1f} | {lat['forward_p99']:.1f} |")
    print(f"| of which the rest: HTTP, JSON, tokenise, search (ms) | {lat['rest_p50']:.1f} | "
          f"{lat['rest_p99']:.1f} |")
    print(f"| of which search (ms) | {lat['search_p50']:.1f} | |")
    print(f"\n| thumbnails (256 px, {len(photos)} photos) | per second |\n|---|---:|")
    print(f"| cold: decode, resize, JPEG | {rows['thumbnails_cold_per_s']:.1f} |")
    print(f"| cached | {rows['thumbnails_cached_per_s']:.1f} |")
    print(f"\n| {load['clients']} clients, {load['seconds']:.0f} s (70% text queries, 20% "
          "thumbnails, 10% more-like-this) | value |\n|---|---:|")
    print(f"| requests | {load['requests']} ({load['per_s']:.1f}/s) |")
    print(f"| errors (client side / server 5xx / 4xx) | {load['errors']} / "
          f"{load['server_errors']} / {load['client_errors']} |")
    print(f"| latency p50 / p99 (ms) | {load['p50']:.0f} / {load['p99']:.0f} |")
    print(f"| server RSS: peak of first 10 s / last 10 s / peak (MB) | "
          f"{load['rss_first10_mb']:.0f} / {load['rss_last10_mb']:.0f} / {load['rss_peak_mb']:.0f} |")
    print(f"| exit code after SIGTERM | {rows['exit_code']} |")
    if load["error_samples"]:
        print("\nerrors seen:", *load["error_samples"], sep="\n  ")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
