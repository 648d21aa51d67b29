"""The Slicer side of CephLandmarks, beside the module file (as MONAIAuto3DSegLib sits beside MONAIAuto3DSeg.py).

A flat package (CMake installs CephLandmarksSlicer/*.py), one concept per file:

- The panel, mixed into the module's widget: `detectSection`, `landmarksSection`, `trainingSection`
  (each section's slots), `parameters` (path parameters, the remembered clinic folder), `i18n`.
  These are imported when Slicer loads the module file, so they import no library module at load.
- A detection's MRML nodes, headless (no qt, no slicer.app): `volumes` (volume -> Radiograph,
  pixel <-> RAS), `record` (what a landmarks node saves), `markups` (the points), `maps` (the
  stored heatmaps), `contours`, `heatmap`, `review` (the detection at the current points),
  `tables`, `measurements`, `exports`, `detection` (all of them made and refreshed), `clinic`
  (Add to clinic dataset).
- The CLI in a background process: `process` (PythonSlicer, progress, cancel), `commands` (the
  Training section's command lines), `adapt` (Adapt's), `metrics` (what Evaluate wrote).
- `models` (the model list), `dependencies` (the one requirements list), `selfTest` (the module's test).

Nothing here imports torch: heavy work runs in the `ceph-landmarks` CLI's process.
"""
