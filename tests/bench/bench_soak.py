#!/usr/bin/python3
"""Concurrency soak (issue 12, item 4; a bench, not a test): for --seconds, one indexer adds,
copies, touches, rewrites, renames and deletes photos in a folder and runs `mmsearch index` on
it, while --clients processes query it in a loop and another loops `mmsearch eval` (on the
same folder, which makes it a second writer, and on a fixed second folder with another model).
Then it stops mutating, indexes once more and checks that nothing was lost or kept stale.

  tests/bench/bench_soak.py [--seconds 600] [--clients 4] [--bin B] [--models DIR]
                            [--work DIR] [--json-out FILE] [--seed S]

Everything runs through the real binary, copied (with the bundles it uses) into --work first,
so that a rebuild of build/mmsearch during the soak changes nothing. MMSEARCH_HOME is a fresh
folder under --work. The photos come from ../shared/data/photos (copied into --work).

What counts as an error (each kind is counted and up to a few samples are kept):
- index: an exit other than 0, or exit 6 with a failure on a file nobody touched during that
  run; a `found` that differs from the files on disk when nothing changed during the run;
- query: a non-zero exit (but exit 3 on a query image that was being renamed, deleted or
  rewritten at that moment is a race), JSON that does not parse, a result path that was never
  a file of the folder ("phantom"), ranks or scores out of order, fewer results than
  min(k, searched), the query image among its own results, a result naming a file deleted
  before an index run that completed before the query started ("stale"), or, in the full
  listings (-k 100000), a file missing that was settled before such a run ("missing");
  stale or missing rows that a concurrent `eval` (a second writer with an older view of the
  folder) can explain are counted as races, apart;
- eval: a non-zero exit, bad JSON, a skipped file nobody touched during the run;
- any command killed by a signal or running past --timeout.
At the end: the final index must exit 0 and a second run must find everything unchanged; the
store's rows under the folder (from `export-vectors`) must be exactly the image files on disk,
each with vectors equal to a fresh `mmsearch embed` of its current content, its captions and
category as the captions file says; `PRAGMA integrity_check` and `quick_check` must say ok;
segments' live counts must match their rows and no segment file may be orphaned or missing.
"""
import argparse
import csv
import io
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MMSEARCH_SHARED_DIR", REPO.parent / "shared"))
EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_INDEX, EXIT_PARTIAL = 0, 2, 3, 4, 5, 6
LISTING_K = 100000
MUTABLE_DIRS = ["a", "b", "c", "c/deep"]
QUERY_TEXTS = [
    "pizza", "a plate of pasta", "fruit on a table", "a cup of coffee", "a rocket at night",
    "a flower", "a salad with chicken", "lasagne with ragù", "tiramisù", "bread and cheese",
    "2:pizza", "-mushrooms", "a burger and fries", "eggs and bacon", "a cat", "x",
]
# libstdc++'s std::filesystem::file_time_type counts from 2174-01-01: a store may hold mtimes
# on that clock rather than on the Unix one. Both are accepted, consistently for every row.
LIBSTDCXX_FILE_CLOCK_OFFSET_NS = -6437664000 * 10**9


def now() -> float:
    return time.monotonic()


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    rank = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


