"""Turn a Radiograph into the model's input tensor, recording where it lies on the source.

The transforms are MONAI's, with the parameters of the bundle's `inference.json` (percentile intensity
scaling, Resize to the longest side with area averaging, symmetric SpatialPad), built in code rather than
by evaluating the config. `Letterbox.fit` reproduces their geometry (tested against them).

`prepare` finds the two percentiles with numpy and scales with MONAI's ScaleIntensityRange, which is what
ScaleIntensityRangePercentiles does after finding them with `torch.quantile` (a full sort) on images of up
to a million pixels: 39 ms against numpy's 2 ms for a 512 x 480 radiograph, 6 % of a node worker's
time per image. Both interpolate linearly; the bounds agree to float32 rounding (5e-8 relative).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Resize, ScaleIntensityRange, SpatialPad

from cxrxai.geometry import Letterbox
from cxrxai.model.bundle import Preprocessing


def geometry_transform(p: Preprocessing) -> Compose:
    """Resize to the longest side with area averaging, then symmetric padding to the square input: the
    image's and the training masks' letterbox (`Letterbox.fit` reproduces it)."""
    return Compose(
        [
            Resize(spatial_size=p.input_size, size_mode="longest", mode="area"),
            SpatialPad(spatial_size=(p.input_size, p.input_size), method="symmetric"),
        ]
    )


def prepare(pixels: np.ndarray, p: Preprocessing) -> tuple[torch.Tensor, Letterbox]:
    """pixels (rows x columns) -> (1 x 1 x N x N float32 tensor, geometry). A plain tensor, not MONAI's
    MetaTensor: every operation on a MetaTensor, through the network and back, carries its metadata along
    (about 700 operations per explained image), which the explanation never reads, and torch.compile,
    which the trainer uses, cannot trace it."""
    geometry = Letterbox.fit(pixels.shape[0], pixels.shape[1], p.input_size)
    array = np.ascontiguousarray(pixels, dtype=np.float32)
    low, high = np.percentile(array, (p.lower_percentile, p.upper_percentile))
    scaled = ScaleIntensityRange(a_min=float(low), a_max=float(high), b_min=0.0, b_max=1.0, clip=True)(
        torch.as_tensor(array)[None]
    )
    out = geometry_transform(p)(scaled)
    plain = out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)
    return plain.to(torch.float32).reshape(1, 1, p.input_size, p.input_size), geometry
