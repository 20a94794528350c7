"""Compatibility re-export: the checks live in :mod:`priming.imprint.validation`."""

from priming.imprint.validation import *  # noqa: F401,F403
from priming.imprint.validation import __all__  # noqa: F401
