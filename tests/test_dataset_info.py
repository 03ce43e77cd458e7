"""A registered entry is read the way LLaMA-Factory reads it: its columns and tags, everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import SAMPLE_IMAGES, Invoke

from glmocr_lf.data.info import Layout, get_entry
from glmocr_lf.evaluation.dataset import load_samples, resolve_dataset

OURS = {"messages": [{"role": "user", "content": "<image>Text Recognition:"},
                     {"role": "assistant", "content": "CH3"}], "images": ["cosyn_chemical/1.png"]}
SHAREGPT = {"conversations": [{"from": "human", "value": "<image>Text Recognition:"},
                              {"from": "gpt", "value": "CH3"}], "images": ["cosyn_chemical/1.png"]}


def data_dir(tmp_path: Path, sample: dict[str, object], entry: dict[str, object]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cosyn_chemical").symlink_to(SAMPLE_IMAGES)
    (data / "d.json").write_text(json.dumps([sample, sample]), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json", **entry}}), encoding="utf-8")
    return data


def test_layout_of_an_entry_fills_llamafactory_defaults() -> None:
    assert Layout.of_entry({}) == Layout(messages="conversations", images=None, role="from",
                                         content="value", user="human", assistant="gpt", system="system")
    assert Layout.of_entry({"columns": {"messages": "messages", "images": "images"},
                            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                     "assistant_tag": "assistant"}}).is_ours


def test_sharegpt_layout_entry_is_read_with_its_mapping(tmp_path: Path, invoke: Invoke) -> None:
    data = data_dir(tmp_path, SHAREGPT, {"formatting": "sharegpt", "columns": {"messages": "conversations",
                                                                              "images": "images"}})
    samples = load_samples(resolve_dataset("d", data))
    assert [(s.user_text, s.reference) for s in samples] == [("<image>Text Recognition:", "CH3")] * 2
    result = invoke("data", "stats", "d", "--data-dir", str(data), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["errors"] == 0


def test_entry_naming_the_wrong_column_fails_with_the_files_field_names(tmp_path: Path, invoke: Invoke) -> None:
    data = data_dir(tmp_path, OURS, {"formatting": "sharegpt", "columns": {"messages": "conversations"}})
    result = invoke("data", "stats", "d", "--data-dir", str(data), "--json")
    report = json.loads(result.stdout)
    assert report["errors"] == 2
    with pytest.raises(Exception, match=r"sample 0: conversations: missing"):
        load_samples(resolve_dataset("d", data))


def test_entry_without_a_source_is_refused(tmp_path: Path) -> None:
    data = data_dir(tmp_path, OURS, {})
    (data / "dataset_info.json").write_text(json.dumps({"d": {"formatting": "sharegpt"}}), encoding="utf-8")
    assert get_entry(data, "d").problem() == ("has neither file_name nor a hub/script source (hf_hub_url, "
                                              "ms_hub_url, om_hub_url, script_url, cloud_file_name)")
    with pytest.raises(Exception, match="has neither file_name"):
        resolve_dataset("d", data)
