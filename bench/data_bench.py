"""Preprocessing throughput: alpaca_en_demo x20 through the data engine, cold and cached.

Run: ``PYTHONPATH=src python bench/data_bench.py [--copies 20] [--num-proc 1 2]``

Prints rows/s and tokens/s for a cold run (read, convert, render with the template, tokenise,
self-check, store in the cache) at each ``num_proc``, then for a run served from the on-disk cache.
Uses the built-in tiny Qwen2 tokenizer and its ChatML template; everything stays offline, in a
temporary cache directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"


def main() -> None:
    """Run the benchmark and print one line per configuration."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-length", type=int, default=2048)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    os.environ.setdefault("TUNESMITH_CACHE", str(tmp / "cache"))
    sys.path.insert(0, str(REPO / "src"))
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.engine import build_renderer, prepare
    from tunesmith.model.loader import load_tokenizer

    rows = json.loads(ALPACA.read_text(encoding="utf-8")) * args.copies
    data = tmp / f"alpaca_en_demo_x{args.copies}.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    tokenizer = load_tokenizer("builtin:tiny-qwen2")
    print(
        f"{len(rows):,} rows ({ALPACA.name} x{args.copies}), tiny-qwen2 tokenizer, "
        f"{os.cpu_count()} CPU core(s)"
    )

    def run(num_proc: int | None, cache: bool) -> tuple[float, int, str]:
        cfg = DataConfig(
            datasets=[{"path": str(data), "shuffle": False}],
            max_length=args.max_length,
            packing=False,
            cache=cache,
            num_proc=num_proc,
        )
        renderer = build_renderer(tokenizer, cfg)
        t0 = time.perf_counter()
        out = prepare(cfg, renderer)
        seconds = time.perf_counter() - t0
        tokens = sum(len(s["input_ids"]) for s in out.train)
        return seconds, tokens, out.report.sources[0].cache

    def show(label: str, seconds: float, tokens: int) -> None:
        print(
            f"{label:<26} {seconds:7.2f} s  {len(rows) / seconds:>10,.0f} rows/s  "
            f"{tokens / seconds:>12,.0f} tokens/s"
        )

    for n in args.num_proc:
        seconds, tokens, _ = run(n, cache=False)
        show(f"cold, num_proc={n}", seconds, tokens)
    seconds, tokens, state = run(None, cache=True)  # fills the cache (automatic num_proc)
    show(f"cold + cache write ({state})", seconds, tokens)
    seconds, tokens, state = run(None, cache=True)
    show(f"cached ({state})", seconds, tokens)


if __name__ == "__main__":
    main()
