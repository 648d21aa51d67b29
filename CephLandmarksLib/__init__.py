"""CephLandmarksLib: cephalometric landmark detection with contour-hugging heatmaps.

Pure Python (torch, numpy, SimpleITK); never imports slicer. See README.md.
"""

__version__ = "0.1.0"
