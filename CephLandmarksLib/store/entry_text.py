"""The text a model list shows for a model: the tooltip's summary line and a user model's provenance line; no torch."""

from pathlib import Path

# The tooltip's provenance line of a user model; an adapted model's training record is its base's.
_PROVENANCE = {"imported": "Imported", "trained": "Trained", "adapted": "Base model trained",
               "downloaded": "Downloaded"}


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def tooltip(kind, name, version, info) -> str:
    parts = [f"{name} {version}".strip()]
    names = info.get("landmark_names")
    if isinstance(names, list):
        parts.append(f"{len(names)} landmarks")
    size = info.get("input_size")
    if isinstance(size, list) and len(size) == 2:
        parts.append(f"input {size[0]}x{size[1]}")
    metrics = info.get("metrics") if isinstance(info.get("metrics"), dict) else {}
    calibration = info.get("calibration") if isinstance(info.get("calibration"), dict) else {}
    if _number(metrics.get("mre_mm")) is not None:
        parts.append(f"MRE {_number(metrics['mre_mm']):.2f} mm")
        sdr = metrics.get("sdr") if isinstance(metrics.get("sdr"), dict) else {}
        if _number(sdr.get("2.0")) is not None:
            parts.append(f"SDR 2 mm {_number(sdr['2.0']):.1f} %")
    elif _number(calibration.get("holdout_mre_mm")) is not None:
        parts.append(f"holdout MRE {_number(calibration['holdout_mre_mm']):.2f} mm")
    lines = [", ".join(parts)]
    if kind != "shipped":
        lines.append(_provenance(kind, info))
    return "\n".join(lines)


def _provenance(kind, info) -> str:
    training = info.get("training") if isinstance(info.get("training"), dict) else {}
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    init = training.get("init_model") if isinstance(training.get("init_model"), dict) else {}
    words = []
    if init.get("name"):
        words.append(f"fine-tuned from {init['name']}")
    if config.get("dataset"):
        words.append(f"on {Path(str(config['dataset'])).name or config['dataset']}")
    text = " ".join(words)
    if training.get("epochs_run") is not None:
        text += (", " if text else "") + f"{training['epochs_run']} epochs"
    return f"{_PROVENANCE[kind]}: {text or 'no training record'}"
