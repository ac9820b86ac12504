"""The one YAML reader for user files: safe_load's values, with aliases bounded, keys unique and text UTF-8."""

from pathlib import Path

import pytest
import yaml

from dcrobench.errors import ProtocolError
from dcrobench.userfiles import load_yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*(ROOT / "benchmarks" / "protocols").glob("*.yaml"), *(ROOT / "benchmarks" / "grids").glob("*.yaml"),
                  *(ROOT / "tests" / "data").glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_read_as_safe_load_reads_them(path):
    assert load_yaml(path.read_bytes(), str(path), "file") == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_aliases_of_plain_values_and_merge_keys_keep_their_meaning():
    text = "a: &first [random, dm]\nb: *first\nbase: &base {x: 1, y: 2}\nuse: {<<: *base, y: 3}\n"
    assert load_yaml(text.encode(), "f.yaml", "grid") == yaml.safe_load(text)


@pytest.mark.parametrize("text, message", [
    ("x: &x\n  - *x\n", "the alias *x is inside the value it names"),
    ("a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
                                                     for p, n in zip("abcd", "bcde")), "aliases expand it to more than"),
    ("a: 1\nb: 2\na: 3\n", "key 'a' appears twice"),
    ("{1: a, 1.0: b}\n", "key 1.0 appears twice"),
    ("[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
])
def test_what_safe_load_lets_through_is_refused_naming_the_file(text, message):
    with pytest.raises(ProtocolError) as err:
        load_yaml(text.encode(), "f.yaml", "grid")
    assert str(err.value).startswith("grid f.yaml") and message in str(err.value) and "\n" not in str(err.value)


def test_bytes_that_are_not_utf8_are_refused_with_where():
    with pytest.raises(ProtocolError, match=r"protocol p.yaml is not UTF-8 text \(byte 7 is b'\\xe9'\)"):
        load_yaml(b"name: x\xe9\n", "p.yaml", "protocol")
