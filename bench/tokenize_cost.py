"""How much of LLaMA-Factory's tokenisation of a GLM-OCR dataset is the image processor, run only to
count each image's tokens (GLM4VPlugin.process_messages -> _get_mm_inputs), against reading the
images' sizes from their headers (what the token count follows from).

    python bench/tokenize_cost.py --work W        # W from `bench/gpu_train.py prepare --work W`

Prints seconds for the first dataset registered in W/data, one process, at image_max_pixels 589824.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", default="data")
    args = parser.parse_args()

    from llamafactory.data.mm_plugin import get_mm_plugin
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(args.work / "model")
    processor.image_max_pixels, processor.image_min_pixels = 589824, 1024  # LLaMA-Factory's defaults
    plugin = get_mm_plugin("glm4v", image_token="<|image|>")
    data = args.work / args.data
    entry = next(iter(json.loads((data / "dataset_info.json").read_text()).values()))
    images = [str(data / s["images"][0]) for s in json.loads((data / entry["file_name"]).read_text())]
    messages = [{"role": "user", "content": "<image>Text Recognition:"}, {"role": "assistant", "content": "x"}]

    start = time.perf_counter()
    for image in images:
        plugin.process_messages(messages, [image], [], [], processor)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    for image in images:
        plugin._get_mm_inputs([image], [], [], processor)
    mm_inputs = time.perf_counter() - start
    start = time.perf_counter()
    for image in images:
        with Image.open(image) as opened:
            opened.size  # noqa: B018  (the header only: no pixel is decoded)
    sizes = time.perf_counter() - start
    print(json.dumps({"images": len(images), "process_messages_s": round(whole, 3),
                      "get_mm_inputs_s": round(mm_inputs, 3), "read_sizes_s": round(sizes, 4)}))


if __name__ == "__main__":
    main()
