"""Generators for the hostile corpus of test_hostile_models_datasets.py: model metadata mutations,
corrupt model files, broken datasets (generic CSV and ISBI layouts) and foreign checkpoints.

Everything is made here, in the test's temporary folders; nothing is copied from the shared data.
"""

import csv
import io
import json
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from CephLandmarksLib.landmarks import N_LANDMARKS
from CephLandmarksLib.store.modelfile import _tensor_digest
from CephLandmarksLib.store.modelmeta import CHECKSUM_KEY, FORMAT, META_KEY, metadata_digest

MISSING = object()  # a mutation that deletes the field
SMALL_TENSORS = {"w": torch.arange(4, dtype=torch.float32)}  # metadata checks run before the network is built
L = N_LANDMARKS


def valid_meta() -> dict:
    """Metadata that passes every check (for SMALL_TENSORS), every optional field present."""
    return {
        "name": "hostile", "version": "1", "format": FORMAT, "input_size": [64, 96],
        "landmark_names": [f"Landmark {i}" for i in range(L)], "landmark_abbreviations": [f"A{i}" for i in range(L)],
        "temperatures": [1.0] * L, "ere_threshold_mm": 1.5, "refine_radius": 1, "model_mm_per_px": 0.5,
        "reference_uv": [[10.0, 20.0]] * L, "training": {"holdout_ids": ["img00"]}, "calibration": {}, "metrics": {},
        "region_masses": {"50": [0.5] * L, "90": [0.9] * L}, "convention_offsets_mm": [[0.0, 1.0]] * L,
        "adaptation": {}, "weights_sha256": _tensor_digest(SMALL_TENSORS),
    }


