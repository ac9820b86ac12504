"""The one reader of the YAML files users give (protocols, grids): ``yaml.safe_load``'s values, read strictly.

safe_load builds no objects, but it accepts what makes a small file huge or ambiguous: aliases that expand
exponentially (a 1.4 KB "billion laughs" protocol ran for a minute and ended in MemoryError) or into themselves
(RecursionError), a key given twice (the last one silently won) and bytes that are not UTF-8. Each is refused
here with one line naming the file. Aliases of modest size stay allowed: grids name method lists with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ProtocolError, not_utf8, one_line_text

#: the most values (scalars, lists, mappings) a document may stand for once its aliases are expanded
MAX_VALUES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedYaml(yaml.YAMLError):
    """Valid YAML that a user file may not contain."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(f"{problem} (line {mark.line + 1}, column {mark.column + 1})")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing self-referencing aliases, documents that aliases expand past MAX_VALUES values, and
    keys repeated within one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: set[str] = set()  # anchored values still being read: an alias to one refers to itself
        self._values: dict[int, int] = {}  # id(node) -> the values it stands for, aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise RefusedYaml(f"the alias *{event.anchor} is inside the value it names", event.start_mark)
            return super().compose_node(parent, index)  # the anchored node itself, already counted
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        node = super().compose_node(parent, index)
        self._open_anchors.discard(event.anchor)
        self._count(node)
        return node

    def _count(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):
            children = []
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [part for pair in node.value for part in pair]
        values = 1 + sum(self._values[id(child)] for child in children)
        if values > MAX_VALUES:
            raise RefusedYaml(f"aliases expand it to more than {MAX_VALUES} values", node.start_mark)
        self._values[id(node)] = values

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self._refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_repeated_keys(self, node: yaml.MappingNode) -> None:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *base`: explicit keys override merged ones, as intended
                continue
            key = self.construct_object(key_node)
            try:
                if key in seen:
                    raise RefusedYaml(f"key {key!r} appears twice in one mapping", key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: safe_load refuses it itself
                continue


def load_yaml(data: bytes, source: str, what: str) -> Any:
    """The values of the YAML document ``data`` (the ``what`` file ``source``), as ``yaml.safe_load`` reads them;
    ProtocolError, one line naming the file, for what :class:`StrictLoader` refuses, invalid YAML and bytes that
    are not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} {source} is {not_utf8(exc)}") from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except RefusedYaml as exc:
        raise ProtocolError(f"{what} {source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{what} {source} is not valid YAML: {one_line_text(str(exc))}") from None
    except RecursionError:
        raise ProtocolError(f"{what} {source}: values nested too deeply") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """:func:`load_yaml` of the file ``path``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProtocolError(f"cannot read {what} file {path} ({exc.strerror or exc})") from None
    return load_yaml(data, str(path), what)
