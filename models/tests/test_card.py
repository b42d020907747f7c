"""Model cards: every committed card is rendered again from its folder and compared byte for
byte (so no figure in it can be typed in), and the ship rule decides as it says."""

import pathlib

import pytest

from rradistill_toolkit import card
from rradistill_toolkit.common import MODELS_DIR, default_model

CARDS = sorted(p.parent for p in pathlib.Path(MODELS_DIR).glob("*/card.json"))


def test_the_served_default_has_a_card_rendered_from_its_folder():
    assert (default_model() / "card.json").exists(), f"{default_model()} has no card.json"
    assert default_model() in [p.resolve() for p in CARDS]


@pytest.mark.parametrize("folder", CARDS, ids=[p.name for p in CARDS])
def test_committed_card_regenerates_byte_for_byte(folder):
    committed = (folder / "README.md").read_bytes()
    assert card.render(str(folder)).encode() == committed, (
        f"{folder}/README.md differs from what its card.json renders: run "
        f"`python -m rradistill_toolkit.card --render-only {folder.name}` in models/ and commit the result")


def _ood(now_en, now_ko, prev_en, prev_ko):
    r = lambda a, b: {"now": {"MRR": a}, "prev": {"MRR": b}}
    return {"sets": {"en": {"rankers": r(now_en, prev_en)}, "ko": {"rankers": r(now_ko, prev_ko)}}}


@pytest.mark.parametrize("ood, ci, ships", [
    (_ood(0.8, 0.9, 0.6, 0.5), [-0.01, 0.02], True),    # better out-of-domain, in-domain not lower
    (_ood(0.8, 0.4, 0.6, 0.5), [0.01, 0.02], False),    # worse in Korean
    (_ood(0.6, 0.9, 0.6, 0.5), [0.01, 0.02], False),    # a tie is not a win
    (_ood(0.8, 0.9, 0.6, 0.5), [-0.05, -0.01], False),  # loses in-domain
])
def test_ship_rule(ood, ci, ships):
    comparison = {"mean_difference": sum(ci) / 2, "ci95": ci}
    assert card.ship_decision(ood, ood, comparison, "now", "prev")["ship"] is ships
    assert card.ship_decision(ood, ood, None, "now", "prev")["ship"] is False


def test_a_card_shows_the_equal_length_control_when_its_run_made_one(tmp_path):
    """Runs of ``ood`` since the control exists carry ``equal_length``; their cards show it
    beside the published sets' table (older cards, without it, render as committed)."""
    import json
    import shutil

    from rradistill_toolkit import ood

    folder = tmp_path / "rra-bert-m"
    shutil.copytree(default_model(), folder)
    data = json.loads((folder / "card.json").read_text())
    data["ood"]["equal_length"] = ood.run({}, cut_to_equal_length=True)
    (folder / "card.json").write_text(json.dumps(data))
    text = card.render(str(folder))
    control = text.split("The same cases with length taken away", 1)[1]
    cut = data["ood"]["equal_length"]["sets"]
    assert f"| {ood.LONGEST} | {cut['en']['rankers'][ood.LONGEST]['MRR']:.3f}" in control
    assert f"| BM25 | {cut['en']['rankers']['BM25']['MRR']:.3f}" in control
    del data["ood"]["equal_length"]  # a card from before the control
    (folder / "card.json").write_text(json.dumps(data))
    assert "The same cases with length taken away" not in card.render(str(folder))


def test_a_card_says_when_its_folder_serves_another_document_window_than_it_trained_with(tmp_path):
    """``export --max-length`` (``pipeline --document-window``) serves a window the training
    did not use: the card says both, and a folder served at its training window reads as
    committed."""
    import json
    import shutil

    folder = tmp_path / "rra-bert-m"
    shutil.copytree(default_model(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    trained = json.loads((folder / "card.json").read_text())["training"]["max_length"]
    for served in (trained, trained - 32):
        manifest["max_sequence_length"] = served
        (folder / "manifest.json").write_text(json.dumps(manifest))
        text = card.render(str(folder))
        assert (f"document window {trained} (served at {served}:" in text) is (served != trained)
        assert ("served at" in text) is (served != trained)
