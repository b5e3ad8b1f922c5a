"""PNG figures of a run: validation accuracy of GNet-T against GNet-R (like Fig. 3.2), over
epochs and over wall time, and per-phase training times (like Fig. 3.1)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # not pyplot: drawing here leaves the caller's backend (a notebook's) alone


def accuracy_curves(histories: dict, path, key: str = "val_acc") -> Path:
    """Left: accuracy per epoch, GNet-T drawn from the epoch its sub-networks ended (same total
    epochs on the x-axis, as the paper's protocol); the sub-networks' curves for reference.
    Right: the same against wall time, GNet-T's clock starting with its sub-networks.  ``key``:
    the validation metric drawn (the monitored one, e.g. ``val_loss``)."""
    fig = Figure(figsize=(11, 4))
    ax_e, ax_t = fig.subplots(1, 2)
    snets, gt, gr = histories.get("snets", []), histories.get("gnet_t", []), histories.get("gnet_r", [])
    comp = (histories.get("compose") or [{}])[0]
    n_s = len(snets)
    t_s = (snets[-1]["elapsed_s"] if snets else 0.0) + comp.get("compose_s", 0.0)
    if snets:
        K = len(snets[0][key]) if isinstance(snets[0][key], list) else 1  # noqa: N806
        for k in range(K):
            acc = [r[key][k] if K > 1 else r[key] for r in snets]
            label = "SNet-1..K" if k == 0 else None
            ax_e.plot(range(1, n_s + 1), acc, color="0.6", lw=1, marker=".", label=label)
            ax_t.plot([r["elapsed_s"] for r in snets], acc, color="0.6", lw=1, marker=".", label=label)
    if gt:
        init = comp.get("gnet_t_init_" + key[len("val_"):])
        xs_e = ([n_s] if init is not None else []) + [n_s + r["epoch"] for r in gt]
        xs_t = ([t_s] if init is not None else []) + [t_s + r["elapsed_s"] for r in gt]
        ys = ([init] if init is not None else []) + [r[key] for r in gt]
        ax_e.plot(xs_e, ys, color="C0", marker="o", label="GNet-T (composed, fine-tuned)")
        ax_t.plot(xs_t, ys, color="C0", marker="o", label="GNet-T pipeline")
    if gr:
        ax_e.plot([r["epoch"] for r in gr], [r[key] for r in gr], color="C3", marker="s", label="GNet-R (random init)")
        ax_t.plot([r["elapsed_s"] for r in gr], [r[key] for r in gr], color="C3", marker="s", label="GNet-R")
        ax_t.axhline(gr[-1][key], color="C3", lw=0.8, ls=":")
    what = "accuracy" if key == "val_acc" else key
    ax_e.set(xlabel="epoch (SNets, then GNet-T)", ylabel=f"validation {what}", title=f"{what} per epoch")
    ax_t.set(xlabel="wall time [s]", ylabel=f"validation {what}", title=f"{what} against wall time")
    for ax in (ax_e, ax_t):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if key == "val_acc" else "best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def phase_times(summary: dict, path) -> Path:
    """Stacked bar of the GNet-T pipeline (SNets + compose + GNet-T) next to GNet-R."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    parts = [("strategy selection", summary.get("time_strategy_s") or 0.0, "0.85"),
             ("SNets", summary["time_subnets_s"], "0.6"), ("compose", summary.get("time_compose_s", 0.0), "C2"),
             ("GNet-T", summary["time_gnet_t_s"], "C0")]
    bottom = 0.0
    for name, t, color in parts:
        ax.bar(0, t, bottom=bottom, color=color, label=name, width=0.6)
        bottom += t
    if summary.get("time_gnet_r_s") is not None:
        ax.bar(1, summary["time_gnet_r_s"], color="C3", label="GNet-R", width=0.6)
    if summary.get("time_to_gnet_r_acc_s") is not None:
        ax.plot([-0.35, 0.35], [summary["time_to_gnet_r_acc_s"]] * 2, color="k", ls="--", lw=1,
                label="first reaches GNet-R's final accuracy")
    if summary.get("gnet_r_first_hit_s") is not None:
        ax.plot([0.65, 1.35], [summary["gnet_r_first_hit_s"]] * 2, color="k", ls="--", lw=1)
    ax.set_xticks([0, 1], ["sub-network transfer\n(Algorithm 1)", "random init\n(GNet-R)"])
    ax.set_ylabel("wall time [s]")
    ax.set_title("training time per phase")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
