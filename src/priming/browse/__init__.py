"""``priming browse``: a local, read-only web app over runs, pools and corpora.

Built on Starlette (routing, responses, static files), Jinja2 templates (autoescaped)
and uvicorn (the server), all from the ``browse`` extra. Nothing here writes: every
route is GET, files are served only from the browsed folder and the data folders of
its run, and pages read the pool parquet by row group (see :mod:`priming.browse.tables`).

>>> from priming.browse import create_app, serve   # doctest: +SKIP
>>> serve("runs/pets")                              # doctest: +SKIP
"""

from __future__ import annotations

from priming.browse.app import create_app
from priming.browse.server import serve
from priming.browse.sources import Predictions, open_source
from priming.browse.tables import ParquetPager

__all__ = ["ParquetPager", "Predictions", "create_app", "open_source", "serve"]
