import pytest

from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError


def test_overrides_are_typed_yaml_scalars(tmp_path):
    cfg = load_config(None, ["train.lr=3e-4", "train.compile=true", "data.train=[a.txt, b.txt]", "model.preset=null"])
    assert cfg.train.lr == 3e-4 and cfg.train.compile is True and cfg.model.preset is None
    assert [s.path for s in cfg.data.train] == ["a.txt", "b.txt"]


@pytest.mark.parametrize("key,bad,hint", [("train.learning_rate", "train.learning_rate", "train.lr"),
                                          ("trian.lr", "trian", "train"), ("model.presett", "model.presett", "model.preset"),
                                          ("lora.lora_alpha", "lora.lora_alpha", "lora.alpha")])
def test_unknown_key_suggests(key, bad, hint):
    with pytest.raises(LmforgeError) as e:
        load_config(None, [f"{key}=1"])
    assert str(e.value).endswith(f"unknown config key '{bad}'; did you mean '{hint}'?")


def test_negative_lr_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: -0.1\n")
    with pytest.raises(LmforgeError, match=r"c.yaml: config key 'train.lr'"):
        load_config(p)


def test_missing_and_bad_yaml(tmp_path):
    with pytest.raises(LmforgeError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(LmforgeError, match="not valid YAML"):
        load_config(bad)


def test_override_starting_with_hash_is_text_not_a_comment():
    cfg = load_config(None, ['data.template=### Question: "{input}"\\n ### Answer: {output}', "model.base=null"])
    assert cfg.data.template.startswith("### Question") and cfg.model.base is None
