"""``predict``: apply a saved head to data (the logic of ``priming predict``).

Imports numpy and the heads only when called (``priming.job`` imports this module).
"""

from __future__ import annotations

import os
from pathlib import Path

from priming.errors import ConfigError, DataError
from priming.progress import ProgressCallback

__all__ = ["predict", "check_predict_out"]


def check_predict_out(
    out: str | os.PathLike,
    data: str | os.PathLike,
    overwrite: bool,
    head_dir: str | os.PathLike | None = None,
) -> Path:
    """Refuse an output file that is a folder, that is the input ``data`` or the head
    folder ``head_dir`` (or lies inside either), or that exists while ``overwrite`` is
    False: the predictions never replace an input, even with ``overwrite``."""
    from priming._fs import make_dir

    o = Path(out)
    ro = o.resolve()
    inputs = [("input --data", data)] + ([("--head", head_dir)] if head_dir is not None else [])
    for what, path in inputs:
        d = Path(path).resolve()
        if ro == d or d in ro.parents:
            raise ConfigError(
                f"--out {str(out)!r} is the {what} {str(path)!r} (or inside it); "
                "write the predictions elsewhere"
            )
    if o.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give the path of a CSV file")
    if o.exists() and not overwrite:
        raise ConfigError(f"--out {str(out)!r} already exists (use --overwrite to replace it)")
    make_dir(o.parent, "folder of --out")
    return o


def _head_model(head) -> str | None:
    meta = getattr(head, "metadata_", None) or {}
    model = meta.get("model") if isinstance(meta, dict) else None
    if isinstance(model, dict):
        model = model.get("name")
    return model if isinstance(model, str) and model else None


def _embed_data(head, data: Path, model, encoder, cache_dir, batch_size, device, progress):
    if data.suffix.lower() in (".npy", ".npz"):
        from priming.data import load_embeddings

        return load_embeddings(data)
    from priming.job.steps import default_cache_dir, open_encoder

    if encoder is None:
        model = model or _head_model(head)
        if not model:
            raise ConfigError(
                "the head records no model (saved without metadata); name its encoder with "
                "--model (Python: predict(..., model=...))"
            )
        encoder = open_encoder(model, device=device)
    from priming.data import embed

    return embed(
        encoder,
        str(data),
        cache_dir=cache_dir or default_cache_dir(),
        batch_size=batch_size,
        progress=progress,
    )


def _accuracy(head, labels, pred) -> tuple[float | None, str | None]:
    import numpy as np

    from priming.classnames import match_labels, parse_class_names

    try:
        classes = parse_class_names([str(c) for c in head.classes_], "the head's classes")
        y = match_labels(labels, classes, "data")
    except DataError as exc:  # labels of another task: the predictions still stand
        return None, str(exc)
    return float(np.mean(head.classes_[y] == pred)), None


def predict(
    head_dir: str | os.PathLike,
    data: str | os.PathLike,
    model: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    encoder=None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
):
    """Classify ``data`` with the head saved in ``head_dir`` (e.g. ``RUN/head``).

    ``data``: an image folder, a manifest, ``.tar`` shards (embedded with the head's
    recorded model, or ``model``/``encoder`` when given — a head saved from Python
    without metadata needs one) or ``.npy``/``.npz`` embeddings (no model needed).
    ``out``: also write ``id,prediction,confidence`` as CSV there (never over ``data``;
    an existing file only with ``overwrite``). Returns a
    :class:`~priming.job.results.PredictResult`; ``confidence`` is the head's
    ``predict_proba`` of the predicted class.
    """
    import numpy as np

    from priming.heads import load_head
    from priming.job.results import PredictResult

    if out is not None:
        out = check_predict_out(out, data, overwrite, head_dir)
    head = load_head(head_dir)
    emb = _embed_data(head, Path(data), model, encoder, cache_dir, batch_size, device, progress)
    X = np.asarray(emb.embeddings, np.float32)
    try:
        proba = head.predict_proba(X)
    except DataError as exc:  # e.g. embeddings of another width: name the data
        raise DataError(f"--data {str(data)!r}: {exc}") from None
    pred = head.classes_[proba.argmax(axis=1)]
    res = PredictResult(
        ids=np.asarray(emb.ids),
        predictions=pred,
        confidence=proba.max(axis=1),
        skipped=list(emb.skipped),
        out=None if out is None else Path(out),
    )
    if emb.labels is not None:
        res.accuracy, res.accuracy_note = _accuracy(head, emb.labels, pred)
    if out is not None:
        from priming._fs import write_text_atomic

        write_text_atomic(out, res.to_csv())
    return res
