"""`dimcollapse analyze`: metrics.json equals independent numpy computations; bad input exits 2 cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dimcollapse.cli.main import run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(n: int = 120, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) * np.exp(-0.3 * np.arange(d))
    z[:, -3:] = z[:, :3] @ rng.normal(size=(3, 3))  # rank deficient: 3 collapsed dimensions
    return z + 0.5  # non-zero mean: centred and uncentred quantities differ


def _reference(z: np.ndarray, k: int) -> dict[str, float]:
    """Every metric computed directly from the formulas of SPEC section 1 with numpy."""
    n = z.shape[0]
    zc = z - z.mean(0)
    eig = np.sort(np.linalg.eigvalsh(zc.T @ zc / n))[::-1]
    lam = np.clip(eig, 0, None)
    p = lam / lam.sum()
    p = p[p > 0]
    sv = np.linalg.svd(z, compute_uv=False)
    q = sv / sv.sum() + 1e-7
    keep = eig > 1e-6 * eig[0]
    ranks = np.arange(1, eig.size + 1)[keep]
    slope = np.polyfit(np.log(ranks), np.log(eig[keep]), 1)[0]
    cum = np.cumsum(lam) / lam.sum()
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    r = np.sort(dist, axis=1)[:, :k]
    mle = -1.0 / np.mean(np.log(r / r[:, -1:]), axis=1)
    m = r.mean(1)
    mom = m / (r[:, -1] - m)
    return {
        "eig": eig,
        "erank": float(np.exp(-(p * np.log(p)).sum())),
        "rankme": float(np.exp(-(q * np.log(q)).sum())),
        "alpha": float(-slope),
        "collapsed_dims": int((eig < 1e-6 * eig[0]).sum()),
        "dims_90": int(np.argmax(cum >= 0.9) + 1),
        "dims_99": int(np.argmax(cum >= 0.99) + 1),
        "lid_mle_gmean": float(np.exp(np.log(mle).mean())),
        "lid_mom_gmean": float(np.exp(np.log(mom).mean())),
        "lid_mle_median": float(np.median(mle)),
    }


def _check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.01  # not a blank canvas
    assert path.with_suffix(".svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_single_file_metrics_match_numpy_and_figures_exist(tmp_path, capsys):
    z = _data()
    np.save(tmp_path / "emb.npy", z)
    labels = np.arange(z.shape[0]) % 4
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "out"
    code = run(["analyze", str(tmp_path / "emb.npy"), "--out", str(out), "--k", "10",
                "--labels", str(tmp_path / "y.npy"), "--map", "pca"])  # fmt: skip
    assert code == 0
    shown = capsys.readouterr().out
    assert "effective rank" in shown and "RankMe" in shown
    m = json.loads((out / "metrics.json").read_text())
    ref = _reference(z, 10)
    assert m["n"] == 120 and m["d"] == 12 and m["n_classes"] == 4 and m["lid_k"] == 10
    np.testing.assert_allclose(m["spectrum"], ref["eig"], rtol=1e-9, atol=1e-12 * ref["eig"][0])
    for key in ("erank", "rankme", "alpha", "lid_mle_gmean", "lid_mom_gmean", "lid_mle_median"):
        assert m[key] == pytest.approx(ref[key], rel=1e-6), key
    for key in ("collapsed_dims", "dims_90", "dims_99"):
        assert m[key] == ref[key], key
    assert m["collapsed_dims"] == 3
    assert f"{m['erank']:.2f}" in shown
    for stem in ("spectrum", "cumulative_variance", "lid_histogram", "covariance_heatmap", "embedding_map"):
        _check_png(out / "figures" / f"{stem}.png")
    assert not [p for p in out.rglob("*.tmp")]


def test_l2_normalize_and_drop_nonfinite(tmp_path):
    z = _data(60, 6, seed=3)
    z[[4, 9], 2] = np.nan
    np.save(tmp_path / "nf.npy", z)
    labels = np.zeros(60, dtype=int)
    labels[[4, 9]] = 7  # only the dropped rows carry class 7
    np.savetxt(tmp_path / "y.txt", labels, fmt="%d")
    out = tmp_path / "o"
    args = ["analyze", str(tmp_path / "nf.npy"), "--out", str(out), "--l2-normalize", "--k", "5",
            "--labels", str(tmp_path / "y.txt"), "--no-figures"]  # fmt: skip
    assert run(args) == 2
    assert not out.exists()
    assert run([*args, "--drop-nonfinite"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    kept = np.delete(z, [4, 9], axis=0)
    zn = kept / np.linalg.norm(kept, axis=1, keepdims=True)
    ref = _reference(zn, 5)
    assert m["n"] == 58 and m["rows_dropped"] == 2 and m["rows_in_file"] == 60 and m["n_classes"] == 1
    np.testing.assert_allclose(m["spectrum"], ref["eig"], rtol=1e-9, atol=1e-12)
    assert m["lid_mle_gmean"] == pytest.approx(ref["lid_mle_gmean"], rel=1e-6)


def test_directory_and_compare(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    full = np.random.default_rng(1).normal(size=(80, 8))
    np.save(runs / "healthy.npy", full)
    collapsed = full.copy()
    collapsed[:, 4:] = 0.0  # four dead dimensions
    torch.save({"z": torch.from_numpy(collapsed)}, runs / "collapsed.pt")
    out = tmp_path / "cmp"
    args = [str(runs / "healthy.npy"), str(runs / "collapsed.pt"), "--compare", "--out", str(out), "--k", "5",
            "--no-figures"]  # fmt: skip
    assert run(["analyze", *args]) == 0
    table = capsys.readouterr().out
    assert "comparison" in table and "healthy" in table and "collapsed" in table
    cmp = json.loads((out / "compare.json").read_text())
    rows = {r["name"]: r for r in cmp["runs"]}
    assert rows["collapsed"]["collapsed_dims"] == 4 and rows["healthy"]["collapsed_dims"] == 0
    for name in ("healthy", "collapsed"):
        m = json.loads((out / name / "metrics.json").read_text())
        assert rows[name]["erank"] == m["erank"]
    _check_png(out / "compare_spectrum.png")
    # the overlay holds one line per run, each log10 of that run's positive eigenvalues
    from dimcollapse.viz.plots import plot_log_spectrum

    spectra = {n: np.asarray(json.loads((out / n / "metrics.json").read_text())["spectrum"]) for n in rows}
    lines = plot_log_spectrum(spectra).axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == list(spectra)
    # a directory analyses every file inside it into out/<name>/
    out2 = tmp_path / "dir"
    assert run(["analyze", str(runs), "--out", str(out2), "--k", "5", "--no-figures"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["collapsed", "healthy"]
    again = json.loads((out2 / "collapsed" / "metrics.json").read_text())
    assert again["spectrum"] == json.loads((out / "collapsed" / "metrics.json").read_text())["spectrum"]
    assert not (out2 / "collapsed" / "figures").exists() and again["figures"] == []


class Payload:
    """A custom pickled object that must not be loaded."""

    def __init__(self) -> None:
        self.data = [1, 2, 3]


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = tmp / "good.npy"
    np.save(good, _data(30, 4))
    np.save(tmp / "one_d.npy", np.arange(10.0))
    np.save(tmp / "three_d.npy", np.zeros((5, 4, 3)))
    np.save(tmp / "one_row.npy", np.zeros((1, 4)))
    nf = _data(30, 4)
    nf[3, 0] = np.inf
    np.save(tmp / "nonfinite.npy", nf)
    (tmp / "emb.txt").write_text("1,2\n3,4\n")
    (tmp / "corrupt.npy").write_bytes(good.read_bytes()[:100])
    torch.save({"z": Payload()}, tmp / "pickled.pt")
    (tmp / "empty").mkdir()
    (tmp / "blocker").write_text("a regular file")
    np.save(tmp / "labels_short.npy", np.zeros(29, dtype=int))
    return {
        "missing": ([str(tmp / "nope.npy")], "does not exist"),
        "unknown extension": ([str(tmp / "emb.txt")], "unknown extension"),
        "corrupt": ([str(tmp / "corrupt.npy")], "corrupt, truncated"),
        "pickled": ([str(tmp / "pickled.pt")], "pickled Python objects"),
        "1-D": ([str(tmp / "one_d.npy")], "1-D"),
        "3-D": ([str(tmp / "three_d.npy")], "3-D"),
        "one row": ([str(tmp / "one_row.npy")], "at least 2 samples"),
        "nonfinite": ([str(tmp / "nonfinite.npy")], "1 of 30 rows contain NaN or Inf"),
        "k >= N": ([str(good), "--k", "30"], "k=30"),
        "k < 2": ([str(good), "--k", "1"], "k must be an integer >= 2"),
        "empty dir": ([str(tmp / "empty")], "holds no embeddings files"),
        "labels length": ([str(good), "--labels", str(tmp / "labels_short.npy")], "has 29 labels"),
        "bad map": ([str(good), "--map", "tsne"], "unknown map method"),
        "one bad file among good": ([str(good), str(tmp / "one_d.npy"), "--compare"], "1-D"),
    }


def test_bad_inputs_exit_2_with_message_and_write_nothing(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    for label, (args, message) in cases.items():
        out = tmp_path / f"out_{label.replace(' ', '_')}"
        code = run(["analyze", *args, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, label
        assert message in " ".join(err.split()), (label, err)
        assert "Traceback" not in err and err.strip().startswith("error:"), label
        assert not out.exists(), label


def test_unwritable_out(tmp_path, capsys):
    np.save(tmp_path / "good.npy", _data(30, 4))
    (tmp_path / "blocker").write_text("a regular file")
    out = tmp_path / "blocker" / "sub"
    code = run(["analyze", str(tmp_path / "good.npy"), "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "cannot create output folder" in err and "Traceback" not in err
    assert (tmp_path / "blocker").read_text() == "a regular file"


def test_python_api_on_a_tensor_agrees_with_summarize(tmp_path):
    from dimcollapse.analysis import analyze_embeddings
    from dimcollapse.diagnostics import summarize

    z = torch.from_numpy(_data(90, 10, seed=5)).float()
    m = analyze_embeddings(z, k=7, l2_normalize=True, name="t")
    s = summarize(z, k=7, l2_normalize=True)
    for key in ("erank", "rankme", "alpha", "collapsed_dims", "dims_90", "lid_mle_gmean", "lid_mom_gmean"):
        assert m[key] == pytest.approx(s[key], rel=1e-6), key  # RankMe: sqrt of ~0 eigenvalues
    assert not list(tmp_path.iterdir())  # out=None writes nothing
    with pytest.raises(Exception, match="k=90"):
        analyze_embeddings(z, k=90)
