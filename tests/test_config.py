from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from xdistill.config import RunConfig, load_config
from xdistill.errors import ConfigError
from xdistill.io_utils import atomic_dir
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
    with pytest.raises(
        ConfigError, match=r"unknown key 'distill.temprature' in .*bad.yaml; did you mean 'distill.temperature'"
    ):
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
    with pytest.raises(
        ConfigError, match=r"unknown key 'distill.alpah' in --set distill.alpah; did you mean 'distill.alpha'"
    ):
        load_config(tiny_config_path, ["distill.alpah=0.3"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        load_config(tiny_config_path, ["distill.alpha"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.alpha=1.5", r"distill.alpha must be in \[0, 1\], got 1.5"),
        ("distill.temperature=0", r"distill.temperature must be > 0"),
        (
            "distill.transfer=semi",
            r"distill.transfer is 'semi' but data.target_labelled has no file for \['es', 'zh'\]",
        ),
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


# --- issue 14: bad input gets one clear error --------------------------------------------------


def test_duplicate_key_names_the_key_the_file_and_both_lines(tmp_path, tiny_config_path):
    text = tiny_config_path.read_text(encoding="utf-8")
    first = 1 + text.splitlines().index("distill:")
    path = tmp_path / "run.yaml"
    path.write_text(text + "distill:\n  temperature: 4\n", encoding="utf-8")
    again = len(text.splitlines()) + 1
    with pytest.raises(
        ConfigError,
        match=re.escape(f"{path}, line {again}: duplicate key 'distill' (first at line {first}); merge the two blocks"),
    ):
        load_config(path)


def test_duplicate_key_deep_inside_a_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: a.csv\n  columns:\n    text: 0\n    label: 1\n    text: 2\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=re.escape("run.yaml, line 6: duplicate key 'text' (first at line 4); keep one of the two values"),
    ):
        load_config(path)


def test_yaml_merge_keys_may_still_override(tmp_path, tiny_raw):
    tiny_raw.pop("distill")
    path = write_config(tmp_path / "run.yaml", tiny_raw)
    path.write_text(
        path.read_text(encoding="utf-8") + "distill:\n  <<: {temperature: 3.0, alpha: 0.3}\n  alpha: 0.4\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert (cfg.distill.temperature, cfg.distill.alpha) == (3.0, 0.4)


def test_set_with_a_duplicate_key_in_a_flow_mapping(tiny_config_path):
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "--set distill={temperature: 2, temperature: 3}: duplicate key 'temperature' in the value; "
            "keep one of the two values"
        ),
    ):
        load_config(tiny_config_path, ["distill={temperature: 2, temperature: 3}"])


@pytest.mark.parametrize(
    "override, shown",
    [
        ("distill.temperature=.inf", "inf"),
        ("distill.alpha=.nan", "nan"),
        ("train.lr=-.inf", "-inf"),
        ("teacher.dropout=.NaN", "nan"),
        ("mt.decoding.length_ratio=.inf", "inf"),
        ("embed.ranking_scale=.inf", "inf"),
    ],
)
def test_non_finite_floats_are_rejected_naming_the_flag(tiny_config_path, override, shown):
    flag, _, _ = override.partition("=")
    with pytest.raises(
        ConfigError,
        match=re.escape(f"{flag} must be a finite number, got {shown} in ")
        + r".*\(the value comes from --set "
        + re.escape(override)
        + r"\)",
    ):
        load_config(tiny_config_path, [override])


def test_non_finite_float_in_the_file(tmp_path, tiny_raw):
    tiny_raw["distill"]["temperature"] = float("inf")
    path = write_config(tmp_path / "run.yaml", tiny_raw)
    with pytest.raises(ConfigError, match=r"distill.temperature must be a finite number, got inf in .*run.yaml$"):
        load_config(path)


def test_outputs_get_the_permissions_the_umask_gives(tiny_config_path):
    cfg = load_config(tiny_config_path)
    old = os.umask(0o022)
    try:
        path = write_resolved_config(cfg)
        with atomic_dir(Path(cfg.run_dir) / "folder") as tmp:
            (tmp / "weights.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((Path(cfg.run_dir) / "folder").stat().st_mode) == 0o755
    assert stat.S_IMODE((Path(cfg.run_dir) / "folder" / "weights.bin").stat().st_mode) == 0o644
    assert [p.name for p in Path(cfg.run_dir).iterdir() if p.name.startswith(".")] == []  # no temp left
