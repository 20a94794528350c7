import io
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from priming.data.benchmarks import get_benchmark, list_benchmarks, to_parent_labels
from priming.data.loaders import load_split, open_image
from priming.errors import ConfigError, DataError, UnknownNameError

EXPECTED = {
    "imagenet1k": 1000, "imagenet-v2": 1000, "imagenet-sketch": 1000, "imagenet-r": 200,
    "imagenet-a": 200, "cars": 196, "aircraft": 100, "flowers102": 102, "food101": 101,
    "pets": 37, "sun397": 397, "dtd": 47, "eurosat": 10, "caltech101": 101, "cifar10": 10,
    "cifar100": 100, "mnist": 10, "fashionmnist": 10,
}  # fmt: skip


def test_registry_sizes_and_unique_names():
    assert set(list_benchmarks()) == set(EXPECTED)
    for name, n in EXPECTED.items():
        b = get_benchmark(name)
        assert b.n_classes == n, name
        # CLIP's ImageNet names (kept verbatim) repeat "missile" and "sunglasses"
        dup = 2 if name in ("imagenet1k", "imagenet-v2", "imagenet-sketch") else 0
        assert len(set(b.classnames)) == n - dup, name
        assert b.templates
        if b.folders is not None:
            assert len(b.folders) == n and len(set(b.folders)) == n
    with pytest.raises(UnknownNameError, match="valid choices"):
        get_benchmark("imagenet-x")


def test_imagenet_subsets_are_own_label_space():
    full, r, a = (get_benchmark(n) for n in ("imagenet1k", "imagenet-r", "imagenet-a"))
    assert full.classnames[:3] == ("tench", "goldfish", "great white shark")
    assert full.folders[0] == "n01440764"
    for sub in (r, a):
        assert [full.classnames[i] for i in sub.parent_indices] == list(sub.classnames)
        assert [full.folders[i] for i in sub.parent_indices] == list(sub.folders)
    assert r.classnames[0] == "goldfish" and a.classnames[0] == "stingray"
    assert to_parent_labels(r, [0, 1]).tolist() == [1, 2]
    with pytest.raises(DataError):
        to_parent_labels(r, [200])
    assert "MIT" in full.source and "open_clip" in full.source


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, 0, 0)).save(path)


def test_imagefolder_imagenet_r_wnids(tmp_path):
    r = get_benchmark("imagenet-r")
    _png(tmp_path / r.folders[5] / "a.png")
    _png(tmp_path / r.folders[5] / "b.jpg")
    _png(tmp_path / r.folders[0] / "c.png")
    s = load_split(tmp_path, "imagenet-r", split="test")
    assert s.layout == "imagefolder" and len(s) == 3
    assert sorted(s.labels.tolist()) == [0, 5, 5]
    assert s.classnames == list(r.classnames)
    assert open_image(s.items[0]).size == (4, 4)


def test_imagefolder_matches_readable_names_and_rejects_unknown(tmp_path):
    _png(tmp_path / "train" / "SeaLake" / "x.png")
    _png(tmp_path / "train" / "annual crop land" / "y.png")
    s = load_split(tmp_path, "eurosat", split="train")
    assert sorted(s.labels.tolist()) == [0, 9]
    _png(tmp_path / "train" / "Volcano" / "z.png")
    with pytest.raises(DataError, match="Volcano"):
        load_split(tmp_path, "eurosat", split="train")


def test_plain_imagefolder_without_benchmark(tmp_path):
    _png(tmp_path / "b" / "1.png")
    _png(tmp_path / "a" / "2.png")
    s = load_split(tmp_path)
    assert s.classnames == ["a", "b"] and s.labels.tolist() == [0, 1]


def _add(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_clip_benchmark_webdataset(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (9, 9, 9)).save(buf, format="PNG")
    with tarfile.open(tmp_path / "test" / "0.tar", "w") as tf:
        for key, cls in (("s0", 1), ("s1", 0)):
            _add(tf, f"{key}.png", buf.getvalue())
            _add(tf, f"{key}.cls", str(cls).encode())
    s = load_split(tmp_path, split="test")
    assert s.layout == "wds" and s.classnames == ["cat", "dog"]
    assert s.labels.tolist() == [1, 0]
    assert open_image(s.items[0]).getpixel((0, 0)) == (9, 9, 9)
    with pytest.raises(DataError, match="lists 2 classes"):
        load_split(tmp_path, "cifar10", split="test")


def test_torchvision_food101_and_pets(tmp_path):
    base = tmp_path / "food-101"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "test.txt").write_text("pizza/1\nwaffles/2\n")
    s = load_split(tmp_path, "food101", split="test", layout="torchvision")
    b = get_benchmark("food101")
    assert s.labels.tolist() == [b.classnames.index("pizza"), 100]
    assert s.items[0].endswith("food-101/images/pizza/1.jpg")
    pets = tmp_path / "oxford-iiit-pet" / "annotations"
    pets.mkdir(parents=True)
    (pets / "test.txt").write_text("Abyssinian_1 1 1 1\nyorkshire_terrier_9 37 2 25\n")
    s = load_split(tmp_path, "pets", split="test", layout="torchvision")
    assert s.labels.tolist() == [0, 36]


