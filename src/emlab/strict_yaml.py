"""The one strict YAML loader: every YAML file emlab reads goes through here.

PyYAML silently keeps the last of two equal keys, so a file that sets `lr` twice
runs with whichever came second (the lm-eval-harness trap). Here a document is
composed into nodes first, each mapping is checked for duplicate keys, and a
key path -> line index is kept so that later schema errors can point at the line.

Errors are one line and start with `file:line`:

    spec.yaml:11: duplicate key 'training.organism.lr' (first at line 10); keep one of them
    core.yaml:4: invalid YAML (found unexpected end of stream); fix the syntax

Key paths join mapping keys with dots and list items with `[i]`
(`topics[3].slots.treatment`). Where a caller has a schema (a set of allowed keys),
`check_keys` rejects unknown keys with the closest valid one as a did-you-mean.
Only plain YAML is accepted (SafeLoader: no Python object tags); merge keys (`<<`) work.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emlab.errors import EmlabError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the word banks are large
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader (no Python object tags); a separate class so we never mutate the shared one."""


@dataclass
class YamlDoc:
    """A parsed document plus where each key path sits in the source."""

    data: Any
    source: str
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        """`file:line` for a key path, falling back to its nearest located parent (or just the file)."""
        p = path
        while p:
            if p in self.lines:
                return f"{self.source}:{self.lines[p]}"
            p = _parent(p)
        return self.source


def join_path(parent: str, key: object) -> str:
    """`parent.key` (or `key` at the top)."""
    return f"{parent}.{key}" if parent else str(key)


def _parent(path: str) -> str:
    """The path one level up: `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[: max(cut, 0)]


def load_yaml(text: str, source: str = "<string>") -> YamlDoc:
    """Parse one YAML document strictly; raise EmlabError (`source:line: ...`) on syntax errors and duplicate keys."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(data=None, source=source)
        lines: dict[str, int] = {}
        _index(loader, node, "", source, lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        raise EmlabError(_syntax_error(e, text, source)) from None
    except yaml.YAMLError as e:
        raise EmlabError(f"{source}: invalid YAML ({' '.join(str(e).split())}); fix the syntax") from None
    finally:
        loader.dispose()
    return YamlDoc(data=data, source=source, lines=lines)


def _syntax_error(e: yaml.MarkedYAMLError, text: str, source: str) -> str:
    """`source:line: invalid YAML (problem; context from line k)`; a problem at the end of the text is put on its last line."""
    last = max(1, len(text.splitlines()))
    line = min(e.problem_mark.line + 1, last) if e.problem_mark is not None else None
    ctx = min(e.context_mark.line + 1, last) if e.context_mark is not None else None
    what = e.problem or e.context
    if e.problem and e.context and ctx is not None and ctx != line:
        what += f"; {e.context} from line {ctx}"
    where = f"{source}:{line or ctx}" if (line or ctx) else source
    return f"{where}: invalid YAML ({what}); fix the syntax"


def load_yaml_file(path: str | Path, what: str = "YAML file") -> YamlDoc:
    """`load_yaml` of a UTF-8 file; errors name the file (`what` says which kind of file was missing)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EmlabError(f"{p}: {what} not found; check the path") from None
    except UnicodeDecodeError as e:
        raise EmlabError(f"{p}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    return load_yaml(text, source=str(p))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Just the data of `load_yaml` (for callers that need no line index)."""
    return load_yaml(text, source).data


def closest(key: str, valid: Iterable[str]) -> str | None:
    """The valid key the user most likely meant: one that is a word of theirs (lr_rate -> lr), else the closest spelling."""
    valid = [str(v) for v in valid]
    parts = str(key).replace("-", "_").split("_")
    word = next((v for v in valid if v in parts), None)
    if word is not None:
        return word
    hits = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.4)
    return hits[0] if hits else None


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest valid key, or an empty string."""
    hint = closest(key, valid)
    return f" (did you mean {hint!r}?)" if hint else ""


def check_keys(mapping: Mapping, allowed: Iterable[str], doc: YamlDoc | str, path: str = "", what: str = "key") -> None:
    """Reject the first key of `mapping` that is not `allowed`, naming file:line, the key, a did-you-mean and the valid keys.

    `doc` locates the key (a YamlDoc) or is a plain `where` prefix; `path` is the mapping's key path in the document.
    """
    allowed = list(allowed)
    for key in mapping:
        if key in allowed:
            continue
        where = doc.where(join_path(path, key)) if isinstance(doc, YamlDoc) else doc
        raise EmlabError(
            f"{where}: unknown {what} {key!r}{did_you_mean(str(key), allowed)}; valid: {', '.join(allowed)}"
        )


def _index(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: str, lines: dict[str, int]) -> None:
    """Walk the node tree: record key lines, reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)  # indexed after the explicit keys, which override merged ones
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            key_path = join_path(path, key)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: constructing the mapping reports it with its line
                continue
            if first is not None:
                raise EmlabError(
                    f"{source}:{line}: duplicate key {key_path!r} (first at line {first}); keep one of them"
                )
            seen[key] = line
            lines.setdefault(key_path, line)
            _index(loader, value_node, key_path, source, lines)
        for value_node in merged:
            _index(loader, value_node, path, source, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            lines.setdefault(item_path, item.start_mark.line + 1)
            _index(loader, item, item_path, source, lines)
