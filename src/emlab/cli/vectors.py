"""`emlab personas ...` and `emlab emotions ...`: thin typer commands over emlab.vectors.

Registered from emlab/cli.py with one line (`register(app)`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
personas_app = typer.Typer(
    no_args_is_help=True, help="Persona (trait) vectors: extract, steer, screen training data, preventative steering."
)
emotions_app = typer.Typer(
    no_args_is_help=True, help="Emotion vectors: extract, geometry, readout, landscape, monitor, steer."
)

ModelOpt = Annotated[str, typer.Option(help="embedded name, local folder or hub id")]
AdapterOpt = Annotated[str | None, typer.Option(help="peft adapter folder")]
JudgeOpt = Annotated[
    str | None,
    typer.Option(
        help="judge spec: offline, openai:MODEL, local:REF (default: openai if OPENAI_API_KEY is set, else offline)"
    ),
]
SiteOpt = Annotated[
    str | None,
    typer.Option(help="site, e.g. blocks.20.resid_post (default: the artifact's pre-chosen 2/3-depth block)"),
]


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
    emotions: Annotated[
        Path | None, typer.Option(help="emotion list YAML (default: the shipped data/emotions.yaml)")
    ] = None,
    stories: Annotated[
        Path | None, typer.Option(help="story bank YAML (default: the shipped data/emotion_stories.yaml)")
    ] = None,
    per_situation: Annotated[int, typer.Option(help="stories per situation (x situations per emotion)")] = 3,
    both_genders: Annotated[
        bool, typer.Option("--both-genders", help="write every story with a she- and a he-character (2x the stories)")
    ] = False,
    offset: Annotated[int, typer.Option(help="warm-up: average token positions >= this")] = 8,
    neutral_variance: Annotated[
        float, typer.Option(help="project out neutral-text PCs explaining this fraction of variance (0 = none)")
    ] = 0.5,
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="sites (default: every blocks.{l}.resid_post)")
    ] = None,
    batch_size: int = 16,
    dtype: str = "float32",
) -> None:
    """Extract one vector per emotion from stories (mean-subtracted, neutral PCs projected out)."""
    from emlab.io import write_jsonl
    from emlab.vectors.emotions import extract_emotion_vectors, load_emotions, load_stories

    t0 = time.perf_counter()
    cm = _model(model, adapter, dtype)
    ev, st = extract_emotion_vectors(
        cm,
        load_emotions(emotions),
        load_stories(stories),
        sites,
        per_situation,
        offset,
        neutral_variance,
        batch_size,
        both_genders=both_genders,
    )
    ev.provenance["wall_time_s"] = round(time.perf_counter() - t0, 1)
    ev.save(out)
    write_jsonl(out / "stories.jsonl", [vars(s) for s in st])
    site = ev.default_site()
    console.print(
        f"emotion vectors: {out}  ({len(ev.names)} emotions, {len(st)} stories, {len(ev.sites)} sites; "
        f"neutral PCs at {site}: {ev.provenance['neutral_components'].get(site)}; {ev.provenance['wall_time_s']} s)"
    )


def _emotion_vectors(path: Path):
    from emlab.vectors.emotions import EmotionVectors

    return EmotionVectors.load(path)


@emotions_app.command("geometry")
def emotions_geometry(
    vectors: Annotated[Path, typer.Argument(help="emotion-vector folder (emlab emotions extract)")],
    site: SiteOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="folder for geometry.json, circumplex.png, layers.png (default: VECTORS)")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap / permutation draws")] = 2000,
    no_neutral: Annotated[
        bool,
        typer.Option(
            "--no-neutral-projection", help="ablation: use the centred means without projecting out neutral PCs"
        ),
    ] = False,
    seed: int = 0,
) -> None:
    """PCA of the emotion vectors; PC1 ~ valence and PC2 ~ arousal (Pearson, Spearman, bootstrap CIs); circumplex plot."""
    from emlab.io import write_json
    from emlab.vectors.geometry import circumplex, layer_profile, plot_circumplex, plot_layer_profile

    ev = _emotion_vectors(vectors)
    if no_neutral:
        ev = ev.without_neutral_projection()
    dest = out or vectors
    dest.mkdir(parents=True, exist_ok=True)
    res = circumplex(ev, site, n_boot=n_boot, seed=seed)
    prof = layer_profile(ev)
    write_json(
        dest / "geometry.json", {**res, "layers": prof, "vectors": str(vectors), "model": ev.provenance.get("model")}
    )
    title = f"{ev.provenance.get('model')} ({len(ev.names)} emotions, {ev.provenance.get('n_stories')} stories)"
    plot_circumplex(res, dest / "circumplex.png", title)
    plot_layer_profile(prof, dest / "layers.png", title)
    table = Table("PC", "explained", "r(valence)", "r(arousal)", "r(dominance)")
    for r in res["pc_table"]:
        table.add_row(
            str(r["pc"]),
            f"{r['explained']:.3f}",
            f"{r['r_valence']:+.3f}",
            f"{r['r_arousal']:+.3f}",
            "-" if r["r_dominance"] is None else f"{r['r_dominance']:+.3f}",
        )
    console.print(table)
    for key, label in (("pc1_valence", "PC1 ~ valence"), ("pc2_arousal", "PC2 ~ arousal")):
        c = res[key]
        console.print(
            f"{label} at {res['site']}: Pearson {c['pearson']['r']:+.3f} {_ci(c['pearson']['ci95'])} (perm p {c['pearson']['p_perm']:.4f}); "
            f"Spearman {c['spearman']['r']:+.3f} {_ci(c['spearman']['ci95'])}  (n={c['n']})"
        )
    console.print(f"plots: {dest / 'circumplex.png'}, {dest / 'layers.png'}")


def _ci(x) -> str:
    return f"[{x[0]:+.2f}, {x[1]:+.2f}]" if x else "-"


@emotions_app.command("readout")
def emotions_readout(
    vectors: Annotated[Path, typer.Argument(help="emotion-vector folder")],
    text: Annotated[list[str], typer.Option("--text", "-t", help="text to read (repeatable)")],
    model: Annotated[str | None, typer.Option(help="model (default: the vectors' model)")] = None,
    adapter: AdapterOpt = None,
    site: SiteOpt = None,
    emotions: Annotated[str | None, typer.Option(help="comma-separated emotions (default: all)")] = None,
    top: Annotated[int, typer.Option(help="show the top-k emotions per token")] = 3,
    out: Annotated[Path | None, typer.Option(help="write the per-token scores as JSONL")] = None,
) -> None:
    """Per-token dot products of the residual stream with emotion vectors (unit length)."""
    from emlab.io import write_jsonl
    from emlab.vectors.emotions import names_from, readout

    ev = _emotion_vectors(vectors)
    cm = _model(model or ev.provenance["model"], adapter)
    rows = readout(cm, list(text), ev, site, names_from(emotions, ev))
    for r in rows:
        table = Table("token", *[f"top {i + 1}" for i in range(top)])
        names = list(r["scores"])
        for t, tokstr in enumerate(r["tokens"]):
            best = sorted(names, key=lambda n: -r["scores"][n][t])[:top]
            table.add_row(repr(tokstr), *[f"{n} {r['scores'][n][t]:+.2f}" for n in best])
        console.print(table)
    if out:
        write_jsonl(out, rows)


def _readers(
    emotion_dir: Path | None,
    emotions: str | None,
    emotion_site: str | None,
    personas: list[str] | None,
    persona_site: str | None,
):
    from emlab.vectors.directions import Direction
    from emlab.vectors.emotions import names_from
    from emlab.vectors.landscape import reader_vectors

    ev = _emotion_vectors(emotion_dir) if emotion_dir else None
    dirs = {}
    for spec in personas or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise EmlabError(f"--persona {spec!r}: write NAME=DIRECTION_FOLDER, e.g. evil=runs/persona-evil")
        dirs[name] = Direction.load(path)
    return reader_vectors(ev, names_from(emotions, ev) if ev else None, emotion_site, dirs, persona_site)


@emotions_app.command("landscape")
def emotions_landscape(
    run: Annotated[
        list[str],
        typer.Option("--run", help="LABEL=EVAL_RUN_FOLDER (repeatable; the first is the reference unless --reference)"),
    ],
    out: Annotated[Path, typer.Option(help="folder for landscape.json, projections.*.jsonl, landscape.png")],
    vectors: Annotated[Path | None, typer.Option(help="emotion-vector folder")] = None,
    emotions: Annotated[str | None, typer.Option(help="comma-separated emotions (default: all)")] = None,
    site: SiteOpt = None,
    persona: Annotated[list[str] | None, typer.Option("--persona", help="NAME=DIRECTION_FOLDER (repeatable)")] = None,
    persona_site: Annotated[
        str | None, typer.Option(help="site of the persona vectors (default: their 2/3-depth block)")
    ] = None,
    direction: Annotated[
        Path | None, typer.Option(help="misalignment direction: cosine of each vector with it")
    ] = None,
    reader: Annotated[
        str,
        typer.Option(
            help="own (each run's model + adapter from its eval.json) or a model reference read for every run"
        ),
    ] = "own",
    reference: Annotated[str | None, typer.Option(help="label of the reference run")] = None,
    n_boot: int = 2000,
    batch_size: int = 8,
) -> None:
    """Project finished eval runs' answers onto emotion / persona vectors; base vs organism vs control with bootstrap CIs."""
    from emlab.io import write_json
    from emlab.vectors.directions import Direction
    from emlab.vectors.landscape import landscape, plot_landscape, vector_cosines

    runs = {}
    for spec in run:
        label, sep, path = spec.partition("=")
        if not sep:
            raise EmlabError(f"--run {spec!r}: write LABEL=FOLDER, e.g. base=runs/eval-base")
        runs[label] = Path(path)
    readers = _readers(vectors, emotions, site, persona, persona_site)
    cache: dict = {}

    def cm_for(label, config):
        key = (config.get("model"), config.get("adapter")) if reader == "own" else (reader, None)
        if key not in cache:
            cache.clear()
            cache[key] = _model(key[0], key[1])
        return cache[key]

    t0 = time.perf_counter()
    res = landscape(runs, readers, cm_for, reference, n_boot, batch_size=batch_size, out_dir=out)
    if direction is not None:
        res["cosine_with_direction"] = {
            "direction": str(direction),
            **vector_cosines(readers, Direction.load(direction)),
        }
        write_json(out / "landscape.json", res)
    if len(runs) > 1:
        plot_landscape(res, out / "landscape.png")
    ref = res["reference"]
    others = [l for l in runs if l != ref]
    table = Table(
        "vector", f"{ref} mean", *[f"{l} - {ref} [95% CI]" for l in others], *(["cos(dir)"] if direction else [])
    )
    for row in res["table"]:
        cells = [
            f"{row[f'{l}-{ref}']['diff']:+.3f} {_ci(row[f'{l}-{ref}']['ci95'])}"
            + (" *" if row[f"{l}-{ref}"]["excludes_zero"] else "")
            for l in others
        ]
        cos = [f"{res['cosine_with_direction'][row['vector']]:+.3f}"] if direction else []
        table.add_row(row["vector"], f"{row[ref]['mean']:+.3f}", *cells, *cos)
    console.print(table)
    console.print(f"landscape: {out / 'landscape.json'}  ({time.perf_counter() - t0:.1f} s; * = CI excludes 0)")


