"""Helpers shared by the reliability, interruption, seal, patient-data and untrusted-artefact tests (no tests here).

* :func:`cli` runs ``tl_radiology.cli.main`` in this process and returns its exit status, standard output and
  standard error; :func:`error_line` checks that a failure printed exactly one ``error: ...`` line.
* :func:`snapshot` / :func:`leftovers` compare a folder before and after a command: what it added, and any
  temporary file an atomic write would leave behind if it were not atomic.
* :func:`phi_phantoms` writes triphasic CT phantoms whose DICOM headers carry distinctive patient data, and
  :func:`phi_run` takes them once per session through the whole path (split, search, run, evaluate, report,
  explain, predict) with the sealed test files moved away while the run searches and trains.
* :func:`scan_for_secrets` searches every byte of every output for those values in several encodings.

The builders are plain functions with a per-session cache (as in ``test_evaluate_validation``), because a fixture
imported into several test modules would be built once per module.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import struct
import urllib.parse
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from test_run_support import TINY, register_tiny_backbones, tiny_overrides

PHASES = ("native", "arterial", "delayed")
RECIPE = "liver_lesion_triphasic_ct"

#: What the input DICOM headers carry (one value per patient where a number is appended) and the manifest's
#: patient_id equals the DICOM PatientID, as in a hospital export. File and folder names never contain them.
SECRETS = {
    "PatientName": "ZZSECRETNAME^PATIENT",
    "PatientBirthDate": "19190919",
    "PatientID": "MRN-777777",
    "AccessionNumber": "ACC-555555",
    "InstitutionName": "ST-SECRET-INSTITUTE",
}
NUM_PATIENTS = 16
CASES_PER_PATIENT = 2

_CACHE: dict = {}


# ------------------------------------------------------------------------------------------------ the CLI

def cli(args) -> tuple[int, str, str]:
    """``tl-radiology ARGS`` in this process: (exit status, standard output, standard error)."""
    from tl_radiology.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one ``error: ...`` line a failed command printed (and nothing else that looks like a failure)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ folders

def snapshot(folder) -> dict:
    """``{relative path: sha256 or 'dir'}`` of everything under ``folder`` (hidden files included)."""
    import hashlib

    folder = Path(folder)
    if not folder.exists():
        return {}
    out = {}
    # os.walk skips folders that vanish while it lists them (a live command's temporary folders); files that
    # vanish between listing and reading are skipped too.
    for root, dirs, names in os.walk(folder, onerror=lambda error: None):
        for name in dirs + names:
            path = Path(root) / name
            key = path.relative_to(folder).as_posix()
            try:
                out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            except (FileNotFoundError, IsADirectoryError):
                continue
    return dict(sorted(out.items()))


_TEMPORARY = re.compile(r"(^|/)\.[^/]*\.(tmp|old-)|\.tmp(\.|$)|(^|/)\.final_training(/|$)|\.write-test\.")


def leftovers(folder) -> list[str]:
    """Files a non-atomic write would leave: ``.name.XXXX.tmp`` files, ``.old-PID`` folders, ``.final_training``."""
    return [name for name in snapshot(folder) if _TEMPORARY.search(name)]


def audit_events(run) -> list[str]:
    path = Path(run) / "audit.log"
    if not path.is_file():
        return []
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line.strip()]


def copy_run(source, target) -> Path:
    """A private copy of a run directory (its image paths still point at the shared phantoms)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return Path(target)


def sealed_files(run) -> list[Path]:
    """The sealed test files of a run, from its seal."""
    lock = json.loads((Path(run) / "test.lock").read_text())
    return sorted({Path(f["path"]) for case in lock["cases"].values() for f in case["files"]})


class FilesAway:
    """Move files somewhere else for the duration of a block, then put them back (also after a failure)."""

    def __init__(self, files, store):
        self.files, self.store = list(files), Path(store)

    def __enter__(self):
        self.moved = []
        self.store.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(self.files):
            target = self.store / f"{i}_{path.name}"
            shutil.move(str(path), str(target))
            self.moved.append((path, target))
        return self

    def __exit__(self, *exc):
        for path, target in self.moved:
            shutil.move(str(target), str(path))


