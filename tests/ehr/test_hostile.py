"""Bad and hostile input: one line naming the file and the problem, exit status 2, no
traceback, no partial output, no entity resolution or DTD fetch, bounded memory and time."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ragehr.ehr import load_record
from ragehr.errors import InputError

VALID = """<record><visit type="V" start="01/01/2020 10:00"><day start="01/01/2020 10:00">
<note type="x" start="01/01/2020 10:05">a note</note></day></visit></record>"""

SECRET = "TOP-SECRET-CONTENT-42"


def _cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the one-line error must contain)."""
    secret = tmp / "secret.txt"
    secret.write_text(SECRET)
    cases: dict[str, tuple[bytes | None, str]] = {
        "truncated_xml": (VALID[:-30].encode(), "malformed XML"),
        "malformed_xml": (b"<record><visit></record>", "malformed XML"),
        "truncated_json": (b'{"resourceType": "Bundle", "entry": [{"resource": {"resou', "malformed JSON"),
        "unknown_root": (b"<html><body>hi</body></html>", "not a supported EHR record"),
        "unknown_json": (b'{"hello": "world"}', "not a supported EHR record"),
        "empty": (b"", "empty"),
        "whitespace": (b"   \n\n  ", "whitespace"),
        "binary": (bytes(range(256)) * 64, "binary"),
        "text": (b"Patient is a 52 year old woman", "expected XML or JSON"),
        "billion_laughs": (
            b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
            + b"".join(
                f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
                for i in range(1, 10)
            )
            + b"]>\n<record>&lol9;</record>",
            "entities",
        ),
        "xxe_local_file": (
            f'<?xml version="1.0"?>\n<!DOCTYPE record [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
            f'<record><visit type="&xxe;"><day><note>&xxe;</note></day></visit></record>'.encode(),
            "entities",
        ),
        "xxe_parameter_entity": (
            f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>\n<record/>'.encode(),
            "entities",
        ),
        "huge_attribute": (
            b'<record><visit type="' + b"x" * (12 * 1024 * 1024) + b'"/></record>',
            "safety limits",
        ),
        "deep_xml": (b"<record>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</record>", "safety limits"),
        "deep_json": (b"[" * 100_000 + b"]" * 100_000, "nested"),
        "utf16": ("<record/>".encode("utf-16"), "UTF-16"),
        "record_without_visits": (b"<record></record>", "no <visit>"),
        "ccda_wrong_namespace": (b'<ClinicalDocument xmlns="urn:other"/>', "not a supported EHR record"),
        "ndjson_not_fhir": (b'{"a": 1}\n{"b": 2}\n', "not a FHIR resource"),
    }
    out = {}
    for name, (data, phrase) in cases.items():
        p = tmp / f"{name}.xml"
        p.write_bytes(data)
        out[name] = (p, phrase)
    d = tmp / "a_directory"
    d.mkdir()
    out["directory"] = (d, "is a directory")
    out["missing"] = (tmp / "missing.xml", "no such file")
    return out


NAMES = [
    "truncated_xml",
    "malformed_xml",
    "truncated_json",
    "unknown_root",
    "unknown_json",
    "empty",
    "whitespace",
    "binary",
    "text",
    "billion_laughs",
    "xxe_local_file",
    "xxe_parameter_entity",
    "huge_attribute",
    "deep_xml",
    "deep_json",
    "utf16",
    "record_without_visits",
    "ccda_wrong_namespace",
    "ndjson_not_fhir",
    "directory",
    "missing",
]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name", NAMES)
def test_library_raises_input_error(cases, name):
    path, phrase = cases[name]
    with pytest.raises(InputError) as info:
        load_record(path)
    msg = str(info.value)
    assert str(path) in msg and phrase in msg
    assert "\n" not in msg and SECRET not in msg


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024, 1536 * 1024 * 1024))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_cli_one_line_exit_2_no_output(cases, name, command, tmp_path):
    path, phrase = cases[name]
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "ragehr.cli", command, str(path)]
    if command == "convert":
        args += ["--to", "jsonl", "-o", str(out)]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ragehr: error: ") and str(path) in lines[0] and phrase in lines[0]
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_debug_shows_traceback(cases):
    path, _ = cases["malformed_xml"]
    proc = subprocess.run(
        [sys.executable, "-m", "ragehr.cli", "--debug", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_external_dtd_is_never_fetched(tmp_path, monkeypatch):
    """A DOCTYPE naming an external DTD parses without fetching it: any socket use fails."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    missing = tmp_path / "nowhere.dtd"
    for system_id in ("http://127.0.0.1:9/evil.dtd", f"file://{missing}"):
        p = tmp_path / "with_dtd.xml"
        p.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE record SYSTEM "{system_id}">\n{VALID}')
        rec = load_record(p)
        assert rec.counts() == {"note": 1, "encounter": 1}


def test_inspect_many_files_reports_bad_ones_and_goes_on(cases, tmp_path):
    from tests.conftest import FIXTURES

    good = FIXTURES / "medalign" / "EHR_sample.xml"
    bad, _ = cases["truncated_xml"]
    proc = subprocess.run(
        [sys.executable, "-m", "ragehr.cli", "inspect", "--json", str(good), str(bad), str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert [json.loads(line)["patient_id"] for line in proc.stdout.splitlines()] == ["sample", "sample"]
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr
