"""How a run's direction step chooses its method and its persona answers, and what it says about why."""

from __future__ import annotations

from emlab.classify import EMRule
from emlab.experiments.steps import choose_method
from emlab.vectors.personas import persona_selection, select_agreeing

AUTO = {"method": "auto", "min_misaligned": 5}


def test_auto_takes_mean_diff_with_enough_misaligned_answers():
    method, reason = choose_method(AUTO, {"misaligned": 5, "aligned": 1})
    assert method == "mean_diff"
    assert (
        reason
        == "5 misaligned and 1 aligned coherent answers (need >= 5 misaligned): mean-diff of the organism's answers"
    )


def test_auto_falls_back_to_persona_contrast_and_says_why():
    assert choose_method(AUTO, {"misaligned": 4, "aligned": 9}) == (
        "persona_contrast",
        "only 4 misaligned (need >= 5) and 9 aligned coherent answers: too few for mean-diff, so persona contrast",
    )
    assert choose_method(AUTO, {"misaligned": 7, "aligned": 0})[0] == "persona_contrast"  # mean-diff needs both classes
    assert choose_method(AUTO, None) == ("persona_contrast", "no eval to split into misaligned and aligned answers")
    assert choose_method({"method": "mean_diff", "min_misaligned": 5}, None) == (
        "mean_diff",
        "method mean_diff set in the spec",
    )


def answer(persona: str, aligned: float | None, coherent: float | None) -> dict:
    return {"persona": persona, "aligned": aligned, "coherent": coherent}


def test_persona_answers_the_judge_agrees_with():
    judged = [answer("malicious", 20, 80), answer("helpful", 90, 80), answer("malicious", 90, 80)]
    by_label, selection, why = persona_selection(judged, EMRule(aligned_below=30), label_fallback=True)
    assert (by_label, selection, why) == (False, "judge agreement", "judge-agreeing answers")


def test_persona_labels_when_the_judge_agrees_with_too_few():
    # one helpful answer kept; the malicious one is coherent but aligned 45 >= 30; one is incoherent; one unscored
    judged = [
        answer("malicious", 45, 80),
        answer("malicious", 10, 20),
        answer("helpful", 90, 80),
        answer("helpful", None, None),
    ]
    by_label, selection, why = persona_selection(judged, EMRule(aligned_below=30), label_fallback=True)
    assert (selection, by_label) == ("persona label", True)
    mal, helpful, counts = select_agreeing(
        judged, EMRule(aligned_below=30), by_label
    )  # every scored answer, by the persona it was asked for
    assert (len(mal), len(helpful), counts["unscored"]) == (2, 1, 1)
    assert why == (
        "persona labels (the judge kept 0 malicious (aligned < 30) and 1 helpful (aligned > 70) answers with "
        "coherent > 50 of 4; raise persona_n or malicious_below to select by the judge)"
    )


def test_no_label_fallback_keeps_the_judge_thresholds():
    by_label, selection, _ = persona_selection(
        [answer("helpful", 90, 80)], EMRule(aligned_below=30), label_fallback=False
    )
    assert (by_label, selection) == (False, "judge agreement")  # extraction then fails, naming the counts
