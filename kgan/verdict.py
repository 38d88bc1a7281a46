"""What a compare grid's rows support: the validity gate, the paired claims and the stability
measures of the Minkowski paper's Figures 1-3 (NumPy only; reads result records, as
`kgan.compare` loads them).

- `gate`: before a mixture comparison means anything, its baseline must reproduce the protocol's
  own: the loss of PacGAN's "GAN" row, averaged over seeds, must reach `GATE_HQ` high-quality
  samples at the grid's budget, on each family of networks (`GATE_BASELINES`: kgan's stand-in D,
  PacGAN's own networks). Its modes / HQ / reverse KL stand beside PacGAN Table 1's GAN row. The
  minimax baseline (`GATE_REPORTED`, issue 18's acceptance) is judged and shown the same way but
  does not decide whether a comparison is valid.
- `pacgan`: the GAN / PacGAN2 / PacGAN4 rows (the non-saturating loss unpacked and packed) beside
  PacGAN Table 1's.
- `claims`: Minkowski p = 4 against the original GAN, WGAN and WGAN-GP on every benchmark, as
  paired comparisons over the same seeds with a 95% bootstrap interval of the difference and the
  exact sign-flip test's p-value (`stats.paired_bootstrap`); "better" / "worse" needs both, and
  fewer than 6 pairs (where no sign-flip test reaches 0.05) are "too few pairs".
- `stability`: per setting, D's gradient-norm scale (Figure 1), the oscillation index of the D and
  G loss curves over the last half of training (Figures 2-3; `stats.oscillation_index` of the
  per-evaluation mean losses), the swing of the high-quality percent over the last half
  (`stats.swing`: the mean change between consecutive evaluations, in points), and the steps to
  first reach every mode at the gate's HQ threshold (time to quality).
- `compute`: what the rows cost: per setting, the hours its rows trained and the seconds of a
  row trained whole in one process (the closing note's "wall time the grids took").
"""

import collections

import numpy as np

from kgan import stats

#: PacGAN's "GAN" row trains the original GAN with the non-saturating generator loss: its
#: generator minimises softplus(-D(G(z))) = -log D(G(z)) (fjxmlzn/PacGAN, pacgan/bricks.py,
#: `compute_losses`), with PacGAN's Adam (the `protocol` preset).
GATE_BASELINE = "non_saturating"
#: The gate's baseline on each family of networks: a comparison is valid among the settings
#: trained on the same networks (`--arch pacgan` is the `+maxout` settings).
GATE_BASELINES = {GATE_BASELINE: "kgan's stand-in D", f"{GATE_BASELINE}+maxout": "PacGAN's networks"}
#: Baselines judged on the same thresholds and shown in the gate's table, but which do not decide a
#: family's validity: issue 18's acceptance names the minimax loss (the original GAN's saturating
#: generator loss), which PacGAN's code does not train.
GATE_REPORTED = {"minimax": "kgan's stand-in D", "minimax+maxout": "PacGAN's networks"}
#: Seed-mean high-quality percent the baseline must reach (issue 18; PacGAN's GAN: 98.2, 94.8).
GATE_HQ = {"ring8": 90.0, "grid25": 80.0}
NUM_MODES = {"ring8": 8, "grid25": 25}
#: Decimals of each mixture metric in the tables (reverse KL to 0.001: converged rows reach 0.002-0.006).
DIGITS = {"modes": 2, "hq_percent": 1, "reverse_kl": 3}
#: PacGAN Table 1 (Lin et al. 2018; 10 trials): (modes, HQ %, reverse KL), by row and mixture.
PACGAN_TABLE1 = {
    "GAN": {"ring8": ("6.3+-0.5", "98.2+-0.2", "0.45+-0.09"), "grid25": ("17.3+-0.8", "94.8+-0.7", "0.70+-0.07")},
    "PacGAN2": {"ring8": ("7.9+-0.1", "95.6+-2.0", "0.07+-0.03"), "grid25": ("23.8+-0.7", "91.3+-0.8", "0.13+-0.04")},
    "PacGAN4": {"ring8": ("7.8+-0.1", "95.9+-1.4", "0.07+-0.02"), "grid25": ("24.8+-0.2", "93.6+-0.6", "0.04+-0.01")},
}
PACGAN_GAN = PACGAN_TABLE1["GAN"]
#: kgan's settings of PacGAN Table 1's rows: (setting, networks, PacGAN row). PacGAN packs its GAN
#: row's (non-saturating) loss.
PACGAN_SETTINGS = (("non_saturating", "kgan's stand-in D", "GAN"), ("non_saturating+pack2", "kgan's stand-in D", "PacGAN2"),
                   ("non_saturating+pack4", "kgan's stand-in D", "PacGAN4"),
                   ("non_saturating+maxout", "PacGAN's networks", "GAN"),
                   ("non_saturating+maxout_pack2", "PacGAN's networks", "PacGAN2"),
                   ("non_saturating+maxout_pack4", "PacGAN's networks", "PacGAN4"))
