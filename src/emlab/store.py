"""The run store: one folder per run, a manifest, and atomic step outputs.

Layout of a run folder (under `runs/`, or `$EMLAB_RUNS`):

    manifest.json          versions, git revision, seeds, the resolved spec, status per step
    spec.yaml              the spec as written (for people; the manifest holds the resolved one)
    steps/<step>/          a finished step's outputs (appears only when the step is done)
    steps/<step>.partial/  a step in progress; resumable steps continue from it
    report/index.html      the report

A step writes into `<step>.partial/` and is committed by renaming that folder to
`<step>/` after writing `.step.json` (its summary) inside it. The rename is the
commit point: the manifest is a cache that `reconcile()` rebuilds from the disk,
so a kill -9 between the rename and the manifest update loses nothing. A run is
held by one process at a time through an advisory lock on `.lock`, which the OS
releases when that process dies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.io import read_json, write_json

MANIFEST = "manifest.json"
STEP_SUMMARY = ".step.json"
STATUSES = ("pending", "running", "done", "failed")
PACKAGES = ("torch", "transformers", "peft", "trl", "numpy", "pydantic", "safetensors", "sentence-transformers")


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    """Where runs live: the argument, else $EMLAB_RUNS, else ./runs."""
    return Path(override or os.environ.get("EMLAB_RUNS") or "runs")


def now() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    from emlab import __version__

    # emlab's own version comes from the source (the distribution is called emlab-research; an editable
    # install may still carry an older name), the others from the installed distributions.
    out: dict[str, str | None] = {"python": platform.python_version(), "emlab": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(where: Path | None = None) -> dict | None:
    """The git commit of the emlab source tree (and whether it has uncommitted changes), or None."""
    where = where or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


class Run:
    """A run folder. Create with `Run.create`, reopen with `Run.open`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock_fh = None

    # ----------------------------------------------------------- create / open

    @classmethod
    def create(
        cls,
        spec_name: str,
        resolved_spec: dict,
        steps: list[dict],
        seeds: dict[str, int],
        spec_text: str | None = None,
        spec_source: str | None = None,
        base: str | os.PathLike | None = None,
    ) -> Run:
        """Make a new run folder `<base>/<timestamp>-<spec name>` with a fresh manifest.

        `steps` is a list of {"name", "kind", "deps"} in execution order.
        """
        root_dir = runs_dir(base)
        root_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = _unique_dir(root_dir / f"{stamp}-{spec_name}")
        run = cls(root)
        spec_json = json.dumps(resolved_spec, sort_keys=True, default=str)
        manifest = {
            "emlab_manifest": 1,
            "run": root.name,
            "spec_name": spec_name,
            "spec_source": spec_source,
            "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
            "created": now(),
            "updated": now(),
            "versions": package_versions(),
            "git": git_revision(),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "seeds": seeds,
            "spec": resolved_spec,
            "steps": {
                s["name"]: {"kind": s["kind"], "deps": list(s.get("deps", ())), "status": "pending", "attempts": 0}
                for s in steps
            },
        }
        if spec_text is not None:
            (root / "spec.yaml").write_text(spec_text, encoding="utf-8")
        (root / "steps").mkdir()
        write_json(root / MANIFEST, manifest)
        return run

    @classmethod
    def open(cls, ref: str | os.PathLike, base: str | os.PathLike | None = None) -> Run:
        """Open a run by folder path or by run id under the runs folder."""
        p = Path(ref)
        candidates = [p, runs_dir(base) / p]
        for c in candidates:
            if (c / MANIFEST).exists():
                return cls(c)
        known = [r["run"] for r in list_runs(base)][-5:]
        hint = f"; recent runs: {', '.join(known)}" if known else ""
        raise EmlabError(f"run {str(ref)!r} not found (no {MANIFEST} in {p} or {runs_dir(base) / p}){hint}")

    # ----------------------------------------------------------- manifest

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict:
        data = read_json(self.manifest_path)
        if not isinstance(data, dict) or data.get("emlab_manifest") != 1:
            raise EmlabError(f"{self.manifest_path}: not an emlab run manifest (emlab_manifest != 1)")
        return data

    def _update(self, fn) -> dict:
        m = self.manifest()
        fn(m)
        m["updated"] = now()
        write_json(self.manifest_path, m)
        return m

    def step_names(self) -> list[str]:
        return list(self.manifest()["steps"])

    def step_status(self, name: str) -> str:
        return self._step(self.manifest(), name)["status"]

    def _step(self, m: dict, name: str) -> dict:
        if name not in m["steps"]:
            raise EmlabError(f"run {self.root.name} has no step {name!r}; steps: {', '.join(m['steps'])}")
        return m["steps"][name]

    # ----------------------------------------------------------- step folders

    def step_dir(self, name: str) -> Path:
        """The committed output folder of a step (exists only once the step is done)."""
        return self.root / "steps" / name

    def partial_dir(self, name: str) -> Path:
        return self.root / "steps" / f"{name}.partial"

    def begin(self, name: str, resumable: bool) -> Path:
        """Mark a step running and return its work folder.

        A resumable step keeps whatever an interrupted attempt left in its work
        folder (e.g. an evaluation journal); a non-resumable one starts clean.
        """
        work = self.partial_dir(name)
        if work.exists() and not resumable:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)

        def mark(m):
            s = self._step(m, name)
            s.update(
                status="running",
                started=now(),
                attempts=s.get("attempts", 0) + 1,
                resumed=resumable and any(work.iterdir()),
            )
            s.pop("error", None)
            s.pop("finished", None)

        self._update(mark)
        return work

    def finish(self, name: str, summary: dict, seconds: float, cpu_seconds: float | None = None) -> Path:
        """Commit a step: write its summary, rename the work folder into place, mark it done.

        `seconds` is wall time; `cpu_seconds` the process's CPU time (user + system), which on a
        machine shared with other jobs says more about the step's own cost than wall time.
        """
        work = self.partial_dir(name)
        record = {"step": name, "finished": now(), "seconds": round(seconds, 3), "summary": summary}
        if cpu_seconds is not None:
            record["cpu_seconds"] = round(cpu_seconds, 3)
        write_json(work / STEP_SUMMARY, record)
        final = self.step_dir(name)
        if final.exists():  # a forced re-run of a done step replaces its old outputs
            shutil.rmtree(final)
        os.rename(work, final)
        _fsync_dir(final.parent)
        self._update(lambda m: self._mark_done(m, name, record))
        return final

    def _mark_done(self, m: dict, name: str, record: dict) -> None:
        s = self._step(m, name)
        s.update(status="done", finished=record["finished"], seconds=record["seconds"], summary=record["summary"])
        if "cpu_seconds" in record:
            s["cpu_seconds"] = record["cpu_seconds"]
        s.pop("error", None)

    def amend_summary(self, name: str, summary: dict, note: str) -> None:
        """Replace a done step's summary after its outputs were re-derived in place (e.g. re-judged), saying so."""
        if self.step_status(name) != "done":
            raise EmlabError(
                f"step {name} of run {self.root.name} is not done; only a finished step's summary can be amended"
            )
        record = read_json(self.step_dir(name) / STEP_SUMMARY)
        record["summary"] = summary
        record["amended"] = [*record.get("amended", []), {"at": now(), "note": note}]
        write_json(self.step_dir(name) / STEP_SUMMARY, record)
        self._update(lambda m: self._step(m, name).update(summary=summary, amended=record["amended"]))

    def fail(self, name: str, error: str) -> None:
        def mark(m):
            s = self._step(m, name)
            s.update(status="failed", finished=now(), error=error)

        self._update(mark)

    def reconcile(self) -> dict:
        """Bring the manifest in line with the disk: committed folders are done, others are not.

        Called on resume: a step left `running` by a killed process becomes `pending`
        (its partial folder is kept for resumable steps); a step whose folder was
        committed but whose manifest update was lost becomes `done`.
        """

        def fix(m):
            for name, s in m["steps"].items():
                summary_file = self.step_dir(name) / STEP_SUMMARY
                if summary_file.exists():
                    if s["status"] != "done":
                        self._mark_done(m, name, read_json(summary_file))
                elif s["status"] in ("done", "running"):
                    s["status"] = "pending"

        return self._update(fix)

    def reset_step(self, name: str) -> None:
        """Forget a step's outputs so it runs again (used by `--rerun`)."""
        for d in (self.step_dir(name), self.partial_dir(name)):
            if d.exists():
                shutil.rmtree(d)
        self._update(lambda m: self._step(m, name).update(status="pending"))

    # ----------------------------------------------------------- lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process; a second process gets a clear error instead of corrupting it."""
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                raise EmlabError(
                    f"run {self.root} is in use by another process (pid {holder}); wait for it to finish or stop it first"
                ) from None
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(str(os.getpid()))
                fh.flush()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_locked(self) -> bool:
        lock = self.root / ".lock"
        if not lock.exists():
            return False
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    # ----------------------------------------------------------- summary

    def status(self) -> str:
        """done | failed | running | interrupted | pending | partial, from the manifest and the lock."""
        steps = self.manifest()["steps"].values()
        states = [s["status"] for s in steps]
        if states and all(x == "done" for x in states):
            return "done"
        if "failed" in states:
            return "failed"
        if "running" in states:
            return "running" if self.is_locked() else "interrupted"
        return "partial" if "done" in states else "pending"


def list_runs(base: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per run folder (oldest first): run, spec, created, status, steps done."""
    root = runs_dir(base)
    if not root.exists():
        return []
    rows = []
    for d in sorted(p for p in root.iterdir() if (p / MANIFEST).exists()):
        run = Run(d)
        try:
            m = run.manifest()
            status = run.status()
        except EmlabError as e:
            rows.append(
                {
                    "run": d.name,
                    "spec": "?",
                    "created": "?",
                    "status": f"unreadable: {e}",
                    "done": 0,
                    "total": 0,
                    "path": str(d),
                }
            )
            continue
        states = [s["status"] for s in m["steps"].values()]
        rows.append(
            {
                "run": d.name,
                "spec": m.get("spec_name", "?"),
                "created": m.get("created", "?"),
                "status": status,
                "done": states.count("done"),
                "total": len(states),
                "path": str(d),
            }
        )
    return rows


def _unique_dir(want: Path) -> Path:
    for i in range(1, 1000):
        candidate = want if i == 1 else want.with_name(f"{want.name}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise EmlabError(f"could not create a unique run folder next to {want}; clean up {want.parent}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
