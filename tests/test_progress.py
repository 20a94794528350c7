"""priming.progress: the one adapter from what callers pass as ``progress=`` to a callback."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from priming.errors import ConfigError
from priming.progress import ProgressEvent, as_callback, track


@pytest.mark.parametrize("value", [None, False, True])
def test_none_and_bools_report_nothing(value):
    assert as_callback(value) is None


def test_an_event_callback_is_returned_as_is():
    events: list[ProgressEvent] = []

    def one(ev):
        events.append(ev)

    class Sink:
        def __call__(self, ev):
            events.append(ev)

    sink = Sink()
    assert as_callback(one) is one
    assert as_callback(events.append) == events.append  # a builtin bound method
    assert as_callback(sink) is sink
    star = functools.partial(print)  # *args: can't tell, so the new form
    assert as_callback(star) is star


def test_a_done_total_callable_gets_the_counts():
    calls: list[tuple[int, int | None]] = []
    cb = as_callback(lambda done, total: calls.append((done, total)))
    assert cb is not None
    with track(cb, "work", total=5, unit="items") as t:
        t.advance(2)
        t.advance(3)
    assert calls == [(0, 5), (2, 5), (5, 5), (5, 5)]  # start, two advances, end


def test_track_itself_accepts_every_form():
    calls: list[tuple[int, int | None]] = []
    with track(lambda d, n: calls.append((d, n)), "t", total=2) as t:
        t.advance(2)
    assert calls == [(0, 2), (2, 2), (2, 2)]
    with track(True, "t", total=1) as t:  # reports nothing, and does not fail
        t.advance()
    assert t.done == 1


@pytest.mark.parametrize("bad", ["yes", 3, object()])
def test_anything_else_is_a_config_error_naming_progress(bad):
    with pytest.raises(ConfigError, match="progress"):
        as_callback(bad)


def test_the_encoder_base_and_the_cache_take_the_legacy_form_too(tmp_path):
    from priming.data.cache import embed
    from priming.encoders import Encoder

    class Toy(Encoder):
        name, dim, modality, fingerprint = "toy", 2, "text", "toy-1"

        def _encode_text_batch(self, texts):
            return np.array([[len(t), 1.0] for t in texts])

    pairs: list[tuple] = []
    Toy().encode_texts(["a", "bb", "ccc"], batch_size=2, progress=lambda d, n: pairs.append((d, n)))
    assert pairs == [(0, 3), (2, 3), (3, 3), (3, 3)]
    with pytest.raises(ConfigError, match="progress"):
        Toy().encode_texts(["a"], progress="yes")

    from _fake_encoder import PixelEncoder
    from PIL import Image

    for i in range(5):
        (tmp_path / "imgs" / "c").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(tmp_path / "imgs" / "c" / f"{i}.png")
    pairs.clear()
    res = embed(
        PixelEncoder(), tmp_path / "imgs", batch_size=2, progress=lambda d, n: pairs.append((d, n))
    )
    assert len(res) == 5
    assert pairs[0] == (0, 5) and pairs[-1] == (5, 5)
    assert [d for d, _ in pairs] == sorted(d for d, _ in pairs)


def test_text_weights_forward_a_callback_and_turn_bools_into_none():
    from priming.heads.text import build_text_weights

    seen = []

    class Enc:
        name = "fake"

        def encode_texts(self, texts, batch_size=256, progress=None):
            seen.append(progress)
            with track(progress, "encode texts", len(texts), "texts") as t:
                t.advance(len(texts))
            return np.eye(len(texts), 4, dtype=np.float32) + 0.1

    events: list[ProgressEvent] = []
    T = build_text_weights(Enc(), ["a", "b"], templates="identity", progress=events.append)
    assert T.shape == (2, 4)
    assert [e.state for e in events] == ["start", "advance", "end"]
    assert events[-1].done == events[-1].total == 2
    build_text_weights(Enc(), ["a", "b"], templates="identity", progress=True)
    assert seen[-1] is None  # the library never hands a bool on
    pairs: list[tuple] = []
    build_text_weights(Enc(), ["a"], templates="identity", progress=lambda d, n: pairs.append(d))
    assert pairs == [0, 1, 1]
