"""The Trainer: named loss terms, samplers, early stopping on a valid metric, kill -9 resume, no global side effects."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from emolingua.errors import ConfigError
from emolingua.models.module import Batch, SERModule, masked_cross_entropy
from emolingua.models.trainer import Checkpointer, TrainConfig, Trainer

SRC = Path(__file__).resolve().parents[1] / "src"


class Tiny(SERModule):
    """Two streams of different shapes (a pooled vector, a frame sequence) and two targets."""

    def __init__(self, d: int = 6, f: int = 3, n_classes: int = 3) -> None:
        super().__init__()
        self.frames = nn.Linear(f, 4)
        self.body = nn.Sequential(nn.Linear(d + 4, 16), nn.ReLU(), nn.Dropout(0.3))
        self.label = nn.Linear(16, n_classes)
        self.arousal = nn.Linear(16, 1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        fr, lengths = batch.streams["frames"], batch.lengths["frames"]
        valid = (torch.arange(fr.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
        pooled = (self.frames(fr) * valid).sum(1) / lengths[:, None].clamp(min=1)
        h = self.body(torch.cat([batch.streams["x"], pooled], dim=1))
        return {"logits": self.label(h), "arousal": self.arousal(h).squeeze(1)}

    def losses(self, outputs, batch, epoch):
        keep = batch.mask("arousal")
        mse = ((outputs["arousal"] - batch.targets["arousal"]) ** 2 * keep).sum() / keep.sum().clamp(min=1)
        return {"ce": masked_cross_entropy(outputs["logits"], batch, "label"), "mse": 0.5 * mse}


def make_module(seed: int = 0) -> Tiny:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Tiny()


def make_data(n: int = 90, *, seed: int = 1, languages: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + nn.functional.one_hot(y, 6).float() * 2.0
    frames = torch.randn(n, 5, 3, generator=g)
    return Batch(streams={"x": x, "frames": frames}, lengths={"frames": torch.randint(1, 6, (n,), generator=g)},
                 targets={"label": y, "arousal": y.float() - 1.0}, masks={"arousal": torch.arange(n) % 4 != 0},
                 language_ids=torch.arange(n) % languages)  # fmt: skip


def valid_metrics(module: Tiny, data: Batch) -> dict[str, float]:
    out = module(data)
    return {"acc": float((out["logits"].argmax(1) == data.targets["label"]).float().mean()),
            "ce": float(nn.functional.cross_entropy(out["logits"], data.targets["label"]))}  # fmt: skip


def test_loss_terms_are_summed_logged_and_kept_in_history() -> None:
    lines: list[str] = []
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.02, seed=3, threads=1)
    module = Trainer(cfg, log=lines.append).fit(make_module(), train=make_data())
    assert len(module.history_) == 3 and len(lines) == 3
    for rec, line in zip(module.history_, lines):
        assert rec["loss"] == pytest.approx(rec["loss.ce"] + rec["loss.mse"], rel=1e-5)
        assert f"epoch {rec['epoch']}/3" in line and "ce " in line and "mse " in line
    assert module.history_[-1]["loss"] < module.history_[0]["loss"]


def test_length_buckets_keep_every_row_once_and_shrink_padding() -> None:
    data = make_data(n=96, languages=2)
    lengths = sum(data.lengths.values())
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = Trainer(TrainConfig(batch_size=8, sampler="by-language", threads=1)).batches(data, gen())
    bucketed = Trainer(TrainConfig(batch_size=8, sampler="by-language", bucket=4, threads=1)).batches(data, gen())
    assert sorted(torch.cat(bucketed).tolist()) == list(range(96))  # each row once per epoch
    assert all(len(set(data.language_ids[b].tolist())) == 1 for b in bucketed)  # still one language per batch
    padded = lambda batches: sum(int(lengths[b].max()) * len(b) for b in batches)  # noqa: E731
    assert padded(bucketed) < padded(plain)
    with pytest.raises(ConfigError, match="bucket"):
        TrainConfig(bucket=-1)


def test_by_language_batches_alternate_and_take_one_step_each() -> None:
    data = make_data(n=70, languages=2)  # 35 rows per language -> ceil(35/8) = 5 batches each
    trainer = Trainer(TrainConfig(epochs=2, batch_size=8, sampler="by-language", threads=1), log=lambda s: None)
    batches = trainer.batches(data, torch.Generator().manual_seed(0))
    langs = [set(data.language_ids[b].tolist()) for b in batches]
    assert all(len(s) == 1 for s in langs)
    assert [s.pop() for s in langs] == [0, 1] * 5
    assert sorted(torch.cat(batches).tolist()) == list(range(70))  # each row once per epoch

    steps = 0
    module = make_module()
    opt_step = torch.optim.AdamW.step

    def counting_step(self, *a, **k):
        nonlocal steps
        steps += 1
        return opt_step(self, *a, **k)

    torch.optim.AdamW.step = counting_step
    try:
        trainer.fit(module, train=data)
    finally:
        torch.optim.AdamW.step = opt_step
    assert steps == 2 * 10 == trainer.steps
    assert [r["steps"] for r in module.history_] == [10, 10]


def test_class_balanced_sampler_evens_out_classes() -> None:
    data = make_data(n=400)
    y = torch.where(torch.arange(400) < 320, 0, torch.where(torch.arange(400) < 380, 1, 2))  # 80% / 15% / 5%
    data.targets["label"] = y
    trainer = Trainer(TrainConfig(batch_size=50, sampler="class-balanced"), log=lambda s: None)
    rows = torch.cat(trainer.batches(data, torch.Generator().manual_seed(0)))
    share = torch.bincount(y[rows], minlength=3).float() / len(rows)
    assert len(rows) == 400
    assert torch.all((share - 1 / 3).abs() < 0.07), share
    with pytest.raises(ConfigError, match="balance_target"):
        Trainer(TrainConfig(sampler="class-balanced", balance_target="valence")).batches(data, torch.Generator())


def test_early_stopping_keeps_the_best_epoch_on_the_monitor_not_the_last() -> None:
    scores = iter([0.1, 0.5, 0.9, 0.3, 0.2, 0.4, 0.8, 0.1])  # best at epoch 3, then 3 worse epochs
    states: dict[int, dict] = {}

    def evaluate(module: Tiny) -> dict[str, float]:
        states[len(states) + 1] = {k: v.clone() for k, v in module.state_dict().items()}
        return {"ua_sum": next(scores)}

    cfg = TrainConfig(epochs=8, patience=3, monitor="ua_sum", mode="max", threads=1)
    module = Trainer(cfg, log=lambda s: None).fit(make_module(), train=make_data(), evaluate=evaluate)
    assert module.best_epoch_ == 3
    assert [r["epoch"] for r in module.history_] == [1, 2, 3, 4, 5, 6]  # stopped after 3 without gain
    assert all(torch.equal(v, states[3][k]) for k, v in module.state_dict().items())
    assert not all(torch.equal(v, states[6][k]) for k, v in module.state_dict().items())
    with pytest.raises(ConfigError, match="monitor"):
        Trainer(TrainConfig(epochs=1, monitor="ua")).fit(make_module(), train=make_data())


@pytest.mark.parametrize("optimiser,scheduler", [("adam", "cosine"), ("sgd", "plateau")])
def test_optimisers_schedulers_and_clipping_run(optimiser: str, scheduler: str) -> None:
    valid = make_data(n=30, seed=9)
    cfg = TrainConfig(epochs=4, optimiser=optimiser, scheduler=scheduler, grad_clip=1.0, monitor="ce",
                      mode="min", lr=0.05, threads=1)  # fmt: skip
    module = Trainer(cfg, log=lambda s: None).fit(make_module(), train=make_data(),
                                                  evaluate=lambda m: valid_metrics(m, valid))  # fmt: skip
    if scheduler == "cosine":
        assert module.history_[1]["lr"] < module.history_[0]["lr"]
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_fit_leaves_global_state_alone_and_the_fitted_module_pickles() -> None:
    torch.manual_seed(123)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cfg = TrainConfig(epochs=2, threads=1 if threads != 1 else 2)
    module = Trainer(cfg, log=lambda s: None).fit(make_module(), train=make_data())
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    clone = pickle.loads(pickle.dumps(module))
    data = make_data(n=10, seed=5)
    assert torch.equal(clone(data)["logits"], module(data)["logits"])
    assert clone.history_ == module.history_


def test_a_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    Trainer(TrainConfig(epochs=1, threads=1), log=lambda s: None).fit(make_module(), train=make_data(),
                                                                       checkpoint_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="another training config"):
        Trainer(TrainConfig(epochs=1, lr=0.1), log=lambda s: None).fit(make_module(), train=make_data(),
                                                                       checkpoint_dir=tmp_path)  # fmt: skip


EPOCHS = 12
RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from test_trainer import run
run({folder!r}, delay={delay})
"""


