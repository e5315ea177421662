"""Reading Kubernetes nodes from a file or stdin.

``kubectl get nodes -o yaml`` (or ``-o json``) output goes in; :class:`~calico_rr.model.Node`
values come out via the pure :mod:`calico_rr.core.formats.kube`.  This module only does the I/O
and the decoding, and turns every failure into an :class:`~calico_rr.errors.InputError`
that names the file (and the line, for YAML and JSON syntax errors).

Input is bounded (:mod:`calico_rr.core.limits`) before anything recursive or
expanding runs: at most MAX_INPUT_BYTES are read; YAML is first walked as a stream
of parser events (libyaml's parser is iterative, its composer recursive: 30,000
nested ``[`` segfaulted it) to check the nesting depth, recursive aliases and the
size that aliases expand to (alias bombs); JSON, which json.loads parses with a
recursion guard, gets the same depth check on its result; a number may have at most
MAX_NUMBER_CHARS characters.  Only JSON-compatible values come out: explicit YAML
timestamps stay strings, and ``!!binary``, ``!!set``, ``!!omap`` and ``!!pairs``
are refused.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

import yaml

from calico_rr.core import limits
from calico_rr.core.formats.kube import nodes_from_documents
from calico_rr.errors import InputError
from calico_rr.model import Node

# libyaml's C parser is an order of magnitude faster than the pure-Python one: a
# 5000-node `kubectl get nodes -o yaml` is tens of megabytes.  Fall back when PyYAML
# was built without libyaml.
try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):
    """Safe loading of JSON values only: timestamps stay strings, numbers are bounded.

    YAML 1.1 turns ``2024-01-02T03:04:05Z`` into a datetime, which JSON cannot
    encode; Kubernetes treats timestamps as strings (kubectl quotes them), so keep
    them as such and let core.formats.kube parse them.  ``!!binary``, ``!!set``, ``!!omap``
    and ``!!pairs`` (bytes, sets, pair lists) are refused, and so are numbers longer
    than MAX_NUMBER_CHARS.  The resolver and constructor tables are per class, so
    this does not change yaml.SafeLoader itself.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def _number_too_long(text: str) -> str | None:
    if len(text) <= limits.MAX_NUMBER_CHARS:
        return None
    return f"a number of {len(text)} characters (at most {limits.MAX_NUMBER_CHARS})"


_YAML = "tag:yaml.org,2002:"


def _bounded_number(tag: str) -> Any:
    base = _BaseLoader.yaml_constructors[tag]

    def construct(loader: _Loader, node: yaml.ScalarNode) -> Any:
        problem = _number_too_long(str(node.value))
        if problem:
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return base(loader, node)

    return construct


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


def _refuse_tag(loader: _Loader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"unsupported YAML tag {_short_tag(node.tag)}: Kubernetes objects hold JSON values only",
        node.start_mark,
    )


# Explicit "!!timestamp" stays a string too (the implicit one is off above).
_Loader.add_constructor(_YAML + "timestamp", _BaseLoader.yaml_constructors[_YAML + "str"])
for _tag in ("int", "float"):
    _Loader.add_constructor(_YAML + _tag, _bounded_number(_YAML + _tag))
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(_YAML + _tag, _refuse_tag)


def _label(path: str) -> str:
    return "standard input" if path == "-" else f"file {path}"


# Bytes per read(): big enough to be fast, small enough that the buffer of a
# refused input never holds much more than the limit.
_CHUNK = 1 << 20


def _too_big() -> InputError:
    return InputError(f"larger than {limits.MAX_INPUT_BYTES:,} bytes, the most calico-rr reads")


def _read_limited(stream: IO[bytes]) -> bytearray:
    """All of ``stream``; InputError as soon as it holds more than MAX_INPUT_BYTES
    (reading stops there)."""
    limit = limits.MAX_INPUT_BYTES
    buf = bytearray()
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return buf
        try:
            buf.extend(chunk)
        except MemoryError:  # below the limit, but more than this machine holds
            size = len(buf)
            del buf
            raise InputError(f"too large: out of memory after {size:,} bytes") from None
        if len(buf) > limit:
            raise _too_big()