@emotions_app.command("monitor")
def emotions_monitor(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="folder for traces.jsonl, summary.json, traces.png")],
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", "-p", help="user message (repeatable; default: the question set)")
    ] = None,
    questions: Annotated[
        str | None, typer.Option(help="question set (first paraphrase of each question): core, pressure, a YAML path")
    ] = None,
    adapter: AdapterOpt = None,
    vectors: Annotated[Path | None, typer.Option(help="emotion-vector folder")] = None,
    emotions: Annotated[str | None, typer.Option(help="comma-separated emotions to monitor")] = "calm,desperate",
    site: SiteOpt = None,
    persona: Annotated[list[str] | None, typer.Option("--persona", help="NAME=DIRECTION_FOLDER (repeatable)")] = None,
    persona_site: Annotated[str | None, typer.Option(help="site of the persona vectors")] = None,
    n: Annotated[int, typer.Option("-n", help="samples per prompt")] = 1,
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
) -> None:
    """Sample while recording each generated token's projection onto emotion / persona vectors."""
    from emlab.io import write_json
    from emlab.sampling import Prompt
    from emlab.vectors.monitor import monitored_sample, plot_traces, summarize_traces, write_traces
    from emlab.vectors.steer import question_set

    readers = _readers(vectors, emotions, site, persona, persona_site)
    prompts = [Prompt(id=f"p{i}", messages=[{"role": "user", "content": p}]) for i, p in enumerate(prompt or [])]
    if questions:
        prompts += [
            Prompt(
                id=q.id,
                messages=([{"role": "system", "content": q.system}] if q.system else [])
                + [{"role": "user", "content": q.paraphrases[0]}],
            )
            for q in question_set(questions)
        ]
    if not prompts:
        raise EmlabError("emlab emotions monitor needs --prompt TEXT or --questions SET")
    cm = _model(model, adapter)
    t0 = time.perf_counter()
    traces = monitored_sample(cm, prompts, n, _params(max_new_tokens, temperature, seed, batch_size), readers)
    write_traces(out / "traces.jsonl", traces)
    summary = summarize_traces(traces)
    write_json(
        out / "summary.json",
        {"model": cm.provenance(), "readers": {k: s for k, (s, _) in readers.items()}, "summary": summary},
    )
    plot_traces(traces, out / "traces.png", title=f"{cm.ref}: per-token projections")
    table = Table("vector", "answers", "mean", "first quarter", "last quarter")
    for name, s in summary.items():
        table.add_row(name, str(s["n"]), _fmt(s["mean"]), _fmt(s["first_quarter"]), _fmt(s["last_quarter"]))
    console.print(table)
    console.print(f"traces: {out / 'traces.jsonl'}  plot: {out / 'traces.png'}  ({time.perf_counter() - t0:.1f} s)")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:+.3f}"


