"""Reading record files safely, and telling their format by content.

Owns the XML library (lxml): every XML parse in ragehr goes through :func:`parse_xml`, which
never resolves entities, never loads a DTD, never touches the network, and refuses documents
that declare entities at all (billion laughs, XXE). Size limits bound memory and time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from ragehr.errors import InputError, UnsupportedFormatError
from ragehr.fsutil import FileTooLargeError, open_regular, regular_file_problem

MAX_FILE_BYTES = 512 * 1024 * 1024
"""Files larger than this are refused before reading (a MedAlign record is a few MB)."""

MAX_JSON_DEPTH = 64
"""FHIR resources nest a dozen levels deep; deeper JSON is refused, not recursed into."""

CCDA_NS = "urn:hl7-org:v3"

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)


@dataclass(frozen=True)
class RawSource:
    """A record file read into memory and sniffed, not yet parsed into a record."""

    path: Path
    data: bytes
    kind: str  # "xml" | "json" | "ndjson"


def read_source(path: str | Path) -> RawSource:
    """Read a file with the checks every record file gets; raise :class:`InputError`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if p.is_dir():
        raise InputError(p, "is a directory, expected a record file")
    if not p.is_file():
        raise InputError(p, regular_file_problem(p) or "is not a regular file")
    try:
        # the descriptor itself is checked (a regular file, within the limit) before any read,
        # so a file swapped for a FIFO or /dev/zero after the checks above cannot hang us
        with os.fdopen(open_regular(p, max_bytes=MAX_FILE_BYTES), "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileTooLargeError:
        raise InputError(p, f"file is {p.stat().st_size} bytes, over the {MAX_FILE_BYTES}-byte limit") from None
    except OSError as exc:
        raise InputError(p, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise InputError(p, "file is empty")
    return RawSource(p, data, sniff(p, data))


def sniff(path: Path, data: bytes) -> str:
    """Tell XML from JSON from NDJSON by the first bytes, not the file name."""
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(path, "UTF-16 files are not supported; convert to UTF-8")
    if b"\x00" in head:
        raise InputError(path, "binary file, not an EHR record (XML or JSON)")
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise InputError(path, "file holds only whitespace")
    if text.startswith(b"<"):
        return "xml"
    if text.startswith(b"{"):
        first_line = data.lstrip(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)
        if len(first_line) == 2 and first_line[1].strip():
            try:
                json.loads(first_line[0])
                return "ndjson"
            except (ValueError, RecursionError):
                return "json"
        return "json"
    if text.startswith(b"["):
        return "json"
    raise InputError(path, "not an EHR record: expected XML or JSON content")


def parse_xml(path: Path, data: bytes) -> etree._Element:
    """Parse XML with entities, DTDs and the network all off. Raises :class:`InputError`."""
    # An entity declaration can only sit in a DTD's internal subset, before the root element.
    if _DOCTYPE.search(data[:65536]) and _ENTITY.search(data[: 1024 * 1024]):
        raise InputError(path, "declares XML entities; refused (entity expansion and external entities are unsafe)")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,  # keeps libxml2's limits: 10 MB text nodes and attributes, depth 256
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "syntax error"
        msg = re.sub(r"\s*\(<string>, line \d+\)$", "", msg)
        if "XML_PARSE_HUGE" in msg or "Resource limit" in msg:
            raise InputError(
                path,
                "XML exceeds safety limits (a text node or attribute over 10 MB, "
                "or elements nested deeper than 256); refused",
            ) from None
        raise InputError(path, f"malformed XML: {msg}") from None
    except (ValueError, MemoryError) as exc:
        raise InputError(path, f"malformed XML: {exc}") from None
    if root is None:
        raise InputError(path, "malformed XML: no root element")
    # Entities in an internal subset that slipped past the byte check are still refused.
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None and any(
        isinstance(x, etree._DTDEntityDecl) for x in docinfo.internalDTD.iterentities()
    ):
        raise InputError(path, "declares XML entities; refused (entity expansion and external entities are unsafe)")
    return root


def _check_depth(path: Path, obj: Any) -> None:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputError(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels; refused")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


def _loads(path: Path, text: bytes | str, where: str = "") -> Any:
    try:
        obj = json.loads(text)
    except RecursionError:
        raise InputError(path, f"JSON nested too deeply{where}; refused") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON{where}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(path, f"malformed JSON{where}: {exc}") from None
    _check_depth(path, obj)
    return obj


def parse_json(path: Path, data: bytes) -> Any:
    """Parse one JSON document. Raises :class:`InputError`."""
    return _loads(path, data)


def parse_ndjson(path: Path, data: bytes) -> list[tuple[int, Any]]:
    """Parse newline-delimited JSON: ``(line number, object)`` for each non-blank line."""
    out = []
    for i, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            out.append((i, _loads(path, line, f" on line {i}")))
    if not out:
        raise InputError(path, "NDJSON file holds no resources")
    return out


def local_name(el: etree._Element) -> str:
    """An element's tag without its namespace."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def element_path(el: etree._Element) -> str:
    """A readable, namespace-free path (``/ClinicalDocument/component/...[3]``) to an element."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = local_name(node)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and local_name(c) == name]
            parts.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        else:
            parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def unsupported(path: Path, what: str) -> UnsupportedFormatError:
    return UnsupportedFormatError(path, f"not a supported EHR record ({what})")
