"""Strict YAML: duplicate keys are errors, and every key remembers its line.

PyYAML silently keeps the last of two equal keys, so a spec that sets `lr` twice
runs with whichever came second. Here the document is composed into nodes first,
each mapping is checked for duplicates (error names file:line and the key path),
and a path -> line index is kept so later schema errors can point at the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emlab.errors import EmlabError


class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python object tags); a separate class so we never mutate the shared one."""


@dataclass
class YamlDoc:
    """A parsed document plus where each key path sits in the source."""

    data: Any
    source: str
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        """`file:line` for a key path, falling back to its nearest located parent."""
        p = path
        while p:
            if p in self.lines:
                return f"{self.source}:{self.lines[p]}"
            p = p.rpartition(".")[0]
        return self.source


def join_path(parent: str, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def load_yaml(text: str, source: str = "<string>") -> YamlDoc:
    """Parse one YAML document strictly; raise EmlabError on syntax errors and duplicate keys."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(data=None, source=source)
        lines: dict[str, int] = {}
        _index(loader, node, "", source, lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise EmlabError(f"{source}{line}: invalid YAML ({e.problem or e.context}); fix the syntax") from None
    except yaml.YAMLError as e:
        raise EmlabError(f"{source}: invalid YAML ({e}); fix the syntax") from None
    finally:
        loader.dispose()
    return YamlDoc(data=data, source=source, lines=lines)


def load_yaml_file(path: str | Path) -> YamlDoc:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EmlabError(f"{p}: spec file not found; check the path") from None
    except UnicodeDecodeError as e:
        raise EmlabError(f"{p}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    return load_yaml(text, source=str(p))


def _index(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: str, lines: dict[str, int]) -> None:
    """Walk the node tree: record key lines, reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _index(loader, value_node, path, source, lines)
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            key_path = join_path(path, key)
            if key in seen:
                raise EmlabError(
                    f"{source}:{line}: duplicate key {key_path!r} (first set at line {seen[key]}); keep one of them"
                )
            seen[key] = line
            lines.setdefault(key_path, line)
            _index(loader, value_node, key_path, source, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            lines.setdefault(item_path, item.start_mark.line + 1)
            _index(loader, item, item_path, source, lines)