#: The comparisons the verdict states: (setting, against).
CLAIMS = (("minkowski_p4", "minimax"), ("minkowski_p4", "non_saturating"), ("minkowski_p4", "wasserstein"),
          ("minkowski_p4", "wgan_gp"), ("non_saturating+pack4", "non_saturating"),
          ("non_saturating+maxout_pack2", "non_saturating+maxout"), ("non_saturating+maxout_pack4", "non_saturating+maxout"),
          ("minkowski_p4+maxout_pack4", "non_saturating+maxout_pack4"))
#: Each benchmark's metrics for the claims, with whether higher is better.
CLAIM_METRICS = {"ring8": (("modes", True), ("hq_percent", True), ("reverse_kl", False)),
                 "grid25": (("modes", True), ("hq_percent", True), ("reverse_kl", False)),
                 "stacked_digits": (("modes", True), ("reverse_kl", False)),
                 "digits": (("fcd", False), ("kid", False))}


def _groups(records):
    """{(preset, dataset, steps): {setting: {seed: record}}} of the rows that did not fail."""
    groups = collections.defaultdict(lambda: collections.defaultdict(dict))
    for record in records:
        if record.get("status", "ok") != "failed":
            groups[(record["preset"], record["dataset"], record["steps"])][record["setting"]][record["seed"]] = record
    return groups


def _cell(values, digits=2):
    return stats.format_mean_stderr(stats.mean_stderr(values), digits)


def networks_of(setting):
    """The family of networks a setting trains: PacGAN's networks for the `+maxout...` settings
    (`--arch pacgan`), else kgan's stand-in D."""
    pacgan = any(t.startswith("maxout") for t in setting.split("+")[1:])
    return GATE_BASELINES[f"{GATE_BASELINE}+maxout" if pacgan else GATE_BASELINE]


def gate(records):
    """The validity gate of every (preset, mixture, steps, family of networks) that has rows: a list
    of dicts with `preset`, `dataset`, `steps`, `baseline`, `networks`, `seeds`, `hq` (seed mean),
    `threshold`, `passed`, `decides`, and the formatted `modes`, `hq_percent`, `reverse_kl` cells
    (mean +- standard error). A family with rows but no row of its deciding baseline at that budget
    gets a failed entry with 0 seeds (`missing`): its comparison is not valid yet."""
    rows = []
    for (preset, dataset, steps), settings in sorted(_groups(records).items()):
        for baseline, networks in (GATE_BASELINES | GATE_REPORTED).items():
            runs = settings.get(baseline)
            if dataset not in GATE_HQ:
                continue
            if not runs:
                if baseline in GATE_BASELINES and any(networks_of(s) == networks for s in settings):
                    rows.append({"preset": preset, "dataset": dataset, "steps": steps, "baseline": baseline,
                                 "networks": networks, "seeds": 0, "hq": float("nan"), "threshold": GATE_HQ[dataset],
                                 "passed": False, "decides": True, "missing": True, **_cells([])})
                continue
            finals = [r.get("final", {}) for r in runs.values()]
            hq, _, n = stats.mean_stderr([f.get("hq_percent") for f in finals])
            rows.append({"preset": preset, "dataset": dataset, "steps": steps, "baseline": baseline,
                         "networks": networks, "seeds": len(runs), "hq": hq, "threshold": GATE_HQ[dataset],
                         "passed": bool(n and hq >= GATE_HQ[dataset]), "decides": baseline in GATE_BASELINES,
                         **_cells(finals)})
    return rows


