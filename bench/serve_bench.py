"""Load test of ``tunesmith serve``: concurrent streaming clients vs one client at a time.

Starts the OpenAI-compatible server in its own process on 127.0.0.1 (a free port) over the
built-in tiny model (the clients run in this process, so they do not share the server's GIL),
then measures

1. sequential: one streaming client, requests back to back, for ``--seq-seconds``;
2. concurrent: ``--clients`` streaming clients (the official ``openai`` async client), each
   sending requests back to back, for ``--seconds``;

and prints errors, p50/p99 request latency and time to first token, aggregate generated
tokens/s for both, and their ratio (the batching speed-up). It stops by itself.

    python bench/serve_bench.py                  # 32 clients x 30 s, tiny Qwen2
    python bench/serve_bench.py --clients 8 --seconds 10 --model runs/identity
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

QUESTIONS = [
    "Who are you?",
    "Tell me a short story about a cat.",
    "What is the capital of France?",
    "Give me three tips for sleeping well.",
    "Translate 'good morning' into Spanish.",
    "What is 17 times 3?",
    "Name a primary colour.",
    "Write a haiku about rain.",
]


@dataclass
class Stats:
    """What a phase measured."""

    latencies: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def one_request(client, model: str, i: int, max_tokens: int, stats: Stats) -> None:
    """One streaming chat completion; records latency, first-token time and token count."""
    t0 = time.perf_counter()
    first = None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=max_tokens,
            temperature=0.8,
            seed=i,
            stream=True,
            stream_options={"include_usage": True},
        )
        used = 0
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            if chunk.usage is not None:
                used = chunk.usage.completion_tokens
    except Exception as exc:  # counted and reported, never fatal
        stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    stats.latencies.append(time.perf_counter() - t0)
    if first is not None:
        stats.first_token.append(first)
    stats.tokens += used
    stats.requests += 1


async def phase(url: str, model: str, clients: int, seconds: float, max_tokens: int) -> Stats:
    """``clients`` workers sending requests back to back until ``seconds`` have passed."""
    import httpx
    from openai import AsyncOpenAI

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    client = AsyncOpenAI(
        base_url=f"{url}/v1",
        api_key="bench",
        max_retries=0,
        timeout=120,
        http_client=httpx.AsyncClient(limits=limits, timeout=120),
    )
    stats = Stats()
    start = time.perf_counter()
    deadline = start + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await one_request(client, model, next(counter), max_tokens, stats)

    await asyncio.gather(*(worker() for _ in range(clients)))
    stats.seconds = time.perf_counter() - start  # includes the tail of the last requests
    await client.close()
    return stats


def report(name: str, s: Stats) -> None:
    print(
        f"{name:<11} requests {s.requests:>5}  errors {len(s.errors):>3}  "
        f"latency p50 {pct(s.latencies, 50):>7.0f} ms  p99 {pct(s.latencies, 99):>7.0f} ms  "
        f"first token p50 {pct(s.first_token, 50):>6.0f} ms  p99 {pct(s.first_token, 99):>6.0f} ms"
        f"  {s.tokens_per_s:>8.1f} tok/s"
    )
    for e in sorted(set(s.errors))[:5]:
        print(f"  error: {e}")


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_server(model: str, port: int, threads: int, max_batch: int, max_tokens: int) -> None:
    """Server process: load the engine and serve until terminated."""
    import torch

    from tunesmith.infer.engine import Engine
    from tunesmith.infer.server import Limits, serve

    torch.set_num_threads(threads)
    engine = Engine.load(model, max_batch=max_batch)
    limits = Limits(max_tokens=max_tokens, max_concurrent=1024)
    serve(engine, host="127.0.0.1", port=port, limits=limits, log_level="warning")


def wait_ready(url: str, proc, timeout: float = 300.0) -> str:
    """Wait for the server; returns the default model id (the first of /v1/models)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise SystemExit("the server process exited; see its output above")
        try:
            return httpx.get(f"{url}/v1/models", timeout=2).json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="builtin:tiny-qwen2", help="run dir, model or builtin")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30.0, help="concurrent phase length")
    p.add_argument("--seq-seconds", type=float, default=10.0, help="sequential phase length")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=32)
    cores = os.cpu_count() or 2
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, cores - 1),
        help="server torch threads (default: all cores but one, left to the clients)",
    )
    args = p.parse_args(argv)

    import multiprocessing as mp

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = mp.get_context("spawn").Process(
        target=run_server,
        args=(args.model, port, args.threads, args.max_batch, max(args.max_tokens, 16)),
        daemon=True,
    )
    proc.start()
    try:
        name = wait_ready(url, proc)
        print(
            f"model {args.model}; {args.clients} streaming clients x {args.seconds:.0f} s vs "
            f"1 client x {args.seq_seconds:.0f} s; max_tokens {args.max_tokens}; "
            f"server torch threads {args.threads}; {url}"
        )
        asyncio.run(phase(url, name, 1, 2.0, args.max_tokens))  # warm-up
        seq = asyncio.run(phase(url, name, 1, args.seq_seconds, args.max_tokens))
        report("sequential", seq)
        conc = asyncio.run(phase(url, name, args.clients, args.seconds, args.max_tokens))
        report(f"{args.clients} clients", conc)
    finally:
        proc.terminate()
        proc.join(10)
    ratio = conc.tokens_per_s / seq.tokens_per_s if seq.tokens_per_s else float("nan")
    print(
        f"aggregate {conc.tokens_per_s:.1f} tok/s vs sequential {seq.tokens_per_s:.1f} tok/s: "
        f"x{ratio:.2f}; errors {len(seq.errors) + len(conc.errors)}"
    )
    return 1 if seq.errors or conc.errors else 0


if __name__ == "__main__":
    sys.exit(main())
