"""Development/test-environment shim for a torchvision wheel whose C++ ops cannot load.

NOT part of the ``priming`` library. ``make`` installs this file into the virtualenv
together with a ``.pth`` start-up hook (see ``tools/install_dev_shim.py``).

Why: PyPI's torchvision wheel is a CUDA build. Next to the CPU-only torch used in our
development environment its ``_C`` extension fails to load, and ``import torchvision``
then dies with ``RuntimeError: operator torchvision::nms does not exist`` (its Python
code registers fake/autograd kernels for operators that were never declared). That
also breaks ``open_clip`` and the ``transformers`` code paths that import torchvision.

What: the start-up hook only adds a meta-path finder (no torch import at start-up).
When ``torchvision`` is first imported, and only if its operators are still unknown
after trying to load its own ``_C`` extension, the operator *schemas* are declared
with ``torch.library`` so the import succeeds. The operators get no kernels: calling
e.g. ``torchvision.ops.nms`` still fails loudly, while everything ``priming`` uses
(transforms, models, open_clip, transformers) works. With a torchvision whose
extension loads, the shim does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, "
    "float rois_scale, int rois_zero_point, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
    "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
    "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "_cuda_version() -> int",
)

_LIB = None  # keeps the torch.library.Library alive (it un-registers when collected)


def _known(torch, name: str) -> bool:
    return bool(torch._C._jit_get_schemas_for_operator(f"torchvision::{name}"))


def _declare_missing_ops(package_dir: str) -> None:
    global _LIB
    import torch

    if _known(torch, "nms"):
        return
    ext = None
    for entry in os.listdir(package_dir):
        if entry.startswith("_C.") and entry.endswith((".so", ".pyd")):
            ext = os.path.join(package_dir, entry)
    if ext is not None:
        try:
            torch.ops.load_library(ext)
        except (ImportError, OSError):
            pass
        if _known(torch, "nms"):
            return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        if not _known(torch, schema.split("(", 1)[0]):
            lib.define(schema)
    _LIB = lib


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Wraps the real loader of ``torchvision`` to declare its ops first."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return spec
        loader = spec.loader
        package_dir = list(spec.submodule_search_locations)[0]
        real_exec = loader.exec_module

        def exec_module(module):
            try:
                _declare_missing_ops(package_dir)
            except Exception:  # never make an import worse than it was
                pass
            real_exec(module)

        loader.exec_module = exec_module
        return spec


def install() -> None:
    if os.environ.get("PRIMING_NO_TORCHVISION_SHIM"):
        return
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())