def run(folder: str | None, *, delay: float = 0.0, log=lambda s: None) -> Tiny:
    """The training the resume test repeats: slow enough (``delay`` per epoch) to be killed midway."""
    valid = make_data(n=30, seed=9)

    def evaluate(module: Tiny) -> dict[str, float]:
        time.sleep(delay)
        return valid_metrics(module, valid)

    cfg = TrainConfig(epochs=EPOCHS, batch_size=16, patience=EPOCHS, monitor="ce", mode="min", scheduler="cosine",
                      sampler="by-language", grad_clip=5.0, seed=7, threads=1)  # fmt: skip
    return Trainer(cfg, log=log).fit(make_module(), train=make_data(), evaluate=evaluate, checkpoint_dir=folder)


def test_kill_9_then_rerun_resumes_and_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    code = RUN.format(tests=str(Path(__file__).parent), folder=str(folder), delay=0.25)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    ckpt = Checkpointer(folder)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            saved = ckpt.load()
            if saved is not None and saved["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the training process ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = ckpt.load()["epoch"]
    assert 2 <= killed_at < EPOCHS

    lines: list[str] = []
    resumed = run(str(folder), log=lines.append)
    assert [line.split()[1] for line in lines] == [f"{e}/{EPOCHS}" for e in range(killed_at + 1, EPOCHS + 1)]
    straight = run(None)
    assert [r["epoch"] for r in resumed.history_] == list(range(1, EPOCHS + 1))
    assert resumed.history_ == straight.history_
    assert resumed.best_epoch_ == straight.best_epoch_
    for (name, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items()):
        assert torch.equal(a, b), name