class Errors:
    """Errors and races by kind, with a few samples each."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors = Counter()
        self.races = Counter()
        self.samples = defaultdict(list)

    def error(self, kind, detail):
        with self.lock:
            self.errors[kind] += 1
            if len(self.samples[kind]) < 5:
                self.samples[kind].append(detail)
        print(f"soak: ERROR {kind}: {str(detail)[:600]}", file=sys.stderr, flush=True)

    def race(self, kind, detail=None):
        with self.lock:
            self.races[kind] += 1
            if detail is not None and len(self.samples["race:" + kind]) < 3:
                self.samples["race:" + kind].append(detail)


class Run:
    """One process run by a soak thread."""

    def __init__(self, start, end=None, rc=None, failures=()):
        self.start, self.end, self.rc, self.failures = start, end, rc, set(failures)


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.errors = Errors()
        self.stop = threading.Event()
        self.lock = threading.RLock()  # guards everything below
        self.files = {}  # rel -> {"src": name, "kind": "copy"|"variant"|"stable"}
        self.ever = set()  # absolute paths that were ever a photo of the folder
        self.events = defaultdict(list)  # abs path -> [(t0, t1, kind)]
        self.mutations = Counter()
        self.captions_rows = {}  # rel -> (captions, category) as the captions file says now
        self.index_runs = []  # completed `index` runs of the indexer
        self.eval_live_runs = []  # `eval` runs on the live folder, end None while running
        self.index_totals = Counter()
        self.index_seconds = []
        self.eval_runs = Counter()
        self.eval_seconds = []
        self.queries = Counter()
        self.latency = defaultdict(list)  # kind -> [seconds]
        self.counter = 0
        self.checks = Counter()  # how many times each mid-run check had something to check

    # -----------------------------------------------------------------------------------------
    # Set-up.

    def setup(self):
        a = self.args
        work = a.work
        if work.exists():
            shutil.rmtree(work)
        (work / "bin").mkdir(parents=True)
        # A private copy of the binary and of the bundles it uses: build/ may be rebuilt meanwhile.
        self.bin = work / "bin" / "mmsearch"
        shutil.copy2(a.bin, self.bin)
        self.models = work / "models"
        for m in {a.model, a.eval_model}:
            shutil.copytree(a.models / m, self.models / m)
        self.home = work / "home"
        self.live = work / "live"
        self.fixed = work / "fixed"
        self.tmpdir = work / "tmp"
        self.tmpdir.mkdir()
        photos = SHARED / "data" / "photos"
        if not photos.is_dir():
            sys.exit(f"bench_soak: the shared photos are not at {photos}; set MMSEARCH_SHARED_DIR")
        with open(photos / "captions.csv", newline="", encoding="utf-8") as f:
            self.src_captions = {row["file"]: row["caption"] for row in csv.DictReader(f)}
        self.sources = sorted(p.name for p in photos.iterdir()
                              if p.suffix.lower() in (".jpg", ".png") and p.name in self.src_captions)
        self.src_dir = work / "sources"
        shutil.copytree(photos, self.src_dir)
        shutil.copytree(photos, self.fixed)  # eval's fixed folder: the photos and their captions
        # Smaller decoded copies to draw new content from.
        self.src_images = {}
        for name in self.sources:
            with Image.open(self.src_dir / name) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((384, 384))
                self.src_images[name] = im.copy()
        # The live folder: stable/ is never touched (the image queries use it), the rest is.
        rng = random.Random(self.args.seed + 1)
        order = self.sources[:]
        rng.shuffle(order)
        for i, name in enumerate(order):
            if i < a.stable:
                rel = f"stable/{name}"
                self._write_atomic(rel, (self.src_dir / name).read_bytes(), "stable", name)
            else:
                sub = MUTABLE_DIRS[i % len(MUTABLE_DIRS)]
                self._write_atomic(f"{sub}/{self._fresh_name(name)}",
                                   (self.src_dir / name).read_bytes(), "copy", name)
        self.stable = sorted(r for r, info in self.files.items() if info["kind"] == "stable")
        self._write_captions(rng, initial=True)
        self.mutations.clear()

    def env(self):
        e = dict(os.environ)
        e.update({"MMSEARCH_HOME": str(self.home), "OMP_NUM_THREADS": "1",
                  "MMSEARCH_DTYPE": "fp32"})
        e.pop("MMSEARCH_MODELS", None)
        e.pop("MMSEARCH_DEFAULT_MODEL", None)
        return e

    def argv(self, *args):
        return [str(self.bin), "--models", str(self.models), "--threads", str(self.args.threads),
                *[str(x) for x in args]]

    def run(self, *args, timeout=None):
        """Runs mmsearch; returns (rc, stdout, stderr, seconds). A timeout kills it (rc None)."""
        t0 = now()
        try:
            p = subprocess.run(self.argv(*args), capture_output=True, env=self.env(),
                               cwd=self.args.work, timeout=timeout or self.args.timeout)
            return p.returncode, p.stdout, p.stderr.decode(errors="replace"), now() - t0
        except subprocess.TimeoutExpired as e:
            return None, e.stdout or b"", (e.stderr or b"").decode(errors="replace"), now() - t0

    def check_rc(self, what, rc, err, argv_tail):
        """Errors for signals and timeouts. Returns True when rc is a plain exit code."""
        if rc is None:
            self.errors.error(f"{what}_timeout", {"argv": argv_tail, "stderr": err[-2000:]})
            return False
        if rc < 0:
            self.errors.error(f"{what}_signal_{-rc}", {"argv": argv_tail, "stderr": err[-2000:]})
            return False
        return True

    # -----------------------------------------------------------------------------------------
    # The folder and its history.

    def _abs(self, rel):
        return str(self.live / rel)

    def _fresh_name(self, src, ext=None):
        self.counter += 1
        stem, suffix = os.path.splitext(src)
        return f"n{self.counter:05d}-{stem}{ext or suffix}"

    def _event(self, rel, t0, kind):
        self.events[self._abs(rel)].append((t0, now(), kind))

    def _write_atomic(self, rel, data, kind, src):
        path = self.live / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{self.counter}-{os.getpid()}"  # hidden: never indexed
        tmp.write_bytes(data)
        with self.lock:
            self.ever.add(str(path))
            t0 = now()
            os.replace(tmp, path)
            self.files[rel] = {"src": src, "kind": kind}
            self._event(rel, t0, "write")

    def _write_in_place(self, rel, data, slow):
        """Truncates and writes in chunks, as a camera or a copy tool does."""
        with self.lock:
            t0 = now()
        with open(self.live / rel, "wb") as f:
            for i in range(0, len(data), 16384):
                f.write(data[i:i + 16384])
                f.flush()
                if slow:
                    time.sleep(0.002)
        with self.lock:
            self._event(rel, t0, "write")

    def _variant(self, src, ext, avoid_size=None):
        rng = self.rng
        im = self.src_images[src]
        for _ in range(10):
            w, h = im.size
            f = rng.uniform(0.55, 1.0)
            cw, ch = max(8, int(w * f)), max(8, int(h * f))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            v = im.crop((x, y, x + cw, y + ch))
            side = rng.randint(64, 224)
            v.thumbnail((side, side))
            if rng.random() < 0.5:
                v = ImageOps.mirror(v)
            if rng.random() < 0.25:
                v = v.rotate(90, expand=True)
            v = ImageEnhance.Color(v).enhance(rng.uniform(0.5, 1.5))
            v = ImageEnhance.Brightness(v).enhance(rng.uniform(0.7, 1.3))
            buf = io.BytesIO()
            if ext == ".png":
                v.save(buf, format="PNG")
            else:
                v.save(buf, format="JPEG", quality=rng.randint(60, 95))
            data = buf.getvalue()
            if len(data) != avoid_size:
                return data
        raise RuntimeError("could not make a variant of another size")

    def mutable(self):
        return sorted(r for r, info in self.files.items() if info["kind"] != "stable")

    def mutate(self, slow=False):
        """One random change to the folder. Returns its kind."""
        rng = self.rng
        mutable = self.mutable()
        n, target = len(mutable), self.args.files
        weights = {"add_copy": 12, "add_new": 12, "touch": 10, "rewrite": 10,
                   "rewrite_in_place": 5, "rename": 12, "rename_dir": 6, "rename_over": 3,
                   "delete": 20, "captions": 4}
        if n < target * 0.8:
            weights["delete"] = 2
        elif n > target * 1.2:
            weights["add_copy"] = weights["add_new"] = 2
        if n < 4:
            weights = {"add_copy": 1, "add_new": 1}
        kind = rng.choices(list(weights), list(weights.values()))[0]
        if kind in ("add_copy", "add_new"):
            src = rng.choice(self.sources)
            sub = rng.choice(MUTABLE_DIRS)
            if kind == "add_copy":  # byte-identical to a photo: its vectors are reused by hash
                rel = f"{sub}/{self._fresh_name(src)}"
                self._write_atomic(rel, (self.src_dir / src).read_bytes(), "copy", src)
            else:
                ext = rng.choice([".jpg", ".png"])
                rel = f"{sub}/{self._fresh_name(src, ext)}"
                self._write_atomic(rel, self._variant(src, ext), "variant", src)
        elif kind == "touch":
            rel = rng.choice(mutable)
            with self.lock:
                t0 = now()
                t = time.time()
                os.utime(self.live / rel, (t, t))
                self._event(rel, t0, "touch")
        elif kind in ("rewrite", "rewrite_in_place"):
            rel = rng.choice(mutable)
            src = rng.choice(self.sources)
            ext = os.path.splitext(rel)[1]
            data = self._variant(src, ".png" if ext == ".png" else ".jpg",
                                 avoid_size=(self.live / rel).stat().st_size)
            with self.lock:
                self.files[rel] = {"src": src, "kind": "variant"}
            if kind == "rewrite":
                self._write_atomic(rel, data, "variant", src)
            else:
                self._write_in_place(rel, data, slow)
        elif kind in ("rename", "rename_dir", "rename_over"):
            rel = rng.choice(mutable)
            info = self.files[rel]
            if kind == "rename_over":
                others = [r for r in mutable if r != rel]
                new = rng.choice(others)
            else:
                sub = os.path.dirname(rel) if kind == "rename" else rng.choice(
                    [d for d in MUTABLE_DIRS if d != os.path.dirname(rel)])
                new = f"{sub}/{self._fresh_name(info['src'], os.path.splitext(rel)[1])}"
            with self.lock:
                self.ever.add(self._abs(new))
                t0 = now()
                os.rename(self.live / rel, self.live / new)
                del self.files[rel]
                self.files[new] = info
                self._event(rel, t0, "gone")
                self._event(new, t0, "write")
        elif kind == "delete":
            rel = rng.choice(mutable)
            with self.lock:
                t0 = now()
                os.unlink(self.live / rel)
                del self.files[rel]
                self._event(rel, t0, "gone")
        elif kind == "captions":
            self._write_captions(rng)
        with self.lock:
            self.mutations[kind] += 1
        return kind

    def _write_captions(self, rng, initial=False):
        """Rewrites captions.csv (atomically) for most current files; some captions edited."""
        rows = {}
        for rel, info in sorted(self.files.items()):
            if not initial and info["kind"] != "stable" and rng.random() < 0.2:
                continue  # left without a caption
            caption = self.src_captions[info["src"]]
            caps = [caption]
            if not initial and rng.random() < 0.3:
                self.counter += 1
                caps = [f"{caption} (soak edit {self.counter}, “ragù”, a 12\" pizza)"]
                if rng.random() < 0.3:
                    caps.append(f"a second caption {self.counter}, with a comma")
            rows[rel] = (caps, "soak-" + rel.split("/")[0])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "caption", "category"])
        for rel, (caps, cat) in rows.items():
            for c in caps:
                w.writerow([rel, c, cat])
        tmp = self.live / f".captions-{os.getpid()}.tmp"
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        with self.lock:
            os.replace(tmp, self.live / "captions.csv")
            self.captions_rows = rows

    def touched_during(self, path, t0, t1):
        """Whether path changed (or was picked moments before) between t0 and t1."""
        return any(e1 >= t0 and e0 <= t1 for e0, e1, _ in self.events.get(path, ()))

    def disk_images(self):
        out = set()
        for dirpath, dirnames, filenames in os.walk(self.live):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and f != "captions.csv":
                    out.add(os.path.join(dirpath, f))
        return out

    # -----------------------------------------------------------------------------------------
    # The indexer.

    def index_once(self, during=0, label="index", batch_size=None):
        """Runs `index` on the live folder, with `during` mutations while it runs."""
        argv = ["index", self.live, "--model", self.args.model, "--json"]
        if batch_size:
            argv += ["--batch-size", batch_size]
        with self.lock:
            disk_before = len(self.files)
            start = now()
        proc = subprocess.Popen(self.argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env(), cwd=self.args.work)
        for _ in range(during):
            time.sleep(self.rng.uniform(0.0, 0.4))
            self.mutate(slow=True)
        try:
            out, err = proc.communicate(timeout=self.args.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            rc = None
        end = now()
        err = err.decode(errors="replace")
        self.index_seconds.append(end - start)
        run = Run(start, end, rc)
        tail = [str(x) for x in argv]
        if not self.check_rc(label, rc, err, tail):
            return run, None
        summary = None
        try:
            summary = json.loads(out)
        except ValueError:
            if rc in (EXIT_OK, EXIT_PARTIAL):
                self.errors.error(f"{label}_bad_json", {"stdout": out[:500], "stderr": err[-1000:]})
        if rc == EXIT_INPUT and "would remove" in err:
            self.errors.error(f"{label}_removal_guard", {"stderr": err[-1500:]})
        elif rc not in (EXIT_OK, EXIT_PARTIAL):
            self.errors.error(f"{label}_exit_{rc}", {"argv": tail, "stderr": err[-2000:]})
        if summary is not None:
            for key in ("found", "indexed", "reused", "unchanged", "removed", "failed"):
                self.index_totals[key] += summary.get(key, 0)
            failures = summary.get("failures", [])
            run.failures = {f.get("path") for f in failures}
            with self.lock:
                for f in failures:
                    if self.touched_during(f.get("path"), start, end):
                        self.errors.race("index_failed_on_a_file_changed_during_the_run")
                    else:
                        self.errors.error(f"{label}_failed_file", {"failure": f,
                                                                    "stderr": err[-1000:]})
                quiet = not any(self.touched_during(p, start, end) for p in self.events)
            counted = sum(summary.get(k, 0) for k in ("indexed", "reused", "unchanged", "failed"))
            if counted != summary.get("found"):
                self.errors.error(f"{label}_summary_does_not_add_up", {
                    k: summary.get(k) for k in ("found", "indexed", "reused", "unchanged",
                                                "removed", "failed")})
            if during == 0 and quiet and summary.get("found") != disk_before:
                self.errors.error(f"{label}_found_mismatch",
                                  {"found": summary.get("found"), "on_disk": disk_before})
        run.rc = rc
        return run, summary

    def indexer(self, deadline):
        rng = self.rng
        while now() < deadline:
            for _ in range(rng.randint(1, 4)):
                self.mutate()
            during = rng.choice([0, 0, 0, 1, 2]) if self.args.during else 0
            run, _ = self.index_once(during=during, batch_size=rng.choice([None, 1, 4, 16]))
            with self.lock:
                self.index_runs.append(run)
            time.sleep(rng.uniform(0, self.args.pause))

    # -----------------------------------------------------------------------------------------
    # Query clients.

    def client(self, cid):
        rng = random.Random(self.args.seed * 100 + cid)
        while not self.stop.is_set():
            kind = rng.choices(["text", "text_against_text", "image_stable", "image_live",
                                "mixed", "listing"], [45, 8, 15, 10, 7, 15])[0]
            k = rng.choice([1, 5, 10, 50])
            argv = ["query", "--in", self.live, "--json"]
            if rng.random() < 0.5:
                argv += ["--model", self.args.model]
            query_images = []
            if kind in ("text", "text_against_text"):
                for t in rng.sample(QUERY_TEXTS, rng.choice([1, 1, 2])):
                    argv.append(f"--text={t}")
                if kind == "text_against_text":
                    argv += ["--against", "text"]
            elif kind in ("image_stable", "mixed"):
                query_images = [self._abs(rng.choice(self.stable))]
                argv += ["--image", query_images[0]]
                if kind == "mixed":
                    argv += ["--text", rng.choice(QUERY_TEXTS[:10]),
                             "--text-weight", f"{rng.uniform(0.1, 0.9):.2f}"]
            elif kind == "image_live":
                with self.lock:
                    m = self.mutable()
                    rel = rng.choice(m) if m else rng.choice(self.stable)
                query_images = [self._abs(rel)]
                argv += ["--image", query_images[0]]
            elif kind == "listing":
                argv += ["--text", "x"]
                k = LISTING_K
            argv += ["-k", k]
            picked = now()
            rc, out, err, secs = self.run(*argv)
            end = now()
            start = end - secs
            tail = [str(x) for x in argv]
            self.queries[kind] += 1
            if not self.check_rc("query", rc, err, tail):
                continue
            if rc != EXIT_OK:
                with self.lock:
                    racy = kind == "image_live" and self.touched_during(query_images[0], picked, end)
                if racy and rc == EXIT_INPUT:
                    self.errors.race("query_image_changed_while_read")
                else:
                    self.errors.error(f"query_exit_{rc}", {"argv": tail, "stderr": err[-2000:]})
                continue
            self.latency[kind].append(secs)
            try:
                result = json.loads(out)
                results = result["results"]
                searched = result["searched"]
            except (ValueError, KeyError, TypeError):
                self.errors.error("query_bad_json", {"argv": tail, "stdout": out[:500]})
                continue
            self.check_query(kind, tail, k, results, searched, query_images, picked, start, end)

    def check_query(self, kind, tail, k, results, searched, query_images, picked, start, end):
        paths = [r.get("path") for r in results]
        ranks = [r.get("rank") for r in results]
        scores = [r.get("score") for r in results]
        if ranks != list(range(1, len(results) + 1)):
            self.errors.error("query_bad_ranks", {"argv": tail, "ranks": ranks[:20]})
        if any(not isinstance(s, (int, float)) or not math.isfinite(s) for s in scores) or any(
                b > a + 1e-6 for a, b in zip(scores, scores[1:])):
            self.errors.error("query_scores_out_of_order", {"argv": tail, "scores": scores[:20]})
        # --against text scores captions: a file with two captions may come back twice.
        keys = [(r.get("path"), r.get("caption") if kind == "text_against_text" else None)
                for r in results]
        if len(set(keys)) != len(keys):
            self.errors.error("query_duplicate_results", {"argv": tail, "results": results[:10]})
        allowed = {min(k, searched)}
        if query_images:
            allowed.add(min(k, searched - 1))  # the query image is in scope, and never returned
        if len(results) not in allowed:
            self.errors.error("query_short", {"argv": tail, "results": len(results),
                                              "searched": searched, "k": k})
        with self.lock:
            for q in query_images:
                if q in paths and not self.touched_during(q, picked, end):
                    self.errors.error("query_image_in_its_results", {"argv": tail, "image": q})
            prefix = str(self.live) + "/"
            runs = [r for r in self.index_runs if r.rc in (EXIT_OK, EXIT_PARTIAL)]
            for p in paths:
                if p not in self.ever or not p.startswith(prefix):
                    self.errors.error("query_phantom_path", {"argv": tail, "path": p})
                    continue
                ev = self.events[p]
                if ev and ev[-1][2] == "gone":
                    gone = ev[-1][1]
                    ref = next((r for r in runs if r.start > gone and r.end < start), None)
                    if ref is None:
                        self.errors.race("result_deleted_moments_ago")
                        continue
                    if any(e.start < gone and (e.end is None or e.end > ref.start)
                           for e in self.eval_live_runs):
                        self.errors.race("stale_result_explained_by_concurrent_eval",
                                         {"path": p, "deleted_s": round(gone, 3),
                                          "query_s": round(start, 3)})
                    else:
                        self.errors.error("query_stale_result", {
                            "argv": tail, "path": p, "deleted_at": round(gone, 3),
                            "index_run": [round(ref.start, 3), round(ref.end, 3)],
                            "query_start": round(start, 3)})
            if kind != "listing":
                return
            found = set(paths)
            for p, ev in self.events.items():
                if ev and ev[-1][2] == "gone" and any(r.start > ev[-1][1] and r.end < start
                                                      for r in runs):
                    self.checks["removed_file_must_not_be_listed"] += 1
            for rel in list(self.files):
                p = self._abs(rel)
                last = max(e1 for _, e1, _ in self.events[p])  # its last change
                ref = next((r for r in runs if r.start > last and r.end < start
                            and p not in r.failures), None)
                if ref is None:
                    continue  # not settled yet
                self.checks["settled_file_must_be_listed"] += 1
                if p in found:
                    continue
                if any(e.start < last and (e.end is None or e.end > ref.start)
                       for e in self.eval_live_runs):
                    self.errors.race("missing_row_explained_by_concurrent_eval",
                                     {"path": p, "changed_s": round(last, 3),
                                      "query_s": round(start, 3)})
                else:
                    self.errors.error("query_missing_row", {
                        "argv": tail, "path": p, "last_change": round(last, 3),
                        "index_run": [round(ref.start, 3), round(ref.end, 3)],
                        "query_start": round(start, 3)})

    # -----------------------------------------------------------------------------------------
    # eval.

    def evaluator(self):
        i = 0
        while not self.stop.is_set():
            live = self.args.eval_on == "live" or (self.args.eval_on == "both" and i % 2 == 0)
            i += 1
            folder, model = (self.live, self.args.model) if live else (self.fixed,
                                                                       self.args.eval_model)
            argv = ["eval", folder, "--model", model, "--json"]
            run = Run(now())
            if live:
                with self.lock:
                    self.eval_live_runs.append(run)
            rc, out, err, secs = self.run(*argv)
            run.end = now()
            self.eval_runs["live" if live else "fixed"] += 1
            self.eval_seconds.append(secs)
            tail = [str(x) for x in argv]
            if not self.check_rc("eval", rc, err, tail):
                continue
            if rc != EXIT_OK:
                self.errors.error(f"eval_exit_{rc}", {"argv": tail, "stderr": err[-2000:]})
                continue
            try:
                report = json.loads(out)[0]
                images, failed = report["images"], report["failed"]
            except (ValueError, KeyError, IndexError, TypeError):
                self.errors.error("eval_bad_json", {"argv": tail, "stdout": out[:500]})
                continue
            if images <= 0:
                self.errors.error("eval_no_images", {"argv": tail, "stdout": out[:500]})
            if failed:
                skipped = [ln for ln in err.splitlines() if "skipped" in ln]
                with self.lock:
                    changed = [p for p in self.events if self.touched_during(p, run.start, run.end)]
                explained = live and all(any(p in ln for p in changed) for ln in skipped)
                if explained and skipped:
                    self.errors.race("eval_skipped_a_file_changed_during_the_run")
                else:
                    self.errors.error("eval_failed_files", {"argv": tail, "skipped": skipped[:5],
                                                            "failed": failed})

    # -----------------------------------------------------------------------------------------
    # The end: nothing lost, nothing stale, the store sound.

    def final_checks(self):
        res = {}
        run, s1 = self.index_once(label="final_index")
        res["final_index_exit"] = run.rc
        if run.rc != EXIT_OK or not s1 or s1.get("failed"):
            self.errors.error("final_index_not_clean", {"rc": run.rc, "summary": s1})
        run, s2 = self.index_once(label="final_reindex")
        if s2 is not None:
            res["final_reindex"] = {k: s2.get(k) for k in ("found", "indexed", "reused",
                                                           "unchanged", "removed", "failed")}
            if not (s2.get("found") == s2.get("unchanged") and s2.get("indexed") == 0
                    and s2.get("reused") == 0 and s2.get("removed") == 0):
                self.errors.error("final_reindex_not_idempotent", res["final_reindex"])

        disk = self.disk_images()
        with self.lock:
            known = {self._abs(r) for r in self.files}
        if disk != known:
            self.errors.error("soak_bookkeeping", {"disk_not_known": sorted(disk - known)[:5],
                                                   "known_not_disk": sorted(known - disk)[:5]})
        out = self.args.work / "export"
        rc, _, err, _ = self.run("export-vectors", out, "--model", self.args.model,
                                 "--in", self.live, "--npy-dtype", "f32")
        lost = Counter({k: 0 for k in ("missing", "ghost", "stale_vectors", "stale_captions",
                                       "stale_category")})
        stored = {}
        if rc != EXIT_OK:
            self.errors.error("final_export_failed", {"rc": rc, "stderr": err[-2000:]})
        else:
            vecs = np.load(out / "image_proj.npy").astype(np.float64)
            with open(out / "metadata.jsonl", encoding="utf-8") as f:
                for i, line in enumerate(f):
                    item = json.loads(line)
                    stored[item["file"]] = (item, vecs[i])
        lost["missing"] = len(disk - set(stored))
        lost["ghost"] = len(set(stored) - disk)
        for p in sorted(disk - set(stored))[:5]:
            self.errors.error("lost_row_missing", {"path": p})
        for p in sorted(set(stored) - disk)[:5]:
            self.errors.error("lost_row_ghost", {"path": p})
        both = sorted(disk & set(stored))
        min_cos = float("nan")
        if both:
            rc, _, err, _ = self.run("embed", "--model", self.args.model, "--mode", "image",
                                     "--out", self.args.work / "embed", "--image", *both)
            if rc != EXIT_OK:
                self.errors.error("final_embed_failed", {"rc": rc, "stderr": err[-2000:]})
            else:
                fresh = np.load(self.args.work / "embed" / "image_embeds_proj.npy").astype(
                    np.float64)
                cosines = []
                for i, p in enumerate(both):
                    s = stored[p][1]
                    s = s.reshape(-1, s.shape[-1])
                    f = fresh[i][: s.shape[0]]
                    c = np.sum(s * f, 1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(f, axis=1))
                    cosines.append(float(c.min()))
                    if c.min() < 1 - self.args.cos_tolerance:
                        lost["stale_vectors"] += 1
                        self.errors.error("lost_row_stale_vectors", {"path": p, "cos": float(c.min())})
                min_cos = min(cosines)
        res["min_cosine_stored_vs_fresh"] = min_cos
        for p in both:
            item = stored[p][0]
            rel = os.path.relpath(p, self.live)
            caps, cat = self.captions_rows.get(rel, ([], rel.split("/")[0]))
            if sorted(item.get("captions", [])) != sorted(caps):
                lost["stale_captions"] += 1
                self.errors.error("lost_row_stale_captions", {"path": p, "stored": item.get(
                    "captions"), "expected": caps})
            if item.get("category") != cat:
                lost["stale_category"] += 1
                self.errors.error("lost_row_stale_category", {"path": p, "stored": item.get(
                    "category"), "expected": cat})
        # The same through a plain listing query.
        rc, qout, err, _ = self.run("query", "--in", self.live, "--text", "x", "-k", LISTING_K,
                                    "--json")
        if rc == EXIT_OK:
            listed = {r["path"] for r in json.loads(qout)["results"]}
            if listed != disk:
                lost["listing_mismatch"] += len(listed ^ disk)
                self.errors.error("final_listing_mismatch", {"not_listed": sorted(disk - listed)[
                    :5], "listed_not_on_disk": sorted(listed - disk)[:5]})
        else:
            self.errors.error("final_query_failed", {"rc": rc, "stderr": err[-2000:]})
        res["files_on_disk"] = len(disk)
        res["rows_stored"] = len(stored)
        res["lost"] = dict(lost)
        res["lost_rows"] = sum(lost.values())
        res.update(self.store_checks(disk))
        return res

    def store_checks(self, disk):
        db = self.home / "index.sqlite3"
        res = {}
        for pragma in ("integrity_check", "quick_check"):
            if shutil.which("sqlite3"):
                p = subprocess.run(["sqlite3", "-readonly", str(db), f"PRAGMA {pragma}"],
                                   capture_output=True, text=True)
                value = (p.stdout.strip() or p.stderr.strip())
            else:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                    value = "\n".join(r[0] for r in c.execute(f"PRAGMA {pragma}"))
            res[pragma] = value
            if value != "ok":
                self.errors.error(f"store_{pragma}", value[:2000])
        # The store's own invariants (docs/STORE.md); skipped with a note when the schema moved.
        try:
            c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            rows = c.execute("SELECT f.path, f.size, f.mtime_ns FROM files f JOIN models m "
                             "ON f.model = m.id WHERE m.model_id LIKE ?",
                             (self.args.model + "@%",)).fetchall()
            offsets, bad_stat = set(), []
            for path, size, mtime_ns in rows:
                if isinstance(path, bytes):
                    path = os.fsdecode(path)
                if not path.startswith(str(self.live) + "/"):
                    continue
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # counted as a ghost above
                if st.st_size != size:
                    bad_stat.append((path, "size", size, st.st_size))
                delta = mtime_ns - st.st_mtime_ns
                offsets.add(delta)
                if delta not in (0, LIBSTDCXX_FILE_CLOCK_OFFSET_NS):
                    bad_stat.append((path, "mtime", mtime_ns, st.st_mtime_ns))
            if len(offsets) > 1:
                bad_stat.append(("*", "mtime clocks differ between rows", sorted(offsets)[:3]))
            for b in bad_stat[:5]:
                self.errors.error("store_stale_stat", b)
            res["stale_stat_rows"] = len(bad_stat)
            seg_rows = c.execute("SELECT id, file_name, live_items FROM segments").fetchall()
            counts = dict(c.execute("SELECT segment_id, count(*) FROM files "
                                    "WHERE segment_id IS NOT NULL GROUP BY segment_id"))
            seg_dir = Path(str(db) + ".segments")
            on_disk = {p.name for p in seg_dir.glob("*.seg")}
            named = {name for _, name, _ in seg_rows}
            bad_live = [(i, n, live, counts.get(i, 0)) for i, n, live in seg_rows
                        if live != counts.get(i, 0)]
            dangling = c.execute("SELECT count(*) FROM files WHERE segment_id IS NOT NULL AND "
                                 "segment_id NOT IN (SELECT id FROM segments)").fetchone()[0]
            res["segments"] = {"rows": len(seg_rows), "files": len(on_disk),
                               "orphan_files": len(on_disk - named),
                               "missing_files": len(named - on_disk),
                               "live_count_mismatches": len(bad_live),
                               "rows_naming_no_segment": dangling}
            if on_disk - named:
                self.errors.error("store_orphan_segments", sorted(on_disk - named)[:5])
            if named - on_disk:
                self.errors.error("store_missing_segments", sorted(named - on_disk)[:5])
            if bad_live:
                self.errors.error("store_live_count_mismatch", bad_live[:5])
            if dangling:
                self.errors.error("store_rows_naming_no_segment", dangling)
            c.close()
        except sqlite3.Error as e:
            res["invariants_skipped"] = f"schema differs: {e}"
        wal = Path(str(db) + "-wal")
        res["wal_bytes_left"] = wal.stat().st_size if wal.exists() else None
        return res

    # -----------------------------------------------------------------------------------------

    def main(self):
        a = self.args
        self.setup()
        t0 = now()
        run, s = self.index_once(label="initial_index")
        if run.rc != EXIT_OK:
            sys.exit(f"bench_soak: the first index failed (exit {run.rc}); see above")
        with self.lock:
            self.index_runs.append(run)
        print(f"soak: {len(self.files)} photos in {self.live} ({len(self.stable)} stable), "
              f"{a.clients} clients, eval on {a.eval_on}, {a.seconds} s", file=sys.stderr,
              flush=True)
        start = now()
        deadline = start + a.seconds
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(a.clients)]
        if a.eval_on != "none":
            threads.append(threading.Thread(target=self.evaluator, daemon=True))
        for t in threads:
            t.start()
        reporter = threading.Thread(target=self.progress, args=(start, deadline), daemon=True)
        reporter.start()
        try:
            self.indexer(deadline)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        soak_seconds = now() - start
        final = self.final_checks()
        return self.report(soak_seconds, final, now() - t0)

    def progress(self, start, deadline):
        while not self.stop.wait(30):
            print(f"soak: {now() - start:.0f}/{deadline - start:.0f} s, "
                  f"{len(self.index_runs)} index runs, {sum(self.queries.values())} queries, "
                  f"{sum(self.eval_runs.values())} evals, {sum(self.errors.errors.values())} "
                  f"errors, {len(self.files)} files", file=sys.stderr, flush=True)

    def report(self, soak_seconds, final, total_seconds):
        lat_all = [x for v in self.latency.values() for x in v]
        lat = {"all": lat_all, **self.latency}
        latency = {k: {"n": len(v), "p50_ms": percentile(v, 50) * 1e3,
                       "p99_ms": percentile(v, 99) * 1e3,
                       "max_ms": (max(v) * 1e3 if v else float("nan"))} for k, v in lat.items()}
        r = {
            "seconds": round(soak_seconds, 1),
            "clients": self.args.clients,
            "model": self.args.model,
            "eval_model_fixed": self.args.eval_model,
            "index_runs": len(self.index_runs),
            "index_seconds_p50": percentile(self.index_seconds, 50),
            "index_seconds_max": max(self.index_seconds) if self.index_seconds else None,
            "index_totals": dict(self.index_totals),
            "mutations": dict(self.mutations),
            "queries": dict(self.queries),
            "queries_total": sum(self.queries.values()),
            "eval_runs": dict(self.eval_runs),
            "eval_seconds_p50": percentile(self.eval_seconds, 50),
            "errors": dict(self.errors.errors),
            "errors_total": sum(self.errors.errors.values()),
            "races": dict(self.errors.races),
            "checks": dict(self.checks),
            "samples": dict(self.errors.samples),
            "final": final,
            "latency": latency,
            "wall_seconds": round(total_seconds, 1),
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
        m = self.mutations
        rows = [
            ("seconds (mutating)", f"{r['seconds']:.0f}"),
            ("index runs", f"{r['index_runs']} (p50 {r['index_seconds_p50']:.2f} s, "
                           f"max {r['index_seconds_max']:.2f} s)"),
            ("files added (copy / new content)", f"{m['add_copy']} / {m['add_new']}"),
            ("files touched / rewritten (atomic / in place)",
             f"{m['touch']} / {m['rewrite']} / {m['rewrite_in_place']}"),
            ("files renamed (same folder / other folder / over a file)",
             f"{m['rename']} / {m['rename_dir']} / {m['rename_over']}"),
            ("files deleted", f"{m['delete']}"),
            ("captions.csv rewrites", f"{m['captions']}"),
            ("index totals (indexed / reused / unchanged / removed / failed)",
             " / ".join(str(self.index_totals[k]) for k in
                        ("indexed", "reused", "unchanged", "removed", "failed"))),
            ("queries run", f"{r['queries_total']} (" + ", ".join(
                f"{k} {v}" for k, v in sorted(self.queries.items())) + ")"),
            ("eval runs (live folder / fixed folder)",
             f"{self.eval_runs['live']} / {self.eval_runs['fixed']}"),
            ("errors", f"{r['errors_total']}" + (" (" + ", ".join(
                f"{k} {v}" for k, v in sorted(r["errors"].items())) + ")" if r["errors"] else "")),
            ("expected races (not errors)", ", ".join(
                f"{k} {v}" for k, v in sorted(r["races"].items())) or "0"),
            ("mid-run checks made", ", ".join(f"{k} {v}" for k, v in sorted(self.checks.items()))),
            ("files on disk / rows stored at the end",
             f"{final.get('files_on_disk')} / {final.get('rows_stored')}"),
            ("lost rows", f"{final.get('lost_rows')} ({', '.join(f'{k} {v}' for k, v in sorted(final.get('lost', {}).items()))})"),
            ("min cosine stored vs fresh embed", f"{final.get('min_cosine_stored_vs_fresh'):.7f}"),
            ("integrity_check / quick_check",
             f"{final.get('integrity_check')} / {final.get('quick_check')}"),
            ("segments", json.dumps(final.get("segments", final.get("invariants_skipped")))),
            ("query latency p50 / p99 / max (all)",
             f"{latency['all']['p50_ms']:.0f} / {latency['all']['p99_ms']:.0f} / "
             f"{latency['all']['max_ms']:.0f} ms"),
        ]
        for k in sorted(self.latency):
            v = latency[k]
            rows.append((f"  latency {k} (n={v['n']})",
                         f"{v['p50_ms']:.0f} / {v['p99_ms']:.0f} / {v['max_ms']:.0f} ms"))
        rows.append(("load average at the end (1/5/15 min), cpus",
                     f"{' '.join(f'{x:.2f}' for x in r['load_average'])}, {r['cpus']}"))
        width = max(len(k) for k, _ in rows)
        print(f"| {'what'.ljust(width)} | value |")
        print(f"| {'-' * width} | --- |")
        for k, v in rows:
            print(f"| {k.ljust(width)} | {v} |")
        if self.args.json_out:
            self.args.json_out.parent.mkdir(parents=True, exist_ok=True)
            self.args.json_out.write_text(json.dumps(r, indent=2, default=str) + "\n")
        return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", type=Path,
                        default=Path(os.environ.get("MMSEARCH_BIN", REPO / "build" / "mmsearch")))
    parser.add_argument("--models", type=Path, default=Path(
        os.environ.get("MMSEARCH_TEST_MODELS", REPO / "build" / "test-models")))
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "mmsearch-soak",
                        help="scratch folder, emptied first (default: $TMPDIR/mmsearch-soak)")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model", default="blip-base", help="model of the live folder")
    parser.add_argument("--eval-model", default="blip2-coco", help="model of eval's fixed folder")
    parser.add_argument("--eval-on", choices=["both", "live", "fixed", "none"], default="both",
                        help="eval alternates between the live and the fixed folder by default")
    parser.add_argument("--files", type=int, default=60, help="mutable photos to keep around")
    parser.add_argument("--stable", type=int, default=12, help="photos never changed")
    parser.add_argument("--no-during", dest="during", action="store_false",
                        help="never change the folder while an index run is under way")
    parser.add_argument("--pause", type=float, default=0.3, help="most seconds between index runs")
    parser.add_argument("--threads", type=int, default=1, help="--threads of every command")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a hang")
    parser.add_argument("--cos-tolerance", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    for m in (args.model, args.eval_model):
        if not (args.models / m / "mmsearch.json").exists():
            sys.exit(f"bench_soak: bundle {m} not in {args.models}; run scripts/make_test_bundles.sh")
    if not args.bin.exists():
        sys.exit(f"bench_soak: no binary at {args.bin}")
    r = Soak(args).main()
    sys.exit(0 if r["errors_total"] == 0 and r["final"].get("lost_rows") == 0 else 1)


if __name__ == "__main__":
    main()
