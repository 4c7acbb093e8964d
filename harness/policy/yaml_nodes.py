"""YAML text -> plain Python data, plus where each key path sits in the file.

We compose the node graph ourselves instead of calling `yaml.safe_load` because the
constructor forgets positions and silently lets a duplicate key win. Two YAML 1.1 habits
are dropped, as YAML 1.2 does: `on`/`off`/`yes`/`no` are strings (else `state: off` would
be `False`), and unquoted dates stay strings (else `approval_ref: 2024-01-01` is a date).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Scalars that become plain JSON-like values; other tags (!!binary, !!python/...) are refused.
_SCALAR_TAGS = {_STR, _BOOL, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:null"}

# Aliases can expand a small file exponentially ("billion laughs"); no real scenario
# comes near this many nodes.
MAX_NODES = 200_000
# The largest scenario shipped is a few KB; 1 MiB parses in about a second.
MAX_FILE_BYTES = 1024 * 1024


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false) and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class NodePos:
    key: Mark | None  # where the key (or the `- ` of a list item) is; None for the root
    value: Mark


@dataclass(frozen=True)
class Finding:
    """A problem located by key path; the loader turns it into an InputProblem."""

    path: KeyPath
    message: str
    hint: str | None = None
    at: Literal["value", "key", "parent"] = "value"  # "key": the key itself; "parent": the mapping holding it
    mark: Mark | None = None  # an exact position, when the path alone cannot tell (duplicates)


@dataclass
class ParsedYaml:
    data: Any
    positions: dict[KeyPath, NodePos] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


class SourceError(Exception):
    """The file cannot be read as YAML data at all; nothing else can be checked."""

    def __init__(self, message: str, mark: Mark | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.hint = hint


def render_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def locate(finding: Finding, positions: dict[KeyPath, NodePos]) -> Mark | None:
    """Where in the file a finding points, or None when there is no file (a ledger's dict)."""
    if finding.mark is not None:
        return finding.mark
    if not positions:
        return None
    path = finding.path
    if finding.at == "parent":
        path = path[:-1]
    elif path in positions:
        pos = positions[path]
        return pos.key if finding.at == "key" and pos.key else pos.value
    # Not in the file (a missing key, a default): point at the closest mapping that is.
    while path and path not in positions:
        path = path[:-1]
    pos = positions.get(path)
    if pos is None:
        return None
    return pos.key or pos.value


def _mark(yaml_mark: Any) -> Mark | None:
    if yaml_mark is None:
        return None
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


def _node_mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def read_source(path: Path) -> tuple[bytes, str]:
    """The file's bytes and its text; raises SourceError if it is not readable UTF-8 text.

    Only a regular file is opened, and at most MAX_FILE_BYTES of it is read: a character device or a
    FIFO never ends (or never starts), and a huge file would cost minutes before any useful error.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"not a regular file ({_file_kind(info.st_mode)})", None,
                              "pass the path of a .yaml scenario file")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_big(info.st_size)
        with path.open("rb") as stream:
            # The size can grow between stat and read: never read more than one byte past the limit.
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SourceError("no such file", None, "check the path; it is relative to the current directory") from None
    except IsADirectoryError:
        raise SourceError("is a directory, not a scenario file", None, "pass the path of a .yaml file") from None
    except PermissionError:
        raise SourceError("permission denied: cannot read the file", None) from None
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror or exc}", None) from None
    if len(raw) > MAX_FILE_BYTES:
        raise _too_big(None)
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SourceError("this is a binary file, not YAML text", Mark(line, 1), "pass a UTF-8 YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise SourceError(
            f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", Mark(line, column), "save the file as UTF-8"
        ) from None
    # A byte-order mark is legal UTF-8 but not part of the YAML.
    return raw, text.removeprefix("\ufeff")


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a named pipe",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def _too_big(size: int | None) -> SourceError:
    shown = f"{size:,} bytes" if size is not None else "more than that"
    return SourceError(f"the file is too big for a scenario: {shown}, the limit is {MAX_FILE_BYTES:,} bytes (1 MiB)",
                       None, "a scenario is a few KB of YAML; check that this is the file you meant")


def parse(text: str) -> ParsedYaml:
    """Parse one YAML document; raises SourceError when no data can be built."""
    try:
        # The reader checks every character up front, so even constructing can fail.
        loader = _Loader(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = _mark(exc.problem_mark or exc.context_mark)
        problem = exc.problem or exc.context or "not valid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        if exc.context and "duplicate anchor" in exc.context and exc.context_mark is not None:
            # PyYAML splits this one oddly: context "found duplicate anchor 'x'; first occurrence".
            first = exc.context_mark.line + 1
            problem, context = exc.context.split(";")[0] + f" (first defined on line {first})", ""
        hint = _syntax_hint(text, problem, mark)
        raise SourceError(f"YAML syntax error: {problem}{context}", mark, hint) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise SourceError(
            f"unreadable character #x{exc.character:04x} in YAML: {exc.reason}",
            Mark(line, exc.position - text.rfind("\n", 0, exc.position)),
            "the file must be UTF-8 text without control characters",
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"YAML error: {exc}", None) from None
    except RecursionError:
        raise SourceError("the YAML is nested too deeply to read", None) from None
    try:
        if root is None:
            raise SourceError("the file is empty", Mark(1, 1), "a scenario starts with `version: 1` and `name: ...`")
        builder = _Builder(loader)
        try:
            data = builder.build(root, (), set())
        except RecursionError:
            raise SourceError("the YAML is nested too deeply to read", _node_mark(root)) from None
        builder.positions[()] = NodePos(None, _node_mark(root))
        return ParsedYaml(data, builder.positions, builder.findings)
    finally:
        loader.dispose()


def _syntax_hint(text: str, problem: str, mark: Mark | None) -> str:
    if "\\t" in problem or "\t" in problem:
        return "indent with spaces: YAML does not allow tabs"
    if "undefined alias" in problem:
        return "define the anchor (&name) before the alias (*name) that uses it"
    if "duplicate anchor" in problem:
        return "give each anchor (&name) a unique name"
    lines = text.splitlines()
    nearby = lines[max(mark.line - 2, 0) : mark.line] if mark else []
    if any("${" in line for line in nearby):
        return 'quote values that use ${...} inside {...} or [...], e.g. {key: "${HARNESS_KEY}"}'
    return "check the indentation and the brackets and quotes on this line and the line before"


class _Builder:
    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.positions: dict[KeyPath, NodePos] = {}
        self.findings: list[Finding] = []
        self.count = 0
        self._merged: dict[int, int] = {}

    def build(self, node: Node, path: KeyPath, active: set[int]) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise SourceError(
                f"the document expands to more than {MAX_NODES} values",
                _node_mark(node),
                "a scenario has a few hundred; aliases (*name) nested in aliases multiply them",
            )
        if id(node) in active:
            raise SourceError(
                "an alias refers to a node that contains it (a cycle)",
                _node_mark(node),
                "an alias (*name) cannot be used inside the value its anchor (&name) marks",
            )
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        active = active | {id(node)}
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self._unsupported_tag(node, path)
            items = []
            for index, item in enumerate(node.value):
                self.positions[path + (index,)] = NodePos(_node_mark(item), _node_mark(item))
                items.append(self.build(item, path + (index,), active))
            return items
        if isinstance(node, MappingNode):
            return self._mapping(node, path, active)
        raise SourceError(f"unsupported YAML node {type(node).__name__}", _node_mark(node))

    def _unsupported_tag(self, node: Node, path: KeyPath) -> None:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.findings.append(
            Finding(
                path,
                f"unsupported YAML tag {tag}",
                "remove the tag: a scenario uses plain mappings, lists, strings, numbers and true/false",
                mark=_node_mark(node),
            )
        )

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self._unsupported_tag(node, path)
            return node.value
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            message = exc.problem or "cannot read this value"
        except (ValueError, TypeError, OverflowError) as exc:
            # The implicit resolvers are looser than the constructors: `0b_` looks like an int.
            message = f"cannot read value {node.value!r}: {exc}"
        self.findings.append(Finding(path, message, "quote the value to make it a plain string"))
        return node.value

    def _mapping(self, node: MappingNode, path: KeyPath, active: set[int]) -> dict[str, Any]:
        if node.tag != _MAP:
            self._unsupported_tag(node, path)
        merged_count = self._merged.get(id(node))
        if merged_count is None:
            self._report_duplicates(node, path)
            own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
            try:
                self.loader.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                raise SourceError(f"bad merge key (<<): {exc.problem}", _mark(exc.problem_mark)) from None
            merged_count = len(node.value) - own
            # An aliased mapping is visited once per alias; flattening is in place, so
            # remember where its merged part ends instead of recounting.
            self._merged[id(node)] = merged_count
        result: dict[str, Any] = {}
        explicit: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR):
                if index >= merged_count:
                    self._non_string_key(key_node, path)
                continue
            key = key_node.value
            # flatten_mapping puts merged pairs first, so an explicit key overrides a merged
            # one; of two explicit duplicates the first is kept (the second was reported).
            if key in explicit:
                continue
            if index >= merged_count:
                explicit.add(key)
            child = path + (key,)
            self.positions[child] = NodePos(_node_mark(key_node), _node_mark(value_node))
            result[key] = self.build(value_node, child, active)
        return result

    def _report_duplicates(self, node: MappingNode, path: KeyPath) -> None:
        # Judged on the keys written here, before merges (`<<: *base`) bring in keys that
        # an explicit key may legitimately override.
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR):
                continue
            first = seen.get(key_node.value)
            if first is None:
                seen[key_node.value] = key_node
                continue
            self.findings.append(
                Finding(
                    path + (key_node.value,),
                    f"duplicate key '{key_node.value}' (first defined on line {first.start_mark.line + 1})",
                    "each key may appear once per mapping; remove or rename one of them",
                    mark=_node_mark(key_node),
                )
            )

    def _non_string_key(self, key_node: Node, path: KeyPath) -> None:
        if isinstance(key_node, ScalarNode):
            kind = key_node.tag.rsplit(":", 1)[-1]
            shown = "an empty key" if kind == "null" else f"{key_node.value} (read as {kind})"
        else:
            shown = "a " + ("list" if isinstance(key_node, SequenceNode) else "mapping")
        self.findings.append(
            Finding(
                path + (key_node.value,) if isinstance(key_node, ScalarNode) and key_node.value else path,
                f"keys must be strings, got {shown}",
                'quote the key, e.g. "429": ...',
                mark=_node_mark(key_node),
            )
        )
