"""Tracing overhead on time to first audio: the same turns with tracing off and at sampling 1.0.

    .venv/bin/python -m bench.tracing_overhead --runs 15

Starts `voxserve serve` twice on this machine (one Ray at a time): once with tracing off, once
exporting every turn's spans over OTLP/HTTP to a receiver in this process, and streams the same
recorded utterance `--runs` times against each. Reports client-side TTFA p50/p95 for both and
the ratio. Machines here are noisy: read the ratio together with the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.bench.server import LocalServer
from voxserve.bench.ttfa_single import DEFAULT_CLIP, summarise
from voxserve.client import read_wav, run_turn


async def _turns(url: str, audio: np.ndarray, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        r = await run_turn(url, audio, timeout_s=120)
        if r.ttfa_s is not None and r.status == "completed":
            out.append(r.ttfa_s * 1000)
        print(f"  run {i + 1:2d}/{runs}: ttfa {r.ttfa_s * 1000 if r.ttfa_s else float('nan'):6.0f} ms",
              flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--clip", default=str(DEFAULT_CLIP))
    parser.add_argument("--out", default="bench/results/tracing_overhead.json")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.e2e.otlp_receiver import OtlpReceiver

    audio = read_wav(args.clip)
    results: dict[str, Any] = {}
    receiver = OtlpReceiver().start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    for label, extra in (("off", {}),
                         ("on", {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}"})):
        print(f"tracing {label}: starting the server", flush=True)
        server = LocalServer(Path(f"/tmp/voxserve-bench-tracing-{label}.log"),
                             env={**base_env, **extra})
        try:
            asyncio.run(_turns(server.url, audio, 2))  # warm-up
            ttfa = asyncio.run(_turns(server.url, audio, args.runs))
        finally:
            server.stop()
        results[label] = {"ttfa_ms": summarise(ttfa), "values": ttfa}
    spans = len(receiver.snapshot())
    receiver.stop()
    off, on = results["off"]["ttfa_ms"], results["on"]["ttfa_ms"]
    results["p50_ratio_on_over_off"] = round(on["p50"] / off["p50"], 3)
    results["spans_received"] = spans
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\ntracing off: TTFA p50 {off['p50']:.0f} ms, p95 {off['p95']:.0f} ms (n={off['n']})")
    print(f"tracing on:  TTFA p50 {on['p50']:.0f} ms, p95 {on['p95']:.0f} ms (n={on['n']}), "
          f"{spans} spans received")
    print(f"p50 ratio on/off: {results['p50_ratio_on_over_off']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
