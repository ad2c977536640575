"""POLE as a CAM method: CLIMS (pipeline/cams/methods/clims/model.py) with per-image prompts and adaptors.

Each (image, present class) pair's prompt is the word ``select_prompts`` chose for it (eq. 6, ``prompts.json``);
all candidate prompts are embedded once, and the batch carries each image's choice indices (its per-image
input). The object and background matching terms (eq. 5) compare the adapted image views (eq. 7, one image
adaptor for both views) with the adapted prompt (eq. 8), each renormalised for the cosine; the background
suppression compares the unadapted object views with the background prompts, as POLE's code does. The
adaptors are trained with the classifier's learning rate and saved; the CAM at inference is the network's
alone, as CLIMS's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.clims.model import Clims, first_phase_network
from pipeline.cams.methods.plain_cam.params import PlainCamParams
from pipeline.cams.methods.pole.adaptors import Adaptor
from pipeline.cams.methods.pole.params import PoleParams
from pipeline.cams.methods.pole.selection import candidate_table
from pipeline.cams.registry import CAM_METHODS
from pipeline.clip.models import Clip, load_clip


def load_choices(path: Path, class_names: tuple[str, ...]) -> tuple[dict[str, list[str]], dict[str, torch.Tensor]]:
    """The candidates per class and, per image, the (K,) index of each present class's chosen word (0 else)."""
    data = json.loads(Path(path).read_text())
    if data.get("method") != "pole":
        raise ValueError(f"{path}: no POLE prompt selection in it (`dvc repro select_prompts`)")
    candidates = data["candidates"]
    if set(candidates) != set(class_names):
        raise ValueError(f"{path}: selected for classes {sorted(candidates)}, the dataset has {sorted(class_names)}")
    index = {name: {word: i for i, word in enumerate(words)} for name, words in candidates.items()}
    choices = {}
    for image_id, chosen in data["choices"].items():
        row = torch.zeros(len(class_names), dtype=torch.long)
        for name, word in chosen.items():
            row[class_names.index(name)] = index[name][word]
        choices[image_id] = row
    return candidates, choices


@CAM_METHODS.register("pole")
class Pole(Clims):
    params_model = PoleParams

    def __init__(self, params: PoleParams, network: PlainCamParams, clip: Clip, class_names: tuple[str, ...],
                 choices: Path) -> None:  # fmt: skip
        super().__init__(params, network, clip, class_names)
        candidates, self.choices = load_choices(choices, class_names)
        table, _ = candidate_table(clip, params.selection.template, candidates, class_names)
        self.register_buffer("candidate_text", table, persistent=False)  # (K, S, D)
        dim = self.class_text.shape[-1]
        self.image_adaptor = Adaptor(dim, params.adaptors.reduction, params.adaptors.ratio_init)
        self.text_adaptor = Adaptor(dim, params.adaptors.reduction, params.adaptors.ratio_init)

    @classmethod
    def build(cls, params: PoleParams, context: BuildContext) -> Pole:
        """CLIMS's network from the first phase (trained weights unless a checkpoint follows), the selection."""
        network, weights = first_phase_network(context.inputs["coarse_model"])
        clip = load_clip(context.inputs["clip"], context.device)
        model = cls(params, network, clip, context.class_names, context.inputs["prompt_choices"])
        if context.pretrained:
            model.network.load_state_dict(weights)
        return model

    def per_image_inputs(self) -> Mapping[str, torch.Tensor]:
        """Each train image's (K,) chosen-candidate indices, which the batch carries to :meth:`pair_text`."""
        return self.choices

    def pair_text(self, image_index: torch.Tensor, classes: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
        """The prompt of each pair: its class's candidate chosen for its image (eq. 6)."""
        return self.candidate_text[classes, choices[image_index, classes]]

    def matching_embeddings(self, objects: torch.Tensor, backgrounds: torch.Tensor, text: torch.Tensor):
        """Eq. 7 on both views, eq. 8 on the prompts, renormalised for the cosines of eq. 5."""
        return (F.normalize(self.image_adaptor(objects), dim=-1), F.normalize(self.image_adaptor(backgrounds), dim=-1),
                F.normalize(self.text_adaptor(text), dim=-1))  # fmt: skip
