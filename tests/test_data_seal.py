"""The run directory's split files and the sealed test set: written once, verified on opening, opened once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology._atomic import RunLock
from tl_radiology import InputError, OptionError, RunDirError, SealBrokenError, SealError
from tl_radiology.data import Manifest, RunDir, SealedTestSet

RAW_IDS = [f"MRN{p:06d}" for p in range(40)]


def _study(folder: Path, labels=None) -> Path:
    """40 patients with 1-2 PNG cases each, labels 'normal'/'pneumonia'; returns the manifest path."""
    rows = ["patient_id,label,image"]
    k = 0
    for p, raw in enumerate(RAW_IDS):
        for c in range(1 + p % 2):
            name = f"img/{k:03d}.png"
            (folder / "img").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 6), k, np.uint8)).save(folder / name)
            label = (labels or {}).get(k, "pneumonia" if p % 3 else "normal")
            rows.append(f"{raw},{label},{name}")
            k += 1
    path = folder / "manifest.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sealed_run(tmp_path):
    manifest = Manifest.from_csv(_study(tmp_path / "study"))
    run = RunDir(tmp_path / "run")
    result = run.create_split(manifest, val=0.2, test=0.25, seed=0)
    return manifest, run, result


def _events(run):
    return [e["event"] for e in run.audit_events()]


def test_create_split_writes_pseudonymous_files_and_a_seal(sealed_run):
    manifest, run, result = sealed_run
    assert result.state == "created"
    table = pd.read_csv(run.splits_csv, dtype=str)
    assert list(table.columns) == ["case_id", "patient", "label", "split", "image", "row"]
    assert table.groupby("patient")["split"].nunique().max() == 1
    for path in run.path.iterdir():  # no raw patient id anywhere in the run directory
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(raw in text for raw in RAW_IDS), path.name
    lock = json.loads(run.test_lock.read_text())
    test_rows = table[table["split"] == "test"]
    assert lock["hash_algorithm"] == "sha256" and re.match(r"\d{4}-\d\d-\d\dT", lock["sealed_at"])
    assert set(lock["cases"]) == set(test_rows["case_id"])
    entry = lock["cases"][test_rows["case_id"].iloc[0]]
    assert entry["label"] == test_rows["label"].iloc[0]
    assert len(entry["files"][0]["sha256"]) == 64
    sealed = run.audit_events()[0]
    assert sealed["event"] == "sealed"
    assert sealed["counts"] == {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")}
    assert result.summary.loc["all", "cases"] == len(table) == 60
    assert result.summary.loc["test", "cases"] == len(test_rows)
    assert run.info["task"] == "binary" and run.info["classes"] == ["normal", "pneumonia"]


def test_cases_gives_train_and_val_and_refuses_test(sealed_run):
    _, run, _ = sealed_run
    assert set(run.cases("train")["split"]) == {"train"}
    assert set(run.cases("val")["split"]) == {"val"}
    with pytest.raises(SealError, match=r"test split of .* is sealed.*tl-radiology evaluate") as info:
        run.cases("test")
    assert info.value.exit_code == 3
    with pytest.raises(OptionError, match=r"Unknown split 'trian'. Did you mean 'train'\?"):
        run.cases("trian")


def test_rerun_identical_is_a_no_op_and_a_different_split_is_refused(sealed_run, tmp_path):
    manifest, run, _ = sealed_run
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != ".lock"}
    again = run.create_split(manifest, val=0.2, test=0.25, seed=0)
    assert again.state == "unchanged"
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file() and p.name != ".lock"} == before
    with pytest.raises(RunDirError, match=r"already has a sealed split .* differs: \d+ case\(s\) changed split.*"
                                          r"--force"):
        run.create_split(manifest, val=0.2, test=0.25, seed=1)
    with pytest.warns(UserWarning, match="re-sealed"):
        forced = run.create_split(manifest, val=0.2, test=0.25, seed=1, force=True)
    assert forced.state == "resealed"
    assert _events(run) == ["sealed", "resealed"]


def test_a_label_changed_in_the_manifest_is_named_on_rerun(sealed_run, tmp_path):
    manifest, run, _ = sealed_run
    table = pd.read_csv(run.splits_csv, dtype=str)
    victim = table[table["split"] == "test"].iloc[0]
    csv = tmp_path / "study" / "manifest.csv"
    lines = csv.read_text().splitlines()
    line = int(victim["row"])
    old = victim["label"]
    new = "normal" if old == "pneumonia" else "pneumonia"
    lines[line - 1] = lines[line - 1].replace(f",{old},", f",{new},")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match=rf"label of case {victim['case_id']} \(line {line}\) changed from "
                                          rf"'{old}' to '{new}'"):
        run.create_split(Manifest.from_csv(csv), val=0.2, test=0.25, seed=0)


def test_open_complete_refuse_then_reopen_with_a_reason(sealed_run):
    _, run, _ = sealed_run
    sealed = run.sealed_test()
    test_cases = sealed.open("final evaluation")
    assert set(test_cases["split"]) == {"test"} and len(test_cases) == run.info["counts"]["test"]
    result = run.path / "final_test.json"
    result.write_text("{}")
    sealed.mark_completed(result)
    opened_at = next(e["time"] for e in run.audit_events() if e["event"] == "opened")
    with pytest.raises(SealError, match=rf"already used: opened {re.escape(opened_at)} and evaluated .*"
                                        r"--reopen --reason TEXT") as info:
        run.sealed_test().open("second look")
    assert info.value.exit_code == 3
    again = run.sealed_test()
    again.open("second look", reopen_reason="reviewer asked for the corrected model")
    assert again.reused is True
    events = run.audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "evaluated", "refused", "reopened"]
    assert events[-1]["reason"] == "reviewer asked for the corrected model" and events[-1]["reused"] is True
    with pytest.raises(InputError, match="--reason must say why"):
        run.sealed_test().open("third", reopen_reason="  ")


def test_a_forced_reseal_after_an_evaluation_marks_results_as_reused(sealed_run):
    manifest, run, _ = sealed_run
    sealed = run.sealed_test()
    sealed.open("final evaluation")
    (run.path / "final_test.json").write_text("{}")
    sealed.mark_completed(run.path / "final_test.json")
    with pytest.warns(UserWarning, match="re-sealed"):
        run.create_split(manifest, val=0.2, test=0.25, seed=5, force=True)
    assert run.audit_events()[-1]["previous_openings"] == 1
    fresh = run.sealed_test()
    fresh.open("final evaluation of the new split")  # not refused: this seal was never evaluated ...
    assert fresh.reused is True  # ... but its results are marked, and the log says why
    assert "re-sealed after 1 completed evaluation" in run.audit_events()[-1]["note"]


def test_an_interrupted_opening_is_recorded_and_does_not_burn_the_seal(sealed_run):
    _, run, _ = sealed_run
    first = run.sealed_test()
    first.open("final evaluation")  # killed before mark_completed
    second = run.sealed_test()
    second.open("final evaluation, second try")
    assert second.interrupted == [first.opening_id] and second.reused is False
    events = run.audit_events()
    assert [e["event"] for e in events] == ["sealed", "opened", "interrupted", "opened"]
    assert events[2]["opening_id"] == first.opening_id
    assert events[3]["after_interrupted"] == [first.opening_id]


def test_a_changed_test_file_breaks_the_seal_and_is_named(sealed_run):
    _, run, _ = sealed_run
    lock = json.loads(run.test_lock.read_text())
    case_id, entry = next(iter(lock["cases"].items()))
    path = Path(entry["files"][0]["path"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SealBrokenError, match=rf"test case {case_id} \(manifest line {entry['row']}\): file "
                                              rf"{re.escape(str(path))} changed") as info:
        run.sealed_test().open("final evaluation")
    assert info.value.exit_code == 3
    assert run.audit_events()[-1]["event"] == "seal_broken"
    path.unlink()
    with pytest.raises(SealBrokenError, match=rf"file {re.escape(str(path))} is missing"):
        run.sealed_test().open("final evaluation")


def test_a_changed_label_in_splits_csv_breaks_the_seal(sealed_run):
    _, run, _ = sealed_run
    table = pd.read_csv(run.splits_csv, dtype=str, keep_default_na=False)
    index = table.index[table["split"] == "test"][0]
    old = table.loc[index, "label"]
    table.loc[index, "label"] = "normal" if old == "pneumonia" else "pneumonia"
    run.splits_csv.write_text(table.to_csv(index=False, lineterminator="\n"))
    with pytest.raises(SealBrokenError, match=rf"label of test case {table.loc[index, 'case_id']} .* changed from "
                                              rf"'{old}'"):
        run.sealed_test().open("final evaluation")


def test_series_folder_files_are_sealed_one_by_one(tmp_path):
    rows = ["patient_id,label,image"]
    for p in range(12):
        folder = tmp_path / "study" / f"s{p}"
        folder.mkdir(parents=True)
        for z in range(2):
            Image.fromarray(np.full((4, 4), p * 2 + z, np.uint8)).save(folder / f"{z}.png")
        rows.append(f"p{p},{'ab'[p % 2]},s{p}")
    (tmp_path / "study" / "manifest.csv").write_text("\n".join(rows) + "\n")
    run = RunDir(tmp_path / "run")
    run.create_split(Manifest.from_csv(tmp_path / "study" / "manifest.csv"), val=0.25, test=0.25, pixels=False)
    lock = json.loads(run.test_lock.read_text())
    case_id, entry = next(iter(lock["cases"].items()))
    files = [f for f in entry["files"] if not f.get("series_folder")]
    assert len(files) == 2
    folder = Path(files[0]["path"]).parent
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "extra.png")
    with pytest.raises(SealBrokenError, match=rf"test case {case_id} .*extra.png was added to series folder"):
        run.sealed_test().open("final evaluation")


def test_opening_while_this_process_holds_the_run_lock(sealed_run):
    _, run, _ = sealed_run
    with RunLock(run.path, "evaluate"):  # what `evaluate` does around its whole run
        sealed = run.sealed_test()
        assert len(sealed.open("final evaluation")) > 0
        (run.path / "final_test.json").write_text("{}")
        sealed.mark_completed(run.path / "final_test.json")
    assert _events(run)[-1] == "evaluated"


def test_mark_completed_needs_an_opening_and_a_result(sealed_run):
    _, run, _ = sealed_run
    sealed = run.sealed_test()
    with pytest.raises(RunDirError, match=r"call SealedTestSet.open\(purpose\) first"):
        sealed.mark_completed(run.path / "final_test.json")
    sealed.open("final evaluation")
    with pytest.raises(RunDirError, match="final_test.json not found"):
        sealed.mark_completed(run.path / "final_test.json")


def test_id_map_only_outside_the_run_directory(tmp_path):
    manifest = Manifest.from_csv(_study(tmp_path / "study"))
    run = RunDir(tmp_path / "run")
    with pytest.raises(InputError, match=r"--write-id-map .* is inside the run directory"):
        run.create_split(manifest, id_map=tmp_path / "run" / "ids.csv")
    assert not run.has_split()
    run.create_split(manifest, id_map=tmp_path / "private" / "ids.csv")
    ids = pd.read_csv(tmp_path / "private" / "ids.csv", dtype=str)
    assert sorted(ids["patient_id"]) == sorted(RAW_IDS)
    assert set(ids["patient"]) == set(pd.read_csv(run.splits_csv, dtype=str)["patient"])


def test_a_split_by_case_says_patients_were_not_checked(tmp_path):
    manifest = Manifest.from_csv(_study(tmp_path / "study"))
    result = RunDir(tmp_path / "run").create_split(manifest, group="case", seed=0, pixels=False)
    table = pd.read_csv(tmp_path / "run" / "splits.csv", dtype=str)
    assert table.groupby("patient")["split"].nunique().max() == 2  # allowed: the user asked for a split by case
    assert "patients were NOT checked (split by case" in result.leakage.format()


def test_a_run_directory_without_a_split_says_how_to_make_one(tmp_path):
    run = RunDir(tmp_path / "empty")
    with pytest.raises(RunDirError, match=r"no sealed test set \(no test.lock\). Make the split first: "
                                          r"tl-radiology split MANIFEST --out"):
        run.sealed_test()
    with pytest.raises(RunDirError, match="has no splits.csv"):
        run.cases("train")
    assert isinstance(SealedTestSet(run), SealedTestSet)
