"""The README's quickstart and CI agree, and the Spaces front matter is complete."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND = "pip install -r requirements-dev.txt && python -m pytest"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in readme
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND


def test_spaces_front_matter():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    front = readme.split("---")[1]
    for key in ("title:", "emoji:", "sdk: gradio", "sdk_version:", "python_version:", "app_file: app.py",
                "license:"):
        assert key in front
    gradio_pin = [l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("gradio==")]
    assert gradio_pin and gradio_pin[0].split("==")[1] in front


def test_torch_pinned_to_cpu_build_version():
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().splitlines()
