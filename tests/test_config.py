"""Tests for orchestrator.config: config files written to tmp_path, no mocks."""

from __future__ import annotations

import copy
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

from orchestrator import ConfigError, get_script_config, load_config
from orchestrator.config import DEFAULT_SETTINGS


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A scripts directory inside a project root marked by pyproject.toml."""
    root = tmp_path.resolve() / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    return root / "scripts"


def write_config(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def settings_for(scripts: Path, text: str, script: str) -> dict[str, Any]:
    write_config(scripts, text)
    return get_script_config(script, scripts, load_config(scripts))


def config_error(scripts: Path, text: str) -> str:
    """Load ``text`` as config.yaml; return the ConfigError message after common checks."""
    path = write_config(scripts, text)
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize("name", ["config.yaml", "config.yml"])
def test_config_file_is_found_under_either_name(scripts: Path, name: str) -> None:
    path = write_config(scripts, "default: {timeout: 5}\n", name)
    config = load_config(scripts)
    assert config["config_file"] == str(path)
    assert config["default"] == {"timeout": 5.0}
    assert config["project_root"] == str(scripts.parent)


def test_both_config_names_is_an_error(scripts: Path) -> None:
    write_config(scripts, "default: {}\n", "config.yaml")
    write_config(scripts, "default: {}\n", "config.yml")
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    message = str(info.value)
    assert str(scripts) in message
    assert "config.yaml" in message
    assert "config.yml" in message


def test_config_between_scripts_dir_and_project_root_is_used(scripts: Path) -> None:
    nested = scripts / "a" / "b"
    nested.mkdir(parents=True)
    path = write_config(scripts.parent, "default: {timeout: 7}\n")
    config = load_config(nested)
    assert config["config_file"] == str(path)
    assert get_script_config("x.py", nested, config)["timeout"] == 7.0


def test_nearest_config_wins(scripts: Path) -> None:
    write_config(scripts.parent, "default: {timeout: 7}\n")
    path = write_config(scripts, "default: {timeout: 3}\n")
    assert load_config(scripts)["config_file"] == str(path)


def test_config_above_project_root_is_ignored(scripts: Path) -> None:
    write_config(scripts.parent.parent, "default: {timeout: 7}\n")
    config = load_config(scripts)
    assert config["config_file"] is None
    assert config["project_root"] == str(scripts.parent)
    assert get_script_config("x.py", scripts, config)["timeout"] == DEFAULT_SETTINGS["timeout"]


def test_git_directory_also_marks_the_project_root(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "scripts").mkdir()
    write_config(tmp_path, "default: {timeout: 7}\n")
    config = load_config(root / "scripts")
    assert config["config_file"] is None
    assert config["project_root"] == str(root)


def test_no_config_gives_empty_defaults(scripts: Path) -> None:
    config = load_config(scripts)
    assert config == {
        "default": {},
        "skip": [],
        "timeout_override": {},
        "scripts": {},
        "environments": {},
        "secrets": [],
        "cache": None,
        "config_file": None,
        "project_root": str(scripts.parent),
    }
    assert get_script_config("x.py", scripts, config) == DEFAULT_SETTINGS
    assert get_script_config("sub/y.py", scripts, config) == DEFAULT_SETTINGS


def test_empty_config_file_gives_empty_defaults(scripts: Path) -> None:
    write_config(scripts, "# nothing yet\n")
    config = load_config(scripts)
    assert get_script_config("x.py", scripts, config) == DEFAULT_SETTINGS


def test_default_section_overrides_built_ins(scripts: Path) -> None:
    result = settings_for(scripts, "default: {timeout: 9, cwd: /tmp}\n", "x.py")
    assert result == {**DEFAULT_SETTINGS, "timeout": 9.0, "cwd": "/tmp"}


PRECEDENCE = """\
default:
  timeout: 1
  args: [default]
  env: {A: default, B: default, C: default, D: default}
  cwd: default
scripts:
  sub/x.py:
    timeout: 9
    args: [exact]
    env: {D: exact}
  "**/*.py":
    timeout: 2
    args: [glob1]
    env: {B: glob1}
    cwd: glob1
  sub:
    timeout: 3
    env: {C: glob2}
timeout_override:
  "sub/*.py": 5
skip:
  - sub/x.py
