"""Building the report: loading the results and the paper's numbers, matching entries, the paper
tables, the other tables and one section per experiment."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib

from experiments.report.config import EXPECTED, KEYS, NO_PAPER_NUMBERS, PAPER_PATH, PRODUCERS


def run_hint(name: str) -> str:
    if name == "complexity":  # counts, no training: no presets
        return "`python -m experiments.complexity` (writes complexity.md beside the report's results)"
    return (f"`python -m experiments.{name} --preset cpu-smoke` (offline) or "
            f"`python -m experiments.{name} --preset paper` (the paper's setting)")


# ----------------------------------------------------------------------------------- loading
def load_paper_numbers(path=None) -> dict:
    """The transcribed paper numbers: ``{"source": ..., "tables": {id: {"caption", "entries"}}}``."""
    return json.loads(pathlib.Path(path or PAPER_PATH).read_text())


def load_results(path: pathlib.Path) -> dict:
    """A results.json, checked for the keys the report needs; raises ValueError otherwise."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    if not isinstance(data.get("entries"), list):
        raise ValueError("missing or non-list 'entries'")
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict) or any(k not in e for k in ("table", "row", "metric")):
            raise ValueError(f"entry {i} is not an object with table/row/metric")
    data.setdefault("experiment", path.parent.name)
    return data


def match(entry: dict, paper_entries: list) -> list:
    """Paper entries whose key fields equal ``entry``'s: every key present in either must agree."""
    return [p for p in paper_entries if all(entry.get(k) == p.get(k) for k in KEYS if k in entry or k in p)]


# -------------------------------------------------------------------------------- formatting
def fmt(entry: dict, value=..., missing: str = "missing") -> str:
    v = entry.get("value") if value is ... else value
    if v is None:
        return missing
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    m = entry.get("metric")
    if m == "ratio" or "ratio" in str(entry.get("row", "")):
        return f"{v:.2f}"
    if m in ("acc", "top1", "top5"):
        return f"{100 * v:.2f}%"
    if m == "time_s":
        return f"{v:.1f} s"
    if m == "params_M":
        return f"{v:.2f}M" if v >= 0.1 else f"{v:.3g}M"  # the stand-in networks have thousands of parameters
    return f"{v:.4g}"


def cell(x) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    return "" if x is None else str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def split_keys(entries: list) -> tuple[list, dict]:
    """(key fields whose value varies across entries, {key: value} of those that are constant)."""
    varying, fixed = [], {}
    for k in KEYS[1:]:
        vals = {json.dumps(e.get(k)) for e in entries}
        if len(vals) > 1:
            varying.append(k)
        elif vals != {"null"}:
            fixed[k] = entries[0].get(k)
    return varying, fixed


def our_cell(res: dict, e: dict) -> str:
    """Our value; marked when the experiment ran a stand-in (another dataset or a smaller network
    than the paper's key names: the row compares a stand-in with the paper, not a reproduction)."""
    return fmt(e, missing="not measured") + (" (stand-in)" if res.get("stand_in") else "")


def source(res: dict, e: dict) -> str:
    s = f"{res['experiment']}/{res.get('preset', '?')}"
    extra = [x for x in (e.get("ours"), e.get("note")) if x]
    return s + (f" ({'; '.join(extra)})" if extra else "")


