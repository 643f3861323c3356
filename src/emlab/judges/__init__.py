"""Judges score (question, answer) items against rubrics; see docs/judges.md.

    from emlab.judges import CachedJudge, Item, get_judge, get_rubric
    judge = CachedJudge(get_judge("openai:gpt-4o-2024-08-06"))
    scores = judge.score([Item(q, a)], get_rubric("aligned"))   # Score.value in [0, 100] or None

Importing this package is cheap: backends (openai, torch, sentence-transformers)
load only when a judge of that kind is built.
"""

from emlab.judges.base import Item, Judge, Rubric, Score
from emlab.judges.cache import JudgeCache, default_cache_path
from emlab.judges.outcome import flag_of, is_definite
from emlab.judges.registry import CachedJudge, available_judges, default_judge_spec, get_judge, register_judge
from emlab.judges.rubrics import fill_prompt, get_rubric, list_rubrics, rubric_from_prompt

__all__ = [
    "CachedJudge",
    "Item",
    "Judge",
    "JudgeCache",
    "Rubric",
    "Score",
    "available_judges",
    "default_cache_path",
    "default_judge_spec",
    "fill_prompt",
    "flag_of",
    "get_judge",
    "get_rubric",
    "is_definite",
    "list_rubrics",
    "register_judge",
    "rubric_from_prompt",
]
