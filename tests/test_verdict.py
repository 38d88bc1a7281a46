"""The validity gate, the paired claims and the stability measures (kgan/verdict.py), against
numbers computed by hand; compare's tables and its reuse of rows that train alike."""

import json

import numpy as np
import pytest

from kgan import compare, verdict


def row(setting, dataset, seed, final, preset="protocol", steps=100, curves=None):
    spec = compare.RunSpec(setting, dataset, seed, preset, steps, 50)
    return {"setting": setting, "dataset": dataset, "seed": seed, "preset": preset, "steps": steps, "eval_every": 50,
            "key": spec.key, "final": final, "curves": curves or {"step": [50, 100]}, "diverged": False,
            "status": "ok", "seconds": 1.0, "config": {"deterministic": True}, "command": f"kgan train --seed {seed}"}


def test_the_gate_passes_on_the_seed_mean_hq_of_pacgan_s_gan_loss():
    records = [row("non_saturating", "ring8", 0, {"hq_percent": 95.0, "modes": 8, "reverse_kl": 0.1}),
               row("non_saturating", "ring8", 1, {"hq_percent": 85.0, "modes": 7, "reverse_kl": 0.3}),
               row("non_saturating", "grid25", 0, {"hq_percent": 70.0, "modes": 25, "reverse_kl": 0.2}),
               row("non_saturating", "grid25", 1, {"hq_percent": 80.0, "modes": 24, "reverse_kl": 0.4}),
               row("minimax", "grid25", 0, {"hq_percent": 99.0, "modes": 25, "reverse_kl": 0.0}),  # reported only
               row("minimax", "ring8", 0, {"hq_percent": 80.0, "modes": 8, "reverse_kl": 0.1})]
    gates = verdict.gate(records)
    ring8, grid25 = sorted((g for g in gates if g["baseline"] == "non_saturating"), key=lambda r: r["dataset"] != "ring8")
    # The acceptance's minimax baseline is judged on the same thresholds but decides nothing.
    minimax = {g["dataset"]: g for g in gates if g["baseline"] == "minimax"}
    assert (minimax["grid25"]["hq"], minimax["grid25"]["passed"], minimax["grid25"]["decides"]) == (99.0, True, False)
    assert (minimax["ring8"]["passed"], minimax["ring8"]["decides"]) == (False, False)
    assert len(verdict.gate_warnings(gates)) == 1  # grid25's non_saturating only, not minimax's ring8
    assert (ring8["hq"], ring8["passed"], ring8["seeds"]) == (90.0, True, 2)  # (95 + 85) / 2 >= 90
    assert (grid25["hq"], grid25["passed"]) == (75.0, False)  # (70 + 80) / 2 < 80
    assert ring8["modes"] == "7.50+-0.50" and ring8["hq_percent"] == "90.0+-5.0"  # std 7.07 / sqrt 2 = 5
    (warning,) = verdict.gate_warnings([ring8, grid25])
    assert warning.startswith("the protocol grid25 comparison at 100 steps on kgan's stand-in D is not valid: its "
                              "baseline (non_saturating) reaches 75.0% high-quality samples over 2 seeds, below the "
                              "gate's 80%")
    header, rows = verdict.gate_table([ring8, minimax["ring8"]])
    assert rows[0][8] == "passed (HQ >= 90)" and rows[0][9] == "6.3+-0.5, 98.2+-0.2, 0.45+-0.09"
    assert rows[1][3:5] == ["minimax (reported)", "1"] and rows[1][8] == "FAILED (HQ >= 90)"


