import pytest

from textgen.keywords import MAX_KEYWORDS, MAX_KEYWORD_CHARS, parse_keywords
from textgen.params import GenerationParams, param_specs


@pytest.mark.parametrize("raw, expected", [
    ("月, 花", ["月", "花"]),
    ("月，花、风；雨;雪|霜\n云", ["月", "花", "风", "雨", "雪", "霜", "云"]),
    ("月 花 风", ["月", "花", "风"]),                      # whitespace only when nothing else
    ("machine learning, data", ["machine learning", "data"]),  # phrase kept
    ("storm | sea", ["storm", "sea"]),
    ("Storm, storm, STORM, sea", ["Storm", "sea"]),         # Latin de-duplicated case-insensitively
    ("  , ,, 月 ,", ["月"]),                                 # empties dropped, trimmed
    (["sea", "night, moon", "  "], ["sea", "night", "moon"]),
    (["long road", "sea"], ["long road", "sea"]),              # list items keep their spaces
    (parse_keywords("long road, sea"), ["long road", "sea"]),  # parsing twice changes nothing
    ("", []),
    (None, []),
    ("a\u200bb, c", ["ab", "c"]),                           # zero-width characters removed
])
def test_parse_keywords(raw, expected):
    assert parse_keywords(raw) == expected


def test_too_many_keywords_named():
    with pytest.raises(ValueError, match=r"keywords: at most 32"):
        parse_keywords(",".join(f"k{i}" for i in range(MAX_KEYWORDS + 1)))
    assert len(parse_keywords(",".join(f"k{i}" for i in range(MAX_KEYWORDS)))) == MAX_KEYWORDS


def test_too_long_keyword_named():
    with pytest.raises(ValueError, match=r"keywords: .* has 41 characters; at most 40"):
        parse_keywords("x" * (MAX_KEYWORD_CHARS + 1))


def test_non_text_keyword_refused():
    with pytest.raises(ValueError, match="keywords: each keyword must be text"):
        parse_keywords(["ok", 3])


@pytest.mark.parametrize("field, value", [
    ("max_new_tokens", 0), ("max_new_tokens", -1), ("max_new_tokens", 10**9), ("max_new_tokens", "12"),
    ("max_new_tokens", 2.5), ("temperature", 0), ("temperature", -1), ("temperature", 6),
    ("temperature", float("nan")), ("top_p", 0), ("top_p", 1.5), ("top_k", -1), ("repetition_penalty", 0.9),
    ("repetition_penalty", 3.5), ("n", 0), ("n", 9), ("seed", -1), ("seed", 1.5), ("seed", "x"),
    ("keyword_mode", "always"), ("n", True),
])
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValueError) as info:
        GenerationParams(**{field: value})
    assert str(info.value).startswith(f"{field}:")


def test_good_params_and_specs():
    p = GenerationParams(n=8, max_new_tokens=1024, temperature=5, top_p=1, top_k=0,
                         repetition_penalty=3, seed=0)
    assert p.temperature == 5.0 and isinstance(p.temperature, float)
    assert p.replace(n=2).n == 2
    with pytest.raises(ValueError, match="unknown parameter"):
        p.replace(beams=2)
    specs = param_specs()
    assert specs["top_p"]["max"] == 1 and specs["n"]["min"] == 1 and specs["n"]["max"] == 8


def test_a_bad_switch_is_refused_naming_the_field_not_with_a_type_error():
    # the choices of a switch are booleans: the message must still read as text
    with pytest.raises(ValueError, match=r"rhyme: must be one of True, False, got 'x'"):
        GenerationParams(rhyme="x")


def test_the_field_rules_are_the_same_for_sampling_and_training():
    from finetune.config import TrainConfig

    with pytest.raises(ValueError, match="n: must be between 1 and 8, got 9"):
        GenerationParams(n=9)
    with pytest.raises(ValueError, match="batch_size: must be between 1 and 1024, got 0"):
        TrainConfig(data="a.csv", out="m", batch_size=0)
    with pytest.raises(ValueError, match="temperature: must be > 0 and <= 5"):
        GenerationParams(temperature=0)
    with pytest.raises(ValueError, match="lr: must be > 0 and <= 1"):
        TrainConfig(data="a.csv", out="m", lr=0)
    with pytest.raises(ValueError, match="seed: must be a finite number"):
        GenerationParams(seed=float("inf"))
    with pytest.raises(TypeError):  # a required field stays required
        TrainConfig(data="a.csv")
    assert TrainConfig(data="a.csv", out="m", epochs=2).epochs == 2.0  # coerced to the field's type
    assert GenerationParams(n=2.0).n == 2 and isinstance(GenerationParams(n=2.0).n, int)
