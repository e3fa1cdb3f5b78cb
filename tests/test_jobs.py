"""Training jobs (finetune/web/jobs.py): a real worker process trains the tiny conftest model for a
few steps; stop, resume, one job at a time, a killed worker, the time cap, an app restart in
the middle of training, uploads, zips and the Hub push when offline."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from finetune.checkpoints import CHECKPOINT_MARKER, RunDir, run_dir_for
from finetune.errors import DataError
from finetune.web.caps import Caps
from finetune.web.errors import Busy, HubError, JobError
from finetune.web.jobs import JobManager
from finetune.web.protocol import EVENTS, STATE
from finetune.web.registry import ModelRegistry
from finetune.web.storage import LOCK

from helpers import settings, wait_for, write_corpus

ROOT = Path(__file__).resolve().parent.parent








def final(view) -> bool:
    return view.state in ("done", "failed", "stopped")



@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "storms.csv")


@pytest.fixture()
def manager(registry):
    m = JobManager(registry.home, registry, poll_s=0.1, caps=Caps(max_steps=300, max_seconds=600, stop_grace_s=15))
    yield m
    m.close()


def lock_is_free(manager: JobManager) -> bool:
    fd = os.open(manager.root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# -- a whole job ----------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_trains_reports_and_registers_the_model_for_its_owner_only(manager, registry, corpus,
                                                                            bpe_model_dir):
    upload, rows = manager.save_upload("alice", corpus)
    assert upload.report.rows_kept == 24 and len(rows) == 24 and upload.name == "storms.csv"
    assert upload.path.parent.parent == manager.root and upload.path.is_file()
    manager.save_upload("bob", corpus)
    started = time.monotonic()
    view = manager.start("alice", settings(bpe_model_dir), label="Storms <b>")
    assert view.state == "starting" and len(view.id) == 32
    # just started, no step timed yet: no made-up estimate
    with pytest.raises(Busy, match=r"busy: another fine-tune is running on this server; try again in a few minutes") as busy:
        manager.start("bob", settings(bpe_model_dir), label="bob's")
    assert busy.value.eta_s is None or busy.value.eta_s > 0
    with pytest.raises(JobError, match="still running"):
        manager.start("alice", settings(bpe_model_dir), label="again")
    assert manager.busy("bob").startswith("busy:") and manager.busy("alice") is None
    running = wait_for(manager, "alice", lambda v: v.step >= 2)
    assert running.state == "running" and running.max_steps == 10

    view = wait_for(manager, "alice", final)
    took = time.monotonic() - started
    assert view.state == "done", view.message
    assert view.step == 10 and [s for s, _ in view.losses] == list(range(1, 11))
    assert [s for s, _ in view.evals] == [0, 5, 10] and view.sample_step == 10
    assert view.samples[0]["title"].startswith("Storm") and isinstance(view.samples[0]["text"], str)
    assert view.message.startswith("Done: 10 steps") and "eval loss" in view.message
    assert view.result["global_step"] == 10 and view.eta_s is None
    # registered for alice only, under an opaque id; loads and generates
    assert view.model_id.startswith("ft-")
    assert ("Storms <b>", view.model_id) in registry.choices("alice")
    assert view.model_id not in [i for _, i in registry.choices("bob")]
    assert view.model_id not in [i for _, i in registry.choices(None)]
    out = registry.get(view.model_id, "alice").generate("Storm", "sea", n=1, seed=0, max_new_tokens=6)
    assert isinstance(out[0].text, str)
    # the worker's events, in order; the job's corpus link is gone, the upload stays for now
    folder = manager.root / upload.path.parent.name / view.id
    kinds = [json.loads(line)["kind"] for line in (folder / EVENTS).read_text().splitlines()]
    assert kinds[0] == "phase" and "start" in kinds and kinds[-1] == "end" and kinds.count("eval") == 3
    assert kinds.count("step") == 10
    assert not list(folder.glob("corpus*")) and upload.path.is_file()
    assert json.loads((folder / STATE).read_text())["state"] == "done"
    print(f"10-step job: {took:.1f} s from start to registered")

    # zip: only the owner's; the files of the model folder under one directory
    built = manager.zip_model("alice")
    assert built.parent == upload.path.parent
    with zipfile.ZipFile(built) as zf:
        names = zf.namelist()
    assert {"model.safetensors", "config.json", "textgen_complete.json"} <= {Path(n).name for n in names}
    assert len({Path(n).parent for n in names}) == 1
    with pytest.raises(JobError, match="no finished fine-tune"):
        manager.zip_model("bob")

    # the Hub, offline: a clear message; the token never appears in it
    with pytest.raises(HubError) as info:
        manager.push_to_hub("alice", "someone/storms", "hf_SECRET_token_123")
    assert "could not reach the Hugging Face Hub" in str(info.value) and "SECRET" not in str(info.value)
    with pytest.raises(JobError):
        manager.push_to_hub("bob", "someone/storms", "hf_x")

    # the session ends: its upload goes now, the job after retain_s
    manager.release("alice")
    assert not upload.path.exists() and manager.upload("alice") is None
    assert registry.resolve(view.model_id, "alice")  # a reload can still re-attach for retain_s
    adopted = manager.adopt(view.id, "alice-after-reload")
    assert adopted.state == "done" and adopted.model_id != view.model_id
    assert adopted.model_id in [i for _, i in registry.choices("alice-after-reload")]
    assert view.model_id not in [i for _, i in registry.choices("alice")]
    assert manager.adopt("0" * 32, "mallory") is None and manager.view("mallory") is None
    manager.release("alice-after-reload")
    manager.retain_s = 0
    manager.sweep()
    assert manager.view("alice-after-reload") is None and not folder.exists()
    assert adopted.model_id not in [i for _, i in registry.choices("alice-after-reload")]


@pytest.mark.slow
def test_epochs_end_the_run_before_max_steps(manager, corpus, bpe_model_dir):
    manager.save_upload("alice", write_corpus(corpus, rows=8))
    manager.start("alice", settings(bpe_model_dir, epochs=1.0, max_steps=300, eval_steps=0, samples=0),
                  label="one epoch")
    view = wait_for(manager, "alice", final)
    assert view.state == "done", view.message
    assert 0 < view.max_steps < 300 and view.step == view.max_steps


# -- stopping ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_stop_is_prompt_keeps_a_checkpoint_and_resume_continues(manager, registry, corpus, bpe_model_dir):
    manager.save_upload("alice", corpus)
    manager.start("alice", settings(bpe_model_dir, max_steps=300, eval_steps=50), label="long")
    first = wait_for(manager, "alice", lambda v: v.step >= 3)
    asked = time.monotonic()
    manager.stop("alice")
    assert manager.view("alice").state == "stopping"
    view = wait_for(manager, "alice", final, timeout=30)
    took = time.monotonic() - asked
    assert took < 10, f"stop took {took:.1f} s"
    assert view.state == "stopped" and view.resumable and view.model_id is None
    folder = next(manager.root.glob(f"*/{view.id}"))
    last = RunDir(run_dir_for(folder / "model")).last_complete()
    assert last is not None and (last / CHECKPOINT_MARKER).is_file()
    stopped_at = int(last.name.split("-")[1])
    assert stopped_at == view.step and view.message.startswith(f"Stopped by you at step {stopped_at} of ")
    assert f"Resume continues from step {stopped_at}." in view.message
    assert not (folder / "model").exists()
    assert [e for e in registry.entries("alice") if e.kind == "finetuned"] == []
    print(f"stop took {took:.1f} s; checkpoint at step {stopped_at}")

    manager.resume("alice")
    resumed = wait_for(manager, "alice", lambda v: v.state == "running" and v.step > stopped_at + 1)
    assert resumed.start_step == stopped_at and resumed.max_steps == first.max_steps
    assert [s for s, _ in resumed.losses][:stopped_at] == list(range(1, stopped_at + 1))
    manager.stop("alice")
    assert wait_for(manager, "alice", final, timeout=30).state == "stopped"
    with pytest.raises(JobError, match="no fine-tune running"):
        manager.stop("alice")


@pytest.mark.slow
def test_killed_worker_marks_the_job_failed_and_registers_nothing(manager, registry, corpus, bpe_model_dir):
    manager.save_upload("alice", corpus)
    manager.start("alice", settings(bpe_model_dir, max_steps=300, eval_steps=50), label="doomed")
    wait_for(manager, "alice", lambda v: v.step >= 1)
    os.kill(manager.worker_pid("alice"), signal.SIGKILL)  # what the OOM killer does
    view = wait_for(manager, "alice", final, timeout=30)
    assert view.state == "failed" and "killed by signal 9" in view.message and not view.resumable
    assert [e for e in registry.entries("alice") if e.kind == "finetuned"] == []
    folder = next(manager.root.glob(f"*/{view.id}"))
    assert not (folder / "model").exists() and not run_dir_for(folder / "model").exists()
    assert lock_is_free(manager)
    assert manager.busy("bob") is None


@pytest.mark.slow
def test_a_worker_error_fails_the_job_with_its_message(manager, registry, corpus, tmp_path):
    manager.save_upload("alice", corpus)
    manager.start("alice", settings(tmp_path / "no-such-model"), label="broken")
    view = wait_for(manager, "alice", final, timeout=60)
    assert view.state == "failed" and "no-such-model" in view.message and "does not exist" in view.message
    assert [e for e in registry.entries("alice") if e.kind == "finetuned"] == []
    assert lock_is_free(manager)


def test_a_diverging_run_fails_and_is_not_published(manager, registry, corpus, bpe_model_dir):
    manager.save_upload("alice", corpus)
    manager.start("alice", settings(bpe_model_dir, method="full", lr=1.0, max_steps=10, eval_steps=2),
                  label="too hot")
    view = wait_for(manager, "alice", final, timeout=120)
    assert view.state == "failed" and "diverged" in view.message and "eval loss rose" in view.message
    assert view.model_id is None
    assert [e for e in registry.entries("alice") if e.kind == "finetuned"] == []


def test_the_busy_estimate_waits_for_timed_steps():
    from finetune.web.job import Job, busy_message

    job = Job("j", "alice", Path("/nowhere"), "x", {}, state="running", started=time.monotonic(), max_steps=6)
    assert job.eta(Caps(max_seconds=900)) is None  # no step timed yet: not "~15 min"
    assert "a few minutes" in busy_message(job.eta(Caps()))
    now = time.monotonic()
    job.first_step, job.last_step, job.step = (now - 2.0, 1), (now, 3), 3
    assert 2.0 < job.eta(Caps(max_seconds=900)) <= 3.0  # 1 s per step, 3 steps left
    assert "~1 min" in busy_message(job.eta(Caps()))


@pytest.mark.slow
def test_time_cap_stops_the_job(registry, corpus, bpe_model_dir):
    manager = JobManager(registry.home, registry, poll_s=0.1,
                         caps=Caps(max_steps=None, max_seconds=12, stop_grace_s=10))
    try:
        manager.save_upload("alice", corpus)
        started = time.monotonic()
        manager.start("alice", settings(bpe_model_dir, max_steps=100_000, eval_steps=1000), label="endless")
        view = wait_for(manager, "alice", final, timeout=60)
        took = time.monotonic() - started
        assert view.state == "stopped" and "Stopped by the time limit of 1 min" in view.message
        assert 12 <= took < 12 + 10 + 5
    finally:
        manager.close()


# -- the app restarts mid-training (T3) ---------------------------------------------------------
APP = textwrap.dedent("""
    import os, sys, time
    from finetune.web.jobs import JobManager
    from finetune.web.registry import ModelRegistry

    home, model, corpus = sys.argv[1:4]
    registry = ModelRegistry(home, extra=[model], builtins=False, hub=False)
    manager = JobManager(home, registry, poll_s=0.1)
    manager.save_upload("alice", corpus)
    manager.start("alice", dict(base=model, method="lora", epochs=20.0, max_steps=300, batch_size=4,
                                max_length=64, eval_steps=50, samples=0, device="cpu"), label="x")
    while manager.view("alice").step < 2:
        time.sleep(0.1)
    print(manager.view("alice").id, manager.worker_pid("alice"), flush=True)
    os._exit(1)  # the app dies mid-training, cleaning nothing up