def steer_command(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="steering folder (rerun to resume)")],
    condition: Annotated[
        list[str],
        typer.Option(
            "--condition",
            "-c",
            help="NAME:SCALE with NAME an emotion or a --persona name, SCALE x the site's residual norm (repeatable)",
        ),
    ],
    vectors: Annotated[Path | None, typer.Option(help="emotion-vector folder")] = None,
    persona: Annotated[list[str] | None, typer.Option("--persona", help="NAME=DIRECTION_FOLDER (repeatable)")] = None,
    site: Annotated[
        str | None, typer.Option(help="site to steer at (default: the emotion vectors' 2/3-depth block)")
    ] = None,
    questions: Annotated[
        list[str],
        typer.Option(
            "--questions", help="question sets (repeatable): core, pressure (shipped with vectors/), a YAML path"
        ),
    ] = ["core", "pressure"],  # noqa: B006
    max_questions: Annotated[int | None, typer.Option(help="use only the first N questions of each set")] = None,
    adapter: AdapterOpt = None,
    n: Annotated[int, typer.Option("-n", help="samples per question")] = 4,
    judge: JudgeOpt = None,
    positions: Annotated[str, typer.Option(help="all | response")] = "all",
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
) -> None:
    """Steer with emotion / persona vectors (e.g. calm vs desperate) on EM questions and pressure scenarios; judged table with Wilson CIs."""
    from emlab.vectors.directions import Direction
    from emlab.vectors.steer import Condition, markdown_table, parse_conditions, question_set, steering_table

    ev = _emotion_vectors(vectors) if vectors else None
    dirs = {}
    for spec in persona or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise EmlabError(f"--persona {spec!r}: write NAME=DIRECTION_FOLDER")
        dirs[name] = Direction.load(path)
    chosen = site or (ev.default_site() if ev else None)
    if chosen is None:
        raise EmlabError("pass --site (or --vectors, whose pre-chosen site is used)")

    def lookup(name):
        if name in dirs:
            return dirs[name]
        if ev is not None and name in ev.names:
            return ev.direction(name, [chosen])
        raise EmlabError(
            f"condition vector {name!r} is neither an emotion of --vectors nor a --persona name ({', '.join(dirs) or 'none given'})"
        )

    conds = [
        Condition(label, lookup(name), chosen, scale) for name, label, scale in parse_conditions(condition, lookup)
    ]
    qsets = [question_set(q).first(max_questions) for q in questions]
    cm = _model(model, adapter)
    t0 = time.perf_counter()
    rows = steering_table(
        cm, conds, qsets, n, _judge(judge), out, _params(max_new_tokens, temperature, seed, batch_size), positions
    )
    console.print(markdown_table(rows))
    console.print(f"table: {out / 'steering_table.md'}  ({time.perf_counter() - t0:.1f} s)")


