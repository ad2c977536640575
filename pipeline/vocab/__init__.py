"""The vocabulary stage: class synonyms (POLE) and category clusters (PCC) from a swappable provider.

Providers are registered by name in ``VOCAB_PROVIDERS``; each returns a :class:`Vocabulary`. The stage writes
``synonyms.json`` (per class: its ground-truth name first, then m synonyms) and ``clusters.json`` (cluster
name → members, and class → clusters; a class may sit in several clusters), both with provenance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.io import write_json
from pipeline.registry import Registry
from pipeline.voc import VOC_CLASSES, VOC_SUPERCATEGORIES

VOCAB_PROVIDERS: Registry = Registry("vocabulary provider")
PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


class VocabError(ValueError):
    """A provider's answer could not be turned into a valid vocabulary."""


@dataclass
class Vocabulary:
    synonyms: dict[str, list[str]]  # class → [class name, synonym 1, …]
    clusters: dict[str, list[str]]  # cluster name → member classes
    provenance: dict[str, Any] = field(default_factory=dict)

    def membership(self) -> dict[str, list[str]]:
        """class → sorted names of the clusters it belongs to."""
        members: dict[str, list[str]] = {}
        for name, classes in self.clusters.items():
            for cls in classes:
                members.setdefault(cls, []).append(name)
        return {cls: sorted(names) for cls, names in sorted(members.items())}


def prompt_text(name: str) -> str:
    """A prompt template from the repository's ``prompts/`` directory."""
    return (PROMPTS / f"{name}.txt").read_text()


def prompt_hash(name: str) -> str:
    return hashlib.sha256(prompt_text(name).encode()).hexdigest()[:16]


def check_synonyms(answer: dict[str, list[str]], classes: list[str], count: int) -> dict[str, list[str]]:
    """Every class present, exactly ``count`` distinct non-empty synonyms, none equal to the class."""
    missing = [c for c in classes if c not in answer]
    extra = [c for c in answer if c not in classes]
    if missing or extra:
        raise VocabError(f"synonyms must cover exactly the classes; missing {missing}, unknown {extra}")
    result = {}
    for cls in classes:
        words = [w.strip() for w in answer[cls] if isinstance(w, str) and w.strip()]
        words = list(dict.fromkeys(w for w in words if w.lower() != cls.lower()))
        if len(words) != count:
            raise VocabError(f"class '{cls}' needs {count} distinct synonyms other than itself, got {words}")
        result[cls] = [cls, *words]
    return result


def check_clusters(answer: dict[str, list[str]], classes: list[str]) -> dict[str, list[str]]:
    """Known classes only, every class in at least one cluster, no empty cluster; sorted for comparison."""
    clusters = {}
    for name, members in answer.items():
        if not name.strip() or not members:
            raise VocabError(f"cluster {name!r} has no name or no members")
        unknown = [m for m in members if m not in classes]
        if unknown:
            raise VocabError(f"cluster '{name}' names unknown classes {unknown}")
        clusters[name.strip()] = sorted(set(members), key=classes.index)
    placed = {m for members in clusters.values() for m in members}
    missing = [c for c in classes if c not in placed]
    if missing:
        raise VocabError(f"classes {missing} are in no cluster")
    return dict(sorted(clusters.items()))


def cluster_purity(clusters: dict[str, list[str]], reference: dict[str, tuple[str, ...]]) -> float:
    """Purity against reference groups: Σ_clusters max_group |cluster ∩ group| / Σ_clusters |cluster|."""
    total = sum(len(members) for members in clusters.values())
    hits = sum(max(len(set(members) & set(group)) for group in reference.values()) for members in clusters.values())
    return hits / total if total else float("nan")


def write_vocabulary(vocabulary: Vocabulary, classes: list[str], out: Path) -> dict[str, Any]:
    """Write synonyms.json, clusters.json and metrics.json (purity for VOC class names) into ``out``."""
    provenance = vocabulary.provenance  # no date: identical inputs give byte-identical outputs
    write_json(out / "synonyms.json", {"provenance": provenance, "synonyms": vocabulary.synonyms})
    write_json(
        out / "clusters.json",
        {"provenance": provenance, "clusters": vocabulary.clusters, "membership": vocabulary.membership()},
    )
    metrics: dict[str, Any] = {"clusters": len(vocabulary.clusters), "rounds": provenance.get("rounds", 0)}
    if set(classes) == set(VOC_CLASSES):
        metrics["purity_vs_voc_supercategories"] = cluster_purity(vocabulary.clusters, VOC_SUPERCATEGORIES)
    write_json(out / "metrics.json", metrics)
    return metrics


def load_json_file(path: Path) -> Any:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: vocabulary file not found")
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise VocabError(f"{path}: not valid JSON: {error}") from error


from pipeline.vocab import providers as _providers  # noqa: E402,F401  (registers the providers)