""")


@pytest.mark.slow
def test_app_restart_mid_training_marks_the_job_failed_and_offers_no_model(registry, corpus, bpe_model_dir):
    out = subprocess.run([sys.executable, "-c", APP, str(registry.home), str(bpe_model_dir), str(corpus)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    job_id, pid = out.stdout.split()
    state_file = next(registry.home.glob(f"finetune/*/{job_id}/{STATE}"))
    assert json.loads(state_file.read_text())["state"] == "running"

    fresh = ModelRegistry(registry.home, extra=[bpe_model_dir], builtins=False, hub=False)
    manager = JobManager(fresh.home, fresh, poll_s=0.1)  # the restarted app
    try:
        state = json.loads(state_file.read_text())
        assert state["state"] == "failed" and "restarted" in state["message"]
        assert [e for e in fresh.entries() if e.kind == "finetuned"] == []
        assert manager.adopt(job_id, "alice") is None
        assert not list(registry.home.glob("finetune/*/upload-*"))
        # the orphaned worker notices that its app is gone and stops itself (with a checkpoint)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lock_is_free(manager):
            time.sleep(0.2)
        assert lock_is_free(manager), f"worker {pid} still holds the training lock"
        events = [json.loads(x) for x in (state_file.parent / EVENTS).read_text().splitlines()]
        assert events[-1]["kind"] == "end" and events[-1]["result"]["stopped"]
        assert not (state_file.parent / "model").exists()
    finally:
        manager.close()


# -- no worker needed ---------------------------------------------------------------------------
def test_settings_over_the_caps_or_managed_fields_are_refused(manager, corpus, bpe_model_dir):
    with pytest.raises(JobError, match="upload a corpus first"):
        manager.start("alice", settings(bpe_model_dir), label="x")
    manager.save_upload("alice", corpus)
    for steps in (0, 301, "10", True, None):
        with pytest.raises(ValueError, match="max_steps: must be 1 to 300"):
            manager.start("alice", settings(bpe_model_dir, max_steps=steps), label="x")
    with pytest.raises(ValueError, match="max_steps: must be a whole number"):
        manager.start("alice", settings(bpe_model_dir, max_steps=10.5), label="x")
    for field in ("data", "out", "resume"):
        with pytest.raises(ValueError, match=f"{field}: is set by the job manager"):
            manager.start("alice", {**settings(bpe_model_dir), field: "/etc"}, label="x")
    with pytest.raises(ValueError, match="steps_cap: is set by the job manager"):
        manager.check_settings({**settings(bpe_model_dir), "steps_cap": False})
    with pytest.raises(ValueError, match="batch_size"):
        manager.start("alice", settings(bpe_model_dir, batch_size=0), label="x")
    for field, value in (("batch_size", 1024), ("max_length", 8192), ("epochs", 21.0)):
        with pytest.raises(ValueError, match=f"{field}: at most .* here"):
            manager.start("alice", settings(bpe_model_dir, **{field: value}), label="x")
    with pytest.raises(ValueError, match="settings:"):
        manager.start("alice", settings(bpe_model_dir, colour="red"), label="x")
    with pytest.raises(ValueError, match="label"):
        manager.start("alice", settings(bpe_model_dir), label=" ")
    with pytest.raises(JobError, match="session"):
        manager.start(None, settings(bpe_model_dir), label="x")
    assert manager.view("alice") is None and lock_is_free(manager)


def test_uploads_are_checked_copied_per_owner_and_replaced(manager, tmp_path, corpus):
    page = tmp_path / "data.csv"
    page.write_text("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
    with pytest.raises(DataError, match="HTML page") as info:
        manager.save_upload("alice", page)
    assert str(manager.root) not in str(info.value)
    workbook = tmp_path / "data2.csv"
    workbook.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DataError, match="Excel"):
        manager.save_upload("alice", workbook)
    with pytest.raises(DataError, match="not a .csv"):
        manager.save_upload("alice", tmp_path / "x.exe")
    assert not list(manager.root.glob("*/upload-*"))  # refused files are not kept
    first, _ = manager.save_upload("alice", corpus)
    second, _ = manager.save_upload("alice", corpus, keywords="auto")
    assert not first.path.exists() and second.path.is_file()
    assert second.report.keywords_source == "auto"
    again, _ = manager.reload_upload("alice", keywords="column")
    assert again.report.keywords_source == "column" and again.path == second.path
    bob, _ = manager.save_upload("bob", corpus)
    assert bob.path.parent != second.path.parent  # each owner has a folder of their own
    assert len(bob.path.parent.name) == 32 and "bob" not in str(bob.path)
    with pytest.raises(JobError):
        manager.reload_upload("carol", keywords="auto")


@pytest.mark.parametrize("repo_id", ["", "storms", "../storms", "a/b/c", "me/..", "me/x y", None, "me/" + "x" * 97])
def test_push_checks_the_repo_id_before_anything(manager, repo_id):
    with pytest.raises(ValueError, match="repo_id: give the repository as your-name/model-name"):
        manager.push_to_hub("alice", repo_id, "hf_token")


def test_push_checks_the_token_and_needs_a_finished_model(manager):
    for token in ("", "   ", None, "x" * 401):
        with pytest.raises(ValueError, match="token: paste a Hugging Face access token"):
            manager.push_to_hub("alice", "me/storms", token)
    with pytest.raises(JobError, match="no finished fine-tune"):
        manager.push_to_hub("alice", "me/storms", "hf_token")


def test_hub_errors_become_one_clean_message_without_the_token():
    import httpx
    from huggingface_hub.errors import OfflineModeIsEnabled

    from finetune.web.export import hub_message

    token = "hf_SECRET"
    for exc in (OfflineModeIsEnabled("offline"), httpx.ConnectError(f"refused {token}"), ConnectionError()):
        text = hub_message(exc, token)
        assert "could not reach the Hugging Face Hub" in text and token not in text
    text = hub_message(RuntimeError(f"boom with {token}"), token)
    assert token not in text and "***" in text


def test_importing_jobs_loads_neither_gradio_nor_torch():
    code = ("import sys, finetune.web.jobs; "
            "print(sorted(m for m in ('gradio', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
