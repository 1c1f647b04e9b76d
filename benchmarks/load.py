"""The app under load: N simulated users over real HTTP on loopback, mixed actions, for a set time.

    .venv/bin/python benchmarks/load.py [--sessions 20] [--seconds 60] [--model default] [--json out.json]
    .venv/bin/python benchmarks/load.py --tiny ...   # a tiny random Llama: the server's own overhead, not the model's
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8050 [--token T]   # an already running server
    .venv/bin/python benchmarks/load.py --compare [--sessions 20] [--seconds 60] [--rounds 2]
        # batched traces against one at a time, side by side: two servers (VISIT_BATCH=20 and VISIT_BATCH=1)
        # started together, the same users (traces only) driving each in turn for --seconds, --rounds times

Without ``--url`` it starts ``app.py`` in a subprocess (the real server, the real default model, bound to
a free loopback port) and measures that process's memory. Each session is a thread with its own
:class:`visit.ui.client.DashClient` (its own cookie and session id) that loops, with a short think time:

- ``trace``   (50%) a prompt from the shipped factual set, sometimes with a target or a layer range;
- ``panel``   (25%) a click on a node of its last graph (the Details panel's callback);
- ``redraw``  (10%) a panel's graph re-draw request (highlight a node: the analysis is recomputed);
- ``export``  (10%) the offline HTML report;
- ``long``    (5%)  a ~750-token prompt, which the app must refuse with its one-line message.

Reported: requests, errors (HTTP errors, "internal error" messages, a refusal missing), refusals,
p50/p95 latency per action and overall, the server's peak resident memory (VmHWM) and, sampled every
0.5 s, its resident memory over time. Record results with the machine in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visit.prompts import default_prompt_file, load_prompt_file  # noqa: E402
from visit.ui import ids  # noqa: E402
from visit.ui.client import CallbackError, DashClient, message_text  # noqa: E402
from visit.ui.state import request_graph_update  # noqa: E402

ACTIONS = (("trace", 50), ("panel", 25), ("redraw", 10), ("export", 10), ("long", 5))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, env_extra: dict, wait: bool = True) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env_extra}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", model],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    return (wait_for(proc, url), url) if wait else (proc, url)


def wait_for(proc: subprocess.Popen, url: str) -> subprocess.Popen:
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url + "/", timeout=5).read()
            proc.visit_notes = []  # the server's "visit: batched traces ..." line, logged when it stops

            def drain():
                for line in proc.stdout:
                    if "visit: batched traces" in line:
                        proc.visit_notes.append(line.strip())

            threading.Thread(target=drain, daemon=True).start()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app.py did not answer within 600 s")


def save_tiny_model(directory: Path) -> str:
    """A tiny random Llama (3 layers, d_model 64) with the default model's tokenizer, saved for ``--model``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from visit.models.loading import default_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class User(threading.Thread):
    def __init__(self, url: str, token: str | None, prompts: list, stop_at: float, seed: int, think: float,
                 actions=ACTIONS):
        super().__init__(daemon=True)
        self.actions = actions
        self.client = DashClient(url, token=token, timeout=600)
        self.session = self.client.new_session()
        self.prompts, self.stop_at, self.rng, self.think = prompts, stop_at, random.Random(seed), think
        self.records: list[tuple[str, float, str]] = []  # (action, seconds, outcome: ok | refused | error: ...)
        self.nodes: list[str] = []

    def pick(self) -> str:
        if not self.nodes:
            return "trace"
        names, weights = zip(*self.actions)
        return self.rng.choices(names, weights)[0]

    def run(self):
        while time.time() < self.stop_at:
            action = self.pick()
            t0 = time.perf_counter()
            try:
                outcome = getattr(self, action)()
            except CallbackError as exc:
                outcome = f"error: {exc}"
            except Exception as exc:  # noqa: BLE001 - a benchmark records, it does not stop
                outcome = f"error: {type(exc).__name__}: {exc}"
            self.records.append((action, time.perf_counter() - t0, outcome))
            time.sleep(self.rng.uniform(0, 2 * self.think))

    def trace(self) -> str:
        prompt, target = self.rng.choice(self.prompts)
        controls = {}
        if self.rng.random() < 0.3:
            controls[f"{ids.LAYER_START}.value"] = -self.rng.randint(1, 3)  # the last few layers (any model has 3)
        out = self.client.trace(self.session, prompt, target if self.rng.random() < 0.5 else "", **controls)
        figure = out.get(f"{ids.GRAPH}.figure")
        if not figure:
            return f"error: no graph: {message_text(out)[:200]}"
        self.nodes = [c[0] for t in figure["data"] if t.get("mode") == "markers" for c in (t.get("customdata") or [])
                      if isinstance(c, list) and c and isinstance(c[0], str) and not c[0].startswith("edge:")]
        return "ok"

    def panel(self) -> str:
        node = self.rng.choice(self.nodes)
        values = {f"{ids.SESSION}.data": self.session, f"{ids.GRAPH}.clickData": {"points": [{"customdata": [node]}]}}
        out = self.client.call("details-body.children", f"{ids.GRAPH}.clickData", values)
        return "ok" if "details-body.children" in out else "error: no details"

    def redraw(self) -> str:
        payload = request_graph_update(self.session, highlight=(self.rng.choice(self.nodes),))
        values = {f"{ids.SESSION}.data": self.session, f"{ids.GRAPH_REQUEST}.data": payload}
        out = self.client.call(f"{ids.GRAPH}.figure", f"{ids.GRAPH_REQUEST}.data", values)
        if f"{ids.GRAPH}.figure" in out:
            return "ok"
        text = message_text(out)
        return "refused" if "trace again" in text else f"error: no re-draw: {text[:200]}"

    def export(self) -> str:
        out = self.client.export(self.session)
        if (out.get(f"{ids.DOWNLOAD}.data") or {}).get("content"):
            return "ok"
        text = message_text({f"{ids.MESSAGE}.children": out.get(f"{ids.MESSAGE}.children")})
        return "refused" if "trace again" in text else f"error: no report: {text[:200]}"

    def long(self) -> str:
        out = self.client.trace(self.session, "The history of the city is long and " * 75)
        text = message_text(out)
        return "refused" if "tokens long" in text and "at most" in text else f"error: not refused: {text[:200]}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summarise(records: list, seconds: float) -> dict:
    by_action = defaultdict(list)
    for action, dt, outcome in records:
        by_action[action].append((dt, outcome))
    rows = {}
    for action, items in sorted(by_action.items()):
        times = [dt for dt, _ in items]
        rows[action] = {"requests": len(items), "errors": sum(o.startswith("error") for _, o in items),
                        "refused": sum(o == "refused" for _, o in items),
                        "p50_s": round(statistics.median(times), 3), "p95_s": round(percentile(times, 0.95), 3)}
    times = [dt for _, dt, _ in records]
    return {"requests": len(records), "errors": sum(o.startswith("error") for _, _, o in records),
            "refused": sum(o == "refused" for _, _, o in records),
            "throughput_per_s": round(len(records) / seconds, 2),
            "p50_s": round(statistics.median(times), 3) if times else None,
            "p95_s": round(percentile(times, 0.95), 3) if times else None, "actions": rows,
            "error_samples": sorted({o for _, _, o in records if o.startswith("error")})[:5]}