def _cells(finals):
    """The formatted modes, hq_percent and reverse_kl cells of some runs' final evaluations."""
    return {m: _cell([f.get(m) for f in finals], DIGITS[m]) for m in DIGITS}


def gate_table(rows):
    """(header, rows) of the gate beside PacGAN Table 1's GAN row."""
    header = ["preset", "dataset", "steps", "baseline", "seeds", "modes", "HQ %", "rev-KL", "gate", "PacGAN GAN (modes, HQ %, rev-KL)"]
    table = [[r["preset"], r["dataset"], str(r["steps"]), r["baseline"] + ("" if r.get("decides", True) else " (reported)"),
              str(r["seeds"]), r["modes"], r["hq_percent"], r["reverse_kl"],
              "not run" if r.get("missing") else f"{'passed' if r['passed'] else 'FAILED'} (HQ >= {r['threshold']:g})",
              ", ".join(PACGAN_GAN[r["dataset"]])] for r in rows]
    return header, table


def gate_warnings(rows):
    """One warning line per failed gate of a deciding baseline (what `kgan compare` prints and marks
    its tables with)."""
    return [f"the {r['preset']} {r['dataset']} comparison at {r['steps']} steps on {r['networks']} is not valid: its "
            + (f"baseline ({r['baseline']}) has no row at this budget yet: run it first"
               if r.get("missing") else
               f"baseline ({r['baseline']}) reaches {r['hq']:.1f}% high-quality samples over {r['seeds']} seeds, below "
               f"the gate's {r['threshold']:g}%: train longer (--steps)") for r in rows
            if r.get("decides", True) and not r["passed"]]


def pacgan(records):
    """PacGAN Table 1's rows as kgan trained them (`PACGAN_SETTINGS`), mean +- standard error over
    seeds, beside PacGAN's: (header, rows)."""
    header = ["preset", "dataset", "steps", "setting", "networks", "seeds", "modes", "HQ %", "rev-KL",
              "PacGAN Table 1 (modes, HQ %, rev-KL)"]
    rows = []
    for (preset, dataset, steps), settings in sorted(_groups(records).items()):
        for setting, networks, name in PACGAN_SETTINGS:
            if dataset in GATE_HQ and settings.get(setting):
                cells = _cells([r.get("final", {}) for r in settings[setting].values()])
                rows.append([preset, dataset, str(steps), setting, networks, str(len(settings[setting])),
                             cells["modes"], cells["hq_percent"], cells["reverse_kl"],
                             f"{name}: " + ", ".join(PACGAN_TABLE1[name][dataset])])
    return header, rows


def claims(records, confidence=0.95):
    """Paired comparisons of `CLAIMS` on every benchmark with both settings: (header, rows), each
    row the two settings' mean +- standard error, the mean paired difference with its bootstrap
    interval and sign-flip p-value, the pairs used and whether the setting is better, worse, not
    distinguishable, or compared on too few pairs to tell."""
    header = ["preset", "dataset", "steps", "metric", "setting", "against", "setting mean", "against mean",
              "difference [95% CI]", "p (sign-flip)", "pairs", "verdict"]
    rows = []
    for (preset, dataset, steps), settings in sorted(_groups(records).items()):
        for name, other in CLAIMS:
            if name not in settings or other not in settings:
                continue
            seeds = sorted(set(settings[name]) & set(settings[other]))
            for metric, higher in CLAIM_METRICS.get(dataset, ()):
                a = [settings[name][s].get("final", {}).get(metric) for s in seeds]
                b = [settings[other][s].get("final", {}).get(metric) for s in seeds]
                result = stats.paired_bootstrap(a, b, confidence)
                rows.append([preset, dataset, str(steps), metric, name, other, _cell(a), _cell(b),
                             f"{result['diff']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}]",
                             f"{result['p']:.3f}", str(result["n"]), _claim_word(result, higher, confidence)])
    return header, rows


