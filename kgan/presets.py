"""`kgan compare`'s named settings, TF-free, next to the config they override (stylegan2-ada
style: a named preset is a dict of `TrainConfig` fields; a loss setting and a technique add
their own; the command line's flags override them all).

    PRESETS[preset][dataset]   optimiser and batch geometry per dataset
    LOSS_SETTINGS[name]        the loss and what it needs (clip, gp, d_steps)
    TECHNIQUES[name]           (toolbox overrides, datasets it applies to or None for all)
"""

from kgan.config import TrainConfig

LOSS_SETTINGS = {
    "minimax": {"loss": "minimax"},
    "non_saturating": {"loss": "non_saturating"},
    "wasserstein": {"loss": "wasserstein", "clip": 0.01, "d_steps": 5},
    "wgan_gp": {"loss": "wasserstein", "gp": 10.0, "d_steps": 5},
    "least_squares": {"loss": "least_squares"},
    "hinge": {"loss": "hinge"},
    "minkowski": {"loss": "minkowski"},
}
#: name -> (TrainConfig overrides, datasets it applies to or None for all).
TECHNIQUES = {
    "none": ({}, None),
    "ema": ({"ema": 0.999}, None),
    "feature_matching": ({"feature_matching": 1.0}, None),
    "diffaugment": ({"augment": "diffaugment"}, ("stacked_digits", "digits")),
    "ada": ({"augment": "ada"}, ("stacked_digits", "digits")),
    "unroll5": ({"unroll": 5}, None),
    "minibatch_std": ({"minibatch_std": True}, None),
    "spectral_norm": ({"spectral_norm": True}, None),
    "resnet": ({"arch": "resnet"}, ("stacked_digits", "digits")),
    "self_attention": ({"self_attention": 4}, ("stacked_digits", "digits")),
    "conditional": ({"conditional": True}, ("digits",)),
    "progressive": ({"progressive": True}, ("stacked_digits", "digits")),
    "clip_grad_norm": ({"clip_grad_norm": 1.0}, None),
    "historical_averaging": ({"historical_averaging": 0.01}, None),
    "pack2": ({"pack": 2}, None),
    "pack4": ({"pack": 4}, None),
}
#: The datasets a compare grid may use.
DATASETS = ("ring8", "grid25", "stacked_digits", "digits")
MIXTURES = ("ring8", "grid25")
_PACGAN = {"batch_size": 100, "latent_dim": 2, "g_lr": 1e-4, "d_lr": 1e-4, "beta1": 0.8, "beta2": 0.999}
_DCGAN = {"batch_size": 64, "latent_dim": 100, "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.5, "beta2": 0.999}
PRESETS = {
    # ring8/grid25: PacGAN's; digits/stacked_digits: DCGAN's.
    "recommended": {"ring8": _PACGAN, "grid25": _PACGAN, "digits": _DCGAN, "stacked_digits": _DCGAN},
    # The Minkowski paper's for every loss and dataset, D weight clipping 0.01 for every loss.
    "paper": {name: {**_DCGAN, "clip": 0.01} for name in DATASETS},
}


def minkowski_p(setting):
    """p of a "minkowski_p<p>[+technique]" setting name, else None."""
    loss = setting.partition("+")[0]
    return float(loss[len("minkowski_p"):]) if loss.startswith("minkowski_p") else None


def overrides(preset, dataset, setting):
    """The TrainConfig fields of `setting` ("<loss>[+<technique>]") on `dataset` under `preset`:
    preset, then loss setting, then technique (the paper preset clips D for every loss)."""
    fields = dict(PRESETS[preset][dataset])
    loss, _, technique = setting.partition("+")
    if minkowski_p(loss) is not None:
        fields.update(LOSS_SETTINGS["minkowski"], p=minkowski_p(loss))
    else:
        fields.update(LOSS_SETTINGS[loss])
    fields.update(TECHNIQUES[technique or "none"][0])
    if preset == "paper":
        fields["clip"] = 0.01
    return fields


def config(preset, dataset, setting, seed, **fields):
    """The `TrainConfig` of one compare run; `fields` (e.g. the run's steps and dirs) override."""
    return TrainConfig(dataset=dataset, seed=seed, **{**overrides(preset, dataset, setting), **fields})
