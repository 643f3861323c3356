"""Benchmarks: throughput of emlab's hot paths against a naive baseline measured in the same run.

Every figure is a rate (tokens/s, answers/s) or a time, printed next to its baseline, their
ratio, and the fraction of the machine's measured matmul peak it reaches. Performance is
judged from these figures, never from timed assertions in tests. Entry points:
`emlab.bench.runner.run_bench` (Python) and `emlab bench --quick|--full` (CLI).

Importing this package is cheap: torch is imported by the modules that need it.
"""
