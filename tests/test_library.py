"""My models: a browser's fine-tuned models, found again by the secret key it holds, kept on
disk across sessions and app restarts, invisible to other keys (no user-supplied
id becomes a path)."""
from __future__ import annotations

import json
import secrets
import zipfile

import pytest
from helpers import settings, wait_for, write_corpus

from finetune.web.caps import Caps
from finetune.web.errors import LibraryError
from finetune.web.jobs import JobManager
from finetune.web.library import Library
from finetune.web.registry import ModelRegistry


def key() -> str:
    return secrets.token_hex(32)


def model_folder(tmp_path, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_a_shelf_is_named_by_the_key_hash_and_lists_only_its_own(tmp_path):
    lib = Library(tmp_path / "home")
    mine, theirs = key(), key()
    item = lib.add(mine, model_folder(tmp_path), "模型B", {"method": "lora"})
    assert item.id.startswith("moxing-b-") and item.label == "模型B" and (item.folder / "config.json").is_file()
    assert mine not in str(item.folder) and not (tmp_path / "model").exists()  # moved, key never on disk
    assert [i.id for i in lib.items(mine)] == [item.id] and lib.items(theirs) == []
    with pytest.raises(LibraryError, match="no model"):
        lib.get(theirs, item.id)
    for bad in ("", "x" * 64, "../" + "a" * 61, None, 12, "A" * 64):
        with pytest.raises(LibraryError, match="library: the browser's key must be 64 hexadecimal"):
            lib.items(bad)
    for hostile in ("../../etc", item.id + "/model", "..", "", None, "x" * 200):
        with pytest.raises(LibraryError, match="no model"):
            lib.get(mine, hostile)
    lib.remove(mine, item.id)
    assert lib.items(mine) == [] and not item.folder.exists()


def test_a_full_shelf_refuses_and_leaves_the_model_where_it_was(tmp_path):
    lib = Library(tmp_path / "home", max_items=1)
    mine = key()
    lib.add(mine, model_folder(tmp_path, "one"), "one")
    second = model_folder(tmp_path, "two")
    with pytest.raises(LibraryError, match="you keep 1 models already"):
        lib.add(mine, second, "two")
    assert (second / "config.json").is_file() and len(lib.items(mine)) == 1


def test_half_written_or_foreign_folders_are_not_items(tmp_path):
    lib = Library(tmp_path / "home")
    mine = key()
    item = lib.add(mine, model_folder(tmp_path), "a")
    shelf = item.folder.parent.parent
    (shelf / ".staging.tmp").mkdir()
    (shelf / "no-record").mkdir()
    (shelf / "bad-record").mkdir()
    (shelf / "bad-record" / "item.json").write_text("{not json")
    (shelf / "other-id").mkdir()
    (shelf / "other-id" / "model").mkdir()
    (shelf / "other-id" / "item.json").write_text(json.dumps({"id": item.id, "label": "x", "created": 1}))
    assert [i.id for i in lib.items(mine)] == [item.id]


@pytest.mark.slow
def test_a_finished_job_lands_in_my_models_and_a_new_session_or_app_finds_it(tmp_path, bpe_model_dir):
    home = tmp_path / "home"
    registry = ModelRegistry(home, extra=[bpe_model_dir], builtins=False, hub=False)
    manager = JobManager(home, registry, poll_s=0.1, caps=Caps(max_steps=300, max_seconds=600))
    browser = key()
    try:
        manager.save_upload("session-1", write_corpus(tmp_path / "storms.csv"))
        manager.start("session-1", settings(bpe_model_dir, max_steps=3), label="模型A",
                      form={"method": "lora", "name": "模型A"}, library_key=browser)
        view = wait_for(manager, "session-1", lambda v: v.state in ("done", "failed"))
        assert view.state == "done" and view.library_id.startswith("moxing-a-") and view.form["name"] == "模型A"
        assert ("模型A", view.model_id) in registry.choices("session-1")
        zipped = manager.zip_model("session-1")
        assert zipped.name == "moxing-a.zip"
        with zipfile.ZipFile(zipped) as zf:
            assert "\n# 模型A\n" in zf.read("moxing-a/README.md").decode("utf-8")
        manager.release("session-1")  # the tab closed: its registrations go, the model stays on disk
        assert view.model_id not in [i for _, i in registry.choices("session-1")]
        assert manager.claim("session-2", key()) == []  # another browser
    finally:
        manager.close()
    # the app restarts on the same data folder: the browser's next session finds its model
    registry = ModelRegistry(home, extra=[bpe_model_dir], builtins=False, hub=False)
    manager = JobManager(home, registry, poll_s=0.1)
    try:
        kept = manager.claim("session-3", browser)
        assert [(item.label, item.id) for item, _ in kept] == [("模型A", view.library_id)]
        model_id = kept[0][1]
        assert manager.claim("session-3", browser)[0][1] == model_id  # claiming again adds nothing
        assert [i for _, i in registry.choices("session-3")].count(model_id) == 1
        out = registry.get(model_id, "session-3").generate("Storm", "sea", n=1, seed=0, max_new_tokens=4)
        assert isinstance(out[0].text, str)
        with pytest.raises(LibraryError):
            manager.forget("session-3", key(), view.library_id)  # not the owner's key
        manager.forget("session-3", browser, view.library_id)
        assert manager.claim("session-3", browser) == [] and model_id not in [i for _, i in registry.choices("session-3")]
    finally:
        manager.close()
