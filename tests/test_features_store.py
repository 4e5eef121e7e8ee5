"""The feature store and the resumable extraction run: atomic shards, checksums, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore, content_key

FAKE = '''
import time
from dataclasses import dataclass
import numpy as np
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features

@dataclass(frozen=True)
class FakeConfig(ExtractorConfig):
    scale: float = 1.0
    delay: float = 0.0

class Fake(FeatureExtractor):
    """Pooled stats of the raw samples, with an optional delay per clip."""
    name = "test-fake"
    Config = FakeConfig

    @property
    def streams(self):
        return ["raw"]

    def extract(self, clips):
        out = []
        for c in clips:
            time.sleep(self.config.delay)
            x = np.asarray(c, dtype=np.float64)[:, None] * self.config.scale
            out.append(Features(pooled=np.concatenate([x.mean(0), x.std(0)])[None].astype(np.float32)))
        return out
'''


@pytest.fixture
def fake(extractor_module):
    return extractor_module("fake_extractor", FAKE, registers="test-fake")


@pytest.fixture
def files(tmp_path, tone):
    return [str(tone(tmp_path / "audio" / f"clip{i:02d}.wav", seconds=0.1 + 0.02 * i, seed=i)) for i in range(24)]


def _stats(path):
    import soundfile as sf

    x, _ = sf.read(path, dtype="float32")
    x = x.astype(np.float64)
    return np.array([x.mean(), x.std()], dtype=np.float32)


def test_extract_then_load_aligned(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (24, 0, 0)
    assert summary.disk_bytes > 0 and summary.audio_seconds == pytest.approx(sum(0.1 + 0.02 * i for i in range(24)), abs=0.01)
    X, found = store.load_pooled(paths=files[::-1] + [str(tmp_path / "missing.wav")], extractor=ex)
    assert X.shape == (25, 1, 2) and found[:24].all() and not found[24] and np.isnan(X[24]).all()
    assert np.allclose(X[0, 0], _stats(files[-1]), atol=1e-6)
    again = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert (again.done, again.skipped) == (0, 24)


def test_options_key_the_store_but_runtime_options_do_not(tmp_path, fake):
    assert fake.Fake(scale=2.0).fingerprint() != fake.Fake().fingerprint()
    assert fake.Fake(threads=1).fingerprint() == fake.Fake(threads=2).fingerprint()


def test_failures_are_listed_and_the_run_goes_on(tmp_path, files, fake):
    bad = tmp_path / "audio" / "broken.wav"
    bad.write_text("not audio")
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=[*files, str(bad), str(tmp_path / "gone.wav")], extractor=fake.Fake(), store=store,
                               progress=False)  # fmt: skip
    assert summary.done == 24 and summary.failed == 2
    reasons = dict(summary.failures)
    assert "not readable" in reasons[str(bad)] and "not found" in reasons[str(tmp_path / "gone.wav")]
    assert store.info()[0].failures == 1  # decode failures are recorded beside the features


def test_damaged_shard_is_detected_and_recomputed(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    shard = sorted((store.folder(ex) / "shards").glob("*.npz"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        n_ok = len(store.keys(extractor=ex))
    assert n_ok < 24 and shard.with_suffix(".damaged").exists()
    rerun = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert rerun.done == 24 - n_ok
    X, found = store.load_pooled(paths=files, extractor=ex)
    assert found.all() and np.allclose(X[:, 0], np.stack([_stats(f) for f in files]), atol=1e-6)


def test_partial_files_are_invisible_to_readers(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files[:3], extractor=ex, store=store, progress=False)
    (store.folder(ex) / "shards" / ".abc-123.npz.tmp").write_bytes(b"PK\x03\x04 half written")
    assert len(store.keys(extractor=ex)) == 3


def test_kill_minus_9_loses_at_most_the_batch_in_flight(tmp_path, files, fake):
    store_dir = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import fake_extractor
        from emolingua.features.extract import extract_to_store
        from emolingua.features.store import FeatureStore
        extract_to_store(paths={files!r}, extractor=fake_extractor.Fake(delay=0.05),
                         store=FeatureStore(root={str(store_dir)!r}), batch_seconds=0.4, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    shards = store_dir
    deadline = time.time() + 60
    while time.time() < deadline and len(list(shards.rglob("*.npz"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ex = fake.Fake(delay=0.05)
    store = FeatureStore(root=store_dir)
    survived = store.keys(extractor=ex)
    assert 0 < len(survived) < 24
    # the dead run's claims are left behind: the rerun must take them over, not wait for them
    assert list((store.folder(ex) / "claims").glob("*.claim"))
    rerun = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert rerun.skipped == len(survived) and rerun.done == 24 - len(survived)
    X, found = store.load_pooled(paths=files, extractor=ex)
    clean = FeatureStore(root=tmp_path / "clean")
    extract_to_store(paths=files, extractor=ex, store=clean, progress=False)
    Y, _ = clean.load_pooled(paths=files, extractor=ex)
    assert found.all() and np.array_equal(X, Y)


def test_content_key_follows_content_not_name(tmp_path, tone):
    a = tone(tmp_path / "a.wav", seed=1)
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    c = tone(tmp_path / "c.wav", seed=2)
    assert content_key(a) == content_key(b) != content_key(c)


# -- byte-identical audio under several paths ---------------------------------------------------
def test_every_row_of_the_same_content_gets_its_features(tmp_path, files, fake):
    copy = tmp_path / "audio" / "copy_of_clip03.wav"
    copy.write_bytes(open(files[3], "rb").read())
    link = tmp_path / "audio" / "link_to_clip05.wav"
    link.symlink_to(files[5])
    paths = [*files, str(copy), str(link), files[7]]  # files[7] listed twice
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    assert (summary.done, summary.failed) == (24, 0)  # each content computed once
    X, found = store.load_pooled(paths=paths, extractor=ex)
    assert found.all()
    assert np.array_equal(X[24], X[3]) and np.array_equal(X[25], X[5]) and np.array_equal(X[26], X[7])
    assert sum(len(k) for k in store.shard_keys(extractor=ex).values()) == 24
    _, found_f, frames = store.load(keys=[content_key(files[3]), content_key(copy)], extractor=ex, frames=True)
    assert found_f.all() and len(frames) == 2


# -- a damaged store is reported, then healed -----------------------------------------------------
def _failures(store, ex):
    return (store.folder(ex) / "failures.jsonl").read_text()


def test_info_reports_damage_instead_of_raising_and_the_next_run_heals(tmp_path, files, fake):
    import json

    bad = tmp_path / "audio" / "broken.wav"
    bad.write_text("not audio")
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=[*files, str(bad)], extractor=ex, store=store, batch_seconds=0.5, progress=False)
    folder = store.folder(ex)
    shard = sorted((folder / "shards").glob("*.npz"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (folder / "extractor.json").write_text('{"spec": "test-fa')
    with open(folder / "failures.jsonl", "a") as f:
        f.write('{"path": "/half/writ')
    (cheap,) = store.info()  # reads key indexes only: flipped bits inside a shard stay unseen
    assert "extractor.json" in " | ".join(cheap.problems) and cheap.entries == 24
    (info,) = store.info(verify=True)
    problems = " | ".join(info.problems)
    assert shard.name in problems and "extractor.json" in problems and "half-written" in problems
    assert info.failures == 1 and 0 < info.entries < 24
    assert shard.exists()  # listing repairs nothing

    from typer.testing import CliRunner

    from emolingua.cli import app

    res = CliRunner().invoke(app, ["features", "list", "--store", str(store.root), "--verify"])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert shard.name in res.stderr  # --verify reads every shard and finds the flipped bits

    with pytest.warns(UserWarning, match="damaged"):
        rerun = extract_to_store(paths=[*files, str(bad)], extractor=ex, store=store, progress=False)
    assert rerun.done > 0 and rerun.failed == 1
    rows = [json.loads(line) for line in _failures(store, ex).splitlines()]  # every line whole again
    assert [r["path"] for r in rows] == [str(bad)]  # the rerun's failure is not recorded twice
    assert json.loads((folder / "extractor.json").read_text())["spec"] == "test-fake"
    (healed,) = store.info()
    assert healed.entries == 24 and healed.failures == 1
    assert all("set aside" in p for p in healed.problems)  # only the note about the .damaged file


def test_record_failures_keeps_each_path_and_reason_once(tmp_path, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    store.record_failures(extractor=ex, failures=[("a.wav", "x"), ("a.wav", "x"), ("b.wav", "y")])
    store.record_failures(extractor=ex, failures=[("a.wav", "x"), ("a.wav", "z")])
    assert _failures(store, ex).count("a.wav") == 2 and _failures(store, ex).count("b.wav") == 1


# -- arguments that are not lists -----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["a/string", None, 3, b"a/bytes"])
def test_a_bare_path_none_or_number_is_a_type_error_naming_the_argument(tmp_path, fake, bad):
    store = FeatureStore(root=tmp_path / "store")
    with pytest.raises(TypeError, match="paths"):
        store.load_pooled(paths=bad, extractor=fake.Fake())
    with pytest.raises(TypeError, match="paths"):
        extract_to_store(paths=bad, extractor=fake.Fake(), store=store, progress=False)
    with pytest.raises(TypeError, match="keys"):
        store.load(keys=bad, extractor=fake.Fake())


def test_a_list_holding_a_non_path_is_a_type_error(tmp_path, fake):
    with pytest.raises(TypeError, match=r"paths\[1\]"):
        FeatureStore(root=tmp_path).load_pooled(paths=["a.wav", None], extractor=fake.Fake())


# -- claims ---------------------------------------------------------------------------------------
def test_claims_held_by_live_owners_are_respected_and_stale_ones_taken_over(tmp_path, fake):
    import json
    import socket

    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    claims = store.folder(ex) / "claims"
    claims.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    here, now, old = socket.gethostname(), time.time(), time.time() - 10 * 3600
    owners = {
        "dead": ({"host": here, "pid": dead.pid, "time": now}, now, True),
        "live": ({"host": here, "pid": live.pid, "time": now}, now, False),
        "live-but-old": ({"host": here, "pid": live.pid, "time": old}, old, True),
        "elsewhere": ({"host": "another-host", "pid": 1, "time": now}, now, False),
        "elsewhere-old": ({"host": "another-host", "pid": 1, "time": old}, old, True),
        "empty-new": (None, now, False),
        "empty-old": (None, now - 120, True),
        "garbled-new": ("[-1]", now, False),
        "garbled-old": ('{"pid": -1}', now - 120, True),
    }
    try:
        for name, (owner, mtime, _) in owners.items():
            path = claims / f"{name}.claim"
            path.write_text(owner if isinstance(owner, str) else json.dumps(owner) if owner else "")
            os.utime(path, (mtime, mtime))
        taken = {name for name in owners if store.claim(extractor=ex, name=name) is not None}
    finally:
        live.kill()
        live.wait()
    assert taken == {name for name, (_, _, stale) in owners.items() if stale}
    assert json.loads((claims / "dead.claim").read_text())["pid"] == os.getpid()
    assert store.claim(extractor=ex, name="dead") is None  # now ours, and we are alive
    store.release(claims / "dead.claim")
    assert store.claim(extractor=ex, name="dead") is not None


# -- key indexes: listing reads no shard ----------------------------------------------------------
@pytest.fixture
def npz_reads(monkeypatch):
    """Every opening of a .npz shard (by path), however it is read: a list of the paths."""
    import builtins
    import io
    from pathlib import Path

    opened: list[str] = []

    def counting(real):
        def wrapper(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(".npz"):
                opened.append(os.fspath(file))
            return real(file, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", counting(builtins.open))
    monkeypatch.setattr(io, "open", counting(io.open))
    monkeypatch.setattr(np, "load", counting(np.load))
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: counting(real_read)(self))
    return opened


def _shards(store, ex):
    return sorted((store.folder(ex) / "shards").glob("*.npz"))


def test_listing_reads_the_key_indexes_not_the_shards(tmp_path, files, fake, npz_reads):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    assert len(_shards(store, ex)) > 2
    verified = store.keys(extractor=ex)  # a verified listing reads every shard
    assert len(npz_reads) >= len(_shards(store, ex))
    npz_reads.clear()
    (info,) = store.info()
    cheap = store.keys(extractor=ex, verify=False)
    per_shard = store.shard_keys(extractor=ex, verify=False)
    assert npz_reads == []
    assert info.entries == 24 and info.shards == len(_shards(store, ex)) and info.problems == ()
    assert cheap == verified == {content_key(f) for f in files}
    assert sorted(per_shard) == [s.name for s in _shards(store, ex)]


def test_a_load_opens_only_the_shards_holding_what_it_asks_for(tmp_path, files, fake, npz_reads):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    npz_reads.clear()
    X, found = store.load_pooled(paths=[files[0]], extractor=ex)
    assert found.all() and np.allclose(X[0, 0], _stats(files[0]), atol=1e-6)
    assert len(set(npz_reads)) == 1


def test_missing_damaged_or_stale_key_indexes_are_rebuilt(tmp_path, files, fake):
    import json

    from emolingua.features.store import _read_index

    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    shards = _shards(store, ex)
    assert len(shards) >= 3
    before = store.shard_keys(extractor=ex, verify=False)
    shards[0].with_suffix(".keys").unlink()  # a store written before indexes existed
    shards[1].with_suffix(".keys").write_text('{"shard_sha": "ab')  # torn
    # a well-formed index naming another shard's checksum: it must not be believed
    other = json.loads(shards[2].with_suffix(".keys").read_text())
    shards[2].with_suffix(".keys").write_text(json.dumps({**other, "shard_sha": "0" * 16, "keys": ["0" * 32]}))
    (info,) = store.info()
    assert info.entries == 24 and info.problems == ()
    assert store.shard_keys(extractor=ex, verify=False) == before
    for shard in shards[:3]:
        with np.load(shard) as npz:
            assert _read_index(shard) == npz["keys"].tolist()  # rewritten, valid again
    for shard in shards:  # no index at all: everything still works from the shards alone
        shard.with_suffix(".keys").unlink()
    X, found = store.load_pooled(paths=files, extractor=ex)
    assert found.all() and np.allclose(X[:, 0], np.stack([_stats(f) for f in files]), atol=1e-6)
    assert store.keys(extractor=ex, verify=False) == {content_key(f) for f in files}


def test_damage_unseen_by_a_cheap_listing_is_caught_when_the_shard_is_loaded(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    shard = _shards(store, ex)[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert len(store.keys(extractor=ex, verify=False)) == 24
    with pytest.warns(UserWarning, match="damaged"):
        _, found = store.load_pooled(paths=files, extractor=ex)
    assert 0 < found.sum() < 24 and not shard.exists() and not shard.with_suffix(".keys").exists()
    assert len(store.keys(extractor=ex, verify=False)) == found.sum()
    assert extract_to_store(paths=files, extractor=ex, store=store, progress=False).done == 24 - found.sum()


# -- several extractors in one call -----------------------------------------------------------------
WIDE = '''
from dataclasses import dataclass
import numpy as np
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features

@dataclass(frozen=True)
class WideConfig(ExtractorConfig):
    hop: int = 160

class Wide(FeatureExtractor):
    """Two pooled streams of width 3 and a frame sequence (T, 4), T following the clip's length."""
    name = "test-wide"
    Config = WideConfig

    @property
    def streams(self):
        return ["low", "high"]

    def extract(self, clips):
        out = []
        for c in clips:
            x = np.asarray(c, dtype=np.float64)
            n = len(x) // self.config.hop
            frames = x[: n * self.config.hop].reshape(n, self.config.hop)[:, :4]
            pooled = np.stack([frames.mean(0)[:3], frames.std(0)[:3]]).astype(np.float32)
            out.append(Features(pooled=pooled, frames={"wave": frames.astype(np.float16)}))
        return out
