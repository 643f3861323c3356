"""`emlab personas ...` and `emlab emotions ...`: thin typer commands over emlab.vectors.

Registered from emlab/cli.py with one line (`register(app)`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
personas_app = typer.Typer(no_args_is_help=True, help="Persona (trait) vectors: extract, steer, screen training data, preventative steering.")
emotions_app = typer.Typer(no_args_is_help=True, help="Emotion vectors: extract, geometry, readout, landscape, monitor, steer.")

ModelOpt = Annotated[str, typer.Option(help="embedded name, local folder or hub id")]
AdapterOpt = Annotated[Optional[str], typer.Option(help="peft adapter folder")]
JudgeOpt = Annotated[Optional[str], typer.Option(help="judge spec: offline, openai:MODEL, local:REF (default: openai if OPENAI_API_KEY is set, else offline)")]
SiteOpt = Annotated[Optional[str], typer.Option(help="site, e.g. blocks.20.resid_post (default: the artifact's pre-chosen 2/3-depth block)")]


def _model(model: str, adapter: str | None = None, dtype: str = "float32"):
    from emlab.models import load_model

    return load_model(model, dtype=dtype, adapter=adapter)


def _judge(spec: str | None):
    from emlab.judges import CachedJudge, default_judge_spec, get_judge

    return CachedJudge(get_judge(spec or default_judge_spec()))


def _params(max_new_tokens: int, temperature: float, seed: int, batch_size: int):
    from emlab.sampling import SamplingParams

    return SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)


def _floats(text: str, opt: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise EmlabError(f"{opt} {text!r}: write comma-separated numbers, e.g. 0,4,-4") from None


# ---------------------------------------------------------------- emotions


@emotions_app.command("extract")
def emotions_extract(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="folder for emotion_vectors.safetensors/json and stories.jsonl")],
    adapter: AdapterOpt = None,
    emotions: Annotated[Optional[Path], typer.Option(help="emotion list YAML (default: the shipped data/emotions.yaml)")] = None,
    stories: Annotated[Optional[Path], typer.Option(help="story bank YAML (default: the shipped data/emotion_stories.yaml)")] = None,
    per_situation: Annotated[int, typer.Option(help="stories per situation (x situations per emotion)")] = 3,
    offset: Annotated[int, typer.Option(help="warm-up: average token positions >= this")] = 8,
    neutral_variance: Annotated[float, typer.Option(help="project out neutral-text PCs explaining this fraction of variance (0 = none)")] = 0.5,
    sites: Annotated[Optional[list[str]], typer.Option("--site", help="sites (default: every blocks.{l}.resid_post)")] = None,
    batch_size: int = 16,
    dtype: str = "float32",
) -> None:
    """Extract one vector per emotion from stories (mean-subtracted, neutral PCs projected out)."""
    from emlab.io import write_jsonl
    from emlab.vectors.emotions import extract_emotion_vectors, load_emotions, load_stories

    t0 = time.perf_counter()
    cm = _model(model, adapter, dtype)
    ev, st = extract_emotion_vectors(cm, load_emotions(emotions), load_stories(stories), sites, per_situation, offset, neutral_variance, batch_size)
    ev.provenance["wall_time_s"] = round(time.perf_counter() - t0, 1)
    ev.save(out)
    write_jsonl(out / "stories.jsonl", [vars(s) for s in st])
    site = ev.default_site()
    console.print(f"emotion vectors: {out}  ({len(ev.names)} emotions, {len(st)} stories, {len(ev.sites)} sites; "
                  f"neutral PCs at {site}: {ev.provenance['neutral_components'].get(site)}; {ev.provenance['wall_time_s']} s)")


def register(app: typer.Typer) -> None:
    app.add_typer(personas_app, name="personas")
    app.add_typer(emotions_app, name="emotions")
