"""The vocabulary stage's providers; the openai one against a scripted chat-completions server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.params import VocabParams
from pipeline.voc import VOC_SUPERCATEGORIES
from pipeline.vocab import VOCAB_PROVIDERS, VocabError, cluster_purity, write_vocabulary

CLASSES = ["cat", "dog", "car", "bus"]
KEY = "sk-test-DO-NOT-LEAK-1234"
GOOD_SYNONYMS = {"synonyms": {"cat": ["kitty", "feline"], "dog": ["puppy", "hound"], "car": ["automobile", "auto"],
                              "bus": ["coach", "omnibus"]}}  # fmt: skip
CLUSTERS_A = {"clusters": {"animal": ["cat", "dog"], "vehicle": ["car", "bus"]}}
CLUSTERS_B = {"clusters": {"pet": ["cat", "dog"], "vehicle": ["car", "bus"]}}


class ChatServer:
    """Answers POST /v1/chat/completions from a script: ("ok", content) | (status, body) | ("slow", s, content)."""

    def __init__(self, script: list[tuple]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
                if not outer.script:
                    return self._send(500, {"error": {"message": "script exhausted"}})
                action = outer.script.pop(0)
                if action[0] == "slow":
                    time.sleep(action[1])
                    action = ("ok", action[2])
                if action[0] == "ok":
                    content = action[1] if isinstance(action[1], str) else json.dumps(action[1])
                    return self._send(200, {
                        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                    })  # fmt: skip
                return self._send(action[0], action[1] or {"error": {"message": "scripted failure"}})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "10")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError):
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def params(tmp_path: Path, url: str, **openai) -> VocabParams:
    settings = {"base_url": url, "model": "scripted", "timeout": 2.0, "max_retries": 2, **openai}
    return VocabParams(provider="openai", num_synonyms=2, stable_rounds=1, max_rounds=4,
                       cache_dir="cache", openai=settings)  # fmt: skip


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # vocab paths are relative to the repository: here the test's folder


def run_openai(tmp_path: Path, script: list[tuple], **openai):
    with ChatServer(script) as server:
        vocabulary = VOCAB_PROVIDERS.get("openai")(CLASSES, params(tmp_path, server.url, **openai))
    return vocabulary, server


def test_good_answers_stop_condition_cache_and_no_key_leak(tmp_path: Path, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    script = [("ok", GOOD_SYNONYMS), ("ok", CLUSTERS_A), ("ok", CLUSTERS_B), ("ok", CLUSTERS_B)]
    with ChatServer(script) as server:
        vocabulary = VOCAB_PROVIDERS.get("openai")(CLASSES, params(tmp_path, server.url))
        asked = len(server.requests)
        # A rerun is answered from the cache: the server is not asked again.
        again = VOCAB_PROVIDERS.get("openai")(CLASSES, params(tmp_path, server.url))
    assert vocabulary.synonyms["cat"] == ["cat", "kitty", "feline"]
    # Algorithm 1: A, then B (changed), then B again (unchanged once) → stop after 3 answers.
    assert vocabulary.clusters == {"pet": ["cat", "dog"], "vehicle": ["car", "bus"]}
    assert vocabulary.provenance["rounds"] == 3 and vocabulary.provenance["stable"] is True
    assert asked == 4 and len(server.requests) == 4
    assert again.clusters == vocabulary.clusters
    assert server.requests[0]["authorization"] == f"Bearer {KEY}"
    refine = server.requests[2]["body"]["messages"][0]["content"]
    assert json.dumps({"clusters": CLUSTERS_A["clusters"]}) in refine

    metrics = write_vocabulary(vocabulary, CLASSES, tmp_path / "out")
    assert metrics["rounds"] == 3
    clusters = json.loads((tmp_path / "out" / "clusters.json").read_text())
    assert clusters["membership"] == {"bus": ["vehicle"], "car": ["vehicle"], "cat": ["pet"], "dog": ["pet"]}
    assert set(clusters["provenance"]["prompts"]) == {"synonyms", "cluster_initial", "cluster_refine"}
    written = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(KEY in text for text in written)
    captured = capsys.readouterr()
    assert KEY not in caplog.text and KEY not in captured.out + captured.err


def test_max_rounds_ends_an_unstable_refinement(tmp_path: Path) -> None:
    script = [("ok", GOOD_SYNONYMS)] + [("ok", CLUSTERS_A), ("ok", CLUSTERS_B)] * 2
    vocabulary, server = run_openai(tmp_path, script)
    assert vocabulary.provenance["rounds"] == 4 and vocabulary.provenance["stable"] is False
    assert len(server.requests) == 5


def test_malformed_json_and_schema_violation_are_sent_back_and_retried(tmp_path: Path) -> None:
    bad_schema = {"synonyms": {"cat": ["kitty", "feline"]}}  # classes missing
    script = [("ok", "{not json"), ("ok", bad_schema), ("ok", f"```json\n{json.dumps(GOOD_SYNONYMS)}\n```"),
              ("ok", CLUSTERS_A), ("ok", CLUSTERS_A)]  # fmt: skip
    vocabulary, server = run_openai(tmp_path, script)
    assert vocabulary.synonyms["bus"] == ["bus", "coach", "omnibus"]
    follow_up = server.requests[2]["body"]["messages"]
    assert len(follow_up) == 5 and "invalid" in follow_up[-1]["content"]
    assert "missing ['dog', 'car', 'bus']" in follow_up[-1]["content"]


def test_an_answer_that_stays_invalid_is_never_accepted(tmp_path: Path) -> None:
    unknown = {"clusters": {"animal": ["cat", "dog", "unicorn"], "vehicle": ["car", "bus"]}}
    script = [("ok", GOOD_SYNONYMS), ("ok", unknown), ("ok", unknown), ("ok", unknown)]
    with pytest.raises(VocabError, match=r"no valid answer to 'clusters/0' after 3 attempts.*unicorn"):
        run_openai(tmp_path, script, max_invalid=2)


def test_invalid_answers_are_never_cached_so_a_fixed_server_is_asked_again(tmp_path: Path) -> None:
    broken = [("ok", {"synonyms": {"cat": ["kitty"]}})] * 2  # always missing classes
    with pytest.raises(VocabError, match=r"Invalid answers are not cached.*kept in cache; delete that folder"):
        run_openai(tmp_path, broken, max_invalid=1)
    assert not list((tmp_path / "cache").glob("*.json"))
    vocabulary, server = run_openai(tmp_path, [("ok", GOOD_SYNONYMS), ("ok", CLUSTERS_A), ("ok", CLUSTERS_A)])
    assert len(server.requests) == 3 and vocabulary.synonyms["dog"] == ["dog", "puppy", "hound"]
    cached = [json.loads(path.read_text()) for path in (tmp_path / "cache").glob("*.json")]
    assert sorted(entry["request"]["tag"] for entry in cached) == ["clusters/0", "clusters/1", "synonyms"]


def test_a_cached_answer_that_no_longer_validates_is_dropped_and_asked_again(tmp_path: Path) -> None:
    with ChatServer([("ok", GOOD_SYNONYMS), ("ok", CLUSTERS_A), ("ok", CLUSTERS_A), ("ok", GOOD_SYNONYMS)]) as server:
        VOCAB_PROVIDERS.get("openai")(CLASSES, params(tmp_path, server.url))
        synonyms = next(p for p in (tmp_path / "cache").glob("*.json") if '"tag": "synonyms"' in p.read_text())
        entry = json.loads(synonyms.read_text())
        synonyms.write_text(json.dumps({**entry, "response": json.dumps({"synonyms": {"cat": []}})}))  # an old cache
        vocabulary = VOCAB_PROVIDERS.get("openai")(CLASSES, params(tmp_path, server.url))
    assert len(server.requests) == 4 and vocabulary.synonyms["car"] == ["car", "automobile", "auto"]
    assert json.loads(synonyms.read_text())["response"] == json.dumps(GOOD_SYNONYMS)


def test_429_then_success_is_retried(tmp_path: Path) -> None:
    script = [(429, None), ("ok", GOOD_SYNONYMS), ("ok", CLUSTERS_A), ("ok", CLUSTERS_A)]
    vocabulary, server = run_openai(tmp_path, script)
    assert len(server.requests) == 4 and vocabulary.clusters["animal"] == ["cat", "dog"]


def test_persistent_500_fails_after_the_retries(tmp_path: Path) -> None:
    with pytest.raises(VocabError, match=r"request 'synonyms/attempt-0' failed: InternalServerError"):
        run_openai(tmp_path, [(500, None)] * 3, max_retries=2)


def test_a_reply_slower_than_the_timeout_fails(tmp_path: Path) -> None:
    with pytest.raises(VocabError, match="APITimeoutError"):
        run_openai(tmp_path, [("slow", 2.0, GOOD_SYNONYMS)], timeout=0.5, max_retries=0)


def test_missing_api_key_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(VocabError, match="environment variable OPENAI_API_KEY is not set"):
        run_openai(tmp_path, [])


def test_file_provider_validates(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(GOOD_SYNONYMS))
    (tmp_path / "c.json").write_text(json.dumps(CLUSTERS_A))
    files = {"synonyms": "s.json", "clusters": "c.json"}  # relative to the repository (here the test's folder)
    settings = VocabParams(provider="file", num_synonyms=2, file=files)
    vocabulary = VOCAB_PROVIDERS.get("file")(CLASSES, settings)
    assert vocabulary.clusters["vehicle"] == ["car", "bus"]
    (tmp_path / "c.json").write_text(json.dumps({"clusters": {"animal": ["cat"]}}))
    with pytest.raises(VocabError, match=r"classes \['dog', 'car', 'bus'\] are in no cluster"):
        VOCAB_PROVIDERS.get("file")(CLASSES, settings)


def test_embedding_provider_offline(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# test words\nkitten\nfeline\npuppy\nhound\nautomobile\nvehicle\ncoach\nminibus\ncats\n")
    embedding = {"vocabulary_file": words.name, "use_wordnet": False, "distance_threshold": 0.6}
    settings = VocabParams(provider="embedding", num_synonyms=2, embedding=embedding)
    vocabulary = VOCAB_PROVIDERS.get("embedding")(CLASSES, settings)
    assert vocabulary.synonyms["cat"][0] == "cat" and "cats" not in vocabulary.synonyms["cat"]
    assert {"kitten", "feline"} & set(vocabulary.synonyms["cat"][1:])
    assert sorted(m for members in vocabulary.clusters.values() for m in members) == sorted(CLASSES)


def test_purity_by_hand() -> None:
    clusters = {"a": ["cat", "dog", "car"], "b": ["bus"]}
    assert cluster_purity(clusters, VOC_SUPERCATEGORIES) == pytest.approx(3 / 4)


def test_outputs_are_byte_identical_for_identical_inputs(tmp_path: Path) -> None:
    """No date or time in the DVC-tracked vocabulary files: a rerun on another day gives the same bytes."""
    from pipeline.vocab import Vocabulary

    vocabulary = Vocabulary({"cat": ["cat", "kitten"]}, {"felines": ["cat"]}, {"provider": "file", "model": "-"})
    write_vocabulary(vocabulary, ["cat"], tmp_path / "a")
    write_vocabulary(vocabulary, ["cat"], tmp_path / "b")
    for name in ("synonyms.json", "clusters.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert "date" not in json.loads((tmp_path / "a" / name).read_text())["provenance"]