'''


@pytest.fixture
def wide(extractor_module):
    return extractor_module("wide_extractor", WIDE, registers="test-wide")


def test_load_streams_aligns_several_extractors_of_different_widths(tmp_path, files, fake, wide, npz_reads):
    narrow, broad = fake.Fake(), wide.Wide()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=narrow, store=store, batch_seconds=0.5, progress=False)
    extract_to_store(paths=files[:20], extractor=broad, store=store, batch_seconds=0.5, progress=False)
    twin = tmp_path / "audio" / "copy_of_clip04.wav"
    twin.write_bytes(open(files[4], "rb").read())
    paths = [*files[::-1], str(twin), str(tmp_path / "gone.wav")]

    npz_reads.clear()
    got = store.load_streams(paths=paths, extractors=[narrow, broad], frames=True)
    assert set(npz_reads) == {*map(str, _shards(store, narrow)), *map(str, _shards(store, broad))}
    assert list(got) == ["test-fake", "test-wide"]
    a, b = got["test-fake"], got["test-wide"]
    assert a.pooled.shape == (26, 1, 2) and b.pooled.shape == (26, 2, 3)
    assert a.found.tolist() == [True] * 25 + [False]
    assert b.found.tolist() == [False] * 4 + [True] * 20 + [True, False]  # files[20:] not extracted for wide
    for extractor, loaded in ((narrow, a), (broad, b)):  # the same numbers as one extractor at a time
        X, found = store.load_pooled(paths=paths, extractor=extractor)
        assert np.array_equal(found, loaded.found) and np.array_equal(X, loaded.pooled, equal_nan=True)
    assert np.array_equal(a.pooled[24], a.pooled[19]) and np.array_equal(b.pooled[24], b.pooled[19])  # twins
    assert a.frames[0] == {} and a.frames[25] is None  # found without frames vs not found
    import soundfile as sf

    for row in (4, 19, 24):
        x, _ = sf.read(paths[row], dtype="float32")
        seq = b.frames[row]["wave"]
        assert seq.dtype == np.float16 and seq.shape == (len(x) // 160, 4)
        assert np.allclose(seq, x[: len(seq) * 160].reshape(-1, 160)[:, :4], atol=1e-3)
    assert b.frames[0] is None and b.frames[25] is None
    without = store.load_streams(paths=paths, extractors=[broad])
    assert without["test-wide"].frames is None and np.array_equal(without["test-wide"].found, b.found)


def test_load_streams_holds_one_shard_open_at_a_time(tmp_path, files, wide, monkeypatch):
    ex = wide.Wide()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    opened = []
    real = np.load

    def tracking(*args, **kwargs):
        assert all(npz.fid is None for npz in opened if hasattr(npz, "fid")), "a previous shard is still open"
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(np, "load", tracking)
    got = store.load_streams(paths=files, extractors=[ex], frames=True)["test-wide"]
    assert len(opened) == len(_shards(store, ex)) > 2 and got.found.all()
    for seq in got.frames:  # a returned sequence does not keep its whole shard's bytes alive
        root = seq["wave"]
        while getattr(root, "base", None) is not None:
            root = root.base
        assert memoryview(root).nbytes == seq["wave"].nbytes


def test_load_streams_rejects_bad_arguments(tmp_path, fake):
    store = FeatureStore(root=tmp_path / "store")
    with pytest.raises(ValueError, match="test-fake"):
        store.load_streams(paths=[], extractors=[fake.Fake(), fake.Fake(scale=2.0)])
    with pytest.raises(TypeError, match="extractors"):
        store.load_streams(paths=[], extractors=fake.Fake())
    with pytest.raises(TypeError, match="paths"):
        store.load_streams(paths="a.wav", extractors=[fake.Fake()])
    assert store.load_streams(paths=[], extractors=[fake.Fake()])["test-fake"].pooled.shape[0] == 0