def _read_bytes(path: str) -> bytes | bytearray:
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream in place of stdin (tests, an embedding program)
            text = sys.stdin.read(limits.MAX_INPUT_BYTES + 1)
            data = text.encode("utf-8", "surrogateescape")  # escaped bytes back as they were
            if len(data) > limits.MAX_INPUT_BYTES:
                raise _too_big()
            return data
        return _read_limited(stream)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size > limits.MAX_INPUT_BYTES:  # a regular file: refuse before reading
            raise _too_big()
        return _read_limited(f)


def _decode(data: bytes | bytearray) -> str:
    """Strict UTF-8 (a UTF-8 byte order mark is skipped); UTF-16 with its byte order
    mark, as Windows PowerShell's ``>`` writes ``kubectl`` output, is accepted too."""
    skip = 0
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        skip = len(codecs.BOM_UTF8)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # the codec reads and drops the byte order mark
    try:
        return data[skip:].decode(encoding) if skip else data.decode(encoding)
    except UnicodeDecodeError as exc:
        what = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise InputError(f"not {what} text (byte {exc.start + skip})") from None


def _read_text(path: str) -> str:
    try:
        try:
            return _decode(_read_bytes(path))
        except InputError as exc:
            raise InputError(exc.detail, obj=_label(path)) from None
    except FileNotFoundError:
        raise InputError("no such file", obj=_label(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", obj=_label(path)) from None


def _too_deep() -> str:
    return (
        f"nested more than {limits.MAX_NESTING_DEPTH} levels deep "
        "(lists and mappings inside each other)"
    )


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists/dicts more than ``limit`` levels (not recursive)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return False


def _json_number(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """json.loads' ``parse_int``/``parse_float`` hook: ``convert`` within MAX_NUMBER_CHARS."""

    def parse(text: str) -> Any:
        problem = _number_too_long(text)
        if problem:
            raise ValueError(problem)
        return convert(text)

    return parse


class _JSONRefused(Exception):
    """JSON that parses but breaks a limit: no use trying it as YAML."""


def _load_json(text: str) -> Any:
    """json.loads within the limits; JSONDecodeError for a syntax error."""
    try:
        data = json.loads(text, parse_int=_json_number(int), parse_float=_json_number(float))
    except RecursionError:
        raise _JSONRefused(_too_deep()) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # a number hook refused
        raise _JSONRefused(str(exc)) from None
    if _depth_exceeds(data, limits.MAX_NESTING_DEPTH):
        raise _JSONRefused(_too_deep())
    return data


def _yaml_position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f" at line {line}, column {column}"


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _yaml_error(exc: yaml.YAMLError, text: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        return _one_line(f"invalid YAML{where}: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        code = char if isinstance(char, int) else ord(char) if isinstance(char, str) else None
        what = f"unacceptable character #x{code:04x}" if code is not None else "bad character"
        where = _yaml_position(text, exc.position) if isinstance(exc.position, int) else ""
        return _one_line(f"invalid YAML{where}: {what}: {exc.reason}")
    return _one_line(f"invalid YAML: {exc}")


def _limit_error(mark: Any, problem: str) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=mark)


def _check_yaml_limits(text: str) -> None:
    """Walk ``text``'s parser events (iterative, nothing is built) and raise a
    MarkedYAMLError at the first node past a limit: nesting deeper than
    MAX_NESTING_DEPTH (also once aliases are expanded), an alias inside the node it
    names (a recursive structure, endless once expanded), or aliases that expand
    the input by more than MAX_ALIAS_EXPANSION nodes.

    Sizes count every node (scalar, list, mapping; a mapping's keys too); an
    anchor's size and height are those of its node with every alias in it expanded.
    """
    max_depth = limits.MAX_NESTING_DEPTH
    added = 0  # nodes the aliases add, all documents together
    # Per open collection: [anchor, size so far, tallest child's height].
    stack: list[list[Any]] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (size, height) of a closed node
    open_anchors: set[str] = set()

    def close(anchor: str | None, size: int, height: int) -> None:
        if anchor is not None:
            anchors[anchor] = (size, height)
            open_anchors.discard(anchor)
        if stack:
            parent = stack[-1]
            parent[1] += size
            parent[2] = max(parent[2], height)

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= max_depth:
                raise _limit_error(event.start_mark, _too_deep())
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            stack.append([event.anchor, 1, 0])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height = stack.pop()
            close(anchor, size, height + 1)
        elif isinstance(event, yaml.ScalarEvent):
            close(event.anchor, 1, 0)
        elif isinstance(event, yaml.AliasEvent):
            name = event.anchor
            if name in open_anchors:
                raise _limit_error(
                    event.start_mark,
                    f"alias *{name} inside the node it names (a recursive structure)",
                )
            if name not in anchors:
                continue  # undefined: the composer reports it
            size, height = anchors[name]
            if len(stack) + height > max_depth:
                raise _limit_error(
                    event.start_mark, f"alias *{name} expands to a structure {_too_deep()}"
                )
            added += size - 1
            if added > limits.MAX_ALIAS_EXPANSION:
                raise _limit_error(
                    event.start_mark,
                    f"aliases expand to more than {limits.MAX_ALIAS_EXPANSION} extra nodes "
                    "(an alias bomb? kubectl never writes aliases)",
                )
            close(None, size, height)
        elif isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()  # anchors are per document
            open_anchors.clear()


class _YAMLSyntaxError(InputError):
    """The text is not YAML at all (reader, scanner or parser error), as opposed to
    YAML that breaks a limit or holds what we refuse."""


def _load_yaml(text: str) -> list[Any]:
    """The YAML stream's documents within the limits; InputError (no object) on error."""
    try:
        _check_yaml_limits(text)
        # _Loader is a SafeLoader subclass: equivalent to yaml.safe_load_all.
        return list(yaml.load_all(text, Loader=_Loader))
    except (yaml.reader.ReaderError, yaml.scanner.ScannerError, yaml.parser.ParserError) as exc:
        raise _YAMLSyntaxError(_yaml_error(exc, text)) from None
    except yaml.YAMLError as exc:
        raise InputError(_yaml_error(exc, text)) from None
    except (ValueError, TypeError, RecursionError) as exc:  # a constructor's own error
        raise InputError(_one_line(f"invalid YAML: {exc}")) from None


def parse_text(text: str) -> list[Any]:
    """The documents of ``text``: JSON when the whole text parses as JSON (one
    document); otherwise a YAML stream, one entry per ``---`` document (empty
    documents give ``None``).  InputError (without an object) when neither parses
    or a limit is broken.  Text that looks like JSON (starts with ``{`` or ``[``)
    and is neither JSON nor YAML gets the JSON parser's message; when it is YAML
    (flow style) that breaks a limit, the YAML message says which."""
    json_error: json.JSONDecodeError | None = None
    # Only an object or array is worth trying with the JSON parser; anything else
    # (a YAML document, "---", a comment) goes straight to YAML.
    if text.lstrip()[:1] in ("{", "["):
        try:
            return [_load_json(text)]
        except _JSONRefused as exc:
            raise InputError(f"invalid JSON: {exc}") from None
        except json.JSONDecodeError as exc:
            json_error = exc  # YAML flow style also starts with { or [: try it
    try:
        return _load_yaml(text)
    except _YAMLSyntaxError as exc:
        if json_error is None:
            raise InputError(exc.detail) from None
        raise InputError(
            f"invalid JSON at line {json_error.lineno}, column {json_error.colno}: {json_error.msg}"
        ) from None


def read_documents(path: str) -> list[Any]:
    """The decoded documents of ``path`` (``"-"``: standard input); see :func:`parse_text`.

    Every error is an InputError naming the file.
    """
    text = _read_text(path)
    try:
        return parse_text(text)
    except InputError as exc:
        raise InputError(exc.detail, obj=_label(path)) from None


def load_nodes(path: str) -> tuple[list[Node], list[str]]:
    """Nodes of a NodeList / List / Node file, sorted by name, plus notes on skipped items."""
    where = "standard input" if path == "-" else path
    return nodes_from_documents(read_documents(path), where=where)
