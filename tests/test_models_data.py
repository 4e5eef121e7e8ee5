"""Rows a model receives: named streams (pooled and frames), named targets with masks, metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from emolingua.features import get_extractor
from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore
from emolingua.models import Dataset, Frames
from emolingua.models.module import Batch, SERModule, masked_cross_entropy, masked_mse
from emolingua.models.trainer import TrainConfig, Trainer


def test_frames_store_sequences_end_to_end_and_pad():
    f = Frames.from_list([np.ones((3, 2)), np.full((1, 2), 2.0), np.zeros((4, 2))])
    assert len(f) == 3 and f.lengths.tolist() == [3, 1, 4] and f.shape == (3, 2)
    padded, lengths = f.padded()
    assert padded.shape == (3, 4, 2) and lengths.tolist() == [3, 1, 4]
    assert (padded[1, 1:] == 0).all() and (padded[1, 0] == 2).all()
    assert f.take(np.array([2, 0])).lengths.tolist() == [4, 3]
    with pytest.raises(ValueError, match="row 1"):
        Frames.from_list([np.ones((3, 2)), np.ones((3, 5))])


def test_targets_carry_masks_and_each_language_its_own_label_set():
    d = Dataset(streams={"a": np.zeros((5, 4))}, corpus=["x"] * 5,
                targets={"label": ["ang", None, "hap", "sad", "ang"], "arousal": [0.1, np.nan, 0.3, np.nan, 0.5]},
                language=["de", "de", "ur", "ur", "ur"])  # fmt: skip
    assert d.mask("label").tolist() == [True, False, True, True, True]
    assert d.mask("arousal").tolist() == [True, False, True, False, True]
    assert d.label_sets() == {"de": ["ang"], "ur": ["ang", "hap", "sad"]}
    assert d.summary()["target.label"] == {"ang": 2, "hap": 1, "sad": 1}
    with pytest.raises(AttributeError, match="targets label, arousal"):
        d.y
    assert d.select(targets=["arousal"]).y.tolist()[0] == 0.1
    with pytest.raises(ValueError, match="same number of rows"):
        Dataset(streams={"a": np.zeros((5, 4)), "b": np.zeros((4, 4))})


def test_batch_from_dataset_pads_frames_masks_targets_and_keeps_metadata():
    frames = Frames.from_list([np.ones((2, 3)), np.ones((5, 3)), np.ones((1, 3))])
    d = Dataset(streams={"p": np.arange(6).reshape(3, 2), "f": frames},
                targets={"label": ["a", "zz", "b"], "arousal": [0.5, np.nan, 0.1]},
                language=["de", "sw", "ur"], speaker=["s1", "s2", "s3"], ids=["1.wav", "2.wav", "3.wav"])  # fmt: skip
    b = Batch.from_dataset(d, classes={"label": ["a", "b"]}, languages=["de", "ur"])
    assert b.streams["f"].shape == (3, 5, 3) and b.lengths["f"].tolist() == [2, 5, 1]
    assert b.frame_mask("f").sum(dim=1).tolist() == [2, 5, 1]
    assert b.masks["label"].tolist() == [True, False, True]  # "zz" is not in this head's label set
    assert b.targets["label"][b.masks["label"]].tolist() == [0, 1]
    assert b.masks["arousal"].tolist() == [True, False, True] and b.language_ids.tolist() == [1, 0, 2]
    sub = b.rows(torch.tensor([2, 0]))
    assert sub.streams["f"].shape == (2, 2, 3)  # cut to the longest sequence among those rows
    assert sub.meta["ids"].tolist() == ["3.wav", "1.wav"] and sub.meta["speaker"].tolist() == ["s3", "s1"]


class ThreeStreams(SERModule):
    """A pooled layered stream, a pooled vector and a frame sequence; a label head and an arousal head."""

    def __init__(self, *, n_classes: int) -> None:
        super().__init__()
        self.layers = nn.Parameter(torch.zeros(3))
        self.frames = nn.GRU(6, 8, batch_first=True)
        self.body = nn.Sequential(nn.Linear(16 + 4 + 8, 32), nn.ReLU())
        self.label = nn.Linear(32, n_classes)
        self.arousal = nn.Linear(32, 1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        layered = (batch.streams["whisper"] * torch.softmax(self.layers, 0)[None, :, None]).sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(batch.streams["mfcc/frames"], batch.lengths["mfcc/frames"],
                                                   batch_first=True, enforce_sorted=False)  # fmt: skip
        _, last = self.frames(packed)
        h = self.body(torch.cat([layered, batch.streams["egemaps"].flatten(1), last[0]], dim=1))
        return {"logits": self.label(h), "arousal": self.arousal(h).squeeze(1)}

    def losses(self, outputs, batch, epoch):
        return {"ce": masked_cross_entropy(outputs["logits"], batch, "label"),
                "mse": masked_mse(outputs["arousal"], batch, "arousal")}  # fmt: skip


def synthetic(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    whisper = rng.normal(size=(n, 3, 16))
    whisper[:, 2, :3] += np.eye(3)[k] * 3
    egemaps = rng.normal(size=(n, 1, 4))
    seqs = []
    for i in range(n):
        x = rng.normal(size=(int(rng.integers(3, 12)), 6))
        x[:, 0] += k[i]  # the frames carry the class too
        seqs.append(x.astype(np.float32))
    arousal = np.where(rng.random(n) < 0.3, np.nan, k * 0.5 + rng.normal(scale=0.1, size=n))  # 30 % unrated
    label = np.array(["ang", "hap", "sad"])[k].astype(object)
    label[rng.random(n) < 0.2] = None  # 20 % unlabelled
    return Dataset(streams={"whisper": whisper, "egemaps": egemaps, "mfcc/frames": Frames.from_list(seqs)},
                   targets={"label": label, "arousal": arousal}, language=["de"] * n)  # fmt: skip


def test_a_model_with_three_streams_of_different_widths_and_two_targets_trains_through_the_trainer():
    classes = {"label": ["ang", "hap", "sad"]}
    train = Batch.from_dataset(synthetic(150, 0), classes=classes, languages=["de"])
    valid_rows = synthetic(60, 1)
    valid = Batch.from_dataset(valid_rows, classes=classes, languages=["de"])

    def evaluate(module):
        out = module(valid)
        keep = valid.masks["label"]
        acc = (out["logits"].argmax(1)[keep] == valid.targets["label"][keep]).float().mean()
        err = ((out["arousal"] - valid.targets["arousal"])[valid.masks["arousal"]] ** 2).mean()
        return {"acc": float(acc), "mse": float(err)}

    torch.manual_seed(0)
    module = Trainer(TrainConfig(epochs=25, batch_size=32, lr=3e-3, monitor="acc", mode="max", patience=25,
                                 threads=1), log=lambda line: None).fit(ThreeStreams(n_classes=3), train=train,
                                                                         evaluate=evaluate)  # fmt: skip
    first, best = module.history_[0], module.history_[module.best_epoch_ - 1]
    assert {"loss.ce", "loss.mse", "acc", "mse"} <= set(first)
    assert best["acc"] > 0.9 and best["loss.mse"] < first["loss.mse"] and best["mse"] < 0.2


def test_from_store_loads_several_extractors_and_frames_aligned_to_the_manifest(tone, tmp_path):
    paths = [str(tone(tmp_path / f"a{i}.wav", seconds=0.2 + 0.1 * i, seed=i)) for i in range(3)]
    manifest = pd.DataFrame({"path": [*paths, str(tmp_path / "missing.wav")], "label": ["ang", "hap", None, "sad"],
                             "corpus": "c", "language": "en", "speaker": ["s1", "s2", "s3", "s4"]})  # fmt: skip
    store = FeatureStore(root=tmp_path / "store")
    mfcc, logmel = get_extractor("mfcc", frames=True), get_extractor("logmel")
    for ex in (mfcc, logmel):
        extract_to_store(paths=paths, extractor=ex, store=store, progress=False)
    data, found = Dataset.from_store(manifest=manifest, store=store, extractors=[mfcc, logmel],
                                     targets=("label", "arousal"), frames=True)  # fmt: skip
    assert found.tolist() == [True, True, True, False] and len(data) == 3
    assert set(data.streams) == {"mfcc", "logmel", "mfcc/mfcc"}
    assert data.streams["mfcc/mfcc"].lengths.tolist()[0] < data.streams["mfcc/mfcc"].lengths.tolist()[2]
    assert data.mask("label").tolist() == [True, True, False] and not data.mask("arousal").any()
    assert data.features["mfcc"]["fingerprint"] == mfcc.fingerprint() and data.ids.tolist() == paths


def test_pooled_frames_average_windows_and_keep_every_frame():
    f = Frames.from_list([np.arange(5.0)[:, None], np.zeros((0, 1)), 10 * np.arange(4.0)[:, None], np.ones((1, 1))])
    two = f.pooled(2)
    assert [two[i].ravel().tolist() for i in range(4)] == [[0.5, 2.5, 4.0], [], [5.0, 25.0], [1.0]]
    assert f.pooled(1) is f
    assert f.pooled(100).lengths.tolist() == [1, 0, 1, 1] and f.pooled(100)[0].item() == 2.0
