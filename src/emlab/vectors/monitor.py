"""Monitoring: the projection of every generated token onto chosen vectors, recorded while sampling.

    readers = {"calm": ("blocks.20.resid_post", v_calm), "evil": ("blocks.20.resid_post", v_evil)}
    with monitor(cm.model, readers) as mon:
        records = sample(cm, prompts, n=2, params=params)
    traces = mon.traces()            # one per sequence generated, in generation order

`monitor` reads through `hooks.capture(positions="response", reduce=None)` (forward hooks removed on exit,
logits unchanged: tested bit-identical) plus a forward pre-hook on the causal LM that records the token
fed at each decode step. A trace's position t is the residual activation at the step that READS generated
token t (so the projection says what the model holds after writing it), for t = 1 .. T-1: the last
generated token (end-of-turn, or the last one at max_new_tokens) is never fed back during generation, so it
has no activation; `emotions.readout` on the finished text gives every position by teacher forcing.
Projections are onto unit vectors: score_t = act_t . v / |v|.

`monitored_sample` runs `sampling.iter_sample` batch by batch inside the monitor, so each trace is paired
with its SampleRecord; `write_traces` stores them as JSONL, `plot_traces` draws them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emlab.errors import EmlabError

Readers = Mapping[str, tuple[str, torch.Tensor]]


def unit_readers(readers: Readers) -> dict[str, tuple[str, torch.Tensor]]:
    out = {}
    for name, (site, v) in readers.items():
        v = torch.as_tensor(v).float()
        n = v.norm()
        if v.ndim != 1 or n == 0:
            raise EmlabError(f"reader {name!r} at {site}: needs a non-zero 1-D vector, got shape {tuple(v.shape)}")
        out[name] = (site, v / n)
    return out


@dataclass
class Monitor:
    """What `monitor` recorded: per-token projections and fed token ids of every sequence it saw."""

    readers: dict[str, tuple[str, torch.Tensor]]
    captured: Any = None  # hooks.Captured
    groups: list[list[torch.Tensor]] = field(
        default_factory=list
    )  # per prefill group: ids fed at each decode step [batch]

    def traces(self) -> list[dict[str, Any]]:
        """[{"token_ids": [..], "projections": {name: [..]}}] per sequence, in the order generated."""
        sites = sorted({s for s, _ in self.readers.values()})
        per_site = {s: self.captured.per_token(s) for s in sites}
        n = len(per_site[sites[0]])
        ids_rows: list[list[int]] = []
        for steps in self.groups:
            if not steps:
                continue
            mat = torch.stack(steps, 1)  # [batch, steps]
            ids_rows.extend(mat.tolist())
        out = []
        for i in range(n):
            proj = {}
            for name, (site, u) in self.readers.items():
                acts = per_site[site][i]
                proj[name] = (acts.double() @ u.double()).tolist() if acts.numel() else []
            k = len(next(iter(proj.values())))
            out.append({"token_ids": ids_rows[i][:k] if i < len(ids_rows) else [], "projections": proj})
        return out


@contextlib.contextmanager
def monitor(model, readers: Readers) -> Iterator[Monitor]:
    """Record, for every generated token, its projection onto each reader's unit vector at the reader's site."""
    from emlab.hooks import capture, causal_lm

    mon = Monitor(unit_readers(readers))
    sites = sorted({s for s, _ in mon.readers.values()})

    def record_ids(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return None
        cache_pos = kwargs.get("cache_position")
        prefill = ids.shape[1] > 1 or not mon.groups or (cache_pos is not None and int(cache_pos.reshape(-1)[0]) == 0)
        if prefill:
            mon.groups.append([])
        else:
            mon.groups[-1].append(ids[:, -1].detach().cpu())
        return None

    handle = causal_lm(model).register_forward_pre_hook(record_ids, with_kwargs=True)
    try:
        with capture(model, sites, positions="response", reduce=None) as cap:
            mon.captured = cap
            yield mon
    finally:
        handle.remove()


def monitored_sample(cm, prompts: Sequence, n: int, params, readers: Readers, system="default") -> list[dict[str, Any]]:
    """Sample with the monitor on; one dict per answer: the SampleRecord's fields + tokens + projections."""
    from emlab.sampling import iter_sample

    out = []
    it = iter_sample(cm, list(prompts), n, params, system)
    while True:
        with monitor(cm.model, readers) as mon:
            try:
                records = next(it)
            except StopIteration:
                break
        traces = mon.traces()
        if len(traces) != len(records):
            raise EmlabError(
                f"monitor saw {len(traces)} sequences for a batch of {len(records)} answers; was another generate call made inside it?"
            )
        for rec, tr in zip(records, traces, strict=True):
            tokens = [cm.tokenizer.decode([t]) for t in tr["token_ids"]]
            out.append(
                {
                    **rec.to_dict(),
                    "tokens": tokens,
                    "projections": tr["projections"],
                    "sites": {k: s for k, (s, _) in readers.items()},
                }
            )
    order = {}
    for i, p in enumerate(prompts):
        order[getattr(p, "id", f"p{i}")] = i
    return sorted(out, key=lambda r: (order.get(r["prompt_id"], 0), r["sample_index"]))


def write_traces(path: str | Path, traces: Sequence[Mapping[str, Any]]) -> Path:
    from emlab.io import write_jsonl

    write_jsonl(path, [dict(t) for t in traces])
    return Path(path)


def summarize_traces(traces: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per reader: mean over answers of the per-answer mean projection, and of its first / last quarter
    (None where no answer has a token), and the number of answers `n`."""
    out: dict[str, dict[str, float | None]] = {}
    names = list(traces[0]["projections"]) if traces else []
    for name in names:
        means, first, last = [], [], []
        for t in traces:
            p = t["projections"][name]
            if not p:
                continue
            q = max(1, len(p) // 4)
            means.append(sum(p) / len(p))
            first.append(sum(p[:q]) / q)
            last.append(sum(p[-q:]) / q)
        out[name] = {
            "n": len(means),
            "mean": sum(means) / len(means) if means else None,
            "first_quarter": sum(first) / len(first) if first else None,
            "last_quarter": sum(last) / len(last) if last else None,
        }
    return out


def plot_traces(
    traces: Sequence[Mapping[str, Any]],
    path: str | Path,
    names: Sequence[str] | None = None,
    max_lines: int = 8,
    title: str = "",
) -> Path:
    """One panel per reader: per-token projection of up to `max_lines` answers (thin) and the mean by position (thick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from emlab.io import atomic_path

    names = list(names or (traces[0]["projections"] if traces else []))
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.4 * max(1, len(names))), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        rows = [t["projections"][name] for t in traces if t["projections"][name]]
        for r in rows[:max_lines]:
            ax.plot(r, lw=0.7, alpha=0.5)
        if rows:
            width = max(len(r) for r in rows)
            m = np.full((len(rows), width), np.nan)
            for i, r in enumerate(rows):
                m[i, : len(r)] = r
            ax.plot(np.nanmean(m, 0), color="k", lw=2, label=f"mean of {len(rows)} answers")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel(f"{name}\nprojection", fontsize=8)
    axes[-1, 0].set_xlabel("generated token")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return dest
