"""The image arithmetic LLaMA-Factory and GLM-OCR's processor apply, without importing either.

Training images go through two resizes: LLaMA-Factory's (`mm_plugin.py` `_preprocess_image`: scale
down to `image_max_pixels`, up to `image_min_pixels`, at least 28 px a side, aspect <= 200) and then
`Glm46VImageProcessor`'s `smart_resize` (multiples of patch x merge = 28 px). Each 28x28 block of
the result is one `<|image|>` token, plus `<|begin_of_image|>` and `<|end_of_image|>`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
# Glm46VImageProcessor's default size bounds (shortest_edge / longest_edge are pixel counts).
PROCESSOR_MIN_PIXELS = 112 * 112
PROCESSOR_MAX_PIXELS = 28 * 28 * 15000
IMAGE_BOUNDARY_TOKENS = 2
# transformers' glm46v smart_resize refuses a longer/shorter side ratio over this; LLaMA-Factory's
# Qwen2-VL rules squeeze such an image to 180:1 before the processor sees it.
PROCESSOR_MAX_ASPECT = 200


class ImageSizeError(ValueError):
    """A size LLaMA-Factory's pre-resize cannot handle: training would crash on the image."""


def lf_preprocess_size(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """(width, height) after LLaMA-Factory's pre-resize (base plugin + Qwen2-VL family rules).

    Raises ImageSizeError for sizes LLaMA-Factory itself cannot resize (it would crash mid-run).
    """
    if width <= 0 or height <= 0:
        raise ImageSizeError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
        if width == 0 or height == 0:
            # PIL refuses the 0-pixel resize LLaMA-Factory asks for here
            raise ImageSizeError(f"downscaling it to image_max_pixels {max_pixels} leaves {width}x{height} "
                                 "pixels, which LLaMA-Factory's resize fails on")
    if width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if min(width, height) < 28:
        width, height = max(width, 28), max(height, 28)
    if width / height > 200:
        width = height * 180
    if height / width > 200:
        height = width * 180
    return width, height


def squeezed_size(width: int, height: int, max_pixels: int, min_pixels: int) -> tuple[int, int] | None:
    """The size LLaMA-Factory squeezes an image to because its aspect ratio is over the 200:1 the
    processor accepts (its text is then distorted), or None for an image that is not squeezed."""
    if max(width, height) <= PROCESSOR_MAX_ASPECT * min(width, height):
        return None
    return lf_preprocess_size(width, height, max_pixels, min_pixels)


def smart_resize(height: int, width: int, min_pixels: int = PROCESSOR_MIN_PIXELS,
                 max_pixels: int = PROCESSOR_MAX_PIXELS, factor: int = FACTOR,
                 num_frames: int = TEMPORAL_PATCH_SIZE,
                 temporal_factor: int = TEMPORAL_PATCH_SIZE) -> tuple[int, int]:
    """transformers' glm46v `smart_resize` for one image (duplicated into 2 temporal frames)."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, max_pixels: int, min_pixels: int,
                 processor_min_pixels: int = PROCESSOR_MIN_PIXELS,
                 processor_max_pixels: int = PROCESSOR_MAX_PIXELS) -> int:
    """`<|image|>` tokens one image expands to in training (boundary tokens not included)."""
    w, h = lf_preprocess_size(width, height, max_pixels, min_pixels)
    h_bar, w_bar = smart_resize(h, w, processor_min_pixels, processor_max_pixels)
    return (h_bar // PATCH_SIZE) * (w_bar // PATCH_SIZE) // (MERGE_SIZE**2)


def lf_preprocess_image(image: Image, max_pixels: int, min_pixels: int) -> Image:
    """Resize a PIL image exactly as LLaMA-Factory does before the processor (for inference parity)."""
    width, height = lf_preprocess_size(image.width, image.height, max_pixels, min_pixels)
    if (width, height) != (image.width, image.height):
        # LF resizes in up to four steps; one resize to the final size is what matters for parity
        image = image.resize((width, height))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
