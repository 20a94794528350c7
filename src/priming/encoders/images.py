"""Compatibility re-export: the one image decoder lives in :mod:`priming.images`."""

from priming.images import DEFAULT_MAX_PIXELS, load_image, to_rgb

__all__ = ["load_image", "to_rgb", "DEFAULT_MAX_PIXELS"]
