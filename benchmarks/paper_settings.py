"""Match counts of the papers' settings tables: each named study of configs/papers/ ("after") and the
study that stood for the same table before it ("before"), checked with the same settings table.

    python benchmarks/paper_settings.py

Prints, per table, fields that match / fields checked, and how many of the checked fields neither the
paper nor its authors' code states ("unstated": our choice, so they match by construction).
A table with no earlier study counts 0 matched of 0 checked before.
"""

from __future__ import annotations

from pathlib import Path

from dimcollapse.study.grid import load_study
from dimcollapse.study.paper_settings import check_study, load_settings, match_count

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "configs" / "papers"
BEFORE = {  # the study that stood for each table before configs/papers/ existed
    "dc_t1.yaml": "directclr_imagenet100.yaml",
    "dc_t2.yaml": "directclr_imagenet100.yaml",
    "ll_t1_cifar10.yaml": "ll_constant_subvector.yaml",
    "ll_t2_cifar10.yaml": "ll_cifar10.yaml",
    "ll_t2_cifar100.yaml": "ll_cifar100.yaml",
    "ldreg_t1.yaml": "ldreg_cifar100.yaml",
    "ldreg_t13.yaml": "ldreg_cifar100.yaml",
    "or_cifar100.yaml": "or_cifar100.yaml",
}


def main() -> None:
    print(f"{'table':22s} {'before (old study)':>34s} {'after (named study)':>34s}")
    for path in sorted((PAPERS / "settings").glob("*.yaml")):
        table = load_settings(path)
        for key in table.studies:
            after = check_study(table, key)
            a_m, a_n = match_count(after)
            old = BEFORE.get(key)
            if old is None:
                before = "no study: 0 / 0"
            else:
                checks = check_study(table, key, load_study(ROOT / "configs" / "studies" / old))
                b_m, b_n = match_count(checks)
                before = f"{old.removesuffix('.yaml')}: {b_m} / {b_n}"
            runs = len({c.run for c in after})
            unstated = sum(c.source.startswith("unstated") for c in after)
            tail = f"{a_m} / {a_n} ({runs} runs, {unstated} unstated)"
            print(f"{key.removesuffix('.yaml'):22s} {before:>34s} {tail:>34s}")


if __name__ == "__main__":
    main()