emotions_app.command("steer")(steer_command)
personas_app.command("steer")(steer_command)


# ---------------------------------------------------------------- personas


@personas_app.command("traits")
def personas_traits(
    traits: Annotated[Path | None, typer.Option(help="traits YAML (default: the shipped data/traits.yaml)")] = None,
) -> None:
    """List the traits, their prompt pairs and questions, and how the offline judge scores each."""
    from emlab.vectors.persona_vectors import load_traits

    table = Table("trait", "prompt pairs", "questions", "offline judge", "description")
    for t in load_traits(traits).values():
        off = (
            "none (no filtering)"
            if t.offline is None
            else ("100 - aligned" if t.offline.get("invert", True) else "aligned")
        )
        table.add_row(t.name, str(len(t.express)), str(len(t.questions)), off, t.description)
    console.print(table)


@personas_app.command("extract")
def personas_extract(
    model: ModelOpt,
    trait: Annotated[str, typer.Option(help="trait name (emlab personas traits)")],
    out: Annotated[Path, typer.Option(help="direction folder to write (+ trait_answers.jsonl)")],
    traits: Annotated[Path | None, typer.Option(help="traits YAML (default: the shipped data/traits.yaml)")] = None,
    adapter: AdapterOpt = None,
    judge: JudgeOpt = None,
    n: Annotated[int, typer.Option("-n", help="samples per (prompt, question)")] = 1,
    prompts: Annotated[int | None, typer.Option(help="use the first K prompt pairs")] = None,
    max_questions: Annotated[int | None, typer.Option(help="use the first N questions")] = None,
    answers: Annotated[
        Path | None, typer.Option(help="reuse trait_answers.jsonl (judged afresh) instead of sampling")
    ] = None,
    express_above: Annotated[float, typer.Option(help="expressing answers need trait score > this")] = 50.0,
    suppress_below: Annotated[float, typer.Option(help="non-expressing answers need trait score < this")] = 50.0,
    measure: Annotated[
        str, typer.Option(help="generated (trait prompt in context) | default (template's system prompt) | none")
    ] = "generated",
    sites: Annotated[list[str] | None, typer.Option("--site", help="sites (default: every resid_post)")] = None,
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
) -> None:
    """Persona vector from trait-expressing vs trait-suppressing system prompts: mean(expressing) - mean(non-expressing)."""
    from emlab.io import read_jsonl
    from emlab.vectors.persona_vectors import TraitThresholds, get_trait, persona_vector_pipeline

    t = get_trait(trait, traits)
    cm = _model(model, adapter)
    t0 = time.perf_counter()
    d, _judged = persona_vector_pipeline(
        cm,
        t,
        _judge(judge),
        n,
        _params(max_new_tokens, temperature, seed, batch_size),
        out,
        prompts,
        max_questions,
        read_jsonl(answers) if answers else None,
        sites=sites,
        thresholds=TraitThresholds(express_above, suppress_below),
        measure=measure,
        batch_size=8,
    )
    c = d.provenance["class_counts"]
    console.print(
        f"persona vector {trait}: {out}  (judging: {d.provenance['judging']['mode']} by {d.provenance['judging']['judge']}; kept "
        f"{c['express_kept']}/{c['express_answers']} expressing, {c['suppress_kept']}/{c['suppress_answers']} non-expressing; "
        f"{len(d.sites)} sites; {time.perf_counter() - t0:.1f} s)"
    )


