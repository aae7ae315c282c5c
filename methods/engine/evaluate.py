"""The shared evaluator: whole-image or sliding-window inference, scored like Cityscapes.

A method says how its model predicts (a `Prediction`: the network's logits, the size images are
resized to, sliding windows or not); the evaluator makes the predictions on the resized image,
upsamples them to the label's own resolution (the full-resolution protocol of the Cityscapes
benchmark) and accumulates one confusion matrix; the summary is the `miou` / `pixel_acc` /
`iou.<class>` dict of the report contract. `udalab predict` writes the same predictions
(`Prediction.labels`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from udalab.datasets.metrics import ConfusionMatrix, InstanceIoU
from udalab.methods.engine import pictures

Predictor = Callable[[torch.Tensor], torch.Tensor]  # image batch -> logits (N, C, h, w)
BATCH_PIXELS = 2 ** 20   # pixels of the images evaluated together by default: one full-size Cityscapes image


@dataclasses.dataclass
class Prediction:
    """How a trained model predicts, the way its method evaluates: `fn` maps an image batch to logits
    (N, C, h, w); images are first resized to `input_size` (W, H; None: as they are); with `window`
    (h, w), logits are averaged over sliding windows moved by `stride`. The logits reach the label's
    size by bilinear upsampling, with aligned corners when `align_corners` (the ADVENT family's
    reference evaluation). `modules`: the networks behind `fn` (moved to a device by `to`)."""

    fn: Predictor
    num_classes: int
    input_size: tuple[int, int] | None = None
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    modules: tuple[torch.nn.Module, ...] = ()
    align_corners: bool = False

    def to(self, device) -> "Prediction":
        for m in self.modules:
            m.to(device).eval()
        return self

    def resized(self, image: torch.Tensor) -> torch.Tensor:
        """A batch (N, C, H, W) resized to input_size."""
        if self.input_size is None or tuple(image.shape[-2:]) == (self.input_size[1], self.input_size[0]):
            return image
        return F.interpolate(image, size=(self.input_size[1], self.input_size[0]), mode="bilinear", align_corners=False)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, h, w) of a batch already resized to input_size."""
        if self.window is not None:
            return slide_inference(self.fn, image, self.num_classes, self.window, self.stride or self.window)
        return self.fn(image)

    def upsampled(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits (N, C, h, w) brought to `size` (H, W), as this prediction upsamples them."""
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=self.align_corners)

    @torch.no_grad()
    def labels(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Train ids (N, H, W) at `size` (H, W) of a batch of images as loaded."""
        return self.upsampled(self.logits(self.resized(image)), size).max(1).indices


def slide_inference(predict: Predictor, image: torch.Tensor, num_classes: int,
                    window: tuple[int, int], stride: tuple[int, int], max_batch: int = 64,
                    out_stride: int = 1) -> torch.Tensor:
    """Average logits over overlapping windows (h, w) moved by stride (sh, sw); returns (N, C, H, W),
    or with out_stride o the average on every o-th pixel, (N, C, H/o, W/o), each window's logits
    brought to (h/o, w/o) (HRDA's HR windows on the decoder's stride-4 grid); the image's and the
    windows' sides and the strides must then be multiples of o.

    Windows are placed so that the last one ends at the image border (as mmseg's slide mode);
    they are predicted in batches of up to `max_batch` crops (one call per batch, not per window).
    """
    n, _, H, W = image.shape
    wh, ww = min(window[0], H), min(window[1], W)
    sh, sw = stride
    if any(side % out_stride for side in (H, W, wh, ww, sh, sw)):
        raise ValueError(f"sliding windows on a stride-{out_stride} grid need the image ({H}x{W}), the windows "
                         f"({wh}x{ww}) and the strides ({sh}x{sw}) in multiples of {out_stride}")
    oh, ow = wh // out_stride, ww // out_stride
    rows = max(H - wh + sh - 1, 0) // sh + 1
    cols = max(W - ww + sw - 1, 0) // sw + 1
    corners = [(min(r * sh, H - wh), min(c * sw, W - ww)) for r in range(rows) for c in range(cols)]
    crops = torch.cat([image[:, :, y0:y0 + wh, x0:x0 + ww] for y0, x0 in corners])  # window-major
    outs = []
    step = max(max_batch // n, 1) * n
    for i in range(0, crops.shape[0], step):
        out = predict(crops[i:i + step])
        outs.append(F.interpolate(out.float(), size=(oh, ow), mode="bilinear", align_corners=False))
    outs = torch.cat(outs)
    logits = image.new_zeros((n, num_classes, H // out_stride, W // out_stride), dtype=torch.float32)
    count = image.new_zeros((1, 1, H // out_stride, W // out_stride), dtype=torch.float32)
    for k, (y0, x0) in enumerate(corners):
        y, x = y0 // out_stride, x0 // out_stride
        logits[:, :, y:y + oh, x:x + ow] += outs[k * n:(k + 1) * n]
        count[:, :, y:y + oh, x:x + ow] += 1
    return logits / count


@torch.no_grad()
def predictions(prediction: Prediction, dataset: Dataset, *, device, batch_size: int | None = None,
                workers: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(index, train-id prediction (1, H, W), label (1, H, W)) of every sample of `dataset` in its
    order, each prediction at its label's native size: what `evaluate` scores and `udalab predict`
    writes. batch_size: images predicted together (after resizing, so images of different native
    sizes batch too; each prediction is then upsampled to its own label): the same predictions as
    one at a time up to float rounding, fewer and larger calls. None: as many as hold BATCH_PIXELS
    (one 2048x1024 Cityscapes image at a time, as the references; 32 of the mini 256x128 ones)."""
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)   # native sizes may differ: one at a time
    images, labels = [], []
    index = 0                                 # the next sample to yield (the loader keeps the dataset's order)

    def upsampled():
        logits = prediction.logits(torch.cat(images))
        for k, label in enumerate(labels):
            # max(1).indices: argmax's first-maximum indices, faster along the class dim on CPUs
            yield index + k, prediction.upsampled(logits[k:k + 1], label.shape[-2:]).max(1).indices, label

    for batch in loader:
        image = prediction.resized(batch["image"].to(device))
        if images and image.shape[-2:] != images[0].shape[-2:]:
            yield from upsampled()            # no input_size and a new image size: a batch of its own
            index, images, labels = index + len(labels), [], []
        images.append(image)
        labels.append(batch["label"].to(device))
        if len(images) >= (batch_size or max(1, BATCH_PIXELS // (image.shape[-2] * image.shape[-1]))):
            yield from upsampled()
            index, images, labels = index + len(labels), [], []
    if images:
        yield from upsampled()


@torch.no_grad()
def evaluate(prediction: Prediction, dataset: Dataset, *, class_names, device, batch_size: int | None = None,
             workers: int = 0, eval_classes=None, iiou: bool = False, record: pictures.Recording | None = None) -> dict:
    """Score `prediction` on every sample of `dataset` (labels at their native size; `predictions`
    makes them, batch_size as there).

    eval_classes: class indices that mIoU averages over (None: the dataset's own
    `eval_classes`, set by build_uda_data, e.g. SYNTHIA->Cityscapes' 16; if that is None too, all).
    iiou: also report instance-level IoU ("iiou", "iiou.<class>"; class 0 = background excluded,
    datasets/metrics.py), with the dataset's `load_instances(i)` when it has one (VOC),
    else connected components of the label.
    record: keeps the predictions of the images it names (the final evaluation's pictures).
    """
    num_classes = prediction.num_classes
    if eval_classes is None:
        eval_classes = getattr(dataset, "eval_classes", None)
    cm = ConfusionMatrix(num_classes)
    inst = InstanceIoU(num_classes) if iiou else None
    for index, pred, label in predictions(prediction, dataset, device=device, batch_size=batch_size, workers=workers):
        cm.update(pred, label)
        if record is not None:
            record.add(dataset, index, pred)
        if inst is not None:
            instances = dataset.load_instances(index) if hasattr(dataset, "load_instances") else None
            inst.update(pred[0].cpu().numpy(), label[0].cpu().numpy(), instances)
    out = cm.summary(class_names, eval_classes=eval_classes)
    return {**out, **inst.summary(class_names)} if inst is not None else out
