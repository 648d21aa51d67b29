"""The Slicer side of CephLandmarks, beside the module file (as MONAIAuto3DSegLib sits beside MONAIAuto3DSeg.py).

- `mrml`: detections as MRML nodes (markups, contours, heatmaps, tables) and their exports; headless.
- `process`: the background process (PythonSlicer running the ceph-landmarks CLI) with progress and cancel.
- `dependencies`: the one requirements list, checked and installed on demand.

Nothing here is imported when Slicer loads the module, and nothing here imports torch.
"""
