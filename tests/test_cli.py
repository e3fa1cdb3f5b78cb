import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "textgen", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_every_flag():
    out = run_cli("--help").stdout
    for flag in ("--title", "--keywords", "--model", "--n", "--max-new-tokens", "--temperature", "--top-k",
                 "--top-p", "--repetition-penalty", "--seed", "--keyword-mode", "--json", "--input", "--output"):
        assert flag in out


def test_single_json(bpe_model_dir):
    proc = run_cli("--model", str(bpe_model_dir), "--title", "Storm", "--keywords", "sea, night",
                   "--n", "2", "--max-new-tokens", "12", "--seed", "0", "--json")
    obj = json.loads(proc.stdout)
    assert obj["title"] == "Storm" and obj["keywords"] == ["sea", "night"] and obj["model"] == bpe_model_dir.name
    assert len(obj["candidates"]) == 2
    for cand in obj["candidates"]:
        assert set(cand) >= {"text", "covered", "missing"}
    again = json.loads(run_cli("--model", str(bpe_model_dir), "--title", "Storm", "--keywords", "sea, night",
                               "--n", "2", "--max-new-tokens", "12", "--seed", "0", "--json").stdout)
    assert again["candidates"] == obj["candidates"]


def test_single_human_readable(bert_zh_model_dir):
    proc = run_cli("--model", str(bert_zh_model_dir), "--title", "春夜", "--keywords", "月，花",
                   "--n", "2", "--max-new-tokens", "8", "--seed", "1")
    assert "# model:" in proc.stdout and "[1] covered:" in proc.stdout and "[2]" in proc.stdout


def test_batch_mode(bpe_model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in [
        {"title": "Storm", "keywords": "sea, night"},
        {"title": "春夜", "keywords": ["月", "花"]},
        {"title": "", "keywords": ""},  # invalid: reported, not fatal
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    proc = run_cli("--model", str(bpe_model_dir), "--input", str(prompts), "--output", str(out),
                   "--n", "2", "--max-new-tokens", "8", "--seed", "0", check=False)
    assert proc.returncode == 1  # one prompt failed
    assert "generating" in proc.stderr  # progress bar on stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    assert lines[1]["keywords"] == ["月", "花"] and len(lines[1]["candidates"]) == 2
    assert lines[1]["model"] == bpe_model_dir.name
    assert "title" in lines[2]["error"]


def test_bad_flag_values_are_named(bpe_model_dir):
    proc = run_cli("--model", str(bpe_model_dir), "--title", "x", "--top-p", "1.5", check=False)
    assert proc.returncode == 2 and "top_p" in proc.stderr
    proc = run_cli("--title", "", "--keywords", "", check=False)
    assert proc.returncode == 2 and "--title" in proc.stderr
    proc = run_cli("--model", "/no/such/model", "--title", "x", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_bad_batch_file_line_number(bpe_model_dir, tmp_path):
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"title": "ok"}\n{not json\n', encoding="utf-8")
    proc = run_cli("--model", str(bpe_model_dir), "--input", str(prompts), "--output", str(tmp_path / "o"),
                   check=False)
    assert proc.returncode != 0 and "line 2" in proc.stderr
