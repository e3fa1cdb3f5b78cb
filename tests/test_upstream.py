"""Readers of the upstream corpora, packed training blocks, sharded built-in weights, and a
tiny end-to-end build from fixture corpora in the upstream layouts (written here)."""
import dataclasses
import json
import shutil

import pytest

from finetune.builtin.folder import read_titled_folder
from finetune.builtin.poetry import PoemKeywords, poem_shape, read_chinese_poetry
from finetune.builtin.rows import CorpusLayoutError
from finetune.builtin.upstream import read_corpus
from finetune.builtin.wikipedia import read_wikiextractor

JUEJU = ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]
LVSHI = ["空山新雨后，天气晚来秋。", "明月松间照，清泉石上流。", "竹喧归浣女，莲动下渔舟。", "随意春芳歇，王孙自可留。"]


def write_poetry(root, tang=(), song=(), ci=()):
    (root / "全唐诗").mkdir(parents=True, exist_ok=True)
    (root / "宋词").mkdir(parents=True, exist_ok=True)
    for i, poems in enumerate(tang):
        (root / "全唐诗" / f"poet.tang.{i * 1000}.simplified.json").write_text(
            json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    for i, poems in enumerate(song):
        (root / "全唐诗" / f"poet.song.{i * 1000}.simplified.json").write_text(
            json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    for i, poems in enumerate(ci):
        (root / "宋词" / f"ci.song.{i * 1000}.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return root


def test_poem_shape_accepts_jueju_and_lvshi_only():
    assert poem_shape(JUEJU) == (4, 5)
    assert poem_shape(LVSHI) == (8, 5)
    assert poem_shape(["春眠不觉晓，处处闻啼鸟。"]) is None  # two lines
    assert poem_shape(["床前明月光，疑是地上霜呀。", "举头望明月，低头思故乡。"]) is None  # uneven
    assert poem_shape(["床前明月A，疑是地上霜。", "举头望明月，低头思故乡。"]) is None  # a Latin letter


def test_chinese_poetry_reader_keeps_regular_poems_and_counts_what_it_drops(tmp_path):
    root = write_poetry(tmp_path / "cp", tang=[[
        {"author": "李白", "title": "静夜思", "paragraphs": JUEJU, "id": "a"},
        {"author": "王维", "title": "山居秋暝", "paragraphs": LVSHI},
        {"author": "某", "paragraphs": JUEJU},  # no title
        {"author": "某", "title": "  ", "paragraphs": JUEJU},  # blank title
        {"author": "某", "title": "空", "paragraphs": ["", "  "]},  # empty paragraphs
        {"author": "某", "title": "杂", "paragraphs": "床前明月光"},  # not a list
        {"author": "某", "title": "古风", "paragraphs": ["大车扬飞尘，亭午暗阡陌。", "中贵多黄金，连云开甲宅。",
                                                      "路逢斗鸡者，冠盖何辉赫。"]},  # six lines: not regular
        {"author": "李白", "title": "静夜思 又", "paragraphs": JUEJU},  # the same poem again
        "not an object",
    ]])
    (root / "全唐诗" / "poet.tang.1000.simplified.json").write_text("[{broken", encoding="utf-8")
    rows, report = read_chinese_poetry(root, ("tang",))
    assert [r.title for r in rows] == ["静夜思", "山居秋暝"]
    assert rows[0].text == "\n".join(JUEJU)  # one couplet per line
    assert report.rows == 2 and report.characters == sum(len(r.text) for r in rows)
    assert report.dropped == {"poems without a title": 2, "poems with empty paragraphs": 1,
                              "poems without paragraphs": 1, "poems that are not 绝句 or 律诗": 1,
                              "duplicate poems": 1, "entries that are not objects": 1,
                              "files that are not UTF-8 JSON": 1}
    everything, _ = read_chinese_poetry(root, ("tang",), regular_only=False)
    assert "古风" in [r.title for r in everything]


def test_chinese_poetry_reader_orders_files_by_number_and_stops_at_max_chars(tmp_path):
    poems = [[{"title": f"诗{i}", "paragraphs": [f"{'春夏秋冬风花雪月'[i]}前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]}]
             for i in range(8)]
    root = tmp_path / "cp"
    (root / "全唐诗").mkdir(parents=True)
    for i, p in enumerate(poems):  # 0, 1000, … 7000: "10000" sorts before "2000" as text
        (root / "全唐诗" / f"poet.tang.{i * 1000 if i < 7 else 10000}.simplified.json").write_text(
            json.dumps(p, ensure_ascii=False), encoding="utf-8")
    rows, report = read_chinese_poetry(root, ("tang",))
    assert [r.title for r in rows] == [f"诗{i}" for i in range(8)]
    rows, _ = read_chinese_poetry(root, ("tang",), max_chars=60)
    assert len(rows) == 3  # 25 characters each: stops at the poem that reaches 60


def test_chinese_poetry_reader_names_the_layout_it_expects(tmp_path):
    with pytest.raises(CorpusLayoutError, match="chinese-poetry clone"):
        read_chinese_poetry(tmp_path)
    with pytest.raises(ValueError, match="collections: unknown 'yuan'"):
        read_chinese_poetry(tmp_path, ("yuan",))


def test_poem_keywords_are_common_nouns_not_function_words_or_rare_characters():
    poems = ["\n".join(JUEJU)] * 30 + ["\n".join(LVSHI)] * 30 + ["孤帆远影碧空尽，唯见长江天际流。"]
    chosen = PoemKeywords(poems, skip_top=0, min_poems=20)
    words = chosen.of(0, k=10)
    assert {"床", "霜", "故乡"} <= set(words) and all(1 <= len(w) <= 2 for w in words)
    assert not {"前", "疑", "是", "举头"} & set(words)  # not nouns
    assert chosen.of(0, k=2) == words[:2]
    assert chosen.of(60) == []  # every word of it is in fewer than 20 poems
    common = PoemKeywords(poems, skip_top=3, min_poems=20)  # the 3 commonest words are function words here
    assert len(common.of(0, k=10)) == len(words) - 3


WIKI = """<doc id="1" url="http://en.wikipedia.org/wiki?curid=1" title="Tea &amp; Health">
Tea &amp; Health

{lead}
History.
{history}
{history2}
See also.
Related articles on tea, health and the history of beverages are listed in the index.
</doc>
<doc id="2" url="x" title="Broken">
Broken

This article never ends.
<doc id="3" url="y" title="">

An article without a title.
</doc>
"""


def write_wiki(root, **parts):
    (root / "AA").mkdir(parents=True)
    lead = "Tea is an aromatic beverage prepared by pouring hot water over cured leaves. " * 4
    history = "Tea drinking may have begun in Yunnan, where it was used as a medicinal drink. " * 12
    text = WIKI.format(lead=parts.get("lead", lead), history=history, history2=history)
    (root / "AA" / "wiki_00").write_text(text, encoding="utf-8")
    return root


def test_wikiextractor_reader_rows_by_section_and_drops_malformed_articles(tmp_path):
    rows, report = read_wikiextractor(write_wiki(tmp_path / "wiki"))
    assert [r.title for r in rows] == ["Tea & Health", "Tea & Health: History", "Tea & Health: History"]
    assert rows[0].text.startswith("Tea is an aromatic") and "Tea & Health" not in rows[0].text
    assert all(len(r.text) <= 1500 for r in rows)  # the long section was cut between paragraphs
    assert all(r.keywords == [] for r in rows)
    assert report.dropped == {"articles without </doc>": 1, "articles without a title": 1,
                              "sections shorter than 200 characters": 1}


def test_wikiextractor_reader_names_the_layout_it_expects(tmp_path):
    with pytest.raises(CorpusLayoutError, match="WikiExtractor output"):
        read_wikiextractor(tmp_path)


def test_titled_folder_reader_one_row_per_file(tmp_path):
    book = tmp_path / "luxun" / "呐喊"
    book.mkdir(parents=True)
    body = "我家门前有两株树，一株是枣树，还有一株也是枣树。" * 5
    (book / "秋夜.md").write_text(f"```\n# 秋夜\n\n{body}\n\n**完**\n```\n", encoding="utf-8")
    (book / "目录.md").write_text("# 目录\n- 秋夜\n", encoding="utf-8")
    (book / "坏.txt").write_bytes(b"\xff\xfe\x00broken")
    (book / "图.png").write_bytes(b"\x89PNG")
    rows, report = read_titled_folder(tmp_path / "luxun")
    assert [(r.title, r.text) for r in rows] == [("秋夜", f"{body}\n完")]
    assert report.files == 3 and report.dropped == {"files under 100 characters": 1, "files that are not UTF-8": 1}
    more = book / "彷徨"
    more.mkdir()
    (more / "祝福.md").write_text(body, encoding="utf-8")
    rows, _ = read_corpus("titled-folder", tmp_path / "luxun", max_chars=10)
    assert len(rows) == 1  # stops at the first file that reaches max_chars
    with pytest.raises(CorpusLayoutError, match="not a folder"):
        read_corpus("titled-folder", tmp_path / "gone")
    with pytest.raises(ValueError, match="corpus: unknown 'gutenberg'"):
        read_corpus("gutenberg", tmp_path)


# -- packed blocks ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from finetune.scratch import train_tokenizer

    texts = ["\n".join(JUEJU), "\n".join(LVSHI), "Tea is an aromatic beverage. " * 3]
    return train_tokenizer(texts * 20, 400, tmp_path_factory.mktemp("tok"), "zh")


def test_packed_blocks_have_one_length_keep_every_eos_and_follow_the_epoch(tiny_tokenizer):
    from finetune.data import Row
    from finetune.dataset import IGNORE_INDEX, Collator, ExampleDataset
    from finetune.packing import PackedDataset, PackedSampler
    from textgen.prompt import PromptFormat, token_ids

    fmt = PromptFormat()
    rows = [Row(f"诗{i}", ["明月", "故乡"], "\n".join(JUEJU if i % 2 else LVSHI)) for i in range(40)]
    examples = ExampleDataset(rows, tiny_tokenizer, fmt, 4096, augment=True, seed=0)
    packed = PackedDataset(examples, block=64, seed=0)
    ids = token_ids(tiny_tokenizer, fmt)
    stream = [t for i in range(len(packed)) for t in packed[i]["input_ids"]]
    assert len(packed) >= 10 and all(len(packed[i]["input_ids"]) == 64 for i in range(len(packed)))
    # every document ends with [EOS] before the next one's [BOS]: no block joins two without it
    for j, t in enumerate(stream[1:], 1):
        if t == ids["bos"]:
            assert stream[j - 1] == ids["eos"]
    labels = [t for i in range(len(packed)) for t in packed[i]["labels"]]
    assert all(lab in (IGNORE_INDEX, t) for lab, t in zip(labels, stream))
    assert IGNORE_INDEX in labels and ids["eos"] in labels  # prompts unscored, the end is learnt
    first = packed[0]["input_ids"]
    sampler = PackedSampler(packed, seed=0)
    sampler.set_epoch(1)
    assert packed[0]["input_ids"] != first and len(packed) == len(packed)  # new order and keyword draws
    assert sorted(sampler) == list(range(len(packed)))
    batch = Collator(ids["pad"])([packed[0], packed[1]])
    assert set(batch) == {"input_ids", "labels", "position_ids"} and tuple(batch["input_ids"].shape) == (2, 64)
    # every document starts at position 0, as a generation prompt does, and so does a block
    for i in range(len(packed)):
        block_ids, positions = packed[i]["input_ids"], packed[i]["position_ids"]
        assert positions[0] == 0
        assert all((p == 0) == (t == ids["bos"]) for p, t in zip(positions[1:], block_ids[1:]))
        assert all(b in (0, a + 1) for a, b in zip(positions, positions[1:]))
    with pytest.raises(ValueError, match="block: must be at least 2 tokens, got 1"):
        PackedDataset(examples, block=1)
    padded = Collator(ids["pad"])([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [1], "labels": [1]}])
    assert padded["attention_mask"].tolist() == [[1, 1], [1, 0]]


def test_packed_documents_are_trained_as_if_each_stood_alone(tiny_tokenizer, tmp_path):
    """The loss the Trainer computes on a packed block equals the sum of its documents' losses,
    each computed alone from position 0: no document sees the one before it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments

    from finetune.data import Row
    from finetune.dataset import IGNORE_INDEX, Collator, ExampleDataset
    from finetune.packing import PackedDataset
    from finetune.trainer import TextgenTrainer
    from textgen.prompt import PromptFormat, add_special_tokens, token_ids

    fmt = PromptFormat()
    add_special_tokens(tiny_tokenizer, fmt)
    rows = [Row(f"诗{i}", ["明月"], "\n".join(JUEJU if i % 2 else LVSHI)) for i in range(6)]
    examples = ExampleDataset(rows, tiny_tokenizer, fmt, 4096, augment=False, seed=0)
    docs = [examples[i] for i in range(len(examples))]
    block = sum(len(d["input_ids"]) for d in docs[:3])
    packed = PackedDataset(examples, block=block, seed=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_layer=2, n_embd=32, n_head=2,
                                       n_positions=block, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                       initializer_range=0.5)).eval()  # sharp attention: a leak shows
    trainer = TextgenTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to=[], use_cpu=True))
    batch = Collator(token_ids(tiny_tokenizer, fmt)["pad"])([packed[0]])
    scored = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch, num_items_in_batch=scored)
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0] + [block]
        alone = 0.0
        for a, b in zip(starts, starts[1:]):
            out = model(torch.tensor([ids[a:b]]), labels=torch.tensor([labels[a:b]]))
            alone += float(out.loss) * sum(lab != IGNORE_INDEX for lab in labels[a + 1:b])
    assert len(starts) >= 3
    assert float(loss) == pytest.approx(alone / scored, rel=1e-5)


# -- a tiny build, end to end ----------------------------------------------------------------
def test_tiny_build_from_fixture_wikipedia_is_sharded_and_loads_with_both_loaders(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from finetune.builtin import build as builtin
    from textgen import Generator
    from textgen.loading import has_weights

    root = tmp_path / "wiki"
    (root / "AA").mkdir(parents=True)
    docs = []
    for i in range(60):
        body = (f"The river {i} flows past the old mill and the stone bridge into the valley. " * 6 + "\n") * 2
        docs.append(f'<doc id="{i}" url="u" title="River {i}">\nRiver {i}\n\n{body}</doc>\n')
    (root / "AA" / "wiki_00").write_text("".join(docs), encoding="utf-8")
    recipe = dataclasses.replace(builtin.RECIPES["en"], preset="tiny", max_length=64, batch_size=4,
                                 budget_minutes=0, max_steps=6, eval_ratio=0.1, max_chars=0)
    recipe.continued = dataclasses.replace(recipe.continued, max_steps=3, max_length=64, batch_size=4)
    monkeypatch.setitem(builtin.RECIPES, "en", recipe)
    monkeypatch.setattr(builtin, "SHARD_SIZE", "40KB")  # the tiny model in several shards
    out = tmp_path / "textgen-en"
    metrics = builtin.build("en", out, tmp_path / "work", n_novelty=2, corpus_dir=root)
    assert metrics["steps"] == 6 + 3 and metrics["rows"] == 60  # both stages
    assert [x["steps"] for x in metrics["stages"]] == [6, 3]
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and has_weights(out) and not (out / "model.safetensors").exists()
    assert all(p.stat().st_size <= 10 * 1024 * 1024 for p in out.iterdir())
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model.config.n_embd == 32
    result = Generator.from_pretrained(str(out)).generate("River 3", "bridge", n=1, seed=0, max_new_tokens=8)
    assert result[0].tokens > 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in card and "Wikipedia contributors" in card and "--corpus-dir PATH" in card
    assert "3 more steps" in card and "packed" in card and "two-word phrases" in card
    # continued from the published model: its stages kept, the card's settings its first stage's
    more = builtin.build("en", tmp_path / "more", tmp_path / "more-work", n_novelty=2, stage1=out,
                         corpus=tmp_path / "work" / "corpus.csv")
    assert [x["steps"] for x in more["stages"]] == [6, 3, 3] and more["steps"] == 12
    assert "6 steps, batch 4" in (tmp_path / "more" / "README.md").read_text(encoding="utf-8")
    # a restarted build, in a work folder that holds only the corpus CSV it wrote, reads it there
    (tmp_path / "restart").mkdir()
    shutil.copyfile(tmp_path / "work" / "corpus.csv", tmp_path / "restart" / "corpus.csv")
    again = builtin.build("en", tmp_path / "again", tmp_path / "restart", n_novelty=2,
                          corpus=tmp_path / "restart" / "corpus.csv")
    assert again["rows"] == 60 and has_weights(tmp_path / "again")


def test_rebuild_without_a_corpus_dir_says_which_corpus_it_needs(tmp_path):
    from finetune.builtin import build as builtin
    with pytest.raises(SystemExit, match="--corpus-dir: textgen-zh is trained on github.com/chinese-poetry"):
        builtin.build("zh", tmp_path / "out", tmp_path / "work")


def test_cli_writes_a_csv_the_pipeline_reads_and_names_a_bad_folder(tmp_path, capsys):
    from finetune.data import load_corpus
    from finetune.builtin.upstream import main

    book = tmp_path / "luxun" / "野草"
    book.mkdir(parents=True)
    (book / "秋夜.md").write_text("在我的后园，可以看见墙外有两株树，一株是枣树，还有一株也是枣树。" * 8, encoding="utf-8")
    assert main(["titled-folder", str(tmp_path / "luxun"), "--out", str(tmp_path / "luxun.csv")]) == 0
    rows, _ = load_corpus(tmp_path / "luxun.csv")
    assert [r.title for r in rows] == ["秋夜"] and rows[0].keywords  # keywords extracted (jieba)
    assert main(["wikiextractor", str(tmp_path / "luxun"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no wiki_NN files" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_the_wall_time_budget_becomes_steps_measured_on_this_machine():
    from finetune.builtin import recipes
    recipe = dataclasses.replace(recipes.RECIPES["en"], preset="tiny", max_length=64, batch_size=2)
    short, long = recipes.planned_steps(recipe, 1.0), recipes.planned_steps(recipe, 100.0)
    assert 1 <= short < long and long > 50 * short / 2  # about proportional, whatever the timing noise
