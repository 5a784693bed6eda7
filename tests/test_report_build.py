"""`dimcollapse report` on a real (tiny) study: a self-contained page whose tables match the runs' files."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from dimcollapse.report.claims import decide
from dimcollapse.report.seed_spread import seed_spread
from study_helpers import IMAGE_PIXELS, RUN_IDS, TinyStudy, flat, run_cli

pytest_plugins = ["conftest_study"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PageParser(HTMLParser):
    """Collects every tag's attributes and the cells of every table with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


def parse_page(path: Path) -> PageParser:
    """Parse one report page."""
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def table_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    """Header row + body rows -> list of {header: cell}."""
    head, *body = rows
    return [dict(zip(head, r, strict=True)) for r in body]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and the chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG (bad signature)"
    length, ctype = struct.unpack(">I4s", data[8:16])
    assert ctype == b"IHDR" and length == 13
    body = data[16 : 16 + 13]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(b"IHDR" + body) == crc, "corrupt IHDR chunk"
    w, h = struct.unpack(">II", body[:8])
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"), "PNG is truncated (no IEND chunk)"
    return w, h


def _metrics(study: TinyStudy, run_id: str) -> dict[str, float]:
    return dict(json.loads((study.folder / "runs" / run_id / "metrics.json").read_text()))


def _close(cell: str, value: float, rel: float = 2e-3) -> bool:
    return abs(float(cell) - value) <= rel * max(abs(value), 1e-9)


def test_page_is_self_contained(tiny_report: Path) -> None:
    page = parse_page(tiny_report)
    links = [(t, k, v) for t, a in page.tags for k, v in a.items() if k in ("src", "href")]
    assert not [x for x in links if x[2].lower().startswith(("http://", "https://", "//"))]
    assert not [
        t for t, a in page.tags if t in ("script", "link", "iframe") and (a.get("src") or a.get("href"))
    ]
    hrefs = [v for t, k, v in links if k == "href"]
    assert all(h.startswith("#") for h in hrefs), hrefs  # navigation only inside the page
    ids = [a["id"] for _, a in page.tags if a.get("id")]
    assert len(ids) == len(set(ids)), f"duplicate element ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert {h[1:] for h in hrefs} <= set(ids), "a navigation link points to no element"
    imgs = [a.get("src", "") for t, a in page.tags if t == "img"]
    assert len(imgs) >= 8  # spectra, curves, layer panels, alignment, 3 maps
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        w, h = png_size(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert w > 50 and h > 50


def test_figure_files_are_valid_and_embedded(tiny_report: Path) -> None:
    import matplotlib.image as mpimg

    figdir = tiny_report.parent / "figures"
    files = sorted(figdir.glob("*.png"))
    listed = json.loads((tiny_report.parent / "report.json").read_text())["figures"]
    assert sorted(f.name for f in files) == sorted(listed)
    names = {f.stem for f in files}
    assert {"spectrum_r", "spectrum_z", "training_curves", "alignment", "weight_spectra"} <= names
    assert {f"map_{i}" for i in range(len(RUN_IDS))} <= names
    embedded = {
        a["src"].split(",", 1)[1] for t, a in parse_page(tiny_report).tags if t == "img" and "src" in a
    }
    for f in files:
        data = f.read_bytes()
        png_size(data)
        pixels = mpimg.imread(f)  # decodes the whole image: a corrupt stream raises
        assert pixels.ndim == 3 and float(np.std(pixels[..., :3])) > 0.01, f"{f.name} is blank"
        assert base64.b64encode(data).decode("ascii") in embedded, f"{f.name} is not in the page"


def _lead(cell: str) -> str:
    """The mean shown first in a claims cell such as '20.7 ± 0.3 (n=3)' or '74.6% (n=1)'."""
    return cell.split()[0].rstrip("%")


def test_claims_table_verdicts_follow_the_results(tiny_study: TinyStudy, tiny_report: Path) -> None:
    claims = table_dicts(parse_page(tiny_report).tables["claims"])
    assert claims, "the claims table has no rows"
    assert all(c["verdict"] in ("holds", "does not hold", "inconclusive") for c in claims)
    by_text = {c["claim"]: c for c in claims}
    row = by_text["SimCLR without projector collapses r more than with an MLP projector"]
    assert row["metric"] == "erank_r"
    # the numbers, read independently from each run's own metrics.json
    a = _metrics(tiny_study, "simclr_none")["erank_r"]
    b = _metrics(tiny_study, "simclr_mlp")["erank_r"]
    assert _close(_lead(row["a"]), a) and _close(_lead(row["b"]), b)
    assert row["a"].endswith("(n=1)") and row["b"].endswith("(n=1)")
    # and the verdict, recomputed from results.json (one seed per group)
    results = json.loads((tiny_study.folder / "results.json").read_text())
    sel = {r["run_id"]: r for r in results}
    assert sel["simclr_none"]["projector"] == "none" and sel["simclr_mlp"]["projector"] == "mlp"
    a_b = [sel["simclr_none"]["erank_r"]], [sel["simclr_mlp"]["erank_r"]]
    verdict, _ = decide(*a_b, "less", 0.1, spread=seed_spread("erank_r"))
    assert row["verdict"] == verdict and row["seeds"] == "single seed"
    so = [c for c in claims if c["claim"].startswith("SO raises the effective rank of r")]
    assert len(so) == 1 and _close(_lead(so[0]["a"]), _metrics(tiny_study, "simclr_so")["erank_r"])


def _raw_pixel_erank() -> float:
    """exp(entropy) of the covariance spectrum of the synthetic test images in [0, 1], by numpy."""
    from dimcollapse.data.synthetic import synthetic

    x = synthetic(train=False, n=256, image_size=16).images.reshape(256, -1).numpy() / 255.0
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)), 0, None)
    p = lam[lam > 0] / lam.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def test_accuracy_table_has_runs_and_baselines(tiny_study: TinyStudy, tiny_report: Path) -> None:
    table = {r["variant"]: r for r in table_dicts(parse_page(tiny_report).tables["accuracy"])}
    assert {"raw pixels", "random init", *RUN_IDS} <= set(table)
    for rid in RUN_IDS:
        m = _metrics(tiny_study, rid)
        assert table[rid]["kNN k=200"] == f"{100 * m['knn_k200_top1']:.1f}%"
        assert table[rid]["linear probe (L-BFGS, fast CPU)"] == f"{100 * m['linear_top1']:.1f}%"
        assert table[rid]["seeds"] == "1"
    assert table["simclr_none"]["projector"] == "none" and table["simclr_so"]["regularizers"] == "so"
    raw = table["raw pixels"]
    assert raw["dim r"] == str(IMAGE_PIXELS) and raw["linear probe (L-BFGS, fast CPU)"] == "–"
    assert _close(raw["erank r"], _raw_pixel_erank(), 1e-3)
    assert table["random init"]["dim r"] == "32"  # the backbone's last width


