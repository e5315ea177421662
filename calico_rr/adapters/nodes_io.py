"""Reading Kubernetes nodes from a file or stdin.

``kubectl get nodes -o yaml`` (or ``-o json``) output goes in; :class:`~calico_rr.model.Node`
values come out via the pure :mod:`calico_rr.core.kube`.  This module only does the I/O
and the decoding, and turns every failure into an :class:`~calico_rr.errors.InputError`
that names the file (and the line, for YAML syntax errors).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from calico_rr.core.kube import nodes_from_documents
from calico_rr.errors import InputError
from calico_rr.model import Node

__all__ = ["load_nodes", "read_documents"]

# libyaml's C parser is an order of magnitude faster than the pure-Python one: a
# 5000-node `kubectl get nodes -o yaml` is tens of megabytes.  Fall back when PyYAML
# was built without libyaml.
try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):
    """Safe loading, except that unquoted timestamps stay strings.

    YAML 1.1 turns ``2024-01-02T03:04:05Z`` into a datetime, which JSON cannot
    encode; Kubernetes treats timestamps as strings (kubectl quotes them), so keep
    them as such and let core.kube parse them.  The resolver table is per class, so
    this does not change yaml.SafeLoader itself.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def _label(path: str) -> str:
    return "standard input" if path == "-" else f"file {path}"


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError("no such file", obj=_label(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", obj=_label(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", obj=_label(path)) from None


def _looks_like_json(text: str) -> bool:
    # Only an object or array is worth trying with the JSON parser; anything else
    # (a YAML document, "---", a comment) goes straight to YAML.
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[")


def read_documents(path: str) -> list[Any]:
    """The decoded documents of ``path`` (``"-"``: standard input).

    JSON when the whole text parses as JSON (one document); otherwise a YAML
    stream, one entry per ``---`` document (empty documents give ``None``).
    """
    text = _read_text(path)
    if _looks_like_json(text):
        try:
            return [json.loads(text)]
        except ValueError:
            pass  # YAML flow style also starts with { or [: let the YAML parser decide
    try:
        # _Loader is a SafeLoader subclass: equivalent to yaml.safe_load_all.
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InputError(f"invalid YAML{where}: {problem}", obj=_label(path)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", obj=_label(path)) from None


def load_nodes(path: str) -> tuple[list[Node], list[str]]:
    """Nodes of a NodeList / List / Node file, sorted by name, plus notes on skipped items."""
    where = "standard input" if path == "-" else path
    return nodes_from_documents(read_documents(path), where=where)
