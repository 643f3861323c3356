"""Emotion vectors on tiny random models: exact arithmetic of the recipe, readout, artifact, data files, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlab.errors import EmlabError
from emlab.vectors import emotions as E
from emlab.vectors import geometry as G
from tests.conftest import tiny_chat_model

BANK_YAML = """
version: 1
characters:
  - {name: Ann, pronoun: she}
  - {name: Bob, pronoun: he}
openings: ["One day,", "Later,"]
stories:
  happy:
    situations:
      - {topic: home, text: "found {pos} lost cat asleep on the sofa"}
      - {topic: work, text: "got the job {sub} wanted"}
    reactions: ["{Sub} smiled all day.", "\\"Wonderful!\\" {sub} said.", "{Sub} hugged {obj}self."]
  sad:
    situations:
      - {topic: home, text: "lost {pos} old dog"}
      - {topic: work, text: "was let go from {pos} job"}
    reactions: ["{Sub} cried quietly.", "{Pos} chest felt heavy.", "{Sub} sat alone."]
  angry:
    situations:
      - {topic: home, text: "found the car scratched again"}
    reactions: ["{Sub} slammed the door.", "{Pos} face went red."]
neutral:
  - "The train leaves from platform four every twenty minutes during the day."
  - "Water boils at one hundred degrees Celsius at sea level on most days."
  - "The library has forty thousand books and twenty desks in its reading room."
  - "A chess board has sixty-four squares in eight rows and eight columns."
  - "The museum opens at ten in the morning and closes at six in the evening."
"""

EMO_YAML = """
version: 1
norms: {name: test}
emotions:
  - {name: happy, valence: 8.47, arousal: 6.05}
  - {name: sad, valence: 2.1, arousal: 3.49}
  - {name: angry, valence: 2.53, arousal: 6.2}
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bank.yaml").write_text(BANK_YAML)
    (tmp_path / "emo.yaml").write_text(EMO_YAML)
    return E.load_emotions(tmp_path / "emo.yaml"), E.load_stories(tmp_path / "bank.yaml")


def test_shipped_data_is_complete_and_cited():
    el = E.load_emotions()
    bank = E.load_stories()
    assert len(el.names) >= 40
    assert "Warriner" in el.norms["citation"] and "1-9" in el.norms["scale"]
    assert set(el.names) <= set(bank.stories)
    assert {"calm", "desperate"} <= set(el.names)
    stories = E.generate_stories(bank, el.names, 3)
    assert len(stories) == 9 * len(el.names)
    assert len({s.text for s in stories}) == len(stories)  # no duplicate texts
    assert len({s.topic for s in stories}) >= 5
    assert not any("{" in s.text for s in stories)  # every placeholder filled
    # the emotion word is not always named: most stories of an emotion never contain it
    named = sum(s.emotion in s.text.lower() for s in stories)
    assert named < 0.2 * len(stories)
    assert len(bank.neutral) >= 20
    calm = el.get("calm")
    assert (calm.valence, calm.arousal) == (6.89, 1.67)  # Warriner et al. 2013, V.Mean.Sum / A.Mean.Sum