def _claim_word(result, higher_is_better, confidence):
    fewest = stats.min_pairs_for(confidence)
    if result["n"] < fewest:
        return f"too few pairs to tell (< {fewest})"
    if not result["significant"]:
        return "no significant difference"
    better = (result["diff"] > 0) == higher_is_better
    return "better" if better else "worse"


def stability(records):
    """Per (preset, dataset, steps, setting): D's gradient-norm scale (seed mean of the run's mean
    `d_grad_norm`), the oscillation index of the D and G losses (`stats.oscillation_index` of the
    per-evaluation curve's last half; seed mean) and, on the mixtures, the swing of the HQ percent
    over the last half (`stats.swing`; seed mean, in points: how much a final evaluation depends on
    when training stopped) and the steps to first reach every mode at the gate's HQ threshold (seed
    mean over the seeds that reached it, and how many did). (header, rows)."""
    header = ["preset", "dataset", "steps", "setting", "D grad norm", "D loss oscillation", "G loss oscillation",
              "HQ swing (points)", "steps to all modes at HQ threshold (reached)"]
    rows = []
    for (preset, dataset, steps), settings in sorted(_groups(records).items()):
        for setting, runs in settings.items():
            curves = [r.get("curves", {}) for r in runs.values()]
            rows.append([preset, dataset, str(steps), setting,
                         _cell([_mean(c.get("d_grad_norm")) for c in curves], 3),
                         _cell([_measure(stats.oscillation_index, c.get("d_loss")) for c in curves], 3),
                         _cell([_measure(stats.oscillation_index, c.get("g_loss")) for c in curves], 3),
                         _cell([_measure(stats.swing, c.get("hq_percent"), 4) for c in curves], 1) if dataset in GATE_HQ else "-",
                         _time_to_quality(dataset, curves)])
    return header, rows


def _mean(curve):
    values = [v for v in curve or () if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _measure(measure, curve, min_values=2):
    """`measure(curve)` (a `stats` function of a curve's last half), or None for a curve too short
    or without finite values there."""
    if not curve or len(curve) < min_values:
        return None
    try:
        return measure(curve)
    except ValueError:
        return None


def _time_to_quality(dataset, curves):
    if dataset not in GATE_HQ:
        return "-"
    reached = [stats.steps_to_quality(c["step"], c["modes"], c["hq_percent"], NUM_MODES[dataset], GATE_HQ[dataset])
               for c in curves if c.get("step") and c.get("modes") and c.get("hq_percent")]
    hits = [step for step in reached if step is not None]
    return f"{_cell(hits, 0)} ({len(hits)}/{len(reached)})"


def compute(records):
    """What the grid's rows cost, per (preset, dataset, steps, setting): the rows, the hours they
    trained (the sum of each row's `seconds`: the wall time of the process that finished it,
    evaluations included; a row reused from another preset costs nothing), and the seconds of a row
    and milliseconds of a step over the rows known to have been trained whole by that process, from
    step 0 (`epochs_this_fit`, recorded since 2026-12-07, equals the row's epochs). A row extended
    from a shorter row's checkpoint or resumed after a kill spent only its last part there, and an
    older row does not say which it was: neither is timed. (header, rows)."""
    header = ["preset", "dataset", "steps", "setting", "rows", "hours", "rows timed whole", "seconds a row",
              "ms a step"]
    groups = collections.defaultdict(list)
    for record in records:
        if not record.get("reused_from"):
            groups[(record["preset"], record["dataset"], record["steps"], record["setting"])].append(record)
    rows = []
    for (preset, dataset, steps, setting), runs in sorted(groups.items()):
        whole = [r["seconds"] for r in runs if _trained_whole(r)]
        rows.append([preset, dataset, str(steps), setting, str(len(runs)),
                     f"{sum(r.get('seconds', 0.0) for r in runs) / 3600:.2f}", str(len(whole)), _cell(whole, 0),
                     _cell([1000 * s / steps for s in whole], 1)])
    return header, rows


def _trained_whole(record):
    """Whether the row says its `seconds` cover its every step: it finished (not diverged or
    failed), was not extended from a shorter row, and its one fit trained all its epochs."""
    if record.get("status", "ok") != "ok" or record.get("extended_from"):
        return False
    return record.get("epochs_this_fit") == record["steps"] // record["eval_every"]
