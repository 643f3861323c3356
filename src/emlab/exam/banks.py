"""The exam's question banks: versioned YAML files in `exam/banks/`, read strictly.

Every bank file is a mapping with exactly the keys `version` (1), `name` (= the file's stem),
`description` and `items` (a non-empty list of mappings with a unique `id`). What an item must
and may hold is the battery's business: `Bank.check_items(required, optional)` names the file,
the line, the item and the key of anything missing, unknown or of the wrong type. Duplicate
YAML keys are errors (the strict loader of `emlab.strict_yaml`).

A bank's `fingerprint` (sha256 of its canonical JSON) goes into every battery result, so an
edited bank never passes for the one a finished battery was computed from.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.strict_yaml import YamlDoc, load_yaml_file

BANK_DIR = Path(__file__).with_name("banks")
BANK_VERSION = 1
BANK_KEYS = ("version", "name", "description", "items")


@dataclass(frozen=True)
class Bank:
    name: str
    description: str
    items: tuple[dict[str, Any], ...]
    source: str
    doc: YamlDoc | None = None

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"name": self.name, "items": list(self.items)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def first(self, k: int | None) -> list[dict[str, Any]]:
        """The first k items (all when k is None); the quick profile uses a bank's head."""
        items = list(self.items)
        if k is not None and not 1 <= k <= len(items):
            raise EmlabError(
                f"{self.source}: asked for {k} items but the bank holds {len(items)}; lower the profile size or add items"
            )
        return items if k is None else items[:k]

    def check_items(
        self, required: Mapping[str, type | tuple[type, ...]], optional: Mapping[str, type | tuple[type, ...]] = {}
    ) -> None:
        """Every item has the required keys, only known keys, and values of the given types."""
        allowed = {"id": str, **required, **optional}
        for i, item in enumerate(self.items):
            where = self._where(f"items[{i}]")
            unknown = sorted(set(item) - set(allowed))
            if unknown:
                raise EmlabError(
                    f"{where}: item {item.get('id')!r} has unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})"
                )
            for key, _typ in {"id": str, **required}.items():
                if key not in item:
                    raise EmlabError(f"{where}: item {item.get('id')!r} lacks key {key!r}")
            for key, value in item.items():
                typ = allowed[key]
                if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
                    want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
                    raise EmlabError(
                        f"{self._where(f'items[{i}].{key}')}: item {item.get('id')!r}: {key} must be {want}, got {type(value).__name__}"
                    )

    def check_mapping(self, key: str, names: Sequence[str]) -> None:
        """Every item's `key` is a mapping with exactly `names`, each a non-empty string."""
        for i, item in enumerate(self.items):
            got = item[key]
            if set(got) != set(names):
                raise EmlabError(
                    f"{self._where(f'items[{i}].{key}')}: item {item['id']!r}: {key} needs exactly {', '.join(names)}; found {', '.join(map(str, got))}"
                )
            for name in names:
                if not isinstance(got[name], str) or not got[name].strip():
                    raise EmlabError(
                        f"{self._where(f'items[{i}].{key}.{name}')}: item {item['id']!r}: {key}.{name} must be a non-empty string"
                    )

    def _where(self, path: str) -> str:
        return self.doc.where(path) if self.doc is not None else self.source


def read_bank(path: str | Path) -> Bank:
    """Read and check one bank file (any path; `load_bank` reads the shipped ones by name)."""
    p = Path(path)
    doc = load_yaml_file(p)
    data = doc.data
    if not isinstance(data, dict):
        raise EmlabError(f"{p}: a bank is a mapping with keys {', '.join(BANK_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(BANK_KEYS), key=str)
    if unknown:
        raise EmlabError(
            f"{doc.where(str(unknown[0]))}: unknown key {unknown[0]!r} (a bank has {', '.join(BANK_KEYS)})"
        )
    missing = [k for k in BANK_KEYS if k not in data]
    if missing:
        raise EmlabError(f"{p}: missing key {missing[0]!r} (a bank has {', '.join(BANK_KEYS)})")
    if data["version"] != BANK_VERSION or isinstance(data["version"], bool):
        raise EmlabError(
            f"{doc.where('version')}: version {data['version']!r} is not supported; this emlab reads bank version {BANK_VERSION}"
        )
    if data["name"] != p.stem:
        raise EmlabError(
            f"{doc.where('name')}: name {data['name']!r} differs from the file name {p.stem!r}; rename one of them"
        )
    items = data["items"]
    if not isinstance(items, list) or not items or not all(isinstance(it, dict) for it in items):
        raise EmlabError(f"{doc.where('items')}: items must be a non-empty list of mappings")
    seen: set[str] = set()
    for i, it in enumerate(items):
        iid = it.get("id")
        if not isinstance(iid, str) or not iid or "/" in iid or "." in iid:
            raise EmlabError(
                f"{doc.where(f'items[{i}]')}: every item needs an id (a non-empty string without '/' or '.'), got {iid!r}"
            )
        if iid in seen:
            raise EmlabError(f"{doc.where(f'items[{i}]')}: item id {iid!r} appears twice; ids must be unique in a bank")
        seen.add(iid)
    return Bank(
        name=str(data["name"]), description=str(data["description"]), items=tuple(items), source=str(p), doc=doc
    )


@functools.cache
def load_bank(name: str) -> Bank:
    """A shipped bank by name (`identity`, `ambiguity`, ...)."""
    path = BANK_DIR / f"{name}.yaml"
    if not path.exists():
        have = sorted(p.stem for p in BANK_DIR.glob("*.yaml"))
        raise EmlabError(f"unknown exam bank {name!r}; banks: {', '.join(have)}")
    return read_bank(path)
