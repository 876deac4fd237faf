from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xdistill.config import RunConfig, load_config
from xdistill.errors import ConfigError
from xdistill.pipeline import write_resolved_config

from conftest import ROOT, write_config


def test_every_shipped_config_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert isinstance(load_config(path), RunConfig), path
    assert load_config("builtin:demo").data.target_langs == ["es", "zh"]


def test_yaml_is_loaded_into_typed_sections(tiny_config_path):
    cfg = load_config(tiny_config_path)
    assert cfg.teacher.path == "random:tiny"
    assert cfg.distill.temperature == 2.0 and isinstance(cfg.distill.temperature, float)
    assert cfg.data.labels == ["negative", "positive"]
    assert cfg.data.resolve("en_train.csv").is_file()  # builtin: demo data


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path, tiny_raw):
    tiny_raw["distill"]["temprature"] = 3
    path = write_config(tmp_path / "bad.yaml", tiny_raw)
    with pytest.raises(ConfigError, match=r"unknown key 'distill.temprature' in .*bad.yaml; did you mean 'distill.temperature'"):
        load_config(path)


def test_unknown_top_level_section(tmp_path, tiny_raw):
    tiny_raw["distil"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'distil' .*did you mean 'distill'"):
        load_config(write_config(tmp_path / "bad.yaml", tiny_raw))


def test_set_overrides_are_typed(tiny_config_path):
    cfg = load_config(tiny_config_path, ["distill.temperature=4", "student.layers=[0, 1]", "data.max_train=10"])
    assert cfg.distill.temperature == 4.0
    assert cfg.student.layers == [0, 1]
    assert cfg.data.max_train == 10


def test_set_with_wrong_type_names_the_flag(tiny_config_path):
    with pytest.raises(ConfigError, match=r"distill.temperature must be float, got 'hot'"):
        load_config(tiny_config_path, ["distill.temperature=hot"])
    with pytest.raises(ConfigError, match=r"train.batch_size must be int, got 1.5"):
        load_config(tiny_config_path, ["train.batch_size=1.5"])


def test_set_unknown_key_suggests(tiny_config_path):
    with pytest.raises(ConfigError, match=r"unknown key 'distill.alpah' in --set distill.alpah; did you mean 'distill.alpha'"):
        load_config(tiny_config_path, ["distill.alpah=0.3"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        load_config(tiny_config_path, ["distill.alpha"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.alpha=1.5", r"distill.alpha must be in \[0, 1\], got 1.5"),
        ("distill.temperature=0", r"distill.temperature must be > 0"),
        ("distill.transfer=semi", r"distill.transfer is 'semi' but data.target_labelled has no file for \['es', 'zh'\]"),
        ("distill.transfer=sideways", r"distill.transfer must be one of 'unsupervised', 'semi', 'supervised'"),
        ("student.hidden_size=64", r"student.hidden_size is set but student.init is 'teacher'"),
        ("train.select_lang=fr", r"train.select_lang is 'fr', not one of the run's languages"),
        ("data.target_langs=[en]", r"data.target_langs must not contain the source language 'en'"),
        ("teacher.pooling=max", r"teacher.pooling must be one of 'mean', 'cls'"),
    ],
)
def test_cross_field_checks_name_the_flag(tiny_config_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config_path, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: not valid YAML"):
        load_config(bad)


def test_missing_required_section(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"data": {"train": "x.csv", "labels": ["a", "b"]}})
    with pytest.raises(ConfigError, match=r"missing required section or key 'teacher'"):
        load_config(path)


def test_resolved_config_is_written_and_reloads(tiny_config_path):
    cfg = load_config(tiny_config_path, ["distill.temperature=3"])
    path = write_resolved_config(cfg)
    assert path == Path(cfg.run_dir) / "config.yaml"
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["distill"]["temperature"] == 3.0
