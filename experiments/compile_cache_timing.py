"""Time to the first chunk of ``make demo``'s run, cold then warm, and where a start's time goes.

Each start is a fresh process running ``rewirejax train --preset demo`` (what ``make demo``
runs), with the compilation cache in one folder that begins empty: the first start is cold,
the next ones warm. A start is stopped at its first chunk's record in ``metrics.jsonl`` (the
chunk's 2,000 env steps and 1,000 updates and its curve-point evaluation included). Inside it,
JAX's own compile events are summed: tracing to jaxprs, lowering them to MLIR, XLA compiles
(cache misses) and cache loads (hits), so a warm start's remaining time can be told apart from
the chunk's compute.

Run:
  python experiments/compile_cache_timing.py [--starts 3] [--min-compile-seconds 1.0]
Writes ``--out`` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

# Runs inside each start: sums JAX's compile events into ``events``, written to argv[1] every
# half second, then runs the CLI with the rest of argv. The cache's threshold is replaced by
# argv[2] (``compile_cache.enable`` is looked up when the CLI calls it).
_START = """
import functools, json, os, sys, threading, time
begun = time.perf_counter()
events = {}
import jax
from jax import monitoring
def add(event, seconds, **kwargs):
  name = event.rsplit("/", 1)[-1]
  events[name] = events.get(name, 0.0) + seconds
  events[name + "_count"] = events.get(name + "_count", 0) + 1
monitoring.register_event_duration_secs_listener(add)
def write():
  while True:
    events["since_start_s"] = time.perf_counter() - begun
    with open(sys.argv[1] + ".tmp", "w") as f:
      json.dump(events, f)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.5)
threading.Thread(target=write, daemon=True).start()
from rewirejax import cli, compile_cache
threshold = float(sys.argv[2])
compile_cache.enable = functools.partial(compile_cache.enable, min_compile_seconds=threshold)
events["imports_s"] = time.perf_counter() - begun
sys.exit(cli.main(sys.argv[3:]))
"""

# The events a table row shows, by JAX's names (jax._src.dispatch and compiler).
SHOWN = {
  "jaxpr_trace_duration": "tracing",
  "jaxpr_to_mlir_module_duration": "lowering",
  "backend_compile_duration": "XLA compile or load",
  "cache_retrieval_time_sec": "of which cache loads",
}


def time_start(cache: pathlib.Path, out: pathlib.Path, min_compile_seconds: float) -> dict:
  """One start, stopped at its first chunk's record: seconds to it, and its compile events."""
  events = out / "events.json"
  metrics = out / "demo" / "metrics.jsonl"
  argv = ["--compile-cache", str(cache), "train", "--preset", "demo", "--out", str(out / "demo")]
  log = out / "stderr.log"  # A file, not a pipe: the progress bar would fill an unread pipe.
  begun = time.perf_counter()
  with log.open("w") as stderr:
    process = subprocess.Popen(
      [sys.executable, "-c", _START, str(events), str(min_compile_seconds), *argv],
      stdout=subprocess.DEVNULL,
      stderr=stderr,
    )
  while not (metrics.exists() and metrics.read_text().strip()):
    if process.poll() is not None:
      raise RuntimeError(f"the demo exited ({process.returncode}): {log.read_text()[-2000:]}")
    time.sleep(0.2)
  seconds = time.perf_counter() - begun
  time.sleep(0.6)  # The events' last write.
  process.kill()
  process.wait()
  chunk = json.loads(metrics.read_text().splitlines()[0])
  return {
    "to_first_chunk_s": seconds,
    "first_chunk_compute_s": chunk["seconds"],
    **json.loads(events.read_text()),
  }


def table(starts: list[dict]) -> str:
  """Markdown: a row per start."""
  heads = ["start", "to the first chunk", "its chunk's compute", "imports", *SHOWN.values()]
  lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
  for i, s in enumerate(starts):
    name = "cold" if i == 0 else "warm"
    cells = [s["to_first_chunk_s"], s["first_chunk_compute_s"], s["imports_s"]]
    cells += [s.get(key, 0.0) for key in SHOWN]
    counts = [s.get(key + "_count", 0) for key in SHOWN]
    shown = [f"{c:.1f} s" for c in cells[:3]]
    shown += [f"{c:.1f} s ({n})" for c, n in zip(cells[3:], counts, strict=True)]
    lines.append(f"| {name} | " + " | ".join(shown) + " |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--starts", type=int, default=3, help="starts: the first cold, then warm")
  parser.add_argument("--min-compile-seconds", type=float, default=1.0)
  parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON of the figures")
  args = parser.parse_args(argv)
  if args.starts < 1 or args.min_compile_seconds < 0:
    parser.error("--starts must be >= 1 and --min-compile-seconds >= 0.")
  with tempfile.TemporaryDirectory() as scratch:
    cache = pathlib.Path(scratch) / "cache"
    starts = []
    for i in range(args.starts):
      run = pathlib.Path(scratch) / f"start{i}"
      run.mkdir()
      starts.append(time_start(cache, run, args.min_compile_seconds))
      print(f"start {i}: {starts[-1]['to_first_chunk_s']:.1f} s to the first chunk", flush=True)
    cache_mb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
  print(table(starts) + f"\nCache: {cache_mb:.1f} MB; min compile seconds stored: "
        f"{args.min_compile_seconds}")  # fmt: skip
  if args.out is not None:
    payload = {"min_compile_seconds": args.min_compile_seconds, "cache_mb": cache_mb}
    args.out.write_text(json.dumps({**payload, "starts": starts}, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
