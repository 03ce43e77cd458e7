"""Several files are one result: a writer killed at its most dangerous moment (paused there by
GLMOCR_LF_PAUSE_AT, then SIGKILLed) leaves the old set or the new set, whole; two writers of one
output never both succeed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import invoke, make_png

KILL_ROUNDS = 3


def killed_at(point: str, args: list[str], cwd: Path, *, timeout_s: float = 60) -> None:
    """Run `glmocr-lf ARGS` until it reaches pause point `point`, then SIGKILL it there."""
    flag = cwd / f".paused-{point}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "GLMOCR_LF_PAUSE_AT": f"{point}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "glmocr_lf", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"finished before {point}: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached {point}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    flag.unlink()


def pages(root: Path, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        make_png(root / f"p{i}.png", 40 + i, 30)
        (root / f"p{i}.txt").write_text(text)


def texts_of(path: Path) -> list[str]:
    return sorted(s["messages"][1]["content"] for s in json.loads(path.read_text()))


# point 6: OUT.json and OUT_val.json are one result
def test_convert_killed_between_its_two_outputs_leaves_one_whole_set(tmp_path: Path) -> None:
    pages(tmp_path / "old", [f"old {i}" for i in range(6)])
    pages(tmp_path / "new", [f"new {i}" for i in range(6)])
    assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    args = ["data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34", "--force"]
    for _ in range(KILL_ROUNDS):
        killed_at("set-swap", args, tmp_path)
        assert (tmp_path / ".ocr.json.set.json").is_file()  # killed among the renames
        for half in ("ocr.json", "ocr_val.json"):  # no reader takes one file of a half-replaced set
            result = invoke("data", "validate", half)
            assert (result.exit_code, result.stderr) == (1, (
                f"Error: {half}: a `data convert` was stopped while it replaced this file and the ones written "
                "with it (.ocr.json.set.json names them): they may not belong together\n"
                "Hint: run the same `glmocr-lf data convert` again: it completes the set first\n"))
        # the next writer of the output completes the set the kill cut short, before anything else
        result = invoke("data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34")
        assert result.stderr == "Error: ocr.json: already exists\nHint: pass --force to overwrite it\n"
        both = texts_of(tmp_path / "ocr.json") + texts_of(tmp_path / "ocr_val.json")
        assert sorted(both) == [f"new {i}" for i in range(6)]
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".ocr.json.") and p.name != ".ocr.json.lock"]
        assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34", "--force").exit_code == 0


def test_convert_out_of_space_on_the_second_output_changes_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from glmocr_lf.runtime import fsutil

    pages(tmp_path / "old", [f"old {i}" for i in range(6)])
    pages(tmp_path / "new", [f"new {i}" for i in range(6)])
    assert invoke("data", "convert", "old", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    staged = fsutil._staged
    calls = []

    def full_on_second(path: Path, data: bytes) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return staged(path, data)

    monkeypatch.setattr(fsutil, "_staged", full_on_second)
    result = invoke("data", "convert", "new", "-o", "ocr.json", "--val-ratio", "0.34", "--force")
    assert (result.exit_code, result.stderr) == (1, "Error: ocr.json: cannot write: No space left on device\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_convert_force_without_val_ratio_removes_the_stale_val_file(tmp_path: Path) -> None:
    pages(tmp_path / "pages", [f"t {i}" for i in range(6)])
    assert invoke("data", "convert", "pages", "-o", "ocr.json", "--val-ratio", "0.34").exit_code == 0
    result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert result.stderr == "Error: ocr.json: already exists\nHint: pass --force to overwrite it\n"
    (tmp_path / "ocr.json").unlink()
    result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: ocr_val.json: already exists beside ocr.json; without --val-ratio it would be stale\n"
        "Hint: pass --val-ratio to rewrite both, or --force to write the output and remove it\n"))
    result = invoke("data", "convert", "pages", "-o", "ocr.json", "--force")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "Wrote ocr.json (6 samples)", "Removed ocr_val.json: without --val-ratio its samples are in ocr.json"]
    assert not (tmp_path / "ocr_val.json").exists()


# point 8 (convert): one writer per output
def test_a_second_convert_into_the_same_output_is_refused(tmp_path: Path) -> None:
    from glmocr_lf.runtime.fsutil import output_lock

    pages(tmp_path / "pages", ["a", "b"])
    with output_lock(tmp_path / "ocr.json"):
        result = invoke("data", "convert", "pages", "-o", "ocr.json")
    assert (result.exit_code, result.stderr) == (1, (
        "Error: ocr.json: another glmocr-lf is writing this convert output now\n"
        "Hint: wait for it to finish, or write to another path\n"))
    assert not (tmp_path / "ocr.json").exists()
    assert invoke("data", "convert", "pages", "-o", "ocr.json").exit_code == 0


def test_two_converts_at_once_into_one_output_one_refused(tmp_path: Path) -> None:
    pages(tmp_path / "a", [f"a {i}" for i in range(4)])
    pages(tmp_path / "b", [f"b {i}" for i in range(4)])
    flag = tmp_path / ".paused"
    env = {**os.environ, "NO_COLOR": "1", "GLMOCR_LF_PAUSE_AT": f"set-swap:{flag}"}
    first = subprocess.Popen([sys.executable, "-m", "glmocr_lf", "data", "convert", "a", "-o", "ocr.json",
                              "--val-ratio", "0.5"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        while not flag.exists():
            assert first.poll() is None
            time.sleep(0.02)
        second = subprocess.run([sys.executable, "-m", "glmocr_lf", "data", "convert", "b", "-o", "ocr.json",
                                 "--force"], cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
                                capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert (second.returncode, second.stderr) == (1, (
        "Error: ocr.json: another glmocr-lf is writing this convert output now\n"
        "Hint: wait for it to finish, or write to another path\n"))


def dataset(folder: Path, tag: str, count: int, width: int) -> Path:
    """COUNT samples whose answer names the width of their own image: `TAG i w=WIDTH`."""
    from data_fixtures import sample, write_json

    rows = []
    for i in range(count):
        make_png(folder / "images" / f"{i}.png", width + i, 20)
        rows.append(sample(f"images/{i}.png", answer=f"{tag} {i} w={width + i}"))
    return write_json(folder / "ds.json", rows)


def registered(data: Path, name: str) -> list[str]:
    """The answers of NAME as training reads it, each checked against its image (no mixed pairs)."""
    from PIL import Image

    assert json.loads((data / "dataset_info.json").read_text())[name]["file_name"] == f"{name}.json"
    answers = []
    for row in json.loads((data / f"{name}.json").read_text()):
        answer = row["messages"][1]["content"]
        with Image.open(data / row["images"][0]) as image:
            assert answer.endswith(f"w={image.size[0]}"), (answer, image.size)
        answers.append(answer.rsplit(" w=", 1)[0])
    return answers


# point 1: a registration (samples and images) is switched by one rename
@pytest.mark.parametrize("link", ["symlink", "copy"])
def test_register_force_killed_at_the_swap_keeps_the_old_registration_whole(tmp_path: Path, link: str) -> None:
    dataset(tmp_path / "old", "old", 3, 40)
    dataset(tmp_path / "new", "new", 3, 80)
    assert invoke("data", "register", "ds", "old/ds.json", "--link", link).exit_code == 0
    data = tmp_path / "data"
    for point in ["register-swap"] * KILL_ROUNDS:
        killed_at(point, ["data", "register", "ds", "new/ds.json", "--force", "--link", link], tmp_path)
        assert registered(data, "ds") == ["old 0", "old 1", "old 2"]
        check = invoke("data", "validate", "ds")
        assert check.exit_code == 0, check.stderr
    result = invoke("data", "register", "ds", "new/ds.json", "--force", "--link", link)
    assert result.exit_code == 0, result.stderr
    assert registered(data, "ds") == ["new 0", "new 1", "new 2"]
    # the leftovers of the killed runs went under the lock: one version folder, nothing hidden
    assert len(os.listdir(data / "ds")) == 1
    assert sorted(p.name for p in data.iterdir()) == [".dataset_info.json.lock", "dataset_info.json", "ds", "ds.json"]


# point 7: a failed or killed register leaves nothing that blocks the re-run
def test_register_killed_before_its_entry_is_finished_by_the_rerun(tmp_path: Path) -> None:
    dataset(tmp_path / "src", "t", 2, 40)
    for _ in range(KILL_ROUNDS):
        killed_at("register-entry", ["data", "register", "ds", "src/ds.json"], tmp_path)
        result = invoke("data", "register", "ds", "src/ds.json")
        assert result.stderr.splitlines()[0] == "Registered ds: 2 samples, 2 images -> data/dataset_info.json"
        assert registered(tmp_path / "data", "ds") == ["t 0", "t 1"]
        assert invoke("data", "remove", "ds", "--purge").exit_code == 0
    killed_at("register-swap", ["data", "register", "ds", "src/ds.json"], tmp_path)
    result = invoke("data", "register", "ds", "src/ds.json")
    assert result.exit_code == 0, result.stderr
    assert len(os.listdir(tmp_path / "data" / "ds")) == 1


def test_register_out_of_space_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import shutil

    from glmocr_lf.data import staging

    dataset(tmp_path / "old", "old", 3, 40)
    dataset(tmp_path / "new", "new", 3, 80)
    assert invoke("data", "register", "ds", "old/ds.json", "--link", "copy").exit_code == 0
    copied = []
    real_copy = shutil.copyfile
    disk_full = True

    def copy_until_full(source: str, dest: str) -> None:
        if len(copied) == 2 and disk_full:
            raise OSError(errno.ENOSPC, "No space left on device", dest)
        copied.append(real_copy(source, dest))

    monkeypatch.setattr(staging.shutil, "copyfile", copy_until_full)
    before = {str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*")}
    for name in ("ds", "fresh"):
        copied.clear()
        result = invoke("data", "register", name, "new/ds.json", "--force", "--link", "copy")
        assert (result.exit_code, result.stderr) == (1, f"Error: data/{name}: cannot write: No space left on device\n")
        assert {str(p.relative_to(tmp_path)) for p in (tmp_path / "data").rglob("*")} == before
    assert registered(tmp_path / "data", "ds") == ["old 0", "old 1", "old 2"]
    disk_full = False
    assert invoke("data", "register", "fresh", "new/ds.json", "--link", "copy").exit_code == 0


def test_a_lone_surrogate_is_an_error_for_validate_and_register_alike(tmp_path: Path) -> None:
    dataset(tmp_path / "src", "t", 2, 40)
    path = tmp_path / "src" / "ds.json"
    path.write_text(path.read_text().replace('"t 1 w=41"', '"t 1 \\ud800 w=41"'))
    expected = "src/ds.json: sample 1: messages[1].content: lone surrogate \\ud800 at character 4; " \
               "not valid Unicode text (fix the escape in the file)"
    check = invoke("data", "validate", "src/ds.json")
    assert check.exit_code == 1 and check.stderr.splitlines()[0] == expected
    result = invoke("data", "register", "ds", "src/ds.json")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [expected, "Error: src/ds.json: 1 error; nothing registered",
                                          "Hint: fix them, then run `glmocr-lf data validate src/ds.json`"]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# point 4: names that would be the registry's own files
def test_reserved_names_are_refused_and_purge_keeps_the_registry(tmp_path: Path) -> None:
    dataset(tmp_path / "src", "t", 2, 40)
    for name in ("dataset_info", "Dataset_Info"):
        result = invoke("data", "register", name, "src/ds.json")
        assert (result.exit_code, result.stderr) == (1, (
            f"Error: {name!r}: reserved; DATA/{name}.json would be the registry's own file\n"
            "Hint: pick another name\n"))
    assert invoke("data", "register", "ds", "src/ds.json").exit_code == 0
    info = tmp_path / "data" / "dataset_info.json"
    entries = json.loads(info.read_text())
    info.write_text(json.dumps({**entries, "dataset_info": {"file_name": "dataset_info.json"}}))
    result = invoke("data", "remove", "dataset_info", "--purge")
    assert result.exit_code == 0, result.stderr
    assert json.loads(info.read_text()) == entries
    assert registered(tmp_path / "data", "ds") == ["t 0", "t 1"]


# point 2: an export's weights and record are one result
FAKE_EXPORT = """
import pathlib, sys, yaml
out = pathlib.Path(yaml.safe_load(pathlib.Path(sys.argv[-1]).read_text())["export_dir"])
out.mkdir(parents=True, exist_ok=True)
tag = pathlib.Path(sys.argv[-2]).read_text()
(out / "model.safetensors").write_text("weights " + tag)
for name, text in {"config.json": '{"model_type": "glm_ocr"}', "tokenizer.json": "{}",
                   "preprocessor_config.json": "{}", "video_preprocessor_config.json": "{}",
                   "chat_template.jinja": "x"}.items():
    (out / name).write_text(text)
