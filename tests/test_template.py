"""data/template.py, the one home of the glm_ocr template: the prompt eval and smoke generate from
and the token count of the data checks both equal what LLaMA-Factory builds for training."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmocr_lf.data.template import IMAGE, IMAGE_FRAME, build_prompt
from glmocr_lf.data.tokens import budget, build_turns, tokenizer_counter

IMAGE_TOKENS = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llamafactory", reason="needs the training stack (make install)")
    from glmocr_lf.smoke.tiny_model import build_tiny_glm_ocr

    return build_tiny_glm_ocr(tmp_path_factory.mktemp("template") / "tiny")


@pytest.mark.parametrize("system", [None, "Be exact."])
def test_prompt_and_count_equal_llamafactorys_encoding(tiny: Path, system: str | None) -> None:
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="glm_ocr"))
    expanded = IMAGE_FRAME[0] + IMAGE * IMAGE_TOKENS + IMAGE_FRAME[1]  # the glm4v plugin's expansion
    user, answer = "<image>Text Recognition:", "H2O and NaCl"
    messages = [{"role": "user", "content": user.replace("<image>", expanded)},
                {"role": "assistant", "content": answer}]
    prompt_ids, answer_ids = template.encode_oneturn(tokenizer, messages, system=system)

    ours = build_prompt(user, system).replace(IMAGE, IMAGE * IMAGE_TOKENS)
    assert tokenizer.encode(ours, add_special_tokens=False) == prompt_ids
    turns = build_turns(system, [(user, answer)], [IMAGE_TOKENS], tokenizer_counter(tiny))
    # + the eos LLaMA-Factory appends after the last turn (efficient_eos)
    assert budget(turns, IMAGE_TOKENS, None).total == len(prompt_ids) + len(answer_ids) + 1
