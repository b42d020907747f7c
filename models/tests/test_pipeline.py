"""The pipeline's plan: which stage commands a run issues, with what settings. The stages
themselves are tested on a tiny slice (test_e2e_smoke.py); here each command is recorded
instead of run, so a setting that does not reach its stage fails here."""

import os

import pytest

from rradistill_toolkit import pipeline


@pytest.fixture
def planned(monkeypatch, tmp_path):
    commands = []
    def record(cmds, module=True):  # a train stage leaves its config, which later stages read
        commands.extend(cmds)
        for c in cmds:
            if c[0] == "train" and c[c.index("--student") + 1] == "late":
                trained(tmp_path, name=os.path.basename(c[c.index("--out") + 1]))
    monkeypatch.setattr(pipeline, "run_parallel", record)
    monkeypatch.setattr(pipeline, "listed", lambda args, path: path)
    monkeypatch.setattr(pipeline, "previous_version", lambda work, version=pipeline.PREVIOUS: f"{work}/{version[2]}")

    def plan(*argv):
        pipeline.main(["--work", str(tmp_path), "--out", str(tmp_path / "rra-bert-m"), *argv])
        return commands
    return plan


def test_the_trained_run_exports_with_the_quantization_it_is_given_and_says_so_in_the_card(planned):
    commands = planned("--quantization", "rows", "--skip-loso")
    exports = [c for c in commands if c[0] == "export"]
    assert [c[c.index("--name") + 1] for c in exports] == ["rra-bert-m", "rra-bert-m-no-tcl"]
    assert all(c[c.index("--quantization") + 1] == "rows" for c in exports)
    cards = [c for c in commands if c[0] == "card"]
    assert cards and all("--quantization rows" in c[c.index("--reproduce") + 1] for c in cards)
    assert not any(c[0] == "loso" for c in commands)


def test_the_defaults_make_the_committed_version_again_judged_as_it_was(planned):
    """The card's "reproduce" is the defaults: they train and export as the committed 0.7.0 was
    made (e5's towers frozen, rows int8, documents served at 224) and judge it against 0.6.2,
    as its card does; a run naming a new version is judged against the committed 0.7.0."""
    commands = planned()
    trains = [c for c in commands if c[0] == "train"]
    assert trains and all(c[c.index("--freeze-layers") + 1] == "12" for c in trains)
    exports = [c for c in commands if c[0] == "export"]
    assert exports and all(c[c.index("--quantization") + 1] == "rows" and c[c.index("--max-length") + 1] == "224"
                           and c[c.index("--version") + 1] == pipeline.VERSION for c in exports)
    student_card = next(c for c in commands if c[0] == "card" and "--model" in c and c[c.index("--model") + 1].endswith("rra-bert-m"))
    assert student_card[student_card.index("--previous") + 1] == "rra-bert-m 0.6.2"
    commands.clear()
    commands = planned("--version", "0.8.0")
    student_card = next(c for c in commands if c[0] == "card" and c[c.index("--model") + 1].endswith("rra-bert-m"))
    assert student_card[student_card.index("--previous") + 1] == pipeline.COMMITTED[2] == "rra-bert-m 0.7.0"
    assert any(c[0] == "ood" and f"rra-bert-m-0.7.0=" in " ".join(c) for c in commands)


def test_a_regraph_makes_the_trained_version_s_next_patch(planned):
    exports = [c for c in planned("--regraph") if c[0] == "export"]
    assert exports and exports[0][exports[0].index("--version") + 1] == "0.7.1"


def trained(tmp_path, name="rra-bert-m", window=256):
    """A student folder as the train stage leaves it (only its config: the plan reads nothing else)."""
    import json

    student = tmp_path / "students" / name
    student.mkdir(parents=True, exist_ok=True)
    (student / "train_config.json").write_text(json.dumps({"student": "late", "max_length": window}))
    return student


def test_a_document_window_reaches_both_exports_the_evaluated_variants_and_the_card(planned, tmp_path):
    student = trained(tmp_path)
    commands = planned("--document-window", "224", "--skip-loso")
    exports = [c for c in commands if c[0] == "export"]
    assert len(exports) == 2 and all(c[c.index("--max-length") + 1] == "224" for c in exports)
    evaluated = next(c for c in commands if c[0] == "evaluate")
    assert f"rra-bert-m-fp32={student}/onnx-w224/variants/fp32" in evaluated
    cards = [c for c in commands if c[0] == "card"]
    assert cards and all("--document-window 224" in c[c.index("--reproduce") + 1] for c in cards)


def test_without_a_document_window_the_export_serves_the_training_window(planned):
    exports = [c for c in planned("--document-window", "0", "--skip-loso") if c[0] == "export"]
    assert exports and not any("--max-length" in c for c in exports)


def test_a_committed_folder_at_the_export_s_destination_is_exported_over_and_this_run_s_is_kept(planned, tmp_path):
    """The export writes the committed version's folder, which has a report of its own: only a
    report naming this run's student (its train_config.json digest) makes the export done."""
    import json

    from rradistill_toolkit.export import student_fingerprint

    student, out = trained(tmp_path), tmp_path / "rra-bert-m"
    out.mkdir()
    (out / "export_report.json").write_text(json.dumps({"window": 256}))  # a committed version's
    exported = lambda: [c[c.index("--name") + 1] for c in planned("--skip-loso") if c[0] == "export"]
    first = exported()  # the plan's commands accumulate over calls
    assert first == ["rra-bert-m", "rra-bert-m-no-tcl"]
    (out / "export_report.json").write_text(json.dumps({"student": student_fingerprint(str(student))}))
    assert exported()[len(first):] == ["rra-bert-m-no-tcl"]  # this run's export is kept
