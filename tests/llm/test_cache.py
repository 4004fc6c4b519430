"""The caching wrapper: one model call per distinct request, keyed on everything that
changes the answer, robust to corrupt files."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ragehr.llm.cache import CachedBackend, request_key
from ragehr.llm.fake import FakeBackend
from ragehr.types.generation import EvidenceItem, GenerationRequest, Message


def _request(**kw: object) -> GenerationRequest:
    base: dict[str, object] = {
        "messages": (Message(role="user", content="Q? [1] some evidence"),),
        "question": "Q?",
        "evidence": (
            EvidenceItem(
                marker=1,
                chunk_id="c1",
                kind="note",
                start=None,
                end=None,
                text="some evidence",
                source="f#/a",
                n_tokens=3,
            ),
        ),
    }
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def test_second_call_is_cached(tmp_path: Path) -> None:
    fake = FakeBackend()
    cached = CachedBackend(fake, tmp_path)
    first = cached.generate(_request())
    second = cached.generate(_request())
    assert len(fake.requests) == 1
    assert not first.cached and second.cached
    assert second.text == first.text and second.backend == "fake"
    assert (cached.hits, cached.misses) == (1, 1)
    key = request_key(fake, _request())
    stored = tmp_path / key[:2] / f"{key}.json"
    assert stored.is_file()
    assert "Q?" not in stored.read_text()  # the prompt is not stored
    # a new wrapper over a new backend reads the same files
    fake2 = FakeBackend()
    assert CachedBackend(fake2, tmp_path).generate(_request()).cached
    assert fake2.requests == []


def test_key_covers_request_and_backend(tmp_path: Path) -> None:
    fake = FakeBackend()
    keys = {
        request_key(fake, _request()),
        request_key(fake, _request(temperature=0.7)),
        request_key(fake, _request(seed=1)),
        request_key(fake, _request(max_tokens=10)),
        request_key(fake, _request(stop=("\n",))),
        request_key(fake, _request(question="Other?")),
        request_key(fake, _request(evidence=())),
        request_key(fake, _request(messages=(Message(role="user", content="other"),))),
        request_key(FakeBackend(answer="x"), _request()),
    }
    assert len(keys) == 9
    cached = CachedBackend(fake, tmp_path)
    cached.generate(_request())
    cached.generate(_request(temperature=0.7))
    assert len(fake.requests) == 2


def test_corrupt_file_is_ignored_and_overwritten(tmp_path: Path) -> None:
    fake = FakeBackend()
    cached = CachedBackend(fake, tmp_path)
    key = request_key(fake, _request())
    path = cached.path_for(key)
    path.parent.mkdir(parents=True)
    for junk in ("{not json", json.dumps({"format": "ragehr-gencache-v1", "key": key, "generation": {"text": 1}}), ""):
        path.write_text(junk)
        gen = cached.generate(_request())
        assert not gen.cached
    assert len(fake.requests) == 3
    assert json.loads(path.read_text())["key"] == key
    assert cached.generate(_request()).cached


def test_delegates_and_is_thread_safe(tmp_path: Path) -> None:
    fake = FakeBackend(context_window=777)
    cached = CachedBackend(fake, tmp_path)
    assert (cached.name, cached.model, cached.context_window) == ("fake", "fake", 777)
    assert cached.token_counter().name == fake.token_counter().name
    with ThreadPoolExecutor(8) as pool:
        gens = list(pool.map(lambda i: cached.generate(_request(seed=i % 4)), range(32)))
    assert {g.text for g in gens} == {gens[0].text}
    assert len(list(tmp_path.rglob("*.json"))) == 4
    assert not list(tmp_path.rglob("*.tmp"))
