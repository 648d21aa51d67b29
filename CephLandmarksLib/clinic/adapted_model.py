"""Where `ceph-landmarks adapt` writes the adapted model: a whole model file, or a sidecar.

``--out NAME.safetensors`` writes the base weights (or the fine-tuned ones) with the adapted
settings embedded, as before.  ``--out NAME.json`` writes a calibration sidecar (store/sidecar.py):
when cross-validation chose no fine-tune, only the settings change, so the sidecar names the base
weights (beside it, or a shipped model) and weighs kilobytes; a fine-tune still needs its weights,
written as ``NAME.safetensors`` beside the sidecar.
"""

from pathlib import Path

from ..errors import CephError
from ..store.modelfile import load_model, save_model, save_settings
from ..store.sidecar import SHIPPED_MODELS_DIR, is_sidecar_path


def check_out(out: Path, base_path) -> None:
    """--out must name a .safetensors model file or a .json sidecar, and never the base model."""
    if out.exists() and out.resolve() == Path(base_path).resolve():
        raise CephError(f"--out {out} is the base model; adaptation never overwrites it")
    if out.suffix not in (".safetensors", ".json"):
        raise CephError(f"--out {out} must name a .safetensors model file or a .json sidecar")
    if is_sidecar_path(out):
        base = Path(base_path).resolve()
        if is_sidecar_path(base):
            base = Path(load_model(base).path).resolve()
        if out.with_suffix(".safetensors").resolve() == base:
            raise CephError(f"--out {out}: its fine-tuned weights would be written over the base model")
        beside = out.parent.resolve() == base.parent
        if not beside and base.parent != SHIPPED_MODELS_DIR.resolve():
            raise CephError(f"--out {out}: a sidecar lies beside its weights; write it in {base.parent}, "
                            f"or name a .safetensors file")


def write_adapted(out: Path, base, network, info) -> Path:
    """Write the adapted model (see the module docstring); `base` is the base LoadedModel, `network`
    the fine-tuned network or None.  Returns the path written."""
    if not is_sidecar_path(out):
        save_model(out, network or base.net, info, half=base.half)
        return out
    if network is None:
        save_settings(out, base, info)
        return out
    weights = out.with_suffix(".safetensors")
    save_model(weights, network, info, half=base.half)
    save_settings(out, load_model(weights), info)
    return out
