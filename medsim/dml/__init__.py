"""Deep metric learning: projection heads into one shared space, hash codes, training.

Built on pytorch-metric-learning (pml): losses, miners, the M-per-class sampler and the
MAP@R accuracy calculator are pml's; this package only wires them to medsim's frozen
embeddings. One module per concern:

- :mod:`medsim.dml.heads`: ``ProjectionHead`` (MLP -> L2-normalised ``dim``-d vector, one
  per modality) and ``HashingHead`` (tanh-relaxed codes of 32/64/128 bits).
- :mod:`medsim.dml.losses`: ``LOSSES`` registry keyed by the top-level ``loss`` param
  (triplet, contrastive, multi_similarity, ntxent, proxy_anchor, ...), each with its miner
  and hyperparameters from ``train.*``.
- :mod:`medsim.dml.sampling`: the M-per-class batch sampler (pml ``MPerClassSampler``).
- :mod:`medsim.dml.fusion`: the document embedding fused from a document's parts.
- :mod:`medsim.dml.model`: ``SharedSpace`` plus save/load/project/hash/document_vectors.
- :mod:`medsim.dml.train`: ``train_space`` (pure, any feature matrices): the epochs, their
  loss terms and early stopping; :mod:`medsim.dml.rows` (each modality's rows, cross-modal
  pairs, the class pool), :mod:`medsim.dml.validation` (MAP@R on the val split),
  :mod:`medsim.dml.steps` (the one step loop and seeding, shared with the encoder tuning),
  :mod:`medsim.dml.live` (dvclive curves).
- :mod:`medsim.dml.fit`: ``fit_space``: the candidate spaces (:mod:`medsim.dml.candidates`;
  :mod:`medsim.dml.tune` tunes the encoder, :mod:`medsim.dml.lexical` adds words), the best
  kept by the criterion that fits what the space is for (:mod:`medsim.dml.choice`: kNN on the
  validation split, few-shot on held-out classes or on folds of a few labelled documents).
- :mod:`medsim.dml.prototypes`: nearest-prototype few-shot episodes and accuracy.
- :mod:`medsim.dml.neighbours`: kNN classification, the rule the choice and Table 1 share,
  and the one mean average precision (validation and evaluate's retrieval rows).
- :mod:`medsim.dml.stage`: ``run_train``, the DVC ``train`` stage (file I/O at the edges).
- :mod:`medsim.dml.data`: reading ``data/embeddings/*.parquet`` and labels into arrays.

Stable API (the evaluate and index stages rely on it)::

    from medsim.dml import (SharedSpace, load_shared_space, project, hash_codes,
                            document_vectors, train_space, run_train, MODALITIES)

    MODALITIES = ("text", "caption", "table", "image")

    class SharedSpace(torch.nn.Module):
        heads: ModuleDict[modality -> ProjectionHead]      # only the modalities it was trained on
        hashers: ModuleDict[str(bits) -> HashingHead]  # shared by every modality
        dim: int; input_dims: dict[modality, int]; bits: list[int]; loss: str; params: dict
        def save(self, directory: Path) -> None        # weights.pt + config.json
    load_shared_space(directory: Path) -> SharedSpace   # eval mode, CPU

    project(space, modality, vectors: np.ndarray, batch_size=4096) -> np.ndarray
        # float32 [n, dim], each row L2-normalised. KeyError-like MedsimError for an
        # unknown modality. n == 0 gives an empty [0, dim] array.
    hash_codes(space, modality, vectors: np.ndarray, bits: int) -> np.ndarray
        # uint8 0/1 [n, bits]: sign of the hashing head over the projected vector.
    document_vectors(space, text, parts) -> (doc_ids: list[str], np.ndarray [n, dim])
        # text: DataFrame or pa.Table with columns doc_id, vector (the text embeddings);
        # parts: {modality: table of (doc_id, vector)} for "caption", "table", "image".
        # Fusion rule: each part is projected by its modality's head; a document's vector is
        # the L2-normalised mean of its projected text and the mean of each part modality it has
        # (text weighs as much as all figures together, not as one figure among twenty);
        # modalities the space has no head for are ignored. Documents without text are kept
        # when they have parts. Order follows the text table, then part-only documents.

    train_space(features, labels, splits, params: TrainParams, loss: str, seed: int,
                log_dir: Path | None = None) -> (SharedSpace, history: list[dict])
        # features: {modality: (ids, doc_ids, matrix float32 [n, d_modality])}; "text" (or any one
        #   modality) carries class labels through its doc_id; other modalities are aligned
        #   cross-modally to the parts sharing their doc_id.
        # labels: {doc_id: label}; splits: {doc_id: "train"|"val"|"test"}.
        # Trains on split == "train", early-stops on validation MAP@R (pml
        # AccuracyCalculator, same-label = relevant) of the text modality (or the first modality
        # present), restores the best epoch. Pure apart from the optional dvclive log_dir.
        # history: one dict per epoch: epoch, loss, val_map_at_r (+ epoch 0 = untrained).
        # Any feature matrices work (e.g. TF-IDF for a baseline): dims are read from them.

    run_train(params: Params, root: Path) -> Path   # the DVC stage; writes data/model/
        # also writes data/model/history.json and dvclive curves under dvclive/train/

    codes_from_projected(space, projected: np.ndarray, bits) -> np.ndarray
        # uint8 0/1 codes of vectors already in the space (e.g. fused document vectors).
"""

from medsim.dml import model
from medsim.dml.model import *  # noqa: F403  (the stable API above)
from medsim.dml.stage import run_train
from medsim.dml.train import train_space

__all__ = ["run_train", "train_space"]
__all__ += model.__all__
