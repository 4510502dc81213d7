"""The node server under load, next to the engine called directly in the same run.

Targets (issue 19): catalog answered <= 2 s after start; <= 5 % overhead per job over the engine (ComfyUI 0.8.0
spends 12.4 ms per job outside the sampler; target <= 6 ms); an identical job back in <= 3 ms; an interrupt
stops within one step; 8 clients x 40 four-step jobs faster than 13.5 jobs/s with previews on; memory flat after
POST /free; malformed JSON and a shell script uploaded as a PNG answered 4xx.

    python benchmarks/bench_server.py [--clients 8] [--jobs 40] [--steps 4] [--device cpu|cuda:0] [--engine-process]
                                      [--sessions 3] [--rounds 30]

The overhead per job is measured in rounds, a few jobs direct then a few served, in sessions of new processes
started in turns (server first, then direct first): two processes doing the very same work ran up to 4 % apart on
this machine (a 2-core VM) for as long as they lived, so one pair of processes, however many rounds, measures
their luck as much as the server.

With ``OMP_NUM_THREADS=1`` (both sides inherit it) the engine is bound by Python, as on a GPU, where a small
model's time goes to launching kernels: the case ``--engine-process`` is for.

Starts ``diffblocks serve`` on a free port (``--device``, a temporary data folder) and talks to it as clients would:
HTTP for requests, one WebSocket per client for events. The engine called directly runs in a second process
started alike (this script with ``--direct-engine``), so that neither side has the other's start-up order.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from websockets.sync.client import connect

TERMINAL = ("job.finished", "job.failed", "job.cancelled")
SIZE: int | None = None  # --size: the images' side in pixels (None: the model's own, 32)
SERVE_FLAGS: list[str] = []  # --engine-process passed on to diffblocks serve


def workflow(seed: int, steps: int) -> dict:
    size = {"height": SIZE, "width": SIZE} if SIZE else {}
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": "embedded"}},
        "t2i": {"type": "preset:sd15-text2image", "inputs": {"components": {"node": "load", "output": "components"},
                "prompt": "a handwritten digit seven", "num_inference_steps": steps, "seed": seed, **size}}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: str, device: str) -> tuple[subprocess.Popen, str, float]:
    """Start ``diffblocks serve``; returns the process, its URL and the seconds until GET /api/nodes answered."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "diffblocks.cli", "serve", "--port", str(port), "--device", device,
                             "--data-dir", data_dir, *SERVE_FLAGS], stdout=subprocess.PIPE, text=True)
    if not proc.stdout.readline():  # the banner, printed once the server answers
        raise RuntimeError(f"diffblocks serve exited with {proc.wait()} before answering")
    url = f"http://127.0.0.1:{port}"
    response = httpx.get(f"{url}/api/nodes", timeout=60)
    response.raise_for_status()
    return proc, url, time.perf_counter() - started


def wait_for(ws, jobs: set[str], events: list[dict] | None = None) -> list[dict]:
    """Read the WebSocket until every job in ``jobs`` has ended."""
    events = [] if events is None else events
    left = set(jobs)
    while left:
        event = json.loads(ws.recv(timeout=600))
        event["_at"] = time.perf_counter()
        events.append(event)
        if event["type"] in TERMINAL and event["job"] in left:
            left.discard(event["job"])
    return events


def check_stream(events: list[dict], jobs: set[str], steps: int) -> list[str]:
    """What is wrong with one client's event stream: lost, duplicated or out-of-order events."""
    problems = []
    seqs = [e["seq"] for e in events]
    if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
        problems.append("seq not strictly increasing")
    for job in jobs:
        kinds = [e["type"] for e in events if e["job"] == job]
        if kinds.count("job.queued") != 1 or kinds.count("job.started") != 1 or kinds.count("job.finished") != 1:
            problems.append(f"{job}: {kinds.count('job.queued')} queued, {kinds.count('job.started')} started, "
                            f"{kinds.count('job.finished')} finished")
            continue
        if kinds[0] != "job.queued" or kinds[1] != "job.started" or kinds[-1] != "job.finished":
            problems.append(f"{job}: out of order {kinds[:3]}...{kinds[-1]}")
        progress = [e["step"] for e in events if e["job"] == job and e["type"] == "node.progress"]
        if not progress or progress[-1] != steps or progress != sorted(set(progress)):  # stale steps are superseded
            problems.append(f"{job}: progress {progress}")
    return problems