def test_bad_emotion_files_fail_in_one_line(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text(
        "version: 1\nnorms: {}\nemotions:\n  - {name: a, valence: 12, arousal: 3}\n  - {name: b, valence: 2, arousal: 3}\n  - {name: c, valence: 2, arousal: 3}\n"
    )
    with pytest.raises(EmlabError, match=r"valence=12 of 'a' must be a number on the norms' 1-9 scale"):
        E.load_emotions(p)
    p.write_text(
        "version: 1\nnorms: {}\nemotions:\n  - {name: a, valence: 2, arousal: 3}\n  - {name: a, valence: 2, arousal: 3}\n  - {name: c, valence: 2, arousal: 3}\n"
    )
    with pytest.raises(EmlabError, match="listed twice"):
        E.load_emotions(p)


def test_stories_fill_pronouns_and_rotate(files):
    el, bank = files
    st = E.generate_stories(bank, el.names, 2)
    assert len(st) == 2 * 2 + 2 * 2 + 1 * 2
    texts = [s.text for s in st if s.emotion == "happy"]
    assert any("Bob got the job he wanted." in t for t in texts) or any(
        "Ann got the job she wanted." in t for t in texts
    )
    assert any("herself" in t or "himself" in t for t in texts)
    with pytest.raises(EmlabError, match="no stories for emotions"):
        E.generate_stories(bank, ["happy", "bored"], 1)


def test_both_genders_writes_each_story_with_a_she_and_a_he_character(files):
    el, bank = files
    plain = E.generate_stories(bank, el.names, 3)
    both = E.generate_stories(bank, el.names, 3, both_genders=True)
    assert len(both) == 2 * len(plain)
    for s in plain:  # each plain story is there, with its rotated character, plus its other-gender twin
        she, he = (next(b for b in both if b.id == f"{s.id}/{p}") for p in ("she", "he"))
        assert s.text in (she.text, he.text) and she.text != he.text
        assert (" she " in she.text or "Ann" in she.text) and (" he " in he.text or "Bob" in he.text)
    for emo in el.names:
        ids = [b.id for b in both if b.emotion == emo]
        assert sum(i.endswith("/she") for i in ids) == sum(i.endswith("/he") for i in ids)
    one = E.StoryBank(((bank.characters[0]),), bank.openings, bank.stories, bank.neutral, "one.yaml", "")
    with pytest.raises(EmlabError, match="needs characters with both pronouns"):
        E.generate_stories(one, el.names, 1, both_genders=True)


def test_neutral_projection_leaves_vectors_orthogonal_and_centred():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(7, 16, generator=g) * 3
    neutral = torch.randn(12, 16, generator=g) @ torch.randn(16, 16, generator=g)
    pcs, ratio = E.neutral_components(neutral, 0.5)
    assert pcs.shape[0] == len(ratio) >= 1 and sum(ratio) >= 0.5 and sum(ratio[:-1]) < 0.5
    torch.testing.assert_close(pcs @ pcs.T, torch.eye(pcs.shape[0]), atol=1e-5, rtol=0)
    v = E.emotion_vectors_from(raw, pcs)
    assert float((v @ pcs.T).abs().max()) < 1e-5  # orthogonal to every removed PC
    assert float(v.double().sum(0).abs().max()) < 1e-4  # still centred across emotions
    # equals the hand-written recipe
    c = raw.double() - raw.double().mean(0)
    hand = c - (c @ pcs.double().T) @ pcs.double()
    torch.testing.assert_close(v, hand.float(), atol=1e-6, rtol=0)
    assert E.neutral_components(neutral, 0.0)[0].shape == (0, 16)


def _hidden(cm, text, layer):
    ids = cm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hs = cm.model(input_ids=ids, output_hidden_states=True).hidden_states
    return hs[layer + 1][0]  # [T, d]; blocks.{l}.resid_post = hidden_states[l+1] (not the last block)


def test_extraction_matches_hand_computation(smol_tok, files):
    el, bank = files
    cm = tiny_chat_model(smol_tok, "llama", layers=3)
    sites = ["blocks.0.resid_post", "blocks.1.resid_post"]
    ev, stories = E.extract_emotion_vectors(
        cm, el, bank, sites, per_situation=2, offset=3, neutral_variance=0.5, batch_size=3
    )
    for _j, site in enumerate(sites):
        layer = int(site.split(".")[1])
        per = {e: [] for e in el.names}
        for s in stories:
            per[s.emotion].append(_hidden(cm, s.text, layer)[3:].double().mean(0))
        raw = torch.stack([torch.stack(per[e]).mean(0) for e in el.names])
        torch.testing.assert_close(ev.raw[site].double(), raw, atol=1e-4, rtol=0)
        neutral = torch.stack([_hidden(cm, t, layer)[3:].double().mean(0) for t in bank.neutral])
        pcs, _ = E.neutral_components(neutral.float(), 0.5)
        assert pcs.shape == ev.neutral_pcs[site].shape
        c = raw - raw.mean(0)
        hand = c - (c @ pcs.double().T) @ pcs.double()
        torch.testing.assert_close(ev.matrix(site).double(), hand, atol=1e-4, rtol=0)
        assert float((ev.matrix(site) @ ev.neutral_pcs[site].T).abs().max()) < 1e-4
    p = ev.provenance
    assert p["model"] == "tiny-llama" and p["offset"] == 3 and p["class_counts"] == {"happy": 4, "sad": 4, "angry": 2}
    assert p["layer_convention"].startswith("blocks.{l}.resid_post")


def test_readout_equals_hand_dot_products(smol_tok, files, tmp_path):
    el, bank = files
    cm = tiny_chat_model(smol_tok, "qwen2", layers=3)  # blocks.1 is not the last block (HF norms the last hidden state)
    site = "blocks.1.resid_post"
    ev, _ = E.extract_emotion_vectors(cm, el, bank, [site], per_situation=1, offset=2)
    texts = ["She smiled.", "The long train left the station at noon today."]
    out = E.readout(cm, texts, ev, site, names=["sad", "happy"])
    for text, r in zip(texts, out, strict=True):
        h = _hidden(cm, text, 1).double()
        for name in ("sad", "happy"):
            v = ev.vector(name, site).double()
            hand = (h @ (v / v.norm())).tolist()
            assert r["scores"][name] == pytest.approx(hand, abs=1e-4)
        assert len(r["tokens"]) == h.shape[0]
    raw = E.readout(cm, texts[:1], ev, site, names=["angry"], unit=False)[0]["scores"]["angry"]
    assert raw == pytest.approx(
        (_hidden(cm, texts[0], 1).double() @ ev.vector("angry", site).double()).tolist(), abs=1e-4
    )
    # artifact round trip and Direction export
    ev.save(tmp_path / "ev")
    back = E.EmotionVectors.load(tmp_path / "ev")
    assert back.names == ev.names and back.sites == ev.sites
    assert torch.equal(back.matrix(site), ev.matrix(site)) and torch.equal(back.neutral_pcs[site], ev.neutral_pcs[site])
    d = back.direction("happy")
    assert torch.equal(d.vector(site), ev.vector("happy", site)) and d.provenance["emotion"] == "happy"
    c = back.without_neutral_projection().matrix(site).double()
    torch.testing.assert_close(c, back.raw[site].double() - back.raw[site].double().mean(0), atol=1e-6, rtol=0)
    with pytest.raises(EmlabError, match="not an emotion-vector folder"):
        E.EmotionVectors.load(tmp_path)
    with pytest.raises(EmlabError, match="no emotion 'bored'"):
        ev.vector("bored", site)


def test_offset_longer_than_text_is_an_error(smol_tok):
    cm = tiny_chat_model(smol_tok, "llama", layers=2)
    with pytest.raises(EmlabError, match="not more than offset=50"):
        E.text_activations(cm, ["Short."], ["blocks.0.resid_post"], offset=50)


# ---------------------------------------------------------------- geometry


def test_correlate_and_pca():
    x = np.arange(20, dtype=float)
    y = 2 * x + 1
    c = G.correlate(x, y, n_boot=200, n_perm=200)
    assert c["pearson"]["r"] == pytest.approx(1.0) and c["spearman"]["r"] == pytest.approx(1.0)
    assert c["pearson"]["ci95"][0] > 0.99 and c["pearson"]["p_perm"] < 0.01
    assert G.spearman(np.array([1, 2, 2, 3.0]), np.array([1, 2, 2, 3.0])) == pytest.approx(1.0)
    assert G.pearson(x, -y) == pytest.approx(-1.0)
    X = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    scores, comps, ratio = G.pca(X)
    torch.testing.assert_close(scores @ comps + X.mean(0), X, atol=1e-5, rtol=0)  # full reconstruction
    assert sum(ratio) == pytest.approx(1.0) and ratio == sorted(ratio, reverse=True)


def test_circumplex_recovers_planted_axes(tmp_path):
    el = E.load_emotions()
    val, aro = (torch.tensor([getattr(e, k) for e in el.emotions]) for k in ("valence", "arousal"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    b = b - (b @ a) / (a @ a) * a
    m = (
        (val - val.mean())[:, None] * a * 3
        + (aro - aro.mean())[:, None] * b * 2
        + 0.01 * torch.randn(len(val), 32, generator=g)
    )
    m = m - m.mean(0)
    ev = E.EmotionVectors(list(el.emotions), {"blocks.0.resid_post": -m}, provenance={})
    res = G.circumplex(ev, "blocks.0.resid_post", n_boot=200)
    assert res["pc1_valence"]["pearson"]["r"] > 0.95  # sign oriented although the vectors were negated
    assert res["pc2_arousal"]["pearson"]["r"] > 0.8
    assert res["pc1_valence"]["pearson"]["ci95"][0] > 0.9
    png = G.plot_circumplex(res, tmp_path / "c.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prof = G.layer_profile(ev)
    assert prof[0]["site"] == "blocks.0.resid_post"
    assert G.plot_layer_profile(prof, tmp_path / "p.png").exists()
