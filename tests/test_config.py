import pytest

from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError


def test_overrides_are_typed_yaml_scalars(tmp_path):
    cfg = load_config(None, ["train.lr=3e-4", "train.compile=true", "data.train=[a.txt, b.txt]", "model.preset=null"])
    assert cfg.train.lr == 3e-4 and cfg.train.compile is True and cfg.model.preset is None
    assert [s.path for s in cfg.data.train] == ["a.txt", "b.txt"]


@pytest.mark.parametrize(
    "key,bad,hint",
    [
        ("train.learning_rate", "train.learning_rate", "train.lr"),
        ("trian.lr", "trian", "train"),
        ("model.presett", "model.presett", "model.preset"),
        ("lora.lora_alpha", "lora.lora_alpha", "lora.alpha"),
    ],
)
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


@pytest.mark.parametrize(
    "command,override,key",
    [
        ("pretrain", "lora.method=lora", "lora.method"),
        ("pretrain", "lora.r=8", "lora.r"),
        ("pretrain", "train.eval_task=t.yaml", "train.eval_task"),
        ("pretrain", "data.completion_only=false", "data.completion_only"),
        ("finetune", "model.preset=3m", "model.preset"),
        ("finetune", "tokenizer.vocab_size=512", "tokenizer.vocab_size"),
        ("finetune", "model.num_layers=4", "model.num_layers"),
    ],
)
def test_a_command_refuses_what_it_would_ignore(command, override, key):
    from lmforge.core.config import reject_unused

    base = ["model.base=some/model"] if command == "finetune" else ["model.preset=tiny"]
    cfg = load_config(None, [*base, override])
    with pytest.raises(LmforgeError, match=rf"^{command} does not use {key} \(.+\); remove it from the config$"):
        reject_unused(cfg, command)
    reject_unused(load_config(None, base), command)  # the same config without the key is fine


def test_a_saved_config_written_in_full_is_not_refused(tmp_path):
    """A run's config.yaml holds every key at its value; defaults there are not 'set' keys."""
    from lmforge.core.config import reject_unused, save_config

    save_config(load_config(None, ["model.preset=tiny"]), tmp_path / "config.yaml")
    reject_unused(load_config(tmp_path / "config.yaml"), "pretrain")
    save_config(load_config(None, ["model.base=a/b", "lora.method=lora"]), tmp_path / "ft.yaml")
    reject_unused(load_config(tmp_path / "ft.yaml"), "finetune")


def test_preset_has_no_default_and_pretraining_asks_for_one(tmp_path, capsys):
    from lmforge.cli import main

    assert load_config(None, []).model.preset is None  # a fine-tune's saved config no longer says 'tiny'
    text = tmp_path / "t.txt"
    text.write_text("some words to read " * 200)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: p\n")
    assert main(["pretrain", str(cfg), f"data.train={text}", f"out_dir={tmp_path}", "tokenizer.vocab_size=64"]) == 2
    assert "set model.preset or model.hidden_size" in capsys.readouterr().err


def test_validate_refuses_what_the_run_would_ignore(tmp_path, capsys):
    from lmforge.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {base: some/model, preset: 3m}\n")
    assert main(["validate", str(cfg)]) == 2
    assert "finetune does not use model.preset" in capsys.readouterr().err