def load_test(url: str, clients: int, jobs: int, steps: int) -> dict:
    """``clients`` threads, each listening on its own WebSocket, submit ``jobs`` jobs between them."""
    stack = contextlib.ExitStack()
    sockets = [stack.enter_context(connect(url.replace("http", "ws") + "/api/events")) for _ in range(clients)]
    barrier, lock = threading.Barrier(clients), threading.Lock()
    submitted: set[str] = set()
    first_submit, results = [], [None] * clients

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            barrier.wait()
            with lock:
                first_submit.append(time.perf_counter())
            mine = [http.post("/api/jobs", json={"workflow": workflow(1000 + index * 1000 + i, steps)}).json()["job"]
                    for i in range(jobs // clients)]
            with lock:
                submitted.update(mine)
        barrier.wait()
        events = wait_for(sockets[index], set(submitted))
        results[index] = (events, time.perf_counter())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.close()
    problems = [p for events, _ in results for p in check_stream(events, submitted, steps)]
    wall = max(end for _, end in results) - min(first_submit)
    previews = sum(e["type"] == "node.preview" for events, _ in results for e in events)
    return {"jobs": len(submitted), "wall": wall, "problems": problems, "previews": previews}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of process ``pid`` and its children (the engine's process, with
    ``--engine-process``), or of this process when None: on a machine shared with other work, a fairer measure
    of what the server costs than wall time."""
    if pid is None:
        return time.process_time()
    total = 0.0
    for candidate in [pid, *children(pid)]:
        try:
            with open(f"/proc/{candidate}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (one level)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


class DirectEngine:
    """The engine called directly, in a process of its own started like the server's (``--direct-engine``): both
    sides then start, import and warm up alike. (Run inside this process, next to the clients' threads, the
    same engine came out 4 % faster or slower than the server's depending on which process warmed up first.)"""

    def __init__(self, device: str):
        size = ["--size", str(SIZE)] if SIZE else []
        self.proc = subprocess.Popen([sys.executable, __file__, "--direct-engine", "--device", device, *size], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the direct engine exited with {self.proc.wait()} before it was ready")
        self.pid = self.proc.pid

    def run(self, jobs: int, steps: int, first_seed: int) -> float:
        """Seconds to run ``jobs`` jobs (new seeds: nothing cached) there, one after another."""
        self.proc.stdin.write(f"{jobs} {steps} {first_seed}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


def serve_direct_engine(device: str) -> None:
    """``--direct-engine``: an ``Executor`` with the server's engine settings, its components loaded, running
    ``JOBS STEPS FIRST_SEED`` lines from stdin and answering each with the seconds they took."""
    from diffblocks.nodes import Executor
    from diffblocks.server import ServerSettings

    executor = Executor(device=device, preview_interval=ServerSettings().preview_interval)
    executor.run(workflow(90_000, 4))  # load the model
    print("ready", flush=True)
    for line in sys.stdin:
        jobs, steps, first_seed = map(int, line.split())
        started = time.perf_counter()
        for i in range(jobs):
            executor.run(workflow(first_seed + i, steps))
        print(time.perf_counter() - started, flush=True)


def session(data_dir: str, args, direct_first: bool) -> dict[str, list[float]]:
    """``paired`` between a new server (on the same data folder) and a new direct engine, started in the order
    given and warmed up alike."""
    starts = [lambda: start_server(data_dir, args.device)[:2], lambda: DirectEngine(args.device)]
    first, second = (starts[1](), starts[0]()) if direct_first else (starts[0](), starts[1]())
    (proc, url), engine_proc = (second, first) if direct_first else (first, second)
    try:
        with httpx.Client(base_url=url, timeout=120) as http, connect(url.replace("http", "ws") + "/api/events") as ws:
            for i in range(3):
                wait_for(ws, {http.post("/api/jobs", json={"workflow": workflow(i, args.round_steps)}).json()["job"]})
        engine_proc.run(3, args.round_steps, 90_000)
        return paired(url, proc.pid, engine_proc, args.rounds, args.per_round, args.round_steps)
    finally:
        engine_proc.close()
        proc.terminate()
        proc.wait(60)


def paired(url: str, pid: int, engine: DirectEngine, rounds: int, per: int, steps: int) -> dict[str, list[float]]:
    """Rounds of ``per`` jobs run directly, then ``per`` through the server (POST to job.finished on the
    WebSocket), new seeds each: wall seconds per job, CPU seconds per round (the direct engine's process for
    the direct jobs, the server's for the served ones, and this process's meanwhile: the client's), and for each
    served job the engine's own time inside the server (what ``GET /api/jobs/{id}`` reports), so that what the
    server adds around the engine can be told apart from the engine running slower next to it. Rounds alternate
    so that both sides see the same load on a shared machine."""
    out: dict[str, list[float]] = {"direct": [], "server": [], "engine": [], "direct_cpu": [], "server_cpu": [],
                                   "client_cpu": [], "messages": []}
    seed = 70_000
    with httpx.Client(base_url=url, timeout=60) as http, connect(url.replace("http", "ws") + "/api/events") as ws:
        for _ in range(rounds):
            cpu = cpu_seconds(engine.pid)
            out["direct"].extend(engine.run(1, steps, seed + i) for i in range(per))
            out["direct_cpu"].append(cpu_seconds(engine.pid) - cpu)
            jobs, cpu, client_cpu = [], cpu_seconds(pid), cpu_seconds()
            for i in range(per):
                started = time.perf_counter()
                jobs.append(http.post("/api/jobs", json={"workflow": workflow(seed + per + i, steps)}).json()["job"])
                out["messages"].append(len(wait_for(ws, {jobs[-1]})))
                out["server"].append(time.perf_counter() - started)
            out["server_cpu"].append(cpu_seconds(pid) - cpu)
            out["client_cpu"].append(cpu_seconds() - client_cpu)
            out["engine"].extend(http.get(f"/api/jobs/{job}").json()["timings"]["seconds"] for job in jobs)
            seed += 2 * per
    return out


def identical_jobs(url: str, count: int = 30) -> list[float]:
    """Milliseconds from POST /api/jobs to its job.finished on the WebSocket, for a job served from the cache."""
    times = []
    with httpx.Client(base_url=url, timeout=60) as http, connect(url.replace("http", "ws") + "/api/events") as ws:
        for _ in range(count + 3):
            started = time.perf_counter()
            job = http.post("/api/jobs", json={"workflow": workflow(0, 4)}).json()["job"]
            wait_for(ws, {job})
            times.append((time.perf_counter() - started) * 1000)
    return times[3:]


def interrupt(url: str) -> dict:
    """A 500-step job interrupted at its first progress event: how long until job.cancelled, and how many steps
    ran after the DELETE (the last step a progress event reported, less the step seen before it)."""
    with httpx.Client(base_url=url, timeout=60) as http, connect(url.replace("http", "ws") + "/api/events") as ws:
        job = http.post("/api/jobs", json={"workflow": workflow(7, 500)}).json()["job"]
        while (event := json.loads(ws.recv(timeout=120)))["type"] != "node.progress":
            pass
        started = time.perf_counter()
        http.delete(f"/api/jobs/{job}")
        answered = time.perf_counter()
        after = wait_for(ws, {job})
        seconds = time.perf_counter() - started
    steps = [e["step"] for e in after if e["type"] == "node.progress"]
    return {"ms": seconds * 1000, "delete_ms": (answered - started) * 1000,
            "steps_after": max(steps, default=event["step"]) - event["step"], "status": after[-1]["type"]}


def refusals(url: str) -> dict:
    with httpx.Client(base_url=url, timeout=60) as http:
        bad_json = http.post("/api/jobs", content=b"{nope", headers={"content-type": "application/json"})
        script = http.post("/api/uploads", files={"file": ("x.png", b"#!/bin/sh\necho hi\n", "image/png")})
    return {"malformed JSON": bad_json.status_code, "shell script as PNG": script.status_code}


def png_costs(side: int = 512, repeats: int = 5) -> dict[int, tuple[float, int]]:
    """Milliseconds (best of ``repeats``) and bytes to store a generated-looking ``side`` px image as PNG at zlib
    levels 1 (the artifacts'), 4 (ComfyUI's) and 6 (PIL's default): the server does this for every output
    image before the job's last event."""
    import io

    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    blobs = Image.fromarray(rng.normal(128, 60, (side // 16, side // 16, 3)).clip(0, 255).astype("uint8"))
    blobs = np.asarray(blobs.resize((side, side), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3)), dtype=float)
    image = Image.fromarray((blobs + rng.normal(0, 3, blobs.shape)).clip(0, 255).astype("uint8"))
    costs = {}
    for level in (1, 4, 6):
        best = float("inf")
        for _ in range(repeats):
            started, buffer = time.perf_counter(), io.BytesIO()
            image.save(buffer, format="PNG", compress_level=level)
            best = min(best, time.perf_counter() - started)
        costs[level] = (best * 1000, len(buffer.getvalue()))
    return costs


def rss(url: str) -> int:
    return httpx.get(f"{url}/api/system", timeout=60).json()["memory"]["rss_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30, help="rounds of jobs run one at a time, direct then served, "
                        "in each session")
    parser.add_argument("--sessions", type=int, default=3, help="fresh server and direct-engine processes for each "
                        "session's rounds, started in turn order: two processes doing the same work differ by up to "
                        "4 %% on this machine for as long as they run, which more rounds do not average away")
    parser.add_argument("--per-round", type=int, default=3, help="jobs each way per round")
    parser.add_argument("--round-steps", type=int, default=20, help="steps of those jobs (ComfyUI was measured at 20)")
    parser.add_argument("--device", default="cpu", help="where the server's worker and the direct engine run")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's, 32); "
                        "larger gives a GPU work to wait on")
    parser.add_argument("--engine-process", action="store_true",
                        help="serve with --engine-process: the workers in a process of their own")
    parser.add_argument("--direct-engine", action="store_true", help="(for this script) be the direct engine's process")
    args = parser.parse_args()
    global SIZE
    SIZE = args.size
    SERVE_FLAGS[:] = ["--engine-process"] if args.engine_process else []
    if args.direct_engine:
        return serve_direct_engine(args.device)
    load_start = os.getloadavg()[0]
    say = functools.partial(print, flush=True)  # each result as soon as it is measured: a run cut short keeps them

    with tempfile.TemporaryDirectory() as data_dir:
        from diffblocks.server.engine import BUILT_CATALOG, read_catalog, source_fingerprint

        built = read_catalog(BUILT_CATALOG, source_fingerprint()) is not None
        proc, url, first_start = start_server(data_dir, args.device)  # stores the catalog in the data folder
        proc.terminate()
        proc.wait(60)
        proc, url, catalog_seconds = start_server(data_dir, args.device)  # a restart: the stored catalog answers
        say(f"time to catalog after start     {catalog_seconds:8.2f} s     (target <= 2 s; ComfyUI 6.35 s); "
            f"first start in a new data folder {first_start:.2f} s "
            f"({'from the catalog make setup built' if built else 'no catalog built at setup: built at start'})")
        engine_proc = DirectEngine(args.device)
        try:
            with httpx.Client(base_url=url, timeout=120) as http, connect(url.replace("http", "ws") + "/api/events") as ws:
                wait_for(ws, {http.post("/api/jobs", json={"workflow": workflow(0, args.steps)}).json()["job"]})
            engine_proc.run(2, args.steps, 90_000)  # warm up
            rss_before = rss(url)
            cpu = cpu_seconds(engine_proc.pid)
            direct_a = engine_proc.run(args.jobs, args.steps, 50_000)
            direct_cpu = cpu_seconds(engine_proc.pid) - cpu
            cpu = cpu_seconds(proc.pid)
            load = load_test(url, args.clients, args.jobs, args.steps)
            load_cpu = cpu_seconds(proc.pid) - cpu
            direct_b = engine_proc.run(args.jobs, args.steps, 60_000)
            say_load(args, load, load_cpu, direct_a, direct_b, direct_cpu)
            sessions = [paired(url, proc.pid, engine_proc, args.rounds, args.per_round, args.round_steps)]
            rss_loaded = rss(url)
            freed = httpx.post(f"{url}/api/free", timeout=60).json()
            identical = identical_jobs(url)
            say(f"identical job, POST to finished {statistics.median(identical):8.2f} ms    median of {len(identical)} "
                f"(min {min(identical):.2f}; target <= 3 ms; ComfyUI 3.1 ms)")
            stop = interrupt(url)
            say(f"interrupt to job.cancelled      {stop['ms']:8.2f} ms    (DELETE answered in {stop['delete_ms']:.1f} "
                f"ms; {stop['steps_after']} steps ran after it; {stop['status']})")
            say(f"server RSS before / loaded / after POST /free: {rss_before / 2**20:.0f} / {rss_loaded / 2**20:.0f} / "
                f"{freed['rss_after'] / 2**20:.0f} MiB ({len(freed['removed_components'])} components dropped)")
            say(f"refusals                        {refusals(url)}")
            from diffblocks.nodes.artifacts import PNG_LEVEL

            png = png_costs()
            say("a 512 px output stored as PNG    " + ", ".join(
                f"level {level}: {ms:.1f} ms {size // 1024} KiB" for level, (ms, size) in png.items())
                + f" (the artifacts use level {PNG_LEVEL}: {png[6][0] / png[PNG_LEVEL][0]:.1f}x faster than PIL's 6)")
            say(f"lost, duplicated or out-of-order events: {load['problems'] or 'none'}")
        finally:
            engine_proc.close()
            proc.terminate()
            proc.wait(60)
        for number in range(1, args.sessions):
            sessions.append(session(data_dir, args, direct_first=number % 2 == 1))
        say_pairs(args, sessions)
    say(f"load average (1 min) at start / end: {load_start:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"engine on {args.device}{' in its own process' if args.engine_process else ''}, images {SIZE or 32} px")


def say_load(args, load: dict, load_cpu: float, direct_a: float, direct_b: float, direct_cpu: float) -> None:
    engine = (direct_a + direct_b) / 2
    print(f"{load['jobs']} jobs, {args.clients} clients, {args.steps} steps: {load['wall']:6.2f} s = "
          f"{load['jobs'] / load['wall']:.1f} jobs/s (ComfyUI 13.5), {load['previews']} previews delivered")
    print(f"engine direct, as many jobs     {direct_a:8.2f} s, {direct_b:.2f} s (before, after the load): "
          f"{load['wall'] / engine:.3f} x the engine's time for the load test")
    print(f"  in CPU time: server {load_cpu:.2f} s ({args.clients} clients, previews) / engine {direct_cpu:.2f} s = "
          f"{load_cpu / direct_cpu:.3f}", flush=True)


def median_interval(groups: list[list[float]], level: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap ``level`` interval of the median of all of ``groups`` (each session's round ratios): sessions
    are resampled, then the rounds within each, so that the interval covers the difference between processes as
    well as the noise within them. Resampled with a fixed seed: the same rounds give the same interval."""
    import random

    pick = random.Random(0)
    medians = sorted(statistics.median([value for group in pick.choices(groups, k=len(groups))
                                        for value in pick.choices(group, k=len(group))]) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * resamples)], medians[min(resamples - 1, int((1 - tail) * resamples))]


def round_ratios(pairs: dict[str, list[float]], per: int) -> list[float]:
    """Served over direct, the median of each round's jobs."""
    return [statistics.median(pairs["server"][i:i + per]) / statistics.median(pairs["direct"][i:i + per])
            for i in range(0, len(pairs["server"]), per)]


def say_pairs(args, sessions: list[dict[str, list[float]]]) -> None:
    per = args.per_round
    by_session = [round_ratios(pairs, per) for pairs in sessions]
    pairs = {key: [value for one in sessions for value in one[key]] for key in sessions[0]}
    ms = {key: statistics.median(pairs[key]) * 1000 for key in ("direct", "server", "engine")}
    jobs_each_way = len(pairs["server"])
    server_extra = (sum(pairs["server_cpu"]) - sum(pairs["direct_cpu"])) / jobs_each_way * 1000
    client_ms = sum(pairs["client_cpu"]) / jobs_each_way * 1000
    outside = statistics.median(served - engine_s for served, engine_s in zip(pairs["server"], pairs["engine"])) * 1000
    rounds = [ratio for ratios in by_session for ratio in ratios]
    spread = statistics.quantiles(rounds, n=4) if len(rounds) > 1 else [rounds[0]] * 3
    print(f"one job at a time, {args.round_steps} steps, medians of {jobs_each_way} each way "
          f"({len(sessions)} sessions of new processes):")
    print(f"  served, POST to job.finished  {ms['server']:8.2f} ms = {ms['server'] / ms['direct']:.3f} x the engine "
          f"called directly ({ms['direct']:.2f} ms; target <= 1.05); CPU "
          f"{sum(pairs['server_cpu']) / sum(pairs['direct_cpu']):.3f} x")
    low, high = median_interval(by_session)
    print(f"  round by round                {spread[1]:.3f} x median, the middle half {spread[0]:.3f}-{spread[2]:.3f} x "
          f"({len(rounds)} rounds); by session " + ", ".join(f"{statistics.median(r):.3f}" for r in by_session)
          + f"; the median's 90 % interval {low:.3f}-{high:.3f} x (sessions and rounds resampled): the target is met "
          f"when all of it is <= 1.05, missed when all of it is above")
    print(f"  outside the engine            {outside:8.2f} ms per job (served time less the engine's own time "
          f"in the server; target <= 6 ms; ComfyUI 12.4 ms outside its sampler)")
    print(f"  the engine inside the server  {ms['engine']:8.2f} ms ({ms['engine'] - ms['direct']:+.2f} ms: events "
          f"and previews sent while it runs share the CPU with it; "
          f"{statistics.median(pairs['messages']):.0f} WebSocket messages per job)")
    print(f"  CPU per job besides the engine: the server's {server_extra:.1f} ms, this client's {client_ms:.1f} ms "
          f"(HTTP, WebSocket), both on the cores the engine fills", flush=True)
    if args.per_round > 1:  # the first job of a round follows the other side's jobs: caches and cores it left cold
        first = {}
        for key in ("server", "direct"):
            first[key] = (statistics.median(pairs[key][::per]) * 1000,
                          statistics.median([t for i, t in enumerate(pairs[key]) if i % per]) * 1000)
        outside_by = [(served - engine_s) * 1000 for served, engine_s in zip(pairs["server"], pairs["engine"])]
        print(f"  by place in its round: first {first['server'][0]:.1f} / {first['direct'][0]:.1f} ms = "
              f"{first['server'][0] / first['direct'][0]:.3f} x (outside {statistics.median(outside_by[::per]):.1f} ms); "
              f"later {first['server'][1]:.1f} / {first['direct'][1]:.1f} ms = {first['server'][1] / first['direct'][1]:.3f} x "
              f"(outside {statistics.median([o for i, o in enumerate(outside_by) if i % per]):.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