def test_torchvision_flowers_mat(tmp_path):
    from scipy.io import savemat

    base = tmp_path / "flowers-102"
    base.mkdir()
    savemat(base / "imagelabels.mat", {"labels": np.array([[1, 102, 5]])})
    savemat(base / "setid.mat", {"trnid": np.array([[2]]), "tstid": np.array([[1, 3]]), "valid": np.array([[2]])})  # fmt: skip
    s = load_split(tmp_path, "flowers102", split="test", layout="torchvision")
    assert s.labels.tolist() == [0, 4]
    assert s.items[1].endswith("jpg/image_00003.jpg")
    assert load_split(
        tmp_path, "flowers102", split="train", layout="torchvision"
    ).labels.tolist() == [101]


def test_torchvision_mnist_idx(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (raw / "t10k-images-idx3-ubyte").write_bytes(
        b"\x00\x00\x08\x03" + struct.pack(">III", 2, 28, 28) + imgs.tobytes()
    )
    (raw / "t10k-labels-idx1-ubyte").write_bytes(
        b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes([7, 3])
    )
    s = load_split(tmp_path, "mnist", split="test", layout="torchvision")
    assert s.labels.tolist() == [7, 3]
    im = open_image(s.items[1])
    assert im.size == (28, 28) and im.getpixel((0, 0))[0] == imgs[1, 0, 0]


def test_torchvision_sun397_dtd_aircraft(tmp_path):
    sun = tmp_path / "SUN397"
    (sun / "ClassName.txt").parent.mkdir()
    (sun / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n")
    _png(sun / "a" / "abbey" / "1.jpg")
    _png(sun / "a" / "apartment_building" / "outdoor" / "2.jpg")
    s = load_split(tmp_path, "sun397", layout="torchvision")
    assert s.labels.tolist() == [0, 8]
    dtd = tmp_path / "dtd" / "labels"
    dtd.mkdir(parents=True)
    (dtd / "test1.txt").write_text("zigzagged/z_1.jpg\nbanded/b_2.jpg\n")
    assert load_split(tmp_path, "dtd", layout="torchvision").labels.tolist() == [46, 0]
    air = tmp_path / "fgvc-aircraft-2013b" / "data"
    air.mkdir(parents=True)
    (air / "images_variant_test.txt").write_text("0001 Yak-42\n0002 F/A-18\n")
    s = load_split(tmp_path, "aircraft", layout="torchvision")
    assert s.labels.tolist() == [99, get_benchmark("aircraft").classnames.index("F/A-18")]


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_split(tmp_path / "missing")
    with pytest.raises(ConfigError, match="valid choices"):
        load_split(tmp_path, layout="zip")
    with pytest.raises(ConfigError, match="torchvision layout"):
        load_split(tmp_path, "cifar10", layout="torchvision")
    with pytest.raises(DataError, match="missing"):
        load_split(tmp_path, "food101", layout="torchvision")


def test_open_image_uses_the_guarded_decoder(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(p)
    with pytest.raises(DataError, match=r"big.png.*exceeds the limit of 10 pixels"):
        open_image(str(p), max_pixels=10)
    img = open_image(str(p))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)  # alpha on white
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        open_image(str(bad))
    tar = tmp_path / "s.tar"
    with tarfile.open(tar, "w") as tf:
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (0, 9, 0)).save(buf, format="PNG")
        info = tarfile.TarInfo("a.png")
        info.size = len(buf.getvalue())
        tf.addfile(info, io.BytesIO(buf.getvalue()))
    assert open_image(f"{tar}::a.png").getpixel((1, 1)) == (0, 9, 0)
    with pytest.raises(DataError, match="a.png"):
        open_image(f"{tar}::a.png", max_pixels=3)
    with pytest.raises(DataError, match="no.png"):
        open_image(f"{tar}::no.png")