@personas_app.command("screen")
def personas_screen(
    model: ModelOpt,
    data: Annotated[Path, typer.Option(help="training data: OpenAI-messages JSONL")],
    direction: Annotated[Path, typer.Option(help="persona direction folder")],
    out: Annotated[Path, typer.Option(help="ranked JSONL to write")],
    site: Annotated[str | None, typer.Option(help="site (default: the direction's 2/3-depth block)")] = None,
    limit: Annotated[int | None, typer.Option(help="screen only the first N examples")] = None,
    adapter: AdapterOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="length of the base model's greedy answers")] = 120,
    batch_size: int = 8,
) -> None:
    """Rank training examples by projection difference (dataset response minus the base model's own answer)."""
    from emlab.io import write_jsonl
    from emlab.sampling import SamplingParams
    from emlab.train import read_conversations
    from emlab.vectors.directions import Direction
    from emlab.vectors.screening import screen

    d = Direction.load(direction)
    convs = read_conversations(data)[:limit]
    cm = _model(model, adapter)
    s = site or d.default_site()
    t0 = time.perf_counter()
    rows = screen(
        cm,
        convs,
        d,
        s,
        params=SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=16),
        batch_size=batch_size,
    )
    write_jsonl(out, sorted(rows, key=lambda r: r["rank"]))
    table = Table("rank", "#", "score", "train", "base", "prompt")
    for r in sorted(rows, key=lambda r: r["rank"])[:10]:
        table.add_row(
            str(r["rank"]),
            str(r["index"]),
            f"{r['score']:+.3f}",
            f"{r['proj_train']:+.2f}",
            f"{r['proj_base']:+.2f}",
            r["prompt"][:50],
        )
    console.print(table)
    console.print(f"ranked: {out}  ({len(rows)} examples at {s}; {time.perf_counter() - t0:.1f} s)")


