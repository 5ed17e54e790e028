"""The bundled model's quality measure (benchmarks/bundled_quality.py) and the fruit labels it learns from.

The labels file names the species the generator drew, the PNGs stay byte-identical, the k-NN
precision/recall and the confidence/coverage figures give known answers on hand-made inputs,
and the whole benchmark runs (slow) and prints the JSON the issue asks for.
"""

import hashlib
import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gvjax.train.data import ImageDataset
from gvjax.train.fruit import FRUITS, LABELS_FILE, fruit_image, write_fruit_dataset

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bundled_quality.py"
_spec = importlib.util.spec_from_file_location("bundled_quality", SCRIPT)
bq = sys.modules["bundled_quality"] = importlib.util.module_from_spec(_spec)  # flax dataclasses look their module up
_spec.loader.exec_module(bq)

#: sha256 of the pixels of fruit_image(16, 3, i), i = 0..5, as drawn before labels existed (commit c4ebbdb)
PIXELS_SHA256 = "41b99392847efc376bb616aa4761a56e72cf0008306ebd15da1347fdbafff9cd"


# --- the labels file --------------------------------------------------------------------------------


def test_labels_file_names_the_species_drawn(tmp_path):
    out = write_fruit_dataset(tmp_path / "fruit", count=6, resolution=16, seed=3, labels=True)
    labels = json.loads((out / LABELS_FILE).read_text())
    assert labels["species"] == list(FRUITS)
    names = [f"fruit{i:06d}.png" for i in range(6)]
    assert sorted(labels["labels"]) == sorted(labels["fruits"]) == names
    for i, name in enumerate(names):
        kinds = fruit_image(16, 3, i)[1]
        assert [labels["species"][j] for j in labels["fruits"][name]] == kinds
        assert labels["labels"][name] == FRUITS.index(kinds[0])
    # the training loader reads the pictures only
    dataset = ImageDataset(out, 16)
    assert dataset.names == names and dataset.skipped == []


def test_fruit_pictures_unchanged_with_or_without_labels(tmp_path):
    digest = hashlib.sha256(b"".join(fruit_image(16, 3, i)[0].tobytes() for i in range(6))).hexdigest()
    assert digest == PIXELS_SHA256
    plain = write_fruit_dataset(tmp_path / "plain", count=6, resolution=16, seed=3)
    labelled = write_fruit_dataset(tmp_path / "labelled", count=6, resolution=16, seed=3, labels=True)
    assert sorted(p.name for p in labelled.iterdir()) == sorted(p.name for p in plain.iterdir()) + [LABELS_FILE]
    for png in plain.iterdir():
        assert png.read_bytes() == (labelled / png.name).read_bytes()


def test_worker_processes_write_the_same_files(tmp_path, monkeypatch):
    import gvjax.train.fruit as fruit

    one = write_fruit_dataset(tmp_path / "one", count=10, resolution=16, seed=3, labels=True)
    monkeypatch.setattr(fruit, "CHUNK", 4)  # three chunks (4, 4, 2) over two spawned processes
    two = write_fruit_dataset(tmp_path / "two", count=10, resolution=16, seed=3, labels=True, workers=2)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for path in one.iterdir():
        assert (two / path.name).read_bytes() == path.read_bytes(), path.name  # the labels file too


# --- the metric -------------------------------------------------------------------------------------


def _line(start: float, n: int = 10) -> np.ndarray:
    """`[n, 2]` points (start + i, 0)."""
    return np.stack([start + np.arange(n, dtype=np.float64), np.zeros(n)], axis=1)