"""


def test_scripts_glob_overrides_default(scripts: Path) -> None:
    result = settings_for(scripts, PRECEDENCE, "top.py")
    assert result["timeout"] == 2.0
    assert result["args"] == ["glob1"]
    assert result["env"] == {"A": "default", "B": "glob1", "C": "default", "D": "default"}
    assert result["cwd"] == "glob1"
    assert result["skip"] is False
    assert result["allowed_exit_codes"] == [0]


def test_later_glob_overrides_earlier_and_timeout_override_beats_globs(scripts: Path) -> None:
    write_config(scripts, PRECEDENCE)
    config = load_config(scripts)
    result = get_script_config("sub/y.py", scripts, config)
    assert result["timeout"] == 5.0
    assert result["env"] == {"A": "default", "B": "glob1", "C": "glob2", "D": "default"}
    assert result["skip"] is False

    # Without the override, the later glob (sub: 3) beats the earlier one (**/*.py: 2).
    config["timeout_override"] = {}
    assert get_script_config("sub/y.py", scripts, config)["timeout"] == 3.0


def test_glob_entries_apply_in_file_order(scripts: Path) -> None:
    first = 'scripts:\n  "*.py": {timeout: 1}\n  "x*": {timeout: 2}\n'
    second = 'scripts:\n  "x*": {timeout: 2}\n  "*.py": {timeout: 1}\n'
    assert settings_for(scripts, first, "x.py")["timeout"] == 2.0
    assert settings_for(scripts, second, "x.py")["timeout"] == 1.0


def test_exact_entry_beats_everything(scripts: Path) -> None:
    result = settings_for(scripts, PRECEDENCE, "sub/x.py")
    assert result["timeout"] == 9.0
    assert result["args"] == ["exact"]
    assert result["env"] == {"A": "default", "B": "glob1", "C": "glob2", "D": "exact"}
    assert result["cwd"] == "glob1"
    assert result["skip"] is True
    assert result["skip_reason"]


def test_skip_list_beats_globs_but_not_the_exact_entry(scripts: Path) -> None:
    text = """\
    scripts:
      "**": {skip: false}
      b.py: {skip: false}
    skip: [a.py, b.py]
    """
    write_config(scripts, text)
    config = load_config(scripts)
    assert get_script_config("a.py", scripts, config)["skip"] is True
    assert get_script_config("b.py", scripts, config)["skip"] is False


def test_timeout_override_beats_skip_layer_and_globs(scripts: Path) -> None:
    text = """\
    default: {timeout: 1}
    scripts:
      "*.py": {timeout: 2}
    timeout_override: {x.py: 4}
    """
    assert settings_for(scripts, text, "x.py")["timeout"] == 4.0
    assert settings_for(scripts, text, "y.py")["timeout"] == 2.0


def test_args_list_replaces_and_env_merges(scripts: Path) -> None:
    text = """\
    default:
      args: [--a, --b]
      env: {KEEP: "1", OVER: old}
    scripts:
      x.py:
        args: [--c]
        env: {OVER: new, ADD: "2"}
    """
    result = settings_for(scripts, text, "x.py")
    assert result["args"] == ["--c"]
    assert result["env"] == {"KEEP": "1", "OVER": "new", "ADD": "2"}


def test_scalars_in_args_and_env_become_strings(scripts: Path) -> None:
    text = "default:\n  args: [--n, 3, 1.5]\n  env: {N: 4}\n  allowed_exit_codes: [0, 3]\n"
    result = settings_for(scripts, text, "x.py")
    assert result["args"] == ["--n", "3", "1.5"]
    assert result["env"] == {"N": "4"}
    assert result["allowed_exit_codes"] == [0, 3]


@pytest.mark.parametrize(
    ("key", "path", "matches"),
    [
        ("x.py", "x.py", True),
        ("x.py", "ax.py", False),
        ("x.py", "sub/x.py", False),
        ("./x.py", "x.py", True),
        ("**/x.py", "x.py", True),
        ("**/x.py", "sub/x.py", True),
        ("**/x.py", "a/b/x.py", True),
        ("**/x.py", "ax.py", False),
        ("**/x.py", "sub/ax.py", False),
        ("*.py", "x.py", True),
        ("*.py", "sub/x.py", False),
        ("sub/*.py", "sub/x.py", True),
        ("sub/*.py", "sub/deeper/x.py", False),
        ("data", "data/a.py", True),
        ("data", "data/deep/a.py", True),
        ("data/", "data/a.py", True),
        ("data", "database/a.py", False),
        ("data", "other/data/a.py", False),
        ("?.py", "x.py", True),
        ("?.py", "xy.py", False),
        ("[xy].py", "y.py", True),
        ("[!xy].py", "y.py", False),
    ],
)
def test_key_matching_respects_path_boundaries(
    scripts: Path, key: str, path: str, matches: bool
) -> None:
    # A non-exact glob goes through the glob layer; an exact key through the exact layer.
    result = settings_for(scripts, f'scripts:\n  "{key}": {{timeout: 5}}\n', path)
    assert (result["timeout"] == 5.0) is matches


def test_absolute_script_path_is_made_relative(scripts: Path) -> None:
    text = 'scripts:\n  sub/x.py: {timeout: 5}\n  "**/y.py": {timeout: 6}\n'
    write_config(scripts, text)
    config = load_config(scripts)
    assert get_script_config(scripts / "sub" / "x.py", scripts, config)["timeout"] == 5.0
    assert get_script_config(str(scripts / "a" / "y.py"), scripts, config)["timeout"] == 6.0


def test_skip_list_sets_skip_with_reason(scripts: Path) -> None:
    write_config(scripts, "skip:\n  - old.py\n  - legacy\n")
    config = load_config(scripts)
    for script in ("old.py", "legacy/a.py", "legacy/b/c.py"):
        result = get_script_config(script, scripts, config)
        assert result["skip"] is True, script
        assert isinstance(result["skip_reason"], str)
        assert result["skip_reason"].strip(), script
    kept = get_script_config("new.py", scripts, config)
    assert kept["skip"] is False
    assert kept["skip_reason"] == ""


def test_skip_list_keeps_an_explicit_reason(scripts: Path) -> None:
    text = "default: {skip_reason: flaky on CI}\nskip: [x.py]\n"
    result = settings_for(scripts, text, "x.py")
    assert result["skip"] is True
    assert result["skip_reason"] == "flaky on CI"


def test_result_is_a_fresh_dict(scripts: Path) -> None:
    write_config(scripts, "default:\n  args: [--a]\n  env: {A: '1'}\n")
    config = load_config(scripts)
    snapshot = copy.deepcopy(config)
    first = get_script_config("x.py", scripts, config)
    expected = copy.deepcopy(first)
    first["env"]["B"] = "2"
    first["args"].append("--b")
    first["allowed_exit_codes"].append(9)
    first["timeout"] = 1.0
    assert get_script_config("x.py", scripts, config) == expected
    assert config == snapshot
    assert DEFAULT_SETTINGS["env"] == {}
    assert DEFAULT_SETTINGS["args"] == []
    assert DEFAULT_SETTINGS["allowed_exit_codes"] == [0]


def test_result_without_config_does_not_alias_defaults(scripts: Path) -> None:
    config = load_config(scripts)
    result = get_script_config("x.py", scripts, config)
    result["env"]["X"] = "1"
    result["args"].append("--x")
    assert get_script_config("x.py", scripts, config) == DEFAULT_SETTINGS
    assert DEFAULT_SETTINGS["env"] == {}


def test_malformed_yaml_names_line_and_column(scripts: Path) -> None:
    message = config_error(scripts, "default:\n  timeout: 3\n bad\n")
    assert ":3:" in message
    assert "invalid YAML" in message


def test_unclosed_flow_sequence_names_a_line(scripts: Path) -> None:
    message = config_error(scripts, "default:\n  timeout: 3\n  args: [a, b\n")
    assert ":4:" in message


def test_top_level_list_is_an_error(scripts: Path) -> None:
    message = config_error(scripts, "- default\n- skip\n")
    assert "mapping" in message


def test_top_level_scalar_is_an_error(scripts: Path) -> None:
    assert "mapping" in config_error(scripts, "just text\n")


def test_unknown_top_level_key_suggests_a_fix(scripts: Path) -> None:
    message = config_error(scripts, "defualt:\n  timeout: 3\n")
    assert "defualt" in message
    assert "did you mean 'default'" in message


def test_unknown_settings_key_names_key_path(scripts: Path) -> None:
    message = config_error(scripts, 'scripts:\n  "a/b.py": {timout: 3}\n')
    assert 'scripts."a/b.py".timout' in message
    assert "did you mean 'timeout'" in message


def test_unknown_default_key_names_key_path(scripts: Path) -> None:
    message = config_error(scripts, "default:\n  enviroment: {A: b}\n")
    assert "default.enviroment" in message


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ('default:\n  timeout: "abc"\n', "default.timeout"),
        ("default:\n  timeout: true\n", "default.timeout"),
        ("default:\n  timeout: 0\n", "default.timeout"),
        ("default:\n  timeout: -5\n", "default.timeout"),
        ("default:\n  timeout: -0.5\n", "default.timeout"),
        ("default:\n  timeout: .inf\n", "default.timeout"),
        ("default:\n  env: {A: [1, 2]}\n", "default.env"),
        ("default:\n  env: [A, B]\n", "default.env"),
        ("default:\n  allowed_exit_codes: 0\n", "default.allowed_exit_codes"),
        ("default:\n  allowed_exit_codes: [0, true]\n", "default.allowed_exit_codes"),
        ('default:\n  args: "--x"\n', "default.args"),
        ("default:\n  skip: 'yes'\n", "default.skip"),
        ('scripts:\n  x.py: {timeout: "1m"}\n', 'scripts."x.py".timeout'),
        ("timeout_override:\n  x.py: 0\n", 'timeout_override."x.py"'),
        ('timeout_override:\n  x.py: "10"\n', 'timeout_override."x.py"'),
        ("skip: x.py\n", "skip"),
        ("default: [timeout]\n", "default"),
        ("scripts: [x.py]\n", "scripts"),
    ],
)
def test_wrong_types_are_errors(scripts: Path, text: str, key_path: str) -> None:
    message = config_error(scripts, text)
    assert f"{key_path}:" in message
    assert "expected" in message


def test_python_tags_are_refused_and_never_run(scripts: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = f'!!python/object/apply:os.system ["touch {marker}"]\n'
    message = config_error(scripts, text)
    assert "invalid YAML" in message
    assert not marker.exists()

    nested = f'default:\n  timeout: !!python/object/apply:os.system ["touch {marker}"]\n'
    assert ":2:" in config_error(scripts, nested)
    assert not marker.exists()


def test_python_tag_relative_command_never_runs(
    scripts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_error(scripts, '!!python/object/apply:os.system ["touch PWNED"]\n')
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "text",
    [
        "default: {}\ndefault: {}\n",
        "default:\n  timeout: 1\n  timeout: 2\n",
        "scripts:\n  x.py: {}\n  x.py: {timeout: 3}\n",
    ],
)
def test_duplicate_keys_are_errors(scripts: Path, text: str) -> None:
    message = config_error(scripts, text)
    assert "duplicate key" in message


def test_non_utf8_config_is_an_error(scripts: Path) -> None:
    path = scripts / "config.yaml"
    path.write_bytes(b"default:\n  cwd: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# Known bugs in orchestrator/config.py: each input escapes as a non-ConfigError today.
# strict=True makes these fail once fixed, so the marker gets removed.


def test_huge_integer_timeout_is_a_config_error(scripts: Path) -> None:
    config_error(scripts, "default:\n  timeout: " + "9" * 400 + "\n")


def test_unhashable_mapping_key_is_a_config_error(scripts: Path) -> None:
    config_error(scripts, "scripts:\n  ? [a, b]\n  : {timeout: 3}\n")


@pytest.mark.parametrize("key", ["[", "[!", "a[b.py", "[!]x.py"])
def test_an_unclosed_bracket_in_a_glob_key_is_a_config_error_naming_it(
    scripts: Path, key: str
) -> None:
    write_config(scripts, f'scripts:\n  "{key}": {{timeout: 3}}\n')
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    assert f'scripts."{key}"' in str(info.value) and "unclosed '['" in str(info.value)


def test_symlinked_script_uses_its_own_key(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (scripts / "real.py").write_text("")
    (scripts / "link.py").symlink_to(scripts / "real.py")
    (scripts / "config.yaml").write_text("scripts:\n  link.py: {timeout: 5}\n")
    config = load_config(scripts)
    assert get_script_config(scripts / "link.py", scripts, config)["timeout"] == 5
    assert get_script_config(scripts / "real.py", scripts, config)["timeout"] == 60


@pytest.mark.parametrize("text", ["scripts: false\n", "timeout_override: []\n", "skip: 0\n"])
def test_falsy_values_of_the_wrong_type_are_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_cwd_null_resets_to_the_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "config.yaml").write_text("default: {cwd: data}\nscripts:\n  x.py: {cwd: null}\n")
    config = load_config(tmp_path)
    assert get_script_config("x.py", tmp_path, config)["cwd"] is None
    assert get_script_config("y.py", tmp_path, config)["cwd"] == "data"


def test_yaml_merge_key_may_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "config.yaml").write_text(
        "scripts:\n  a.py: &base {timeout: 5, args: [x]}\n  b.py: {<<: *base, timeout: 2}\n"
    )
    config = load_config(tmp_path)
    assert get_script_config("b.py", tmp_path, config)["timeout"] == 2
    assert get_script_config("b.py", tmp_path, config)["args"] == ["x"]


def test_two_spellings_of_one_exact_key_both_apply(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "config.yaml").write_text("scripts:\n  x.py: {timeout: 5}\n  ./x.py: {args: [a]}\n")
    settings = get_script_config("x.py", tmp_path, load_config(tmp_path))
    assert (settings["timeout"], settings["args"]) == (5, ["a"])


def test_each_key_is_declared_once_with_a_default_that_passes_its_own_validator() -> None:
    from orchestrator.config import SETTINGS

    assert set(DEFAULT_SETTINGS) == set(SETTINGS) | {"environment"}
    for key, setting in SETTINGS.items():
        assert setting.check(copy.deepcopy(setting.default)) == setting.default, key


def test_a_plans_settings_are_read_only_and_get_script_config_stays_a_fresh_dict(
    scripts: Path,
) -> None:
    from orchestrator.plan import RunOptions, build_plan

    (scripts / "a.py").write_text("")
    (scripts / "config.yaml").write_text("scripts:\n  a.py: {args: [x]}\n")
    job = build_plan(RunOptions(scripts_dir=scripts)).jobs[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.settings.timeout = 1  # type: ignore[misc]
    mine = get_script_config("a.py", scripts, load_config(scripts))
    mine["args"].append("y")
    assert mine["args"] == ["x", "y"] and job.settings.args == ("x",)


def test_without_a_root_marker_load_config_reports_no_root(unmarked: Path) -> None:
    scripts = unmarked / "loose" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "config.yaml").write_text("default: {timeout: 5}\n")
    config = load_config(scripts)
    assert config["project_root"] is None
    assert config["config_file"] == str((scripts / "config.yaml").resolve())


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("timeout", "99999999999999999999999999999999", "at most 604800"),
        ("timeout", "604801", "at most 604800"),
        ("retries", "101", "from 0 to 100"),
        ("retry_delay", "86401", "at most 86400"),
    ],
)
def test_numbers_beyond_their_bound_are_config_errors(
    scripts: Path, key: str, value: str, bound: str
) -> None:
    write_config(scripts, f"default:\n  {key}: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    assert key in str(info.value) and bound in str(info.value)


def test_numbers_at_their_bound_are_accepted(scripts: Path) -> None:
    write_config(scripts, "default: {timeout: 604800, retries: 100, retry_delay: 86400}\n")
    settings = get_script_config("x.py", scripts, load_config(scripts))
    assert (settings["timeout"], settings["retries"]) == (604800, 100)


def test_a_config_over_5_mb_is_refused_with_one_line(scripts: Path) -> None:
    path = write_config(scripts, "scripts:\n" + "  # padding\n" * 500_000)
    assert path.stat().st_size > 5 * 1024 * 1024
    with pytest.raises(ConfigError) as info:
        load_config(scripts)
    assert str(path) in str(info.value) and "over 5 MB" in str(info.value)


def test_a_script_typed_from_the_current_folder_gets_its_entry(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.script("sub/b.py", "")
    project.config("scripts:\n  sub/b.py: {timeout: 7}\n")
    monkeypatch.chdir(project.root)
    config = load_config("scripts")
    assert get_script_config("scripts/sub/b.py", "scripts", config)["timeout"] == 7
    assert get_script_config("sub/b.py", "scripts", config)["timeout"] == 7


def test_equal_settings_share_their_record_hashes(scripts: Path) -> None:
    """Settings are a value: equal ones (``env`` in any order) hash alike, so the run
    works out their hashes once; a different value gives other hashes."""
    from orchestrator.changes import setting_hashes
    from orchestrator.config import Settings

    one = Settings(env={"A": "1", "B": "2"}, args=("x",))
    same = Settings(env={"B": "2", "A": "1"}, args=("x",))
    other = Settings(env={"A": "1", "B": "3"}, args=("x",))
    assert one == same and hash(one) == hash(same)
    assert setting_hashes(one) is setting_hashes(same)
    assert setting_hashes(one)["env.B"] != setting_hashes(other)["env.B"]
    assert setting_hashes(one).keys() == {*DEFAULT_SETTINGS.keys() - {"env"}, "env.A", "env.B"}
