"""Files a stage reads from outside the pipeline's outputs — the dataset, vocabulary files, checkpoints — as
its dependencies.

The ``input_files`` stage writes, for each stage in :data:`READERS`, the SHA-256 of every file that stage reads
for the current params (``artifacts/inputs/<stage>.json``); the stage depends on its JSON. It runs on every
``dvc repro`` (``always_changed``), since only looking can tell that a mask of a VOC copy outside the
repository or a checkpoint in the torch hub cache changed; its outputs change only when a file's content (or
the set of files) does, so only then does the reading stage rerun, and what follows it.

Cheap by a digest cache, as DVC's own state database: ``.cache/input_files.json`` maps each path to its size,
mtime, ctime and inode with the SHA-256 they had; a file whose four are unchanged is not read again, so a
no-op run only stats the files (``benchmarks/input_files.py`` measures it on a VOC-sized tree). Where a
library finds a checkpoint (open_clip's pretrained tags, timm's and smp's Hugging Face files, torchvision's
ImageNet files in the torch hub cache), the path it finds is cached too, keyed by the request and the cache
variables (``TORCH_HOME``, ``HF_HOME`` …), and looked up again when the file or its folder changed; a
checkpoint not found is looked up on every run (the stage that needs it fails naming it).

A file that is missing is recorded as ``missing``, so its later appearance reruns the stage. Paths of a split
list's ids that would leave the dataset root are skipped here: ``prepare_data`` refuses them, naming the list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.io import atomic_path, id_problem, resolves_inside, sha256_file
from pipeline.layout import INPUT_FILES
from pipeline.params import PipelineParams

DIGEST_CACHE = Path(".cache/input_files.json")
CACHE_VARIABLES = ("TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HOME")
MISSING = "missing"


class DigestCache:
    """SHA-256 of files by (size, mtime, ctime, inode), and library-found checkpoint paths by request."""

    def __init__(self, path: Path = DIGEST_CACHE) -> None:
        self.path = path
        try:
            stored = json.loads(path.read_text()) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            stored = {}  # a damaged cache costs one full hash, never a wrong digest
        self.digests: dict[str, list] = stored.get("digests", {})
        self.found: dict[str, list] = stored.get("found", {})
        self.hashed = 0
        self.changed = False

    def digest(self, path: str) -> str:
        """The file's SHA-256 (read again only when its size, mtime, ctime or inode changed), or ``missing``."""
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return MISSING
        key = path if os.path.isabs(path) else os.path.abspath(path)
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        cached = self.digests.get(key)
        if cached is None or cached[:4] != signature:
            self.hashed += 1
            self.changed = True
            cached = [*signature, sha256_file(Path(path))]
            self.digests[key] = cached
        return cached[4]

    def locate(self, request: str, find: Callable[[], Path | None]) -> Path | None:
        """``find()``'s answer for ``request`` (a library's lookup: it may import torch), reused while the file
        and its folder are unchanged and the cache variables are the same."""
        key = json.dumps([request, {name: os.environ.get(name) for name in CACHE_VARIABLES}])
        cached = self.found.get(key)
        if cached is not None and _folder_signature(Path(cached[0])) == cached[1]:
            return Path(cached[0])
        path = find()
        self.changed = True
        if path is None:
            self.found.pop(key, None)
            return None
        self.found[key] = [str(path), _folder_signature(path)]
        return path

    def save(self, keep: Iterable[str]) -> None:
        """Write the cache when it changed, keeping only the digests of ``keep`` (files no stage reads any more
        are dropped)."""
        kept = {path if os.path.isabs(path) else os.path.abspath(path) for path in keep}
        digests = {key: value for key, value in self.digests.items() if key in kept}
        if not self.changed and len(digests) == len(self.digests):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"digests": digests, "found": self.found}))


def _folder_signature(path: Path) -> list[int] | None:
    try:
        return [path.stat().st_mtime_ns, path.parent.stat().st_mtime_ns]
    except FileNotFoundError:
        return None


# --- what each stage reads ---------------------------------------------------------------------------------
def dataset_files(params: PipelineParams, cache: DigestCache) -> list[Path | str]:
    """The split lists, the label file and every listed image and mask of a real dataset (the synthetic one
    is generated from params: none)."""
    if params.data.source == "synthetic":
        return []
    from pipeline.data.layouts import dataset_layout, listed_ids

    layout = dataset_layout(params.data, check=False)  # the lists and folders named in params stay inside
    files: list[Path | str] = [*layout.lists.values(), *([layout.label_file] if layout.label_file else [])]
    root = str(layout.root)
    for split, listing in layout.lists.items():
        if listing.is_file():  # ids with a path separator, "..", NUL … are refused by prepare_data: not read here
            try:
                ids = [image_id for image_id in listed_ids(listing) if not id_problem(image_id)]
            except UnicodeDecodeError:
                continue  # prepare_data refuses the list, naming it
            files += [os.path.join(root, part(split, i)) for i in ids for part in (layout.image, layout.mask)]
    if params.data.symlinks == "inside":  # linked out of the root: refused by prepare_data, not read here
        files = [path for path in files if resolves_inside(layout.root, path)]
    return files


