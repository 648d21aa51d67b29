"""`tr`, for the helpers' user-facing text: Slicer's translation function inside Slicer (its
context is the calling file, e.g. CephLandmarksSlicer.commands), the text itself where
slicer.i18n is absent (plain Python, headless tests)."""

try:
    from slicer.i18n import tr
except ImportError:  # outside Slicer

    def tr(text):
        return text
