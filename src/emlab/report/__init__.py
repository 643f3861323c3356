"""The HTML report of a run folder: `build_report(run_dir)` (see render.py)."""