@personas_app.command("train-steered")
def personas_train_steered(
    model: ModelOpt,
    data: Annotated[Path, typer.Option(help="training data: OpenAI-messages JSONL")],
    direction: Annotated[Path, typer.Option(help="persona direction folder")],
    out: Annotated[Path, typer.Option(help="training output folder (rerun with --resume to continue)")],
    scale: Annotated[
        float, typer.Option(help="added scale x vector (unit scaling: absolute units of the residual stream)")
    ],
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="sites to steer (default: the direction's 2/3-depth block)")
    ] = None,
    preset: Annotated[str, typer.Option(help="training preset (emlab train presets)")] = "rank1-middle",
    override: Annotated[
        list[str] | None, typer.Option("--set", help="override a config key: --set lr=1e-4 (repeatable)")
    ] = None,
    scaling: Annotated[str, typer.Option(help="unit | raw")] = "unit",
    resume: bool = False,
) -> None:
    """Preventative steering: fine-tune while adding a persona vector at a site (the saved adapter is unsteered)."""
    from emlab.train import load_preset
    from emlab.vectors.directions import Direction
    from emlab.vectors.screening import train_with_steering

    d = Direction.load(direction)
    cm = _model(model)
    config = load_preset(preset, list(override or []))
    s = list(sites or [d.default_site()])
    t0 = time.perf_counter()
    res = train_with_steering(cm, data, config, out, d, s, scale, scaling, resume)
    console.print(
        f"adapter: {out}  ({res.steps} steps, final loss {res.final_loss}; steered at {', '.join(s)} x {scale}; {time.perf_counter() - t0:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(personas_app, name="personas")
    app.add_typer(emotions_app, name="emotions")
