"""Stage vocab: class synonyms and category clusters from the selected provider, with provenance."""

import sys

from pipeline import layout
from pipeline.data.classes import CLASS_NAMES
from pipeline.params import PipelineParams
from pipeline.tracking import report
from pipeline.vocab import VOCAB_PROVIDERS, write_vocabulary
from stages import run


def body(params: PipelineParams) -> None:
    classes = list(CLASS_NAMES[params.data.source])
    vocabulary = VOCAB_PROVIDERS.get(params.vocab.provider)(classes, params.vocab)
    metrics = write_vocabulary(vocabulary, classes, layout.VOCAB)
    report(
        "Vocabulary",
        [{"cluster": name, "members": ", ".join(members)} for name, members in vocabulary.clusters.items()],
        notes=f"provider {params.vocab.provider}; " + ", ".join(f"{k} {v}" for k, v in metrics.items()),
    )


if __name__ == "__main__":
    sys.exit(run("vocab", __doc__, body, ["data", "vocab"]))
