#!/usr/bin/env python
"""Sampling throughput of emlab.sampling.sample at batch 1/8/32/64 vs a naive per-prompt generate loop
(fp32 and bf16), and the slowdown of active steer/ablate/capture hooks; prints JSON.

    python benchmarks/sampling.py [--full] [--out results.json]

Targets to report against (never asserted): >= 5x naive at batch 32; hook overhead <= 5%;
sampling >= 25% of the bf16 matmul peak at batch 64. `emlab bench` runs this and more.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="larger sizes and more repeats")
    parser.add_argument("--out", help="also write the full bench result JSON here")
    args = parser.parse_args(argv)

    from emlab.bench.threads import prefer_passive_wait

    prefer_passive_wait()  # before torch loads (see docs/performance.md)
    from emlab.bench.runner import preset, run_bench, with_sections, write_result
    from emlab.bench.sampling import sampling_summary

    config = with_sections(preset("full" if args.full else "quick"), ["sampling", "hooks"])
    result = run_bench(None, config, log=lambda s: print(f"bench: {s}", file=sys.stderr))
    if args.out:
        write_result(result, args.out)
    print(json.dumps(sampling_summary(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
