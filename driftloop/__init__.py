"""driftloop: keep a scikit-learn model healthy after it ships."""

__version__ = "0.1.0"