# ------------------------------------------------------------------------------------------------ broken inputs

def make_bad_images(folder, shared_data) -> dict:
    """Real broken inputs, each as a file or series folder."""
    import io

    import pydicom
    from pydicom.encaps import encapsulate

    from tl_radiology.data import make_triphasic_phantoms

    folder = Path(folder)
    source = make_triphasic_phantoms(folder / "ph", num_patients=1, cases_per_patient=1, size=32, seed=0)
    good = (source.parent / pd.read_csv(source).loc[0, "native"]).read_bytes()
    samples = shared_data / "dicom_samples_pydicom_data"
    head = shared_data / "ct_head_series_ge"
    out = {}
    out["truncated.dcm"] = folder / "truncated.dcm"
    out["truncated.dcm"].write_bytes(good[: len(good) // 2])
    out["text.dcm"] = folder / "text.dcm"
    out["text.dcm"].write_text("patient list exported as text\n" * 20)
    ds = pydicom.dcmread(io.BytesIO(good))
    del ds.PixelData
    out["no_pixels.dcm"] = folder / "no_pixels.dcm"
    ds.save_as(out["no_pixels.dcm"])
    ds = pydicom.dcmread(io.BytesIO(good))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: pydicom has no decoder
    ds.PixelData = encapsulate([b"\0" * 64])
    out["mpeg2.dcm"] = folder / "mpeg2.dcm"
    ds.save_as(out["mpeg2.dcm"])
    out["rgb.dcm"] = samples / "US1_J2KR.dcm"
    out["multiframe.dcm"] = samples / "emri_small.dcm"
    for name, change in (("mixed_series", "series"), ("mixed_shapes", "shape"), ("mixed_orientation", "orient")):
        series = folder / name
        series.mkdir()
        for f in ("01.dcm", "02.dcm", "03.dcm"):
            shutil.copy(head / f, series / f)
        if change == "series":
            shutil.copy(samples / "CT_small.dcm", series / "04.dcm")
        else:
            ds = pydicom.dcmread(series / "03.dcm")
            if change == "shape":
                half = ds.pixel_array[::2, ::2].copy()
                ds.PixelData, (ds.Rows, ds.Columns) = half.tobytes(), half.shape
            else:
                ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            ds.save_as(series / "03.dcm")
        out[name] = series
    for name, value in (("nan.npy", np.nan), ("inf.npy", np.inf)):
        array = np.ones((32, 32), np.float32)
        array[3, 4] = value
        out[name] = folder / name
        np.save(out[name], array)
    out["rgb.png"] = folder / "rgb.png"
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 1] = 200
    from PIL import Image

    Image.fromarray(rgb).save(out["rgb.png"])
    return out


# ------------------------------------------------------------------------------------------------ patient data

def patient_values(n: int) -> dict:
    """The header values of patient ``n`` (1-based)."""
    return {
        "PatientName": f"{SECRETS['PatientName']}{n:02d}",
        "PatientBirthDate": SECRETS["PatientBirthDate"],
        "PatientID": f"{SECRETS['PatientID']}{n:02d}",
        "AccessionNumber": f"{SECRETS['AccessionNumber']}{n:02d}",
        "InstitutionName": SECRETS["InstitutionName"],
    }


def phi_phantoms(folder) -> Path:
    """Triphasic phantoms (cyst vs solid lesion) rewritten with patient data in their headers; returns the CSV.

    The files are renamed ``img/sNN_cK_<phase>.dcm`` (no identifier in any path); the manifest's patient_id is
    the DICOM PatientID.
    """
    import pydicom

    from tl_radiology.data import make_triphasic_phantoms

    folder = Path(folder)
    source = make_triphasic_phantoms(folder / "generated", num_patients=NUM_PATIENTS,
                                     cases_per_patient=CASES_PER_PATIENT, size=32, seed=3)
    table = pd.read_csv(source)
    (folder / "img").mkdir(parents=True)
    patients = {pid: i + 1 for i, pid in enumerate(sorted(table["patient_id"].unique()))}
    rows = []
    for index, row in table.iterrows():
        n = patients[row["patient_id"]]
        values = patient_values(n)
        new = {"patient_id": values["PatientID"], "label": "cyst" if row["label"] == "cyst" else "solid"}
        for phase in PHASES:
            ds = pydicom.dcmread(source.parent / row[phase])
            for tag, value in values.items():
                setattr(ds, tag, value)
            name = f"img/s{n:02d}_c{index:02d}_{phase}.dcm"
            ds.save_as(folder / name)
            new[phase] = name
        rows.append(new)
    shutil.rmtree(folder / "generated")
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def raw_patient_ids() -> list[str]:
    return [patient_values(n)["PatientID"] for n in range(1, NUM_PATIENTS + 1)]


def needles() -> dict[str, list[bytes]]:
    """``{description: [byte strings]}``: every value, plain and in the encodings an output could hide it in.

    Matching is case-insensitive for the text encodings (the haystack is lowered too); base64 is matched as is,
    at each of the three byte alignments a value can have inside a longer encoded stream.
    """
    values = set(SECRETS.values())
    for n in range(1, NUM_PATIENTS + 1):
        values.update(patient_values(n).values())
    # DICOM names and dates as software commonly renders them.
    values.update({"ZZSECRETNAME PATIENT", "PATIENT ZZSECRETNAME", "1919-09-19", "1919/09/19", "19.09.1919"})
    out: dict[str, list[bytes]] = {}
    for value in sorted(values):
        text = value.lower()
        variants = [
            text.encode("utf-8"),
            text.encode("utf-16-le"),
            text.encode("utf-16-be"),
            urllib.parse.quote(value).lower().encode("ascii"),
            urllib.parse.quote_plus(value).lower().encode("ascii"),
            value.encode("utf-8").hex().encode("ascii"),
            json.dumps(value, ensure_ascii=True)[1:-1].lower().encode("ascii"),
        ]
        out[value] = sorted(set(variants))
        out[value + " (base64)"] = _base64_variants(value.encode("utf-8"))
    return out


def _base64_variants(raw: bytes) -> list[bytes]:
    found = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        # Drop the characters that also depend on the neighbouring bytes.
        start = {0: 0, 1: 2, 2: 3}[shift]
        end = len(encoded) - (4 if (shift + len(raw)) % 3 else 0)
        if end - start >= 8:
            found.append(encoded[start:end])
    return found


def _png_texts(data: bytes) -> list[bytes]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt; compressed ones inflated)."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out.append(body)
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            with contextlib.suppress(zlib.error):
                out.append(key + b"\0" + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed = rest[:1] == b"\1"
            parts = rest[2:].split(b"\0", 2)
            text = parts[2] if len(parts) == 3 else b""
            if compressed:
                with contextlib.suppress(zlib.error):
                    text = zlib.decompress(text)
            out.append(key + b"\0" + b"\0".join(parts[:2]) + b"\0" + text)
        pos += 12 + length
    return out


_DATA_URI = re.compile(rb"data:[a-z/+.-]+;base64,([A-Za-z0-9+/=\s]+)")


def layers(name: str, data: bytes, depth: int = 0):
    """``(where, bytes)`` for a file and what it contains: zip members, PNG text chunks, ``data:`` URIs."""
    yield name, data
    if depth > 3:
        return
    if data[:4] == b"PK\x03\x04":
        with contextlib.suppress(zipfile.BadZipFile):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    yield from layers(f"{name}!{member}", archive.read(member), depth + 1)
                    yield f"{name}!(member name)", member.encode("utf-8")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        for i, text in enumerate(_png_texts(data)):
            yield f"{name}!png-text-{i}", text
    if b"data:" in data:
        for i, match in enumerate(_DATA_URI.finditer(data)):
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(re.sub(rb"\s", b"", match.group(1)))
                yield from layers(f"{name}!data-uri-{i}", decoded, depth + 1)


def scan_for_secrets(named_blobs) -> list[str]:
    """Where any patient value appears in ``named_blobs`` (``(where, bytes)`` pairs, expanded by :func:`layers`)."""
    patterns = needles()
    hits = []
    for name, blob in named_blobs:
        for where, data in layers(name, blob):
            lowered = data.lower()
            for value, variants in patterns.items():
                haystack = data if value.endswith("(base64)") else lowered
                for variant in variants:
                    if variant.isdigit():  # a date: not inside a longer number such as a metric 0.1919091934
                        found = re.search(rb"(?<![0-9])" + variant + rb"(?![0-9])", haystack) is not None
                    else:
                        found = variant in haystack
                    if found:
                        hits.append(f"{value!r} in {where}")
                        break
    return hits


def output_blobs(*folders):
    """``(where, bytes)`` for every file under ``folders`` and for every file or folder name there."""
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            yield str(folder), folder.read_bytes()
            continue
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            yield f"{folder.name}/{relative} (name)", relative.encode("utf-8")
            if path.is_file():
                yield f"{folder.name}/{relative}", path.read_bytes()


# ------------------------------------------------------------------------------------------------ the PHI run

def phi_run(tmp_path_factory) -> dict:
    """The patient-data phantoms taken once through the whole path; cached for the session.

    ``split`` runs as a real ``tl-radiology`` process (with ``--write-id-map`` outside the run directory); the
    sealed test files are then moved away while ``search`` and ``run`` work (neither may need them), put back,
    and ``evaluate``, ``report``, ``explain --split test`` and ``predict`` follow. A copy of the run as it was
    before ``evaluate`` is kept (``sealed``) for the seal and untrusted-artefact tests to copy.

    Returns a dict: ``root``, ``manifest``, ``run``, ``sealed`` (the pre-evaluation copy), ``id_map``,
    ``predictions``, ``outputs`` (``{command: (status, stdout, stderr)}``) and ``events`` (the audit events
    after ``run``, before the test files came back).
    """
    if "phi" in _CACHE:
        return _CACHE["phi"]
    from test_run_support import run_console

    register_tiny_backbones()
    root = tmp_path_factory.mktemp("phi")
    manifest = phi_phantoms(root / "data")
    run = root / "run"
    private = root / "private"
    private.mkdir()
    id_map = private / "id_map.csv"
    outputs = {}
    split = run_console(["split", manifest, "--out", run, "--image-columns", ",".join(PHASES),
                         "--write-id-map", id_map], timeout=300)
    outputs["split"] = (split.returncode, split.stdout, split.stderr)
    assert split.returncode == 0, split.stderr[-3000:]
    with FilesAway(sealed_files(run), root / "away"):
        settings = tiny_overrides(gradcam_samples=2)  # Grad-CAM overlays of validation cases are outputs too
        outputs["search"] = cli(["search", RECIPE, "--out", run, *settings])
        assert outputs["search"][0] == 0, outputs["search"][2][-3000:]
        outputs["run"] = cli(["run", RECIPE, "--out", run, *settings])
        assert outputs["run"][0] == 0, outputs["run"][2][-3000:]
        events = audit_events(run)
    sealed = copy_run(run, root / "sealed_copy")
    outputs["evaluate"] = cli(["evaluate", run, "--n-bootstrap", "50"])
    assert outputs["evaluate"][0] == 0, outputs["evaluate"][2][-3000:]
    outputs["explain"] = cli(["explain", run, "--split", "test", "--num", "2"])
    assert outputs["explain"][0] == 0, outputs["explain"][2][-3000:]
    outputs["report"] = cli(["report", run])
    assert outputs["report"][0] == 0, outputs["report"][2][-3000:]
    predictions = root / "predictions" / "predictions.csv"
    predictions.parent.mkdir()
    outputs["predict"] = cli(["predict", run, manifest, "--out", predictions])
    assert outputs["predict"][0] == 0, outputs["predict"][2][-3000:]
    _CACHE["phi"] = {"root": root, "manifest": manifest, "run": run, "sealed": sealed, "id_map": id_map,
                     "predictions": predictions, "outputs": outputs, "events": events}
    return _CACHE["phi"]


def tiny_backbones_fixture():
    """Body of a module-scoped fixture: the tiny test backbones registered for the module, removed after."""
    register_tiny_backbones()
    yield
    from tl_radiology.backbones import _registry

    for name in TINY:
        _registry._REGISTRY.pop(name, None)


def pseudonyms_of(values, prefix="P") -> set[str]:
    from tl_radiology._pseudonym import pseudonymize

    return {pseudonymize(v, prefix=prefix) for v in values}
