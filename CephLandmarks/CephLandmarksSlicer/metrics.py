"""What Evaluate wrote into its output folder, for the Training section: the one-line metrics summary
(metrics.json), the PNG plots of this run (not older ones left in the same folder), and copying
both elsewhere (Save plots)."""

import json
import shutil
from pathlib import Path


def metricsSummary(folder) -> str:
    """'MRE 1.23 mm, SDR 2 mm 80.0 %, ECE 0.012' from folder/metrics.json ("" without it)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return ""
    m = json.loads(path.read_text())
    parts = [f"MRE {m['mre_mm']:.2f} mm" if "mre_mm" in m else "",
             f"SDR 2 mm {m['sdr']['2.0']:.1f} %" if "2.0" in m.get("sdr", {}) else "",
             f"ECE {m['ece']:.3f}" if "ece" in m else ""]
    return ", ".join(p for p in parts if p)


def plotsWrittenSince(folder, writtenSince) -> list:
    """Paths (str, sorted) of the PNG files in folder written at writtenSince (time.time()) or later."""
    return [str(png) for png in sorted(Path(folder).glob("*.png")) if png.stat().st_mtime >= writtenSince - 1.0]


def copyResults(plots, evaluateFolder, destination) -> None:
    """Copy the plots, and evaluateFolder's metrics.json when there is one, into destination."""
    for plot in plots:
        shutil.copy2(plot, destination)
    metrics = Path(evaluateFolder) / "metrics.json"
    if metrics.is_file():
        shutil.copy2(metrics, destination)
