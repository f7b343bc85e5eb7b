"""Reading XML statements safely, and by local element names (any namespace, any version).

The parser never resolves entities, never loads a DTD and never touches the network; a
document that carries a DTD at all is refused (bank statements have none), which refuses
external-entity and entity-expansion attacks before any element is read. Errors while reading
are a broken document; an error only at the end of the input is a cut one.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from lxml import etree

from clearhouse.reconciliation.statements.errors import StatementCode, StatementError

Node = Any  # an lxml element (lxml ships no type information)

_DECLARED = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)")
_LIBXML_EMPTY_DOCUMENT = 4


def load(data: bytes, file: str) -> Node:
    """The root element of ``data``, or a ``StatementError`` (encoding, not XML, cut)."""
    _check_encoding(data, file)
    return _parse(data, file)


def _check_encoding(data: bytes, file: str) -> None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 with a byte order mark: the XML parser decodes it
    if not data.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<"):
        raise StatementError(StatementCode.UNSUPPORTED, file, "not an XML document", 1)
    declared = _DECLARED.match(data)
    name = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        codecs.lookup(name)
        data.decode(name)
    except LookupError:
        raise StatementError(
            StatementCode.ENCODING, file, f"unknown declared encoding {name!r}", 1
        ) from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise StatementError(
            StatementCode.ENCODING, file, f"bytes that are not {name}", line
        ) from None


def _parse(data: bytes, file: str) -> Node:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        parser.feed(data)
    except etree.XMLSyntaxError as exc:
        # An error while reading is a broken document; only the end of input is a cut one.
        code = StatementCode.ENCODING if _is_encoding(exc) else StatementCode.UNSUPPORTED
        raise StatementError(code, file, f"not well-formed XML: {exc.msg}", exc.lineno) from None
    try:
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        if exc.code == _LIBXML_EMPTY_DOCUMENT:
            raise StatementError(StatementCode.UNSUPPORTED, file, "no XML document") from None
        raise StatementError(
            StatementCode.TRUNCATED, file, f"the document ends early: {exc.msg}", exc.lineno
        ) from None
    if root.getroottree().docinfo.doctype:
        raise StatementError(StatementCode.UNSUPPORTED, file, "a DTD is not allowed", 1)
    return root


def _is_encoding(exc: Any) -> bool:
    last = exc.error_log.last_error
    return last is not None and last.domain_name in {"IO", "ENCODING"}


def local_name(node: Node) -> str:
    return str(etree.QName(node).localname) if isinstance(node.tag, str) else ""


def kids(node: Node, name: str) -> list[Node]:
    return [child for child in node if isinstance(child.tag, str) and local_name(child) == name]


def kid(node: Node, name: str) -> Node | None:
    return next(iter(kids(node, name)), None)


def find(node: Node, path: str) -> Node | None:
    for step in path.split("/"):
        node = kid(node, step)
        if node is None:
            return None
    return node


def find_all(node: Node, path: str) -> list[Node]:
    *parents, last = path.split("/")
    holder = find(node, "/".join(parents)) if parents else node
    return kids(holder, last) if holder is not None else []


def text(node: Node, path: str) -> str | None:
    found = find(node, path)
    if found is None or found.text is None:
        return None
    return str(found.text).strip() or None


def need(node: Node, path: str, file: str) -> Node:
    found = find(node, path)
    if found is None:
        raise StatementError(
            StatementCode.MISSING_COLUMN,
            file,
            f"{local_name(node)} has no {path}",
            node.sourceline,
        )
    return found
