"""README is the contract for operators: its settings table and commands must match the code."""

from pathlib import Path

from server.config import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CI = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
TEST_COMMAND = "python3 -m pip install -q -e '.[test]' && python3 -m pytest"


def test_every_setting_is_in_the_readme_table() -> None:
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `{setting.flag}` |" in README, setting.env


def test_ci_runs_exactly_the_readme_test_command() -> None:
    assert TEST_COMMAND in README
    assert CI.strip().splitlines()[-1] == TEST_COMMAND


def test_the_policy_table_in_the_readme_is_the_one_in_the_code() -> None:
    from rooms.policy import policy_table_markdown

    assert policy_table_markdown() in README