"""


def fake_adapter(run: Path, tag: str) -> None:
    run.mkdir(exist_ok=True)
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "zai-org/GLM-OCR"}))
    (run / "adapter_model.safetensors").write_text(f"adapter {tag}")
    (run / "tag").write_text(tag)


def export_child(monkeypatch: pytest.MonkeyPatch, run: Path) -> None:
    """The subprocess seam: llamafactory-cli export replaced by a script writing a model folder."""
    from glmocr_lf.runtime import launch

    real = launch.command

    def command(verb: str, yaml_path: Path, env: dict[str, str], cwd: Path, *, dry_run: bool = False) -> object:
        cmd = real(verb, yaml_path, env, cwd, dry_run=True)
        cmd.argv = [sys.executable, "-c", FAKE_EXPORT, str(run / "tag"), str(yaml_path)]
        return cmd

    monkeypatch.setattr(launch, "command", command)


def exported_tag(merged: Path) -> str:
    """The tag of the adapter the weights were merged from, checked against the record beside them."""
    import hashlib

    record = json.loads((merged / "glmocr_lf_export.json").read_text())
    tag = (merged / "model.safetensors").read_text().removeprefix("weights ")
    if record["adapter_sha256"] != hashlib.sha256(f"adapter {tag}".encode()).hexdigest():
        return f"MIXED: weights {tag}, record of another adapter"
    return tag


def test_export_force_killed_at_the_swap_leaves_the_old_export_whole(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from glmocr_lf.runtime import fsutil

    run = tmp_path / "run"
    fake_adapter(run, "old")
    export_child(monkeypatch, run)
    assert invoke("export", "--adapter", "run", "--out", "merged").exit_code == 0
    merged = tmp_path / "merged"
    assert exported_tag(merged) == "old"
    record = json.loads((merged / "glmocr_lf_export.json").read_text())
    assert record["weights_sha256"] == {"model.safetensors": hashlib.sha256(b"weights old").hexdigest()}
    fake_adapter(run, "new")
    class Killed(BaseException):
        """SIGKILL, in process: nothing after the pause point runs, no cleanup either."""

    def die(name: str) -> None:
        if name == "export-swap":
            raise Killed

    monkeypatch.setattr(fsutil, "pause_point", die)
    from glmocr_lf.export import merge

    monkeypatch.setattr(merge, "pause_point", die)
    for _ in range(KILL_ROUNDS):
        with pytest.raises(Killed):
            invoke("export", "--adapter", "run", "--out", "merged", "--force")
        # killed between the swap's two renames: OUT is aside, the new export complete beside it
        assert not merged.exists()
        # the next export puts the old one back first; this one's child fails: the old stays, whole
        (run / "tag").unlink()
        result = invoke("export", "--adapter", "run", "--out", "merged", "--force")
        assert result.exit_code == 1
        assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
            "Error: export failed (exit code 1): FileNotFoundError: [Errno 2] No such file or directory: "
            f"'{run / 'tag'}'"]
        assert exported_tag(merged) == "old"
        (run / "tag").write_text("new")
    monkeypatch.setattr(merge, "pause_point", lambda _name: None)
    assert invoke("export", "--adapter", "run", "--out", "merged", "--force").exit_code == 0
    assert exported_tag(merged) == "new"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".merged")) == [".merged.lock"]


def test_eval_refuses_weights_that_are_not_the_recorded_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime.modelfiles import stale_merge

    run = tmp_path / "run"
    fake_adapter(run, "one")
    export_child(monkeypatch, run)
    assert invoke("export", "--adapter", "run", "--out", "merged").exit_code == 0
    assert stale_merge(tmp_path / "merged") is None
    (tmp_path / "merged" / "model.safetensors").write_text("weights of another merge")
    assert stale_merge(tmp_path / "merged") == (str(run), (
        f"{tmp_path / 'merged'}: model.safetensors is not the file its export record names (written over since?)"))


# point 9: a killed run's "running" record reads as died wherever records are read
def killed_train_record(tmp_path: Path, run: Path) -> int:
    """A train record written by a process that was then SIGKILLed (as a killed `glmocr-lf train`)."""
    run.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from pathlib import Path; from glmocr_lf.runtime import records; "
            "records.write_train_record(Path(sys.argv[1]), records.TrainRecord(status='running', "
            "model_name_or_path='zai-org/GLM-OCR', finetuning_type='lora')); "
            "print('written', flush=True); import time; time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_a_killed_runs_record_reads_as_died(tmp_path: Path) -> None:
    import socket

    from glmocr_lf.runtime import records

    run = tmp_path / "run"
    for _ in range(KILL_ROUNDS):
        pid = killed_train_record(tmp_path, run)
        assert json.loads((run / "glmocr_lf_run.json").read_text())["status"] == "running"
        record = records.read_train_record(run)
        assert record is not None
        assert (record.status, record.died) == ("died", f"its process {pid} on {socket.gethostname()} is gone (killed?)")
    # a live one stays running, and a checkpoint of it reads the same record
    records.write_train_record(run, records.TrainRecord(status="running"))
    live = records.read_train_record(run / "checkpoint-5")
    assert live is not None and (live.status, live.pid) == ("running", os.getpid())


def test_export_and_eval_say_the_run_died_and_refuse_a_live_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmocr_lf.runtime import records
    from glmocr_lf.runtime.errors import GlmocrLfError

    run = tmp_path / "run"
    fake_adapter(run, "one")
    pid = killed_train_record(tmp_path, run)
    result = invoke("export", "--adapter", "run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    died = f"{run / 'glmocr_lf_run.json'}: the training recorded there died (its process {pid} on "
    assert any(line.startswith(died) and line.endswith("exporting what it saved last")
               for line in result.stderr.splitlines()), result.stderr
    note = records.training_state(run, "evaluating")
    assert note is not None and note.startswith(died) and note.endswith("evaluating what it saved last")
    records.write_train_record(run, records.TrainRecord(status="running"))
    result = invoke("export", "--adapter", "run", "--dry-run")
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: {run / 'glmocr_lf_run.json'}: its training is still running (process {os.getpid()} on "
        f"{__import__('socket').gethostname()}); exporting now would read weights it is rewriting"]
    with pytest.raises(GlmocrLfError):
        records.training_state(run, "evaluating")


def test_train_resume_says_the_earlier_run_died(tmp_path: Path) -> None:
    from helpers import put_in_hf_cache

    from glmocr_lf.runtime import records
    from glmocr_lf.train.plan import LaunchRequest, prepare

    put_in_hf_cache("zai-org/GLM-OCR", {"config.json": '{"model_type": "glm_ocr"}'})
    assert invoke("config", "new", "--method", "lora", "--dataset", "x", "-o", "lora.yaml").exit_code == 0
    run = tmp_path / "run"
    pid = killed_train_record(tmp_path, run)
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")

    def plan(resume: str | None, nnodes: int = 1) -> tuple[list[str], list[str]]:
        from glmocr_lf.runtime.launch import Topology

        request = LaunchRequest(config=Path("lora.yaml"), overrides={"bf16": False, "output_dir": "run"},
                                check_data=False, resume=resume,  # type: ignore[arg-type]
                                topology=Topology(nnodes=nnodes, master_addr="10.0.0.1"))
        launch = prepare(request)
        return launch.notes, [p.message for p in launch.problems]

    host = __import__("socket").gethostname()
    reasons, problems = plan("resume")
    assert problems == [] and f"the earlier run in {run} died (its process {pid} on {host} is gone (killed?))" in reasons
    _, problems = plan(None)
    assert problems == [f"{run} already holds a run (checkpoint checkpoint-2; it died: its process {pid} on {host} "
                        "is gone (killed?))"]
    records.write_train_record(run, records.TrainRecord(status="running"))
    _, problems = plan("resume")
    assert problems == [f"{run}: a run is still training here (process {os.getpid()} on {host})"]
    # another node of a multi-node run records itself in the shared output_dir: said, not refused
    notes, problems = plan("resume", nnodes=2)
    assert problems == [] and f"{run} records a run still going on {host} (process {os.getpid()})" in notes


def test_an_old_swap_killed_half_way_is_put_back(tmp_path: Path) -> None:
    """The swap before issue 23 moved DATA/NAME aside to .NAME.old-PID first: a kill there left
    NAME.json pointing at a folder that was gone. The next register puts it back under the lock."""
    from glmocr_lf.data.info import info_lock
    from glmocr_lf.data.staging import clean_leftovers

    dataset(tmp_path / "src", "t", 2, 40)
    data = tmp_path / "data"
    assert invoke("data", "register", "ds", "src/ds.json", "--link", "copy").exit_code == 0
    os.replace(data / "ds", data / ".ds.old-4242")
    assert invoke("data", "validate", "ds").exit_code == 1
    with info_lock(data):
        clean_leftovers(data, "ds")
    assert registered(data, "ds") == ["t 0", "t 1"]
    assert not list(data.glob(".ds.old-*"))