def test_single_run_folder_gets_a_report(tiny_study: TinyStudy, tmp_path: Path) -> None:
    run_dir = tiny_study.folder / "runs" / "simclr_mlp"
    status, text = run_cli(["report", str(run_dir), "--out", str(tmp_path / "rep"), "--map", "pca"])
    assert status == 0, text
    page = parse_page(tmp_path / "rep" / "index.html")
    rows = table_dicts(page.tables["accuracy"])
    assert [r["variant"] for r in rows] == ["simclr_mlp"]
    assert rows[0]["kNN k=20"] == f"{100 * _metrics(tiny_study, 'simclr_mlp')['knn_k20_top1']:.1f}%"
    assert "claims" not in page.tables  # one run covers no comparison
    assert sum(1 for t, _ in page.tags if t == "img") >= 5
    # the run's one-line verdict: on the terminal and in the runs table (the monitor's over its history)
    runs = table_dicts(page.tables["runs"])
    verdict = runs[0]["verdict"]
    assert verdict.startswith("collapsing: ") and f"simclr_mlp: {verdict}" in text.splitlines()
    monitor = (
        json.loads((run_dir / "monitor.json").read_text()) if (run_dir / "monitor.json").is_file() else {}
    )
    assert verdict == monitor.get("verdict", verdict)


def test_folder_without_results_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    status, text = run_cli(["report", str(tmp_path / "empty")])
    text = flat(text)
    assert status == 2
    assert "neither results.json" in text and "metrics.json" in text and "Traceback" not in text
    status, text = run_cli(["report", str(tmp_path / "missing")])
    assert status == 2 and "not a folder" in flat(text)


def test_bad_map_option(tiny_study: TinyStudy, tmp_path: Path) -> None:
    status, text = run_cli(["report", str(tiny_study.folder), "--out", str(tmp_path / "r"), "--map", "bogus"])
    assert status == 2 and "--map" in flat(text) and "umap" in flat(text)
    assert not (tmp_path / "r").exists()