def vocabulary_files(params: PipelineParams, cache: DigestCache) -> list[Path]:
    """The selected provider's files: the synonyms and clusters (``file``) or the word list (``embedding``);
    an LLM's answers are cached under ``vocab.cache_dir``, keyed by the request (pipeline/vocab/llm.py)."""
    vocab = params.vocab
    if vocab.provider == "file":
        return [Path(vocab.file.synonyms), Path(vocab.file.clusters)]
    if vocab.provider == "embedding":
        return [Path(vocab.embedding.vocabulary_file)]
    return []


def sam_checkpoint(params: PipelineParams, cache: DigestCache) -> list[Path]:
    proposals = params.proposals
    return [Path(proposals.sam.checkpoint)] if proposals.method == "sam" else []


def located(cache: DigestCache, request: str, find: Callable[[], Path | None]) -> list[Path]:
    """The file a library's lookup ``find`` names (cached, see :meth:`DigestCache.locate`); none when it finds
    nothing (the stage that loads it then fails, naming it)."""

    def attempt() -> Path | None:
        try:
            return find()
        except (FileNotFoundError, ValueError):
            return None

    found = cache.locate(request, attempt)
    return [found] if found else []


def clip_weights(params: PipelineParams, cache: DigestCache) -> list[Path]:
    """A real CLIP's weights, when the selected CAM method stands on CLIP; pretrain_clip writes their digest
    into the CLIP descriptor every CLIP stage depends on."""
    clip = params.clip.open_clip
    if params.clip.source != "open_clip" or not type(params.cam.selected()).uses_clip():
        return []
    if clip.checkpoint is not None:
        return [Path(clip.checkpoint)]

    def find() -> Path:
        from pipeline.clip.models import open_clip_weights

        return open_clip_weights(clip)

    return located(cache, f"open_clip {clip.model_dump_json()}", find)


def imagenet_resnet(arch: str, cache: DigestCache, weights: str = "imagenet") -> list[Path]:
    def find() -> Path:
        from pipeline.backbones import imagenet_weights_file

        return imagenet_weights_file(arch, weights)

    return located(cache, f"torchvision {weights} {arch}", find)


def cam_method_weights(method: str, params: PipelineParams, cache: DigestCache) -> list[Path]:
    """The ImageNet weights of CAM method ``method``'s backbone (a torchvision ResNet or a timm ViT)."""
    section = params.cam.section(method)
    backbone = getattr(section, "backbone", "vit" if hasattr(section, "vit") else None)
    if backbone == "resnet" and section.resnet.weights != "none":
        return imagenet_resnet(section.resnet.arch, cache, section.resnet.weights)
    if backbone != "vit" or section.vit.weights != "imagenet":
        return []
    if section.vit.checkpoint is not None:
        return [Path(section.vit.checkpoint)]

    def find() -> Path:
        from pipeline.backbones import local_vit_weights

        return local_vit_weights(section.vit)

    return located(cache, f"timm {section.vit.model}", find)


def classifier_weights(params: PipelineParams, cache: DigestCache) -> list[Path]:
    return cam_method_weights(params.cam.method, params, cache)


def first_phase_weights(params: PipelineParams, cache: DigestCache) -> list[Path]:
    first = type(params.cam.selected()).coarse_method
    return cam_method_weights(first, params, cache) if first else []


def irn_trunk_weights(params: PipelineParams, cache: DigestCache) -> list[Path]:
    network = params.refine.irn.network
    if params.refine.method != "irn" or network.backbone != "imagenet":
        return []
    return imagenet_resnet(network.arch, cache)


def segmenter_weights(params: PipelineParams, cache: DigestCache) -> list[Path]:
    segmenter = params.segmenter
    if segmenter.weights != "imagenet":
        return []
    if segmenter.network == "deeplabv3":
        return imagenet_resnet(segmenter.encoder, cache)

    def find() -> Path | None:
        from pipeline.segmentation.networks import smp_encoder_weights_file

        return smp_encoder_weights_file(segmenter.encoder)

    return located(cache, f"smp imagenet {segmenter.encoder}", find)


Reader = Callable[[PipelineParams, DigestCache], list[Path | str]]
READERS: dict[str, Reader] = {
    "prepare_data": dataset_files,
    "vocab": vocabulary_files,
    "sam_masks": sam_checkpoint,
    "pretrain_clip": clip_weights,
    "train_coarse": first_phase_weights,
    "train_classifier": classifier_weights,
    "train_irn": irn_trunk_weights,
    "train_segmenter": segmenter_weights,
    "train_segmenter_fullsup": segmenter_weights,
}


def write_input_files(params: PipelineParams, out_dir: Path = INPUT_FILES, cache: DigestCache | None = None) -> int:
    """Write ``out_dir/<stage>.json`` ({"stage", "files": path → SHA-256 or ``missing``}) for every reader;
    return how many files were read (hashed) this time."""
    cache = cache or DigestCache()
    read: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for stage, reader in READERS.items():
        files = [os.fspath(path) for path in reader(params, cache)]
        digests = {path: cache.digest(path) for path in files}
        with atomic_path(out_dir / f"{stage}.json") as tmp:  # compact: a VOC tree's is 24k lines
            tmp.write_text(json.dumps({"stage": stage, "files": digests}, sort_keys=True, separators=(",", ":")))
        read += files
    cache.save(read)
    return cache.hashed