def test_a_failed_gate_marks_the_mixtures_table_and_compare_prints_a_warning(tmp_path):
    records = [row("non_saturating", "grid25", s, {"hq_percent": 50.0, "modes": 20, "reverse_kl": 0.5}) for s in (0, 1)]
    with open(tmp_path / "results.jsonl", "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    lines = []
    args = compare_args(tmp_path, report_only=True)
    assert compare.main(args, print_fn=lines.append) == 0
    assert any(line.startswith("kgan compare: warning: the protocol grid25 comparison at 100 steps on kgan's "
                               "stand-in D is not valid")
               for line in lines)
    table = (tmp_path / "mixtures-protocol-100steps.md").read_text()
    assert table.startswith("**NOT VALID**: the protocol grid25 comparison")
    assert "| protocol | grid25 | 100 | non_saturating | 2 | 20.00+-0.00 | 50.0+-0.0 |" in (tmp_path / "gate.md").read_text()


def test_a_family_without_its_gate_s_baseline_at_a_budget_is_not_valid_yet(tmp_path):
    # ring8 at 200 steps: minimax (stand-in D, reported only) and PacGAN4 on PacGAN's networks have
    # rows, neither family's deciding baseline has; grid25: the stand-in's baseline passes.
    records = [row("minimax", "ring8", 0, {"hq_percent": 96.0, "modes": 8, "reverse_kl": 0.0}),
               row("non_saturating+maxout_pack4", "ring8", 0, {"hq_percent": 96.0, "modes": 8, "reverse_kl": 0.0}),
               row("non_saturating", "grid25", 0, {"hq_percent": 85.0, "modes": 25, "reverse_kl": 0.1}),
               row("minimax", "grid25", 0, {"hq_percent": 85.0, "modes": 25, "reverse_kl": 0.1})]
    for r in records:
        r["steps"] = 200
    assert verdict.networks_of("minimax") == "kgan's stand-in D"
    assert verdict.networks_of("minkowski_p4+maxout_pack4") == "PacGAN's networks"
    assert verdict.networks_of("non_saturating+pack4") == "kgan's stand-in D"
    gates = verdict.gate(records)
    missing = sorted((g["dataset"], g["baseline"]) for g in gates if g.get("missing"))
    assert missing == [("ring8", "non_saturating"), ("ring8", "non_saturating+maxout")]
    warnings = verdict.gate_warnings(gates)
    assert warnings == [
        "the protocol ring8 comparison at 200 steps on kgan's stand-in D is not valid: its baseline (non_saturating) "
        "has no row at this budget yet: run it first",
        "the protocol ring8 comparison at 200 steps on PacGAN's networks is not valid: its baseline "
        "(non_saturating+maxout) has no row at this budget yet: run it first"]
    header, rows = verdict.gate_table(gates)
    cells = {(r[1], r[3]): r for r in rows}
    assert cells[("ring8", "non_saturating")][4:9] == ["0", "-", "-", "-", "not run"]
    assert cells[("ring8", "minimax (reported)")][8] == "passed (HQ >= 90)"
    assert cells[("grid25", "non_saturating")][8] == "passed (HQ >= 80)"
    assert ("grid25", "non_saturating+maxout") not in cells  # no row of that family on grid25
    with open(tmp_path / "results.jsonl", "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    assert compare.main(compare_args(tmp_path, report_only=True), print_fn=lambda line: None) == 0
    assert (tmp_path / "mixtures-protocol-200steps.md").read_text().startswith(
        "**NOT VALID**: the protocol ring8 comparison at 200 steps on kgan's stand-in D is not valid")


def test_each_family_of_networks_has_its_own_gate_and_pacgan_s_rows_stand_beside_table_1():
    # PacGAN's networks (+maxout): their own unpacked baseline gates them; the stand-in's does not.
    records = [row("non_saturating", "grid25", 0, {"hq_percent": 85.0, "modes": 22, "reverse_kl": 0.3}),
               row("non_saturating+maxout", "grid25", 0, {"hq_percent": 60.0, "modes": 25, "reverse_kl": 0.1}),
               row("non_saturating+maxout", "grid25", 1, {"hq_percent": 70.0, "modes": 23, "reverse_kl": 0.3}),
               row("non_saturating+maxout_pack4", "grid25", 0, {"hq_percent": 90.0, "modes": 25, "reverse_kl": 0.04}),
               row("non_saturating+maxout_pack4", "grid25", 1, {"hq_percent": 80.0, "modes": 25, "reverse_kl": 0.06})]
    stand_in, pacgan_networks = verdict.gate(records)
    assert (stand_in["baseline"], stand_in["passed"]) == ("non_saturating", True)
    assert (pacgan_networks["baseline"], pacgan_networks["hq"], pacgan_networks["passed"]) == (
        "non_saturating+maxout", 65.0, False)
    (warning,) = verdict.gate_warnings([stand_in, pacgan_networks])
    assert "on PacGAN's networks is not valid: its baseline (non_saturating+maxout) reaches 65.0%" in warning
    header, rows = verdict.pacgan(records)
    by_setting = {r[3]: dict(zip(header, r, strict=True)) for r in rows}
    assert list(by_setting) == ["non_saturating", "non_saturating+maxout", "non_saturating+maxout_pack4"]
    pac4 = by_setting["non_saturating+maxout_pack4"]
    assert (pac4["networks"], pac4["seeds"], pac4["modes"], pac4["HQ %"], pac4["rev-KL"]) == (
        "PacGAN's networks", "2", "25.00+-0.00", "85.0+-5.0", "0.050+-0.010")
    assert pac4["PacGAN Table 1 (modes, HQ %, rev-KL)"] == "PacGAN4: 24.8+-0.2, 93.6+-0.6, 0.04+-0.01"
    assert by_setting["non_saturating"]["PacGAN Table 1 (modes, HQ %, rev-KL)"].startswith("GAN: 17.3+-0.8")
    # PacGAN4 against GAN on the same networks is one of the paired claims.
    header, rows = verdict.claims(records)
    hq = [dict(zip(header, r, strict=True)) for r in rows if r[3] == "hq_percent"]
    assert [(r["setting"], r["against"], r["difference [95% CI]"][:6], r["pairs"]) for r in hq] == [
        ("non_saturating+maxout_pack4", "non_saturating+maxout", "+20.00", "2")]


def compare_args(out, **flags):
    import argparse

    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    args = parser.parse_args(["--out", str(out)])
    for name, value in flags.items():
        setattr(args, name, value)
    return args


def test_claims_are_paired_over_the_same_seeds_with_a_bootstrap_interval_and_a_sign_flip_test():
    mink = [8, 8, 7, 8, 8, 8]
    gan = [6, 7, 5, 6, 7, 7, 3]  # seed 6 has no Minkowski partner: left out of the pairs
    records = [row("minkowski_p4", "ring8", s, {"modes": m, "reverse_kl": 0.1}) for s, m in enumerate(mink)]
    records += [row("minimax", "ring8", s, {"modes": m, "reverse_kl": 0.1 + 0.01 * s}) for s, m in enumerate(gan)]
    header, rows = verdict.claims(records)
    by_metric = {r[3]: dict(zip(header, r, strict=True)) for r in rows}
    modes = by_metric["modes"]
    diffs = np.array(mink) - np.array(gan[:6])  # 2, 1, 2, 2, 1, 1: every pair favours Minkowski
    assert modes["difference [95% CI]"].startswith(f"{diffs.mean():+.3f} [")
    low = float(modes["difference [95% CI]"].split("[")[1].split(",")[0])
    assert 1.0 <= low <= diffs.mean()  # a resampled mean of values in {1, 2} is >= 1
    # Of the 2^6 sign assignments only all-plus and all-minus reach |mean| 1.5: p = 2 / 64.
    assert modes["p (sign-flip)"] == "0.031"
    assert (modes["pairs"], modes["verdict"]) == ("6", "better")
    kl = by_metric["reverse_kl"]  # 0.1 vs 0.10..0.15: lower is better; seed 0 ties (diff 0)
    # |mean| 0.025 is reached by flipping nothing or everything, whatever seed 0's sign: p = 4 / 64.
    assert kl["difference [95% CI]"].startswith("-0.025 [") and kl["p (sign-flip)"] == "0.062"
    assert kl["verdict"] == "no significant difference"  # the interval leaves out 0, the test does not
    assert by_metric["hq_percent"]["verdict"] == "too few pairs to tell (< 6)"  # no values: no pairs
    assert by_metric["hq_percent"]["pairs"] == "0"


def test_a_claim_on_fewer_than_six_pairs_is_not_judged_even_when_every_pair_agrees():
    records = [row("minkowski_p4", "ring8", s, {"modes": 8}) for s in range(5)]
    records += [row("minimax", "ring8", s, {"modes": 6}) for s in range(5)]
    header, rows = verdict.claims(records)
    modes = next(dict(zip(header, r, strict=True)) for r in rows if r[3] == "modes")
    # Five pairs of +2: the bootstrap interval is [2, 2], but 2 / 2^5 = 0.0625 is the smallest p.
    assert modes["difference [95% CI]"] == "+2.000 [+2.000, +2.000]" and modes["p (sign-flip)"] == "0.062"
    assert modes["verdict"] == "too few pairs to tell (< 6)"


def test_stability_measures_against_hand_computed_values():
    curves = [{"step": [100, 200, 300, 400], "d_loss": [5.0, 1.0, 1.0, 3.0], "g_loss": [1.0, 1.0, 2.0, 2.0],
               "d_grad_norm": [1.0, 2.0, 3.0, 6.0], "modes": [5, 8, 8, 8], "hq_percent": [10.0, 85.0, 95.0, 99.0]},
              {"step": [100, 200, 300, 400], "d_loss": [1.0, 1.0, 1.0, 3.0], "g_loss": [1.0, 1.0, 2.0, 2.0],
               "d_grad_norm": [2.0, 2.0, 2.0, 2.0], "modes": [5, 7, 7, 7], "hq_percent": [10.0, 95.0, 99.0, 93.0]}]
    records = [row("minimax", "ring8", s, {}, curves=c) for s, c in enumerate(curves)]
    header, rows = verdict.stability(records)
    (cells,) = rows
    cells = dict(zip(header, cells, strict=True))
    assert cells["D grad norm"] == "2.500+-0.500"  # run means 3 and 2
    assert cells["D loss oscillation"] == "0.500+-0.000"  # last half [1, 3]: std 1 / mean 2, both seeds
    assert cells["G loss oscillation"] == "0.000+-0.000"  # last half [2, 2]
    assert cells["HQ swing (points)"] == "5.0+-1.0"  # last halves [95, 99] and [99, 93]: 4 and 6
    # seed 0 first has 8 modes with HQ >= 90 at step 300; seed 1 never has all 8 modes
    assert cells["steps to all modes at HQ threshold (reached)"] == "300 (1/2)"


def test_compute_sums_the_hours_and_times_only_the_rows_trained_whole():
    def timed(seed, seconds, **extra):
        return {**row("minimax", "ring8", seed, {}), "seconds": seconds, **extra}

    whole = {"epochs_this_fit": 2}  # 100 steps evaluated every 50
    records = [timed(0, 1800.0, **whole), timed(1, 2000.0, **whole), timed(2, 2600.0, **whole),
               timed(3, 700.0, epochs_this_fit=1),  # resumed after a kill: its last epoch only
               timed(4, 900.0, extended_from="protocol/ring8/minimax/50/s4", **whole),
               timed(5, 300.0, status="diverged"),
               timed(7, 1000.0),  # an older row: it does not say whether it was resumed
               timed(6, 1800.0, reused_from="recommended/ring8/minimax/100/s6", **whole)]  # costs nothing here
    header, rows = verdict.compute(records)
    (cells,) = rows
    cells = dict(zip(header, cells, strict=True))
    assert cells["rows"] == "7" and cells["rows timed whole"] == "3"
    assert cells["hours"] == "2.58"  # (1800 + 2000 + 2600 + 700 + 900 + 300 + 1000) / 3600 = 9300 / 3600 = 2.583
    # whole rows 1800, 2000, 2600: mean 2133.3, squared deviations 111111 + 17778 + 217778 = 346667,
    # std sqrt(346667 / 2) = 416.3, s.e. 416.3 / sqrt 3 = 240.4; per step of 100: 21333.3 +- 2403.7 ms
    assert cells["seconds a row"] == "2133+-240"
    assert cells["ms a step"] == "21333.3+-2403.7"


def test_rows_that_train_alike_under_another_preset_are_reused_not_run_again(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    done = row("minimax", "ring8", 0, {"modes": 8}, preset="protocol")
    results.write_text(json.dumps(done) + "\n")
    ran = []
    monkeypatch.setattr(compare, "run_one", lambda spec, *args: ran.append(spec.key) or {
        **row(spec.setting, spec.dataset, spec.seed, {"modes": 1}, spec.preset), "key": spec.key})
    specs = [compare.RunSpec("minimax", "ring8", 0, "recommended", 100, 50),  # the same optimiser: reused
             compare.RunSpec("wasserstein", "ring8", 0, "recommended", 100, 50)]  # RMSProp there: run
    compare.run_grid(specs, str(results), deterministic=True, print_fn=lambda *a: None)
    assert ran == ["recommended/ring8/wasserstein/100/s0"]
    rows = {r["key"]: r for r in map(json.loads, results.read_text().splitlines())}
    reused = rows["recommended/ring8/minimax/100/s0"]
    assert reused["reused_from"] == done["key"] and reused["command"] == done["command"]
    assert (reused["preset"], reused["final"]) == ("recommended", {"modes": 8})
    # not deterministic this time: the deterministic row is not the same training
    assert compare._reuse_equal_rows([compare.RunSpec("minimax", "ring8", 0, "recommended", 100, 50)],
                                     str(results), False, None, print) != []


@pytest.mark.parametrize("dataset", ["digits", "stacked_digits"])
def test_image_benchmarks_have_no_gate(dataset):
    assert verdict.gate([row("non_saturating", dataset, 0, {"fcd": 1.0})]) == []
