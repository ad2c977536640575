"""The stand-in CLIP's pretraining corpus: synthetic images with captions written as web alt text would be.

Images come from the benchmark's generator (pipeline/data/synthetic.py) with a seed of their own, so the
benchmark's train and val images are never part of it. Each caption names the objects in natural words — the
class's name or one of its synonyms (:data:`CLASS_WORDS`) — and, in a fraction of the captions, the contexts
they stand on (:data:`CONTEXT_WORDS`: "a boat on water"); the templates vary as alt text does. The first word
of each class is the name zero-shot prompts use; the context words are the background prompts of CLIP-ES on
this benchmark (a real CLIP uses CLIP-ES's 25 background words, params.yaml).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.data.synthetic import render_sample
from pipeline.params import SyntheticDataParams
from pipeline.voc import VOC_CLASSES

CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "aeroplane": ("aeroplane", "airplane", "plane", "jet"), "bicycle": ("bicycle", "bike"), "bird": ("bird",),
    "boat": ("boat", "ship"), "bottle": ("bottle",), "bus": ("bus",), "car": ("car",), "cat": ("cat", "kitten"),
    "chair": ("chair",), "cow": ("cow", "cattle"), "diningtable": ("dining table", "table"),
    "dog": ("dog", "puppy"), "horse": ("horse", "pony"), "motorbike": ("motorbike", "motorcycle"),
    "person": ("person", "man", "woman", "people"), "pottedplant": ("potted plant", "houseplant"),
    "sheep": ("sheep", "lamb"), "sofa": ("sofa", "couch"), "train": ("train", "locomotive"),
    "tvmonitor": ("tv monitor", "television", "monitor"),
}  # fmt: skip

CONTEXT_WORDS: dict[str, str] = {
    "sky": "sky", "water": "water", "rails": "railway", "road": "road", "grass": "grass", "tabletop": "wood",
    "floor": "floor", "carpet": "carpet", "wall": "wall", "windowsill": "windowsill", "branches": "branches",
    "pavement": "pavement", "snow": "snow", "hay": "hay",
}  # fmt: skip

OBJECT_TEMPLATES = ("a photo of {objects}.", "{objects}", "a picture of {objects}.", "an image of {objects}.")
CONTEXT_TEMPLATES = ("a photo of {objects} on {contexts}.", "{objects} on {contexts}",
                     "a picture of {objects} with {contexts}.", "{objects}, {contexts}")  # fmt: skip


def class_prompt_name(class_name: str) -> str:
    """The word a prompt uses for a class: its natural name (``diningtable`` → ``dining table``) for the
    benchmark's classes, the class name itself for any other."""
    return CLASS_WORDS[class_name][0] if class_name in CLASS_WORDS else class_name


def background_words() -> tuple[str, ...]:
    """The corpus's context words, sorted: CLIP-ES's background prompts on the synthetic benchmark."""
    return tuple(sorted(set(CONTEXT_WORDS.values())))


def with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(labels: tuple[int, ...], contexts: tuple[str, ...], context_rate: float, rng: np.random.Generator) -> str:
    """One alt-text caption: the objects (a random synonym each, random order), their contexts at ``context_rate``."""
    words = [CLASS_WORDS[VOC_CLASSES[c]][int(rng.integers(len(CLASS_WORDS[VOC_CLASSES[c]])))] for c in labels]
    order = rng.permutation(len(words))
    objects = " and ".join(with_article(words[i]) for i in order)
    if contexts and rng.random() < context_rate:
        places = " and ".join(CONTEXT_WORDS[contexts[i]] for i in rng.permutation(len(contexts)))
        return CONTEXT_TEMPLATES[int(rng.integers(len(CONTEXT_TEMPLATES)))].format(objects=objects, contexts=places)
    return OBJECT_TEMPLATES[int(rng.integers(len(OBJECT_TEMPLATES)))].format(objects=objects)


@dataclass(frozen=True)
class CorpusItem:
    image: np.ndarray  # H×W×3 uint8
    caption: str


def iter_corpus(
    look: SyntheticDataParams, corpus_seed: int, count: int, context_rate: float
) -> Iterator[CorpusItem]:  # fmt: skip
    """``count`` captioned images, deterministic in ``corpus_seed``; ``look`` is the benchmark's image settings
    (size, objects, contexts) with its seed replaced."""
    params = look.model_copy(update={"seed": corpus_seed})
    rng = np.random.default_rng([corpus_seed, 7])
    for index in range(count):
        sample = render_sample(params, "train", index)
        yield CorpusItem(sample.image, caption(sample.labels, sample.contexts, context_rate, rng))
