"""Datasets shipped with sktlag, loaded the scikit-learn way."""

from ._base import load_lahn

__all__ = ["load_lahn"]