def write_meta_model(path, meta, seal: bool = True) -> Path:
    """A small safetensors file with `meta` (any JSON value, NaN allowed) as our metadata.  With
    `seal`, a dict gets the checksum of its own content, as a writer that recomputes it would: then
    the field check, not the checksum, has to refuse it."""
    if seal and isinstance(meta, dict):
        try:
            meta = dict(meta, **{CHECKSUM_KEY: metadata_digest(meta)})
        except ValueError:  # NaN or infinity: no canonical JSON, written without a checksum
            pass
    save_file(SMALL_TENSORS, str(path), metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def mutated(field, value) -> dict:
    meta = valid_meta()
    if value is MISSING:
        del meta[field]
    else:
        meta[field] = value
    return meta


NAN, INF = float("nan"), float("inf")

# (field, label, value): every metadata field mutated in type, count and range.
FIELD_MUTATIONS = [
    ("temperatures", "nan", [NAN] + [1.0] * (L - 1)),
    ("temperatures", "inf", [INF] * L),
    ("temperatures", "minus-inf", [-INF] * L),
    ("temperatures", "zero", [0.0] * L),
    ("temperatures", "negative", [-1.0] * L),
    ("temperatures", "huge", [1e9] * L),
    ("temperatures", "tiny", [1e-9] * L),
    ("temperatures", "strings", ["1.0"] * L),
    ("temperatures", "a-string", "1.0"),
    ("temperatures", "a-number", 1.0),
    ("temperatures", "null", None),
    ("temperatures", "empty", []),
    ("temperatures", "18", [1.0] * (L - 1)),
    ("temperatures", "20", [1.0] * (L + 1)),
    ("temperatures", "booleans", [True] * L),
    ("temperatures", "nested", [[1.0]] * L),
    ("temperatures", "object", {"S": 1.0}),
    ("temperatures", "missing", MISSING),
    ("ere_threshold_mm", "nan", NAN),
    ("ere_threshold_mm", "inf", INF),
    ("ere_threshold_mm", "zero", 0),
    ("ere_threshold_mm", "negative", -1.5),
    ("ere_threshold_mm", "1e9", 1e9),
    ("ere_threshold_mm", "31mm", 31.0),
    ("ere_threshold_mm", "string", "1.5"),
    ("ere_threshold_mm", "null", None),
    ("ere_threshold_mm", "list", [1.5]),
    ("ere_threshold_mm", "boolean", True),
    ("ere_threshold_mm", "missing", MISSING),
    ("flag_p_large_min", "nan", NAN),
    ("flag_p_large_min", "zero", 0.0),
    ("flag_p_large_min", "one", 1.0),
    ("flag_p_large_min", "percent", 2.0),
    ("flag_p_large_min", "string", "0.02"),
    ("flag_p_large_min", "list", [0.02]),
    ("flag_image_weight", "nan", NAN),
    ("flag_image_weight", "negative", -0.5),
    ("flag_image_weight", "huge", 50.0),
    ("flag_image_weight", "null", None),
    ("landmark_names", "18", [f"Landmark {i}" for i in range(L - 1)]),
    ("landmark_names", "20", [f"Landmark {i}" for i in range(L + 1)]),
    ("landmark_names", "null", None),
    ("landmark_names", "string", "Sella"),
    ("landmark_names", "numbers", list(range(L))),
    ("landmark_names", "duplicates", ["Sella"] * L),
    ("landmark_names", "empty-strings", [""] * L),
    ("landmark_names", "missing", MISSING),
    ("landmark_abbreviations", "18", [f"A{i}" for i in range(L - 1)]),
    ("landmark_abbreviations", "20", [f"A{i}" for i in range(L + 1)]),
    ("landmark_abbreviations", "null", None),
    ("landmark_abbreviations", "duplicates", ["S"] * L),
    ("landmark_abbreviations", "numbers", list(range(L))),
    ("landmark_abbreviations", "missing", MISSING),
    ("input_size", "zero", [0, 0]),
    ("input_size", "one-value", [64]),
    ("input_size", "three-values", [64, 64, 64]),
    ("input_size", "not-multiple-of-32", [65, 64]),
    ("input_size", "negative", [-64, 64]),
    ("input_size", "strings", ["64", "64"]),
    ("input_size", "floats", [64.0, 64.0]),
    ("input_size", "null", None),
    ("input_size", "text", "64x64"),
    ("input_size", "huge", [65536, 65536]),
    ("input_size", "booleans", [True, 64]),
    ("input_size", "missing", MISSING),
    ("refine_radius", "negative", -1),
    ("refine_radius", "huge", 1000),
    ("refine_radius", "float", 1.5),
    ("refine_radius", "string", "1"),
    ("refine_radius", "null", None),
    ("refine_radius", "boolean", True),
    ("refine_radius", "nan", NAN),
    ("refine_radius", "missing", MISSING),
    ("model_mm_per_px", "zero", 0),
    ("model_mm_per_px", "negative", -0.5),
    ("model_mm_per_px", "nan", NAN),
    ("model_mm_per_px", "inf", INF),
    ("model_mm_per_px", "string", "0.5"),
    ("model_mm_per_px", "huge", 100.0),
    ("model_mm_per_px", "list", [0.5]),
    ("reference_uv", "18-rows", [[10.0, 20.0]] * (L - 1)),
    ("reference_uv", "nan", [[NAN, 1.0]] * L),
    ("reference_uv", "outside", [[1000.0, 1000.0]] * L),
    ("reference_uv", "negative", [[-5.0, 3.0]] * L),
    ("reference_uv", "three-columns", [[1.0, 2.0, 3.0]] * L),
    ("reference_uv", "string", "centre"),
    ("reference_uv", "object", {"S": [1, 2]}),
    ("name", "number", 5),
    ("name", "null", None),
    ("version", "number", 1.1),
    ("version", "list", ["1"]),
    ("training", "list", []),
    ("training", "string", "yes"),
    ("training", "null", None),
    ("training", "holdout-ids-string", {"holdout_ids": "img00"}),
    ("training", "holdout-ids-numbers", {"holdout_ids": [1, 2]}),
    ("training", "nested-nan", {"history": [{"val_loss": NAN}]}),
    ("calibration", "list", [1]),
    ("calibration", "string", "done"),
    ("metrics", "number", 3),
    ("metrics", "nested-inf", {"mre_mm": INF}),
    ("region_masses", "18", {"50": [0.5] * (L - 1)}),
    ("region_masses", "zero-mass", {"50": [0.0] * L}),
    ("region_masses", "mass-above-one", {"90": [1.5] * L}),
    ("region_masses", "unknown-level", {"75": [0.5] * L}),
    ("region_masses", "list", [0.5] * L),
    ("region_masses", "string-masses", {"50": "0.5"}),
    ("region_masses", "nan", {"90": [NAN] * L}),
    ("convention_offsets_mm", "too-far", [[25.0, 0.0]] * L),
    ("convention_offsets_mm", "nan", [[NAN, 0.0]] * L),
    ("convention_offsets_mm", "18-rows", [[0.0, 0.0]] * (L - 1)),
    ("convention_offsets_mm", "string", "none"),
    ("convention_offsets_mm", "one-column", [[0.0]] * L),
    ("adaptation", "list", []),
    ("adaptation", "string", "clinic"),
    ("adaptation", "number", 5),
    ("format", "future", "ceph-landmarks-model/99"),
    ("format", "null", None),
    ("format", "number", 1),
    ("format", "missing", MISSING),
    ("weights_sha256", "short", "abc"),
    ("weights_sha256", "null", None),
    ("weights_sha256", "number", 5),
    ("weights_sha256", "missing", MISSING),
]

# Metadata that is not a JSON object at all.
TOP_LEVEL = {"list": [1, 2, 3], "null": None, "string": "model", "number": 42}


def damaged_variants() -> dict:
    """Valid values changed after the checksum was computed: each must read as a damaged file."""
    sealed = valid_meta()
    sealed[CHECKSUM_KEY] = metadata_digest(sealed)
    out = {}
    for label, change in {
        "temperature-changed": ("temperatures", [1.5] + [1.0] * (L - 1)),
        "threshold-changed": ("ere_threshold_mm", 2.0),
        "name-changed": ("name", "other"),
        "offsets-changed": ("convention_offsets_mm", [[0.0, 2.0]] * L),
        "checksum-garbage": (CHECKSUM_KEY, "0" * 64),
        "checksum-deleted": (CHECKSUM_KEY, MISSING),
    }.items():
        meta = dict(sealed)
        field, value = change
        if value is MISSING:
            del meta[field]
        else:
            meta[field] = value
        out[label] = meta
    return out


class Payload:
    """Unpickling this creates `marker`: proof that a pickle ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def corrupt_model_files(folder: Path, marker: Path) -> dict:
    """{label: path}: byte-level damage of a valid small model file, and things that are not one."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_meta_model(folder / "good.safetensors", valid_meta()).read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    files = {}

    def put(label, data):
        path = folder / f"{label}.safetensors"
        path.write_bytes(data)
        files[label] = path

    cuts = {"truncated-at-0": 0, "truncated-at-4": 4, "truncated-at-8": 8, "truncated-at-20": 20,
            "truncated-mid-header": 8 + n // 2, "truncated-header-end": 8 + n, "truncated-last-byte": len(good) - 1}
    for label, cut in cuts.items():
        put(label, good[:cut])
    flips = {"flipped-byte-0": 0, "flipped-byte-3": 3, "flipped-byte-8": 8, "flipped-byte-9": 9,
             "flipped-third": 8 + n // 3, "flipped-half": 8 + n // 2, "flipped-header-end": 8 + n - 2,
             "flipped-data": len(good) - 5}
    for label, offset in flips.items():
        flipped = bytearray(good)
        flipped[offset] ^= 0xFF
        put(label, bytes(flipped))
    put("trailing-bytes", good + b"\0\0\0\0")
    put("huge-header-length", struct.pack("<Q", 2**62) + good[8:])
    put("header-not-json", struct.pack("<Q", 10) + b"not json!!" + bytes(16))
    put("random-bytes", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    torch.save({"model": Payload(marker)}, buf)
    put("malicious-torch-pickle", buf.getvalue())
    put("plain-pickle", pickle.dumps({"state": Payload(marker)}))
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("data.pkl", b"junk")
    put("zip-file", zbuf.getvalue())
    put("png-named-safetensors", b"\x89PNG\r\n\x1a\n" + bytes(100))
    save_file({"w": torch.zeros(2)}, str(folder / "foreign.safetensors"))
    files["foreign-safetensors"] = folder / "foreign.safetensors"
    (folder / "a-folder.safetensors").mkdir()
    files["folder"] = folder / "a-folder.safetensors"
    files["device"] = Path("/dev/null")
    files["missing"] = folder / "missing.safetensors"
    return files


# Datasets


def read_table(dataset: Path):
    with open(dataset / "landmarks.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def csv_bytes(header, rows, encoding="utf-8", newline="\n") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows([header, *rows])
    return buf.getvalue().encode(encoding)


def copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _set(row, column, header, value):
    row = list(row)
    row[header.index(column)] = value
    return row


def _drop_column(header, rows, column):
    k = header.index(column)
    return [c for i, c in enumerate(header) if i != k], [[c for i, c in enumerate(r) if i != k] for r in rows]


def generic_mutations():
    """{label: fn(header, rows, folder) -> CSV bytes}: broken generic datasets (all must be refused)."""
    def cell(row_index, column, value):
        def fn(h, rows, folder):
            rows = [list(r) for r in rows]
            rows[row_index] = _set(rows[row_index], column, h, value)
            return csv_bytes(h, rows)
        return fn

    def image_is(name, make):
        def fn(h, rows, folder):
            make(folder / name)
            return cell(0, "image", name)(h, rows, folder)
        return fn

    return {
        "x-negative": cell(0, "x1", "-5"),
        "x-outside": cell(1, "x4", "500"),
        "y-outside": cell(2, "y7", "1e6"),
        "x-nan": cell(3, "x2", "nan"),
        "y-inf": cell(4, "y9", "inf"),
        "x-minus-inf": cell(5, "x19", "-inf"),
        "x-text": cell(0, "x3", "abc"),
        "x-empty": cell(0, "x5", ""),
        "test-row-outside": cell(9, "y19", "99999"),
        "split-Train": cell(0, "split", "Train"),
        "split-tst": cell(8, "split", "tst"),
        "split-empty": cell(1, "split", ""),
        "split-validation": cell(2, "split", "val"),
        "spacing-zero": cell(0, "spacing_mm", "0"),
        "spacing-negative": cell(0, "spacing_mm", "-0.1"),
        "spacing-nan": cell(0, "spacing_mm", "nan"),
        "spacing-inf": cell(0, "spacing_mm", "inf"),
        "spacing-text": cell(0, "spacing_mm", "half"),
        "row-short": lambda h, rows, f: csv_bytes(h, [rows[0][:-3], *rows[1:]]),
        "row-long": lambda h, rows, f: csv_bytes(h, [rows[0] + ["extra"], *rows[1:]]),
        "no-x19-column": lambda h, rows, f: csv_bytes(*_drop_column(h, rows, "x19")),
        "no-image-column": lambda h, rows, f: csv_bytes(["file", *h[1:]], rows),
        "header-only": lambda h, rows, f: csv_bytes(h, []),
        "empty-file": lambda h, rows, f: b"",
        "latin-1": lambda h, rows, f: csv_bytes(h, [_set(rows[0], "image", h, "imgé.png"), *rows[1:]], "latin-1"),
        "utf-16": lambda h, rows, f: csv_bytes(h, rows, "utf-16"),
        "nul-byte": cell(0, "x1", "1\x002"),
        "image-missing": cell(0, "image", "nope.png"),
        "image-empty-name": cell(0, "image", ""),
        "image-is-folder": image_is("sub.png", lambda p: p.mkdir()),
        "image-is-text": image_is("fake.png", lambda p: p.write_text("not an image")),
        "image-is-empty": image_is("empty.png", lambda p: p.write_bytes(b"")),
    }


def valid_generic_variants():
    """{label: fn(header, rows) -> CSV bytes}: odd but valid tables, read as the plain one."""
    return {
        "utf-8-bom": lambda h, rows: b"\xef\xbb\xbf" + csv_bytes(h, rows),
        "crlf": lambda h, rows: csv_bytes(h, rows, newline="\r\n"),
        "padded-split": lambda h, rows: csv_bytes(h, [_set(r, "split", h, f" {r[h.index('split')]} ") for r in rows]),
        "blank-lines": lambda h, rows: csv_bytes(h, rows).replace(b"\n", b"\n\n", 3),
    }


def make_isbi(root: Path, images_with_points, n_lines_extra: int = 2) -> Path:
    """A small ISBI-2015-layout dataset: BMPs in RawImage/TrainingData, both doctors' annotations
    (the same points; 19 lines then `n_lines_extra` lines of other data, as the originals have)."""
    import SimpleITK as sitk

    image_dir = root / "RawImage" / "TrainingData"
    image_dir.mkdir(parents=True)
    for doctor in ("senior", "junior"):
        (root / "AnnotationsByMD" / f"400_{doctor}").mkdir(parents=True)
    for i, (pixels, pts) in enumerate(images_with_points, 1):
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(image_dir / f"{i:03d}.bmp"))
        text = "\n".join(f"{int(round(x))},{int(round(y))}" for x, y in pts) + "\n" + "1\n" * n_lines_extra
        for doctor in ("senior", "junior"):
            (root / "AnnotationsByMD" / f"400_{doctor}" / f"{i:03d}.txt").write_text(text)
    return root


def isbi_annotation(root: Path, doctor="senior", i=1) -> Path:
    return root / "AnnotationsByMD" / f"400_{doctor}" / f"{i:03d}.txt"


def isbi_mutations():
    """{label: fn(root) -> the file the message must name}: broken ISBI datasets."""
    def line(doctor, number, text):
        def fn(root):
            path = isbi_annotation(root, doctor, 2)
            lines = path.read_text().splitlines()
            lines[number - 1] = text
            path.write_text("\n".join(lines) + "\n")
            return path
        return fn

    def short(root):
        path = isbi_annotation(root, "junior", 3)
        path.write_text("\n".join(path.read_text().splitlines()[: L - 1]) + "\n")
        return path

    def missing_junior(root):
        path = isbi_annotation(root, "junior", 1)
        path.unlink()
        return path

    def unreadable_image(root):
        path = root / "RawImage" / "TrainingData" / "002.bmp"
        path.write_bytes(b"BM" + bytes(10))
        return path

    def no_images(root):
        folder = root / "RawImage" / "TrainingData"
        for p in folder.iterdir():
            p.unlink()
        return folder

    return {
        "negative": line("senior", 3, "-5,10"),
        "outside": line("junior", 5, "500,10"),
        "nan": line("senior", 7, "nan,10"),
        "inf": line("junior", 1, "10,inf"),
        "text": line("senior", 2, "left of sella"),
        "one-number": line("senior", 4, "12"),
        "short-file": short,
        "missing-junior": missing_junior,
        "unreadable-image": unreadable_image,
        "no-images": no_images,
    }


# Checkpoints for --resume


def foreign_checkpoints(folder: Path, marker: Path, config: dict) -> dict:
    """{label: (bytes or None for a folder, needle)}: last.pt files that must not be resumed.
    `config` is the TrainConfig (asdict) of the run that tries to resume."""
    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    good_keys = dict(model={}, optimizer={}, epoch=1, best_mre_mm=3.0, history=[], config=config)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("archive/data.pkl", b"junk")
    whole = saved(dict(good_keys, model={"w": torch.zeros(1000)}))
    return {
        "random-bytes": (np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes(), "last.pt"),
        "empty": (b"", "last.pt"),
        "text": (b"epoch=3\n", "last.pt"),
        "malicious-pickle": (saved({"model": Payload(marker)}), "last.pt"),
        "plain-pickle": (pickle.dumps({"epoch": Payload(marker)}), "last.pt"),
        "a-tensor": (saved(torch.zeros(3)), "last.pt"),
        "missing-keys": (saved({"model": {}}), "last.pt"),
        "epoch-is-text": (saved(dict(good_keys, epoch="1")), "last.pt"),
        "config-is-list": (saved(dict(good_keys, config=[1])), "last.pt"),
        "zip-not-torch": (zbuf.getvalue(), "last.pt"),
        "truncated": (whole[: len(whole) // 2], "last.pt"),
        "other-settings": (saved(dict(good_keys, config=dict(config, lr=0.5))), "other settings"),
        "weights-do-not-fit": (saved(dict(good_keys, model={"w": torch.zeros(3)})), "last.pt"),
        "a-folder": (None, "last.pt"),
    }
