"""The parts of the multi-gating model (Wang et al. 2022), each against what it must compute."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emolingua.models import Dataset, Frames, Model, get_model
from emolingua.models.multigate import HardConcreteMask, SequenceExpert, class_contrastive_loss


def test_the_hard_concrete_mask_is_deterministic_in_evaluation_and_has_a_gradient():
    mask = HardConcreteMask(4, beta=0.9, gamma=-0.1, zeta=2.0)
    with torch.no_grad():
        mask.log_alpha.copy_(torch.tensor([[-10.0, 0.0, 0.5, 10.0]] * 4))
    mask.eval()
    z = mask.gates()
    s = torch.sigmoid(torch.tensor([-10.0, 0.0, 0.5, 10.0]))
    expected = (s * 2.1 - 0.1).clamp(0, 1)
    assert torch.allclose(z[0], expected) and z[0, 0] == 0.0 and z[0, 3] == 1.0
    assert torch.equal(mask.gates(), z)  # no noise in evaluation
    assert mask.density() == 0.75
    mask.train()
    h = torch.randn(3, 4)
    mask(h).sum().backward()
    assert mask.log_alpha.grad is not None and mask.log_alpha.grad.abs().sum() > 0
    assert mask.weight.grad is not None
    # the expected-L0 penalty: sigmoid(log_alpha - beta * log(-gamma / zeta))
    penalty = mask.expected_l0().detach()
    assert math.isclose(float(penalty), float(torch.sigmoid(mask.log_alpha.detach() - 0.9 * math.log(0.1 / 2.0)).mean()), rel_tol=1e-6)


def _by_hand(f: torch.Tensor, y: list[int], w: float, b: float) -> float:
    """The GE2E softmax loss written out sample by sample, as Wan et al. define it."""
    e = [v / v.norm() for v in f]
    losses = []
    for i, yi in enumerate(y):
        if y.count(yi) < 2:
            continue  # no leave-one-out centroid
        s = []
        for k in sorted(set(y)):
            members = [e[j] for j in range(len(y)) if y[j] == k and j != i]
            c = sum(members) / len(members)
            s.append(w * float(e[i] @ (c / c.norm())) + b)
        losses.append(-s[sorted(set(y)).index(yi)] + math.log(sum(math.exp(v) for v in s)))
    return sum(losses) / len(losses)


def test_the_class_contrastive_loss_matches_a_hand_computed_case():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0], [0.2, 1.0]])
    y = [0, 0, 1, 1, 0]
    w, b = torch.tensor(10.0), torch.tensor(-5.0)
    got = class_contrastive_loss(f, torch.tensor(y), w, b)
    assert math.isclose(float(got), _by_hand(f, y, 10.0, -5.0), rel_tol=1e-5)
    # a class with one sample has no leave-one-out centroid: that sample is left out
    assert math.isclose(float(class_contrastive_loss(f[:3], torch.tensor(y[:3]), w, b)), _by_hand(f[:3], y[:3], 10.0, -5.0),
                        rel_tol=1e-5)  # fmt: skip
    assert float(class_contrastive_loss(f[:2], torch.tensor(y[:2]), w, b)) == 0.0  # one class only


def test_a_sequence_expert_gives_each_row_the_same_vector_alone_or_in_a_batch_of_other_lengths():
    torch.manual_seed(0)
    expert = SequenceExpert(6).eval()
    seqs = [torch.randn(t, 6) for t in (3, 9, 1, 5)]
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    padded[0, 3:] = 7.0  # garbage in the padding must not matter
    lengths = torch.tensor([len(s) for s in seqs])
    with torch.no_grad():
        together = expert(padded, lengths)
        alone = torch.cat([expert(s[None], torch.tensor([len(s)])) for s in seqs])
    assert together.shape == (4, 256)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def two_languages(n: int, seed: int) -> Dataset:
    """German rows with four classes, Urdu rows with three; frames, a speaker vector and one utterance vector."""
    rng = np.random.default_rng(seed)
    classes = {"de": ["angry", "happy", "neutral", "sad"], "ur": ["angry", "happy", "sad"]}
    rows = {"lang": [], "label": [], "frames": [], "spk": [], "vec": []}
    for i in range(n):
        lang = "de" if i % 2 else "ur"
        label = classes[lang][(i // 2) % len(classes[lang])]
        k = ["angry", "happy", "neutral", "sad"].index(label)
        frames = rng.normal(size=(int(rng.integers(4, 10)), 5)).astype(np.float32)
        frames[:, k % 5] += 2.0
        vec = rng.normal(size=8)
        vec[k] += 2.0
        rows["lang"].append(lang), rows["label"].append(label), rows["frames"].append(frames)
        rows["spk"].append(rng.normal(size=16)), rows["vec"].append(vec)
    return Dataset(streams={"w/frames": Frames.from_list(rows["frames"]), "ge2e": np.array(rows["spk"]),
                            "egemaps": np.array(rows["vec"])},
                   targets={"label": rows["label"]}, language=rows["lang"], corpus=rows["lang"])  # fmt: skip


@pytest.fixture(scope="module")
def fitted():
    model = get_model("multigate", tower=(32,), threads=1, frame_step=(1,), train={"epochs": 8, "batch_size": 16, "lr": 2e-3})
    return model.fit(two_languages(96, 0), valid=two_languages(40, 1))


def test_gate_weights_sum_to_one_per_utterance_and_each_language_keeps_its_label_set(fitted):
    test = two_languages(20, 2)
    w = fitted.gate_weights_(test)
    assert w.shape == (20, 3) and np.allclose(w.sum(axis=1), 1.0)  # frames, egemaps, speaker
    assert fitted.label_sets_ == {"de": ["angry", "happy", "neutral", "sad"], "ur": ["angry", "happy", "sad"]}
    proba = fitted.predict_proba(test)
    urdu = test.language == "ur"
    neutral = list(fitted.classes_).index("neutral")
    assert np.allclose(proba[urdu, neutral], 0.0)  # Urdu's tower has no neutral class
    assert set(fitted.mask_density_) == {"de", "ur", "*"} and all(0 <= d <= 1 for d in fitted.mask_density_.values())
    assert "ua_sum" in fitted.history[-1] and "ua.de" in fitted.history[-1]


def test_a_two_language_model_saves_loads_and_predicts_identically(fitted, tmp_path):
    test = two_languages(20, 3)
    loaded = Model.load(fitted.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    np.testing.assert_array_equal(loaded.gate_weights_(test), fitted.gate_weights_(test))


def test_an_unseen_language_goes_through_the_universal_head(fitted):
    test = two_languages(12, 4)
    swahili = Dataset(streams=test.streams, language=["sw"] * 12)
    proba = fitted.predict_proba(swahili)
    assert np.allclose(proba.sum(axis=1), 1.0) and (proba > 0).all()  # the universal tower knows every class


def test_a_frame_step_grid_is_chosen_on_valid_and_falls_back_to_its_first_step_without_valid():
    options = {"tower": (16,), "threads": 1, "frame_step": (1, 2), "train": {"epochs": 2, "batch_size": 16}}
    chosen = get_model("multigate", **options).fit(two_languages(48, 0), valid=two_languages(20, 1))
    assert [c["frame_step"] for c in chosen.history[0]["candidates"]] == [(1,), (2,)]
    assert chosen.config.frame_step in ((1,), (2,))
    fallback = get_model("multigate", **options).fit(two_languages(48, 0))
    assert fallback.config.frame_step == (1,) and not fallback.validated_


def test_a_stream_of_several_pooled_layers_is_mixed_by_learned_layer_weights():
    from emolingua.models.multigate import Adaptor

    adaptor = Adaptor([3, 4], d=5, hidden=6)
    x = torch.randn(2, 3, 4)
    assert torch.allclose(adaptor.layer_weights(), torch.full((3,), 1 / 3))
    with torch.no_grad():  # all weight on layer 1: the adaptor sees that layer alone
        adaptor.layer_logits.copy_(torch.tensor([-1e4, 0.0, -1e4]))
    torch.testing.assert_close(adaptor(x), adaptor.body(x[:, 1]))
    adaptor(x).sum().backward()
    assert adaptor.layer_logits.grad is not None
    assert Adaptor([1, 88]).layer_logits is None  # one layer: a plain adaptor


def test_stream_steps_pool_one_stream_further_and_reject_bad_entries():
    from emolingua.errors import ConfigError

    model = get_model("multigate", stream_steps=("w/frames=2",), frame_step=(1,))
    data = two_languages(4, 0)
    viewed = model._view(data)
    assert viewed["w/frames"].lengths.tolist() == [-(-n // 2) for n in data.streams["w/frames"].lengths]
    with pytest.raises(ConfigError, match="stream_steps"):
        get_model("multigate", stream_steps=("w/frames=0",))


def test_a_language_with_few_rows_per_class_is_fitted_by_the_few_shot_path_with_the_experts_frozen(monkeypatch):
    from emolingua.models.multigate import MultiGate

    moved = []
    adapt = MultiGate._adapt

    def watched(self, rows, language):  # the experts before and after the few-shot step
        before = {k: v.clone() for k, v in self.net_.experts.state_dict().items()}
        tower = {k: v.clone() for k, v in self.net_.towers[language].state_dict().items()}
        adapt(self, rows, language)
        moved.append((language, len(rows), before, self.net_.experts.state_dict(), tower,
                      self.net_.towers[language].state_dict()))  # fmt: skip

    monkeypatch.setattr(MultiGate, "_adapt", watched)
    train = two_languages(96, 0)
    few = np.flatnonzero(train.language == "ur")[:6]  # 2 rows per class
    rows = np.concatenate([np.flatnonzero(train.language == "de"), few])
    options = {"tower": (16,), "threads": 1, "adapt_epochs": 3, "few_shot_below": 5, "train": {"epochs": 2, "batch_size": 16}}
    model = get_model("multigate", **options).fit(train.subset(rows), valid=two_languages(20, 1))
    assert model.selected["few_shot"] == ["ur"] and model.history[-1]["adapted"] == "ur"
    (language, n, before, after, tower_before, tower_after), = moved
    assert language == "ur" and n == 6
    for name, value in before.items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    assert any(not torch.equal(tower_before[k], tower_after[k]) for k in tower_before)  # the tower did learn
    proba = model.predict_proba(two_languages(10, 5))
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_adapt_gives_a_new_language_its_own_head_that_saves_and_loads(fitted, tmp_path):
    import copy

    model = copy.deepcopy(fitted)
    shots = two_languages(12, 6)
    shots = Dataset(streams=shots.streams, targets=shots.targets, language=["sw"] * 12)
    before = model.net_.experts.state_dict()
    model.adapt(shots)
    assert model.languages_[-1] == "sw" and model.label_sets_["sw"] == sorted(set(shots.y.tolist()))
    for name, value in before.items():
        torch.testing.assert_close(model.net_.experts.state_dict()[name], value)
    loaded = Model.load(model.save(tmp_path / "sw"))
    np.testing.assert_array_equal(loaded.predict_proba(shots), model.predict_proba(shots))
    with pytest.raises(ValueError, match="training language"):
        model.adapt(two_languages(8, 7).subset(np.arange(0, 8, 2)))


def test_the_source_model_of_a_few_shot_repeat_is_trained_once_and_reused_only_for_the_same_rows(monkeypatch):
    from emolingua.models.torch_model import TorchModel

    fits = []
    fit = TorchModel._fit
    monkeypatch.setattr(TorchModel, "_fit", lambda self, train, valid: (fits.append(len(train)), fit(self, train, valid)))
    train = two_languages(96, 0)
    german = np.flatnonzero(train.language == "de")
    valid = two_languages(40, 1)
    valid = valid.subset(np.flatnonzero(valid.language == "de"))  # valid rows come from the source languages
    # as the benchmark's transfer folds do: streams normalised beforehand, the source rows' values identical in every fold
    options = {"tower": (16,), "threads": 1, "adapt_epochs": 2, "few_shot_below": 5, "view": {"normalise": "none"},
               "train": {"epochs": 2, "batch_size": 16}}  # fmt: skip
    zero = get_model("multigate", **options).fit(train.subset(german), valid=valid)
    for k in (3, 6):  # K shots of Urdu: the German model is reused, only Urdu's head is fitted
        rows = np.concatenate([german, np.flatnonzero(train.language == "ur")[:k]])
        shot = get_model("multigate", **options).fit(train.subset(rows), valid=valid)
        assert shot.selected["few_shot"] == ["ur"]
    assert fits == [len(german)]
    np.testing.assert_array_equal(shot.predict_proba(two_languages(8, 2).subset(np.arange(1, 8, 2))),
                                  zero.predict_proba(two_languages(8, 2).subset(np.arange(1, 8, 2))))  # German unchanged
    get_model("multigate", **{**options, "seed": 1}).fit(train.subset(german), valid=valid)
    assert len(fits) == 2  # another seed is another model


def test_explain_reports_gate_weights_per_language_mask_densities_and_loss_terms(fitted, tmp_path):
    import json

    test = two_languages(20, 8)
    info = Model.load(fitted.save(tmp_path / "d")).explain(test)
    assert info["streams"] == ["w/frames", "egemaps", "ge2e"]
    assert set(info["gates"]) == {"de", "ur"} and info["gates"]["de"]["n"] == 10
    assert np.isclose(sum(info["gates"]["ur"]["mean"]), 1.0)
    assert set(info["mask_density"]) == {"de", "ur", "*"}
    assert len(info["history"]) == len([h for h in fitted.history if "epoch" in h])
    assert {"loss.ce", "loss.contrastive", "ua_sum"} <= set(info["history"][0])
    json.dumps(info)  # benchmark jobs store it as JSON


def test_single_stream_variants_and_an_alpha_grid_chosen_on_valid():
    options = {"tower": (16,), "threads": 1, "train": {"epochs": 2, "batch_size": 16}}
    alone = get_model("multigate", frame_streams=("none",), vector_streams=("egemaps",), speaker="", gate="none", **options)
    alone.fit(two_languages(48, 0))
    assert alone.stream_names_() == ["egemaps"] and not alone.net_.experts
    grid = get_model("multigate", alpha_grid=(0.0, 0.5), **options).fit(two_languages(48, 0), valid=two_languages(20, 1))
    assert [c["alpha"] for c in grid.history[0]["candidates"]] == [0.0, 0.5] and grid.config.alpha in (0.0, 0.5)


def test_corpus_domains_give_two_corpora_of_one_language_their_own_heads(tmp_path):
    data = two_languages(64, 0)
    corpus = np.where(data.language == "de", np.where(np.arange(64) % 4 == 1, "emodb", "other-de"), "urdu")
    data = Dataset(streams=data.streams, targets=data.targets, language=data.language, corpus=corpus)
    options = {"tower": (16,), "threads": 1, "dropout": 0.3, "train": {"epochs": 2, "batch_size": 16}}
    model = get_model("multigate", domain="corpus", **options).fit(data)
    assert model.languages_ == ("emodb", "other-de", "urdu") and set(model.mask_density_) == {"emodb", "other-de", "urdu", "*"}
    loaded = Model.load(model.save(tmp_path / "c"))
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    assert set(model.explain(data)["gates"]) == {"emodb", "other-de", "urdu"}  # gate weights reported per corpus gate
    assert get_model("multigate", **options).fit(data).languages_ == ("de", "ur")
    shots = Dataset(streams=data.streams, targets=data.targets, language=["sw"] * 64, corpus=["sw-corpus"] * 64)
    model.adapt(shots.subset(np.arange(12)), language="sw")  # a new corpus of a new language: its own head
    assert model.languages_[-1] == "sw" and model.predict_proba(
        Dataset(streams=shots.streams, language=["sw"] * 64, corpus=["sw"] * 64)).shape == (64, 4)


def test_split_layers_give_each_pooled_layer_its_own_gated_stream(tmp_path):
    from emolingua.errors import ConfigError

    data = two_languages(48, 0)
    layered = np.stack([data.streams["egemaps"], -data.streams["egemaps"], data.streams["egemaps"] * 2], axis=1)
    data = Dataset(streams={**data.streams, "egemaps": layered}, targets=data.targets, language=data.language,
                   corpus=data.corpus)  # fmt: skip
    options = {"tower": (16,), "threads": 1, "frame_streams": ("none",), "train": {"epochs": 2, "batch_size": 16}}
    model = get_model("multigate", split_layers=("egemaps",), **options).fit(data)
    assert model._roles_["vector_streams"] == ["egemaps@0", "egemaps@1", "egemaps@2"]
    assert model.gate_weights_(data).shape == (48, 4)  # three layers and the speaker vector
    loaded = Model.load(model.save(tmp_path / "s"))  # predicts from the unsplit rows as they come
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    with pytest.raises(ConfigError, match="split_layers: no stream 'nope'"):
        get_model("multigate", split_layers=("nope",), **options).fit(data)
    with pytest.raises(ConfigError, match="frame stream"):
        get_model("multigate", split_layers=("w/frames",), **options).fit(data)


def test_speaker_twins_of_split_layers_are_gated_streams_of_their_own(tmp_path):
    data = two_languages(48, 0)
    layered = np.stack([data.streams["egemaps"], -data.streams["egemaps"]], axis=1)
    speaker = np.array([f"{g}{i % 4}" for i, g in enumerate(data.language)])
    data = Dataset(streams={**data.streams, "egemaps": layered}, targets=data.targets, language=data.language,
                   corpus=data.corpus, speaker=speaker)  # fmt: skip
    options = {"tower": (16,), "threads": 1, "frame_streams": ("none",), "train": {"epochs": 2, "batch_size": 16}}
    model = get_model("multigate", split_layers=("egemaps",), speaker_twins=("egemaps", "ge2e"), **options).fit(data)
    assert model._roles_["vector_streams"] == ["egemaps@0", "egemaps@1", "egemaps@0~speaker", "egemaps@1~speaker",
                                               "ge2e~speaker"]  # fmt: skip
    assert model._roles_["speaker"] == "ge2e"
    weights = model.gate_weights_(data)
    assert weights.shape == (48, 6) and np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    loaded = Model.load(model.save(tmp_path / "t"))
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    # transductive: a row's twin, and so its prediction, depends on its speaker's other rows
    assert not np.allclose(model.predict_proba(data.subset(np.arange(8))), model.predict_proba(data)[:8])


def test_an_affect_embedding_trained_with_the_metric_loss_reads_out_arousal_for_an_unseen_language(tmp_path):
    from scipy.stats import spearmanr

    def with_arousal(data: Dataset, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        level = {"angry": 0.9, "happy": 0.7, "neutral": 0.4, "sad": 0.2}
        arousal = np.array([level[v] for v in data.targets["label"]]) + rng.normal(scale=0.02, size=len(data))
        return Dataset(streams=data.streams, targets={**data.targets, "arousal": arousal}, language=data.language,
                       corpus=data.corpus)  # fmt: skip

    options = {"tower": (16,), "threads": 1, "frame_step": (1,), "target": "label", "affect_target": "arousal",
               "train": {"epochs": 12, "batch_size": 16, "lr": 2e-3}}  # fmt: skip
    model = get_model("multigate", **options).fit(with_arousal(two_languages(96, 0), 0))
    assert "loss.affect" in model.history[-1] and set(model.affect_readouts_) == {"arousal"}
    test = with_arousal(two_languages(40, 5), 5)
    unseen = Dataset(streams=test.streams, language=["sw"] * 40)  # no labels, a language never seen
    read = model.dimensions(unseen)["arousal"]
    assert spearmanr(read, test.targets["arousal"]).statistic > 0.5
    loaded = Model.load(model.save(tmp_path / "a"))
    np.testing.assert_allclose(loaded.dimensions(unseen)["arousal"], read)
    mse = get_model("multigate", **{**options, "affect_loss": "mse", "train": {"epochs": 2, "batch_size": 16}})
    assert mse.fit(with_arousal(two_languages(48, 0), 0)).history[-1]["loss.affect"] >= 0


def test_masks_act_on_the_utterance_vectors_only_when_mask_streams_is_all():
    data = two_languages(48, 0)
    options = {"tower": (16,), "threads": 1, "frame_streams": ("none",), "train": {"epochs": 2, "batch_size": 16}}
    for streams, moved in (("frames", False), ("all", True)):
        model = get_model("multigate", mask_streams=streams, **options).fit(data)
        net = model.net_
        # a mask only trains (and its L0 term only means something) if it is in the forward pass
        batch = model._batch(model._prepare(data))
        net.train()
        net.zero_grad()
        out = net(batch)
        net.losses(out, batch, 1)["ce"].backward()
        grads = [m.log_alpha.grad for m in net.masks.values()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) is moved
    with pytest.raises(Exception, match="mask_streams"):
        get_model("multigate", mask_streams="vectors")


def test_mask_lr_gives_the_mask_logits_their_own_step_so_the_l0_penalty_can_close_them():
    data = two_languages(48, 0)
    options = {"tower": (16,), "threads": 1, "l0": 1.0, "seed": 0, "train": {"epochs": 3, "batch_size": 16}}
    slow = get_model("multigate", **options).fit(data)
    fast = get_model("multigate", mask_lr=1.0, **options).fit(data)
    groups = fast.net_.param_groups(lr=1e-3, weight_decay=0.1)
    logits = [g for g in groups if any(p is fast.net_.masks["de"].log_alpha for p in g["params"])]
    assert len(logits) == 1 and logits[0]["lr"] == 1.0 and logits[0]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len([p for p in fast.net_.parameters() if p.requires_grad])
    # at the network's step the masks stay open (as on the real corpora); at their own they close
    assert min(slow.mask_density_.values()) == 1.0
    assert max(fast.mask_density_.values()) < 0.5
    with pytest.raises(Exception, match="mask_lr"):
        get_model("multigate", mask_lr=0.0)


def test_a_wide_path_adds_a_linear_map_of_the_gated_raw_vectors_to_each_head(tmp_path):
    data, test = two_languages(64, 0), two_languages(20, 2)
    options = {"tower": (16,), "threads": 1, "train": {"epochs": 3, "batch_size": 16}}
    wide = get_model("multigate", wide=True, **options).fit(data, valid=two_languages(20, 1))
    net = wide.net_
    assert set(net.wide) == {"de", "ur", "*"} and net.wide["de"].in_features == 8  # egemaps only: the speaker is left out
    assert net.wide["ur"].out_features == 3
    before = wide.predict_proba(test)
    with torch.no_grad():
        for layer in net.wide.values():
            layer.weight.zero_(), layer.bias.zero_()
    assert not np.allclose(wide.predict_proba(test), before)  # the wide path is part of the prediction
    loaded = Model.load(get_model("multigate", wide=True, **options).fit(data).save(tmp_path / "m"))
    assert loaded.net_.wide is not None
    assert get_model("multigate", **options).fit(data).net_.wide is None


def test_an_ensemble_averages_its_members_and_saves_adapts_and_loads_them_all(tmp_path):
    data, valid, test = two_languages(64, 0), two_languages(20, 1), two_languages(20, 2)
    options = {"tower": (16,), "threads": 1, "train": {"epochs": 3, "batch_size": 16}}
    ensemble = get_model("multigate", members=3, **options).fit(data, valid=valid)
    assert len(ensemble.nets_()) == 3 and len(ensemble.selected["member_epochs"]) == 3
    singles = [get_model("multigate", seed=s, **options).fit(data, valid=valid).predict_proba(test) for s in (0, 1, 2)]
    np.testing.assert_allclose(ensemble.predict_proba(test), np.mean(singles, axis=0), atol=1e-6)  # member i = seed i
    loaded = Model.load(ensemble.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(test), ensemble.predict_proba(test))
    swahili = Dataset(streams=test.streams, targets={"label": test.targets["label"]}, language=["sw"] * 20)
    adapted = loaded.adapt(swahili, language="sw")
    assert len(adapted.history[-1]["member_epochs"]) == 3
    with pytest.raises(Exception, match="members"):
        get_model("multigate", members=0)