def drive(url: str, token: str | None, prompts: list, sessions: int, seconds: float, think: float, seed: int,
          actions=ACTIONS) -> tuple[list, float]:
    """``sessions`` users on ``url`` for ``seconds``: every request's (action, seconds, outcome), and the time."""
    t0 = time.time()
    users = [User(url, token, prompts, t0 + seconds, seed * 1000 + i, think, actions) for i in range(sessions)]
    for user in users:
        user.start()
    for user in users:
        user.join()
    return [r for u in users for r in u.records], time.time() - t0


def compare(args, prompts: list) -> dict:
    """Batched traces against one at a time (module doc): per mode the traces' wait, median and p95."""
    modes = {"batched": {"VISIT_BATCH": str(args.batch)}, "one at a time": {"VISIT_BATCH": "1"}}
    servers = {name: start_server(args.model, env, wait=False) for name, env in modes.items()}
    try:
        for proc, url in servers.values():
            wait_for(proc, url)
        records = {name: [] for name in modes}
        times = {name: 0.0 for name in modes}
        loads = []
        for r in range(args.rounds):
            for name in (modes if r % 2 == 0 else reversed(list(modes))):  # alternate, so drift hits both
                for _ in range(2):  # warm-up: first traces of each server load lazily
                    DashClient(servers[name][1], token=args.token, timeout=600).trace("warm", prompts[0][0])
                got, elapsed = drive(servers[name][1], args.token, prompts, args.sessions, args.seconds, args.think,
                                     seed=r, actions=(("trace", 1),))
                records[name] += got
                times[name] += elapsed
                loads.append(round(os.getloadavg()[0], 1))
        out = {}
        for name in modes:
            waits = [dt for action, dt, outcome in records[name] if action == "trace" and outcome == "ok"]
            out[name] = {"traces": len(waits), "errors": sum(o.startswith("error") for _, _, o in records[name]),
                         "median_wait_s": round(statistics.median(waits), 2) if waits else None,
                         "p95_wait_s": round(percentile(waits, 0.95), 2) if waits else None,
                         "traces_per_minute": round(60 * len(waits) / times[name], 1),
                         "error_samples": sorted({o for _, _, o in records[name] if o.startswith("error")})[:3]}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)
    time.sleep(0.5)  # the drain threads read the servers' last lines
    for name, (proc, _) in servers.items():
        out[name]["server_log"] = getattr(proc, "visit_notes", [])
    return {"compare": out, "load_average_after_each_phase": loads}


