"""LLaMA-Factory's `glm_ocr` template (data/template.py) and the glm4v plugin's image expansion:
the one home of the strings training builds a sample from. `eval` generates from `build_prompt`,
`smoke` answers with it, and `data/tokens.py` counts a sample's tokens from the same pieces.

A turn: [`[gMASK]<sop>` on the first] [`<|system|>` "\\n" system] `<|user|>` "\\n" prompt
`<|assistant|>`, then "\\n" answer; one eos ends the sample (efficient_eos). Each `<image>` becomes
`<|begin_of_image|><|image|><|end_of_image|>`, and the processor repeats `<|image|>` once per
28x28 block.
"""

from __future__ import annotations

from glmocr_lf.runtime.constants import IMAGE_PLACEHOLDER

PREFIX = ("[gMASK]", "<sop>")  # special tokens opening the first turn
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
LEAD = "\n"  # after a role token, and before the answer
IMAGE_FRAME = ("<|begin_of_image|>", "<|end_of_image|>")  # special tokens around an image's tokens
IMAGE = "<|image|>"
IMAGE_TOKENS = IMAGE_FRAME[0] + IMAGE + IMAGE_FRAME[1]
STOP_TOKENS = (USER, "<|observation|>")  # generation ends at the next turn


def build_prompt(user_text: str, system: str | None = None) -> str:
    """The training string of a one-turn sample up to `<|assistant|>`: the model continues with
    `\\n{answer}`. `user_text` holds `<image>` placeholders where the images go."""
    content = user_text.replace(IMAGE_PLACEHOLDER, IMAGE_TOKENS)
    system_part = SYSTEM + LEAD + system if system else ""
    return "".join(PREFIX) + system_part + USER + LEAD + content + ASSISTANT