# -------------------------------------------------------------------------------- the report
def paper_section(tid: str, table: dict, ours: list) -> list:
    """Markdown lines for one paper table; ``ours`` = [(results, entry)] of this table."""
    paper = table["entries"]
    out = [f"## Table {tid}", "", f"*{table.get('caption', '')}*", ""]
    rows, used, footnotes = [], set(), {}

    def pcell(p):
        s = fmt(p, missing="—")
        note = p.get("note") or ""
        if note.startswith("inferred"):
            s += f" [{footnotes.setdefault(note, len(footnotes) + 1)}]"
        return s

    for p in paper:
        hits = [(i, r, e) for i, (r, e) in enumerate(ours) if match(e, [p])]
        used.update(i for i, _, _ in hits)
        if not hits:
            rows.append((p, "missing", pcell(p), "-"))
        rows += [(p, our_cell(r, e), pcell(p), source(r, e)) for _, r, e in hits]
    rows += [(e, our_cell(r, e), "-", source(r, e))
             for i, (r, e) in enumerate(ours) if i not in used]
    varying, fixed = split_keys([r[0] for r in rows])
    if fixed:
        out += ["Fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items()), ""]
    if ours:
        out.append(md_table(varying + ["ours", "paper", "from"],
                            [[r[0].get(k) for k in varying] + list(r[1:]) for r in rows]))
    else:
        out.append(md_table(varying + ["paper"], [[r[0].get(k) for k in varying] + [r[2]] for r in rows]))
        out += ["", f"no results yet: run {run_hint(PRODUCERS.get(tid, 'cifar'))}"]
    out += [""] + [f"[{n}] {note}" for note, n in footnotes.items()]
    return out + ([""] if footnotes else [])


def other_section(tid: str, entries: list) -> list:
    varying, fixed = split_keys([e for _, e in entries])
    out = [f"### {tid}", ""]
    if fixed:
        out += ["Fixed: " + ", ".join(f"{k} = {v}" for k, v in fixed.items()), ""]
    rows = [[e.get(k) for k in varying] + [our_cell(r, e), source(r, e)] for r, e in entries]
    return out + [md_table(varying + ["ours", "from"], rows), ""]


def experiment_section(res: dict, exp_dir: pathlib.Path, out_dir: pathlib.Path) -> list:
    out = [f"## Experiment `{res['experiment']}` (preset {res.get('preset', '?')})", ""]
    if res["experiment"] in NO_PAPER_NUMBERS:
        out += [f"**Paper numbers:** {NO_PAPER_NUMBERS[res['experiment']]}", ""]
    if res.get("stand_in"):
        out += [f"**Stand-in:** {res['stand_in']}", ""]
    notes = res.get("notes") or []
    out += ((["Notes:", ""] + [f"- {n}" for n in notes] + [""]) if notes else ["No notes.", ""])
    for tid, md in (res.get("tables_md") or {}).items():
        out += [f"### Its table {tid}", "", str(md).rstrip(), ""]
    for fid, rel in (res.get("figures") or {}).items():
        path = exp_dir / str(rel)
        if path.is_file():
            out += [f"![Figure {fid}]({pathlib.Path(os.path.relpath(path, out_dir)).as_posix()})", ""]
        else:
            out += [f"- Figure {fid}: missing ({path})", ""]
    return out


def meta_row(res: dict) -> list:
    m = res.get("meta") or {}
    dev = f"{m.get('backend', '?')} ({m.get('device_kind', '?')}) x{m.get('devices', '?')}"
    if m.get("processes", 1) not in (1, None):
        dev += f", {m['processes']} processes"
    wall = m.get("wall_total_s", m.get("wall_s"))  # a resumed run: the total over its invocations
    wall = f"{wall:.1f} s" if isinstance(wall, (int, float)) else "?"
    cmd = f"`{m['command']}`" if m.get("command") else "?"
    return [res["experiment"], res.get("preset", "?"), dev, m.get("date", "?"), cmd, wall]


def build_report(results_dir, paper_path=None, out_dir=None) -> str:
    """The report's markdown text; figure links are relative to ``out_dir`` (default results_dir)."""
    results_dir = pathlib.Path(results_dir)
    out_dir = pathlib.Path(out_dir or results_dir)
    paper = load_paper_numbers(paper_path)
    found, bad = [], []
    for path in sorted(results_dir.glob("*/results.json")):
        try:
            found.append((load_results(path), path.parent))
        except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            bad.append((path, f"{type(err).__name__}: {err}"))

    now = datetime.datetime.now().isoformat(timespec="seconds")
    lines = ["# Results report", "",
             f"Generated {now} by `python -m experiments.report` from `{results_dir}`; "
             f"paper numbers: {paper.get('source', '?')}. Missing results are listed as missing, never invented.",
             "", "## Experiments", ""]
    if found:
        lines += [md_table(["experiment", "preset", "device", "date", "command", "wall"],
                           [meta_row(r) for r, _ in found]), ""]
    else:
        lines += ["No results found.", ""]
    names = {r["experiment"] for r, _ in found}
    lines += [f"- MISSING `{n}`: run {run_hint(n)}" for n in EXPECTED if n not in names]
    lines += [f"- UNREADABLE `{p}`: {err}" for p, err in bad]
    lines.append("")

    by_table: dict[str, list] = {}
    for res, _ in found:
        for e in res["entries"]:
            by_table.setdefault(str(e["table"]), []).append((res, e))
    for tid, table in paper["tables"].items():
        lines += paper_section(tid, table, by_table.get(tid, []))
    others = [t for t in by_table if t not in paper["tables"]]
    if others:
        lines += ["## Tables not in the paper", ""]
        for tid in others:
            lines += other_section(tid, by_table[tid])
    for res, exp_dir in found:
        lines += experiment_section(res, exp_dir, out_dir)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    import experiments.report as pkg

    ap = argparse.ArgumentParser(prog="python -m experiments.report", description=pkg.__doc__.split("\n")[0])
    ap.add_argument("--results", default="results", help="directory holding <experiment>/results.json")
    ap.add_argument("--out", default=None, help="markdown file to write (default <results>/REPORT.md)")
    ap.add_argument("--paper", default=None, help="paper numbers JSON (default experiments/paper_numbers.json)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out or pathlib.Path(args.results) / "REPORT.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(args.results, args.paper, out_dir=out.parent))
    print(f"wrote {out}")
    return 0
