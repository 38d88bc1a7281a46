"""`kgan generate` (grids, arrays, interpolations) and `kgan export`: outputs and one-line errors."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kgan import cli, export, generate, networks

LATENT = 16


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    generator, _ = networks.build((8, 8, 1), LATENT)
    return export.export_generator(generator, str(tmp_path_factory.mktemp("gen") / "generator"))


@pytest.fixture(scope="module")
def serve(model_path):
    return tf.saved_model.load(model_path).signatures["serving_default"]


def test_generate_writes_a_png_grid(model_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, stdout, _ = run_main(["generate", "--model", model_path, "--num", "10", "--seed", "2",
                                "--truncation", "0.7", "--out", str(out)], capsys)
    assert code == 0 and str(out) in stdout
    picture = Image.open(out)
    # 10 samples, 8 per row: 2 rows of 32 px cells (8 px images x 4) with 2 px lines.
    assert picture.size == (2 + 8 * 34, 2 + 2 * 34) and picture.mode == "L"
    pixels = np.asarray(picture)
    assert pixels[2:34, 2:34].std() > 0  # a sample, not background


def test_generate_writes_arrays_matching_the_sample_signature(model_path, serve, tmp_path, capsys):
    out = tmp_path / "samples.npz"
    code, _, _ = run_main(["generate", "--model", model_path, "--num", "12", "--seed", "4",
                           "--truncation", "0.5", "--out", str(out)], capsys)
    assert code == 0
    arrays = np.load(out)
    assert sorted(arrays.files) == ["images", "latents"]
    assert arrays["images"].shape == (12, 8, 8, 1) and arrays["images"].dtype == np.uint8
    assert arrays["latents"].shape == (12, LATENT) and np.abs(arrays["latents"]).max() <= 0.5
    expected = np.round((serve(latent=arrays["latents"])["images"].numpy() + 1) * 127.5)
    assert np.abs(arrays["images"].astype(int) - expected.astype(int)).max() <= 1
    again = generate.sample(tf.saved_model.load(model_path), 12, seed=4, truncation=0.5)
    np.testing.assert_array_equal(again["images"], arrays["images"])


def test_evaluate_sees_the_samples_generate_writes(model_path, tmp_path, capsys):
    """One sampling convention: `kgan evaluate --seed S` scores exactly the N samples that
    `kgan generate --seed S --num N` writes (as float in [-1, 1])."""
    from kgan import evaluate

    out = tmp_path / "samples.npz"
    code, _, _ = run_main(["generate", "--model", model_path, "--num", "30", "--seed", "9", "--out", str(out)], capsys)
    assert code == 0
    written = np.load(out)["images"]
    scored = evaluate.generate_samples(tf.saved_model.load(model_path), 30, seed=9, progress=False)
    assert scored.dtype == np.float32 and scored.shape == (30, 8, 8, 1)
    np.testing.assert_array_equal(scored, written.astype(np.float32) / 127.5 - 1.0)
    assert not np.array_equal(scored, evaluate.generate_samples(tf.saved_model.load(model_path), 30, seed=10,
                                                                progress=False))


def test_interpolation_endpoints_are_the_generator_at_the_endpoint_latents(model_path, serve, tmp_path, capsys):
    out = tmp_path / "interp.npz"
    code, _, _ = run_main(["generate", "--model", model_path, "--interpolate", "5", "--pairs", "2",
                           "--seed", "1", "--out", str(out)], capsys)
    assert code == 0
    arrays = np.load(out)
    endpoints = arrays["endpoints"]
    assert endpoints.shape == (2, 2, LATENT)
    for name in ("linear", "slerp"):
        assert arrays[name].shape == (2, 5, 8, 8, 1)
        np.testing.assert_allclose(arrays[name][:, 0], serve(latent=endpoints[:, 0])["images"].numpy(), atol=1e-6)
        np.testing.assert_allclose(arrays[name][:, -1], serve(latent=endpoints[:, 1])["images"].numpy(), atol=1e-6)
    assert not np.allclose(arrays["linear"][:, 2], arrays["slerp"][:, 2])  # the paths differ in between

    png = tmp_path / "interp.png"
    code, _, _ = run_main(["generate", "--model", model_path, "--interpolate", "5", "--pairs", "2",
                           "--out", str(png)], capsys)
    assert code == 0 and Image.open(png).size == (2 + 5 * 34, 2 + 4 * 34)  # rows: 2 pairs x (linear, slerp)


def test_slerp_follows_the_sphere_and_lerp_the_chord():
    a = np.array([[1.0, 0.0, 0.0]])
    b = np.array([[0.0, 1.0, 0.0]])
    t = np.linspace(0, 1, 5)
    spherical = generate.slerp(a, b, t)[0]
    np.testing.assert_allclose(np.linalg.norm(spherical, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(spherical[2], [np.sqrt(0.5), np.sqrt(0.5), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(spherical[[0, -1]], np.concatenate([a, b]).astype("float32"))
    linear = generate.lerp(a, b, t)[0]
    np.testing.assert_allclose(linear[2], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(generate.slerp(a, a, t)[0], np.repeat(a, 5, axis=0))  # parallel: no NaN


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "no exported model at"),
        ("empty", "is not a SavedModel (no saved_model.pb)"),
        ("corrupt", "cannot load the SavedModel at"),
    ],
)
def test_generate_on_a_missing_or_corrupt_model_exits_2_with_one_line(setup, expected, tmp_path, capsys):
    path = tmp_path / "generator"
    if setup != "missing":
        path.mkdir()
    if setup == "corrupt":
        (path / "saved_model.pb").write_bytes(b"not a protocol buffer \x00\xff")
    code, _, err = run_main(["generate", "--model", str(path), "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert err.startswith("kgan generate: error:")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--out", "x.jpg"], "--out must end in .png"),
        (["--num", "0"], "--num must be >= 1"),
        (["--truncation", "-1"], "--truncation must be >= 0"),
        (["--interpolate", "1"], "--interpolate must be >= 2"),
    ],
)
def test_generate_bad_flags_exit_2_with_one_line(argv, expected, model_path, tmp_path, capsys):
    argv = ["generate", "--model", model_path, *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")]
    code, _, err = run_main(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_export_of_an_unknown_run_exits_2_with_one_line(tmp_path, capsys):
    code, _, err = run_main(["export", "--run", "nope", "--output", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "no config.json in" in err, err