def forward_passes(model: str, prompts: list, rows: int, repeats: int = 3) -> dict:
    """In this process: ``rows`` prompts traced as one padded pass against one at a time (median seconds of
    ``repeats``, alternating), what the batching saves of the forward passes alone."""
    from visit.batching import TraceRequest, trace_batch
    from visit.models import load_model
    from visit.tracer import trace

    vm = load_model(model)
    chosen = [p for p, _ in prompts[:rows]]
    trace(vm, chosen[0])  # warm-up
    batched, alone = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trace_batch(vm, [TraceRequest(p) for p in chosen])
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in chosen:
            trace(vm, p)
        alone.append(time.perf_counter() - t0)
    return {"rows": len(chosen), "batched_pass_s": round(statistics.median(batched), 2),
            "one_at_a_time_s": round(statistics.median(alone), 2), "repeats": repeats}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a user's requests (s)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--tiny", action="store_true", help="serve a tiny random Llama instead of --model")
    parser.add_argument("--url", help="an already running server (its memory is not measured)")
    parser.add_argument("--token", default=os.environ.get("VISIT_TOKEN"))
    parser.add_argument("--session-bytes", help="VISIT_MAX_SESSION_BYTES for the started server")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--compare", action="store_true",
                        help="batched traces against one at a time, side by side (traces only)")
    parser.add_argument("--batch", type=int, default=20, help="VISIT_BATCH of the batched server (--compare)")
    parser.add_argument("--rounds", type=int, default=2, help="phases per mode (--compare)")
    args = parser.parse_args(argv)

    proc, url = None, args.url
    if args.tiny:
        import tempfile

        args.model = save_tiny_model(Path(tempfile.mkdtemp(prefix="visit-load-tiny-")))
    prompts = [(p.prompt, p.target) for p in load_prompt_file(default_prompt_file())]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{platform.system()} {platform.release()}")
    if args.compare:
        load_before = [round(x, 2) for x in os.getloadavg()]
        result = compare(args, prompts)
        result["forward_passes_only"] = forward_passes(args.model, prompts, args.sessions)
        result.update(sessions=args.sessions, seconds_per_phase=args.seconds, rounds=args.rounds, think_s=args.think,
                      batch=args.batch, model="tiny" if args.tiny else args.model, machine=machine,
                      load_average_before=load_before, load_average_after=[round(x, 2) for x in os.getloadavg()])
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 1 if any(m["errors"] for m in result["compare"].values()) else 0
    if url is None:
        extra = {"VISIT_MAX_SESSION_BYTES": args.session_bytes} if args.session_bytes else {}
        proc, url = start_server(args.model, extra)
    samples, stop_sampling = [], threading.Event()

    def sample():
        while not stop_sampling.is_set() and proc is not None:
            samples.append(rss_kib(proc.pid))
            stop_sampling.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rss_start = rss_kib(proc.pid) if proc else 0
    records, elapsed = drive(url, args.token, prompts, args.sessions, args.seconds, args.think, seed=0)
    stop_sampling.set()
    result = summarise(records, elapsed)
    result.update(sessions=args.sessions, seconds=round(elapsed, 1), model="tiny" if args.tiny else args.model,
                  load_average=[round(x, 2) for x in os.getloadavg()], machine=machine)
    if proc is not None:
        result.update(rss_start_mib=round(rss_start / 1024), rss_peak_mib=round(rss_kib(proc.pid, "VmHWM") / 1024),
                      rss_end_mib=round(rss_kib(proc.pid) / 1024),
                      rss_max_sampled_mib=round(max(samples, default=0) / 1024))
        proc.terminate()
        proc.wait(30)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