def test_knn_radii_on_a_line():
    np.testing.assert_array_equal(bq.knn_radii(_line(0), k=1), np.ones(10))
    # k = 3: the ends reach 3 away, every other point has two neighbours at 1 and one at 2
    np.testing.assert_array_equal(bq.knn_radii(_line(0), k=3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
    assert bq.knn_radii(np.concatenate([_line(0), _line(0)]), k=1).max() == 0  # duplicates are neighbours


def test_in_manifold_includes_the_boundary():
    centres, radii = np.zeros((1, 2)), np.array([1.0])
    np.testing.assert_array_equal(bq.in_manifold(np.array([[1.0, 0], [0, 1.0001], [0.5, 0.5]]), centres, radii), [True, False, True])


def test_precision_recall_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    assert bq.precision_recall(a, a.copy()) == (1.0, 1.0)  # identical sets
    assert bq.precision_recall(a, a + 1000.0) == (0.0, 0.0)  # disjoint, far apart
    # the fake set covers one of the real set's two far clusters only (twice over)
    real = np.concatenate([_line(0), _line(1000)])
    fake = np.concatenate([_line(0), _line(0)])
    assert bq.precision_recall(real, fake, k=3) == (1.0, 0.5)
    # and the reverse: half of the fake set lies off the real manifold
    assert bq.precision_recall(fake, real, k=3) == (0.5, 1.0)


def test_answer_confidence_and_coverage():
    probs = np.array([
        [0.9, 0.1, 0.0],   # species 0, confidence 0.81
        [0.9, 0.9, 0.0],   # species 0 and 1, 0.81
        [0.6, 0.1, 0.0],   # species 0, 0.54: not confident
        [0.1, 0.3, 0.2],   # sees nothing: confidence 0
    ])
    np.testing.assert_allclose(bq.answer_confidence(probs), [0.81, 0.81, 0.54, 0.0])
    cov = bq.species_coverage(probs, threshold=0.8)
    assert cov["confident"] == 0.5 and cov["histogram"] == [2, 1, 0]
    assert cov["species_present"] == 2 and cov["species_total"] == 3
    p = np.array([2, 1]) / 3
    assert cov["evenness"] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
    assert bq.species_coverage(np.eye(3))["evenness"] == pytest.approx(1.0)  # each species once
    assert bq.species_coverage(np.eye(3)[[0, 0]])["evenness"] == 0.0  # one species only
    assert bq.species_coverage(np.zeros((2, 3)))["species_present"] == 0


def test_missed_targets():
    row = {"confident": 0.75, "precision": 0.7, "recall": 0.2, "species_present": 12, "species_total": 13}
    assert bq.missed_targets(row) == ["recall", "species_present"]


def test_negatives_are_the_pictures_tiles_or_colour_fields():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    shuffled = bq.shuffle_tiles(images, rng, tile=16)
    tiles = lambda x: sorted(x[r : r + 16, c : c + 16].tobytes() for r in range(0, 64, 16) for c in range(0, 64, 16))
    for a, b in zip(images, shuffled):
        assert tiles(a) == tiles(b) and not np.array_equal(a, b)
    fields = bq.colour_fields(rng, 4)
    assert fields.shape == (4, 64, 64, 3) and fields.dtype == np.uint8
    assert np.abs(np.diff(fields.astype(int), axis=2)).mean() < 8  # smooth
    assert bq.negatives(images, rng).shape == images.shape and bq.negatives(images[:0], rng).shape == (0, 64, 64, 3)


def test_classifier_shapes():
    net = bq.FruitNet(species=len(FRUITS))
    params = net.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
    logits, feats = net.apply(params, jnp.zeros((2, 64, 64, 3), jnp.float32))
    assert logits.shape == (2, len(FRUITS)) and feats.shape == (2, net.features)


def test_held_out_from_the_bundled_models_images():
    from gvjax.bundled import bundled_model

    assert bq.training_seeds(bundled_model()) == {0, 3}
    assert bq.DATA_SEED not in bq.training_seeds(bundled_model())


def test_a_bundled_format_npz_is_a_model(tmp_path):
    """A model .npz (what `bundled_config export` and benchmarks/device_train.sh write) is a model spec
    wherever one is taken: here the benchmark's `--model` reads a copy of the bundled file as the bundled model."""
    from gvjax.bundled import BUNDLED_NAME, bundled_model

    shipped = pathlib.Path(bq.REPO) / bq.BUNDLED_PATH
    copy = tmp_path / "stage.npz"
    copy.write_bytes(shipped.read_bytes())
    ckpt, sha = bq.load_model(str(copy))
    assert sha == hashlib.sha256(shipped.read_bytes()).hexdigest()
    want = bundled_model()
    assert ckpt.config == want.config and ckpt.provenance["training"] == bq.load_model(BUNDLED_NAME)[0].provenance["training"]
    for a, b in zip(jax.tree.leaves(ckpt.variables), jax.tree.leaves(want.variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- the whole benchmark ----------------------------------------------------------------------------


def test_a_missing_model_is_one_line_before_any_work():
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--model", "/nonexistent"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: no such model: /nonexistent" and r.stdout == ""


@pytest.mark.slow
def test_quick_benchmark_prints_the_json():
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert "| new (bundled) |" in r.stdout and "| old (bundled at bc4bbec) |" in r.stdout
    for name in ("new", "old", "data"):
        row = result[name]
        for key in ("confident", "species_present", "species_total", "precision", "recall", "evenness", "classifier_accuracy"):
            assert key in row, (name, key)
        assert row["species_total"] == len(FRUITS) and 0 <= row["species_present"] <= len(FRUITS)
        assert all(0 <= row[key] <= 1 for key in ("confident", "precision", "recall", "evenness", "classifier_accuracy"))
    assert result["setup"]["samples"] == 100
