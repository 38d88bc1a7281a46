"""`kgan evaluate` on an exported generator: JSON equal to the metrics computed directly; exit 2."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kgan import cli, data, evaluate, generate, metrics, networks
from kgan.export import export_generator
from kgan.metrics import classifier as classifier_module

NUM = 200


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    tf.keras.utils.set_random_seed(0)
    generator, _ = networks.build((8, 8, 1), 16)
    return export_generator(generator, str(root / "generator"))


@pytest.fixture
def quick_classifier(tmp_path, monkeypatch):
    """"classifier:digits" trains for 1 epoch (instead of 30) into a temporary cache."""
    monkeypatch.setitem(classifier_module._DATASETS, "digits", (classifier_module.load_digits_split, 1, 10))
    monkeypatch.setenv("KGAN_FEATURE_EXTRACTORS_DIR", str(tmp_path / "features"))
    return tmp_path / "features"


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_evaluate_json_equals_the_metrics_computed_directly(exported, quick_classifier, tmp_path, capsys):
    out_json = tmp_path / "report.json"
    code, out, _ = run_main(["evaluate", "--model", exported, "--dataset", "digits", "--metrics", "fid,kid,pr,dc,is",
                             "--num-samples", str(NUM), "--num-real", "600", "--seed", "3", "--json", str(out_json)],
                            capsys)
    assert code == 0
    report = json.loads(out_json.read_text())
    # Independently: the samples `kgan generate --seed 3 --num NUM` writes (uint8), back in [-1, 1], then the maths.
    samples = tf.saved_model.load(exported).signatures["sample"](num=tf.constant(NUM), seed=tf.constant(3, tf.int64),
                                                                 truncation=tf.constant(0.0))
    images = samples["images"].numpy().astype(np.float32) / 127.5 - 1.0
    net = metrics.get_feature_extractor("classifier:digits", cache_dir=str(quick_classifier))
    assert net.from_cache  # the one evaluate trained
    real = net.features(data.digits_arrays()[0][:600])  # the first 600 of the dataset
    fake_features, logits = net.features_and_logits(images)
    values = report["metrics"]
    # --metrics fid on a classifier network is logged as what it is: FCD.
    assert "fid" not in values
    assert values["fcd"] == pytest.approx(metrics.frechet_distance(real, fake_features), rel=1e-9)
    kid = metrics.kernel_inception_distance(real, fake_features)
    assert (values["kid"], values["kid_std"]) == pytest.approx((kid["mean"], kid["std"]), rel=1e-9)
    pr = metrics.precision_recall(real, fake_features)
    assert (values["precision"], values["recall"]) == (pr["precision"], pr["recall"])
    dc = metrics.density_coverage(real, fake_features)
    assert (values["density"], values["coverage"]) == (dc["density"], dc["coverage"])
    assert values["is"] == pytest.approx(metrics.inception_score(logits, from_logits=True)["mean"], rel=1e-9)
    assert report["num_samples"] == NUM and report["num_real"] == 600 and report["latent_dim"] == 16
    assert report["features"]["feature_network"] == "classifier:digits"
    assert "Frechet Classifier Distance" in report["features"]["feature_label"]
    assert report["labels"]["fcd"] == "Frechet distance (200 generated vs 600 real) on classifier:digits (FCD)"
    assert f"fcd {values['fcd']:.6g}" in " ".join(out.split())


def test_evaluate_mode_metrics_of_a_point_generator(tmp_path, capsys):
    tf.keras.utils.set_random_seed(0)
    generator, _ = networks.build((2,), 8)
    path = export_generator(generator, str(tmp_path / "points"))
    out_json = tmp_path / "ring.json"
    code, _, _ = run_main(["evaluate", "--model", path, "--dataset", "ring8", "--metrics", "modes,fid",
                           "--json", str(out_json)], capsys)
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["num_samples"] == 2500  # PacGAN's protocol
    points = generate.sample(tf.saved_model.load(path), 2500, seed=0)["points"]  # = kgan generate --seed 0 --num 2500
    expected = metrics.mode_metrics(points, "ring8")
    assert report["metrics"]["modes"] == expected["modes_captured"]
    assert report["metrics"]["hq_percent"] == expected["high_quality_percent"]
    real = evaluate.real_examples(data.load("ring8", seed=0))
    assert report["metrics"]["fd"] == pytest.approx(metrics.frechet_distance(real, points), rel=1e-9)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "/nonexistent/generator", "--dataset", "digits"], "no exported model at /nonexistent/generator"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "digits", "--metrics", "fid,foo"], "unknown metric foo"),
        (["--dataset", "digits", "--metrics", "modes"], "modes applies to"),
        (["--dataset", "ring8"], "makes samples of shape [8, 8, 1] but ring8 has [2]"),
        (["--dataset", "digits", "--features", "resnet"], "--features resnet: Could not interpret"),
        (["--dataset", "digits", "--num-samples", "1"], "--num-samples must be >= 10"),
        (["--dataset", "digits", "--json", "/nonexistent/x.json"], "--json: directory /nonexistent does not exist"),
    ],
)
def test_evaluate_user_errors_exit_2_with_one_line(argv, expected, exported, capsys):
    if "--model" not in argv:
        argv = ["--model", exported, *argv]
    code, out, err = run_main(["evaluate", *argv], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_the_metric_registry_holds_exactly_the_metric_names():
    from kgan.names import METRICS

    assert evaluate.METRIC_REGISTRY.names() == METRICS
    assert evaluate.METRIC_REGISTRY.lookup("fcd") is evaluate.METRIC_REGISTRY.lookup("fid")
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        evaluate.METRIC_REGISTRY.lookup("nope")
