"""The report's boundary accuracy section: how well each boundary source's change points hit the ground-truth action
boundaries (stages/bapg/boundary_accuracy.py), per scale, within +-1 and +-2 feature steps, on the test and the
training videos. Input: the rows of each source's boundary_accuracy.json (written by the TSCProposals stage);
output: report.json's "boundary_accuracy" (docs/report.md) and its markdown table."""
from __future__ import annotations

from collections.abc import Mapping

COUNTS = ("precision", "recall", "f1", "tp", "n_pred", "n_true")
SPLITS = ("test", "train")


def boundary_accuracy_section(tables: Mapping[str, list[dict]], subsets: Mapping[str, str],
                              stores: Mapping[str, str] | None = None) -> dict:
    """report.json's "boundary_accuracy" from {source: rows of its boundary_accuracy.json}.

    rows: {"subset", "scale", "tolerance", "tp", "n_pred", "n_true", "precision", "recall", "f1"} (one per subset,
    scale and tolerance, micro-averaged over the subset's videos with ground truth); subsets: {"test": name,
    "train": name} of the dataset's subsets; stores: {source: proposals store folder name}. Returns
    {"tolerances": [k, ...], "subsets": subsets, "sources": {source: {"store": name, "test": {scale: {"<k>": C}},
    "train": {...}}}} with C = {precision, recall, f1, tp, n_pred, n_true}; sources and scales in input order.
    """
    tolerances = sorted({int(r["tolerance"]) for rows in tables.values() for r in rows})
    by_name = {name: split for split, name in subsets.items()}
    sources = {}
    for source, rows in tables.items():
        entry: dict = {"store": (stores or {}).get(source)}
        entry.update({split: {} for split in subsets})
        for r in rows:
            split = by_name.get(r["subset"])
            if split is None:
                continue
            cell = {k: (int(r[k]) if k in ("tp", "n_pred", "n_true") else float(r[k])) for k in COUNTS}
            entry[split].setdefault(str(r["scale"]), {})[str(int(r["tolerance"]))] = cell
        sources[source] = entry
    return {"tolerances": tolerances, "subsets": dict(subsets), "sources": sources}


def boundary_accuracy_markdown(section: Mapping | None) -> str:
    """One row per (source, scale): F1 (precision / recall) at each tolerance on the test and the training videos."""
    if not section or not section.get("sources"):
        return "_no boundary accuracy (no boundary source, or no video with ground truth)_\n"
    ks = section["tolerances"]
    splits = [s for s in SPLITS if s in section["subsets"]]
    head = "| source | scale | " + " | ".join(f"{s} ±{k}" for s in splits for k in ks) + " |\n"
    head += "|---|---|" + "---|" * (len(splits) * len(ks)) + "\n"

    def cell(c):
        return f"{c['f1']:.3f} ({c['precision']:.2f} / {c['recall']:.2f})" if c else "—"

    body, n_true = "", {}
    for source, entry in section["sources"].items():
        scales = list(dict.fromkeys(sc for s in splits for sc in entry.get(s, {})))
        for scale in scales:
            cells = [cell(entry.get(s, {}).get(scale, {}).get(str(k))) for s in splits for k in ks]
            body += f"| {source} | {scale} | " + " | ".join(cells) + " |\n"
            for s in splits:
                first = next(iter(entry.get(s, {}).get(scale, {}).values()), None)
                if first is not None:
                    n_true.setdefault(s, first["n_true"])
    if not body:
        return "_no boundary accuracy (no video with ground truth)_\n"
    counts = "; ".join(f"{s} ({section['subsets'][s]}): {n_true[s]} ground-truth boundaries" for s in splits
                       if s in n_true)
    note = ("\nEach cell: F1 (precision / recall) of the scale's change points against the ground-truth action "
            "boundaries, one-to-one within ±k feature steps, summed over the videos with ground truth before dividing "
            f"(micro average). {counts}. Training videos: their change points as the pipeline computed them (with "
            "cross-fitting, on the similarity of an encoder that left the video out).\n")
    return head + body + note
