"""`kgan compare`'s named settings, TF-free, next to the config they override (stylegan2-ada
style: a named preset is a dict of `TrainConfig` fields; a loss setting and a technique add
their own; the command line's flags override them all).

    PRESETS[preset][dataset]   optimiser and batch geometry per dataset
    LOSS_SETTINGS[name]        the loss and what it needs (clip, gp, d_steps)
    TECHNIQUES[name]           (toolbox overrides, datasets it applies to or None for all)
"""

from kgan import names
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
MIXTURES = ("ring8", "grid25")
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
    # PacGAN's own 2-D networks (maxout D, N(0, 0.02) weights: `--arch pacgan`), alone and packed.
    "maxout": ({"arch": "pacgan"}, MIXTURES),
    "maxout_pack2": ({"arch": "pacgan", "pack": 2}, MIXTURES),
    "maxout_pack4": ({"arch": "pacgan", "pack": 4}, MIXTURES),
    # PacGAN's update rule (`--updates simultaneous`: both players' gradients from one forward pass).
    "simultaneous": ({"updates": "simultaneous"}, None),
    "maxout_simultaneous": ({"arch": "pacgan", "updates": "simultaneous"}, MIXTURES),
}
#: The datasets a compare grid may use.
DATASETS = ("ring8", "grid25", "stacked_digits", "digits")
#: The TensorFlow Datasets images: `kgan train --preset` has their settings (a GPU user's runs,
#: e.g. CIFAR-10, the Minkowski paper's own benchmark); a compare grid does not use them.
IMAGES = tuple(d for d in names.DATASETS if d not in DATASETS)
_PACGAN = {"batch_size": 100, "latent_dim": 2, "g_lr": 1e-4, "d_lr": 1e-4, "beta1": 0.8, "beta2": 0.999}
_DCGAN = {"batch_size": 64, "latent_dim": 100, "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.5, "beta2": 0.999}
#: One optimiser for every loss, per dataset: PacGAN's on the mixtures (Lin et al. 2018, code
#: config: Adam 1e-4, beta1 0.8, batch 100, latent 2), DCGAN's on images (Radford et al. 2016:
#: Adam 2e-4, beta1 0.5, batch 64, latent 100).
_PROTOCOL = {"ring8": _PACGAN, "grid25": _PACGAN, **{name: _DCGAN for name in ("digits", "stacked_digits", *IMAGES)}}
PRESETS = {
    # The controlled comparison: the dataset's one optimiser for every loss (a loss setting still
    # brings what defines it: WGAN's clipping, WGAN-GP's penalty, their 5 critic steps).
    "protocol": _PROTOCOL,
    # The dataset's batch geometry, and each loss's own paper's optimiser and critic steps
    # (LOSS_OPTIMISERS); losses without one there keep the protocol's.
    "recommended": _PROTOCOL,
    # The Minkowski paper's for every loss and dataset, D weight clipping 0.01 for every loss.
    "paper": {name: {**_DCGAN, "clip": 0.01} for name in _PROTOCOL},
}
#: The `recommended` preset's optimiser per loss setting: (fields, citation). The original GAN
#: (minimax, non_saturating) keeps the dataset's protocol optimiser: PacGAN's and DCGAN's are its
#: papers' own.
LOSS_OPTIMISERS = {
    "wasserstein": ({"optimizer": "rmsprop", "g_lr": 5e-5, "d_lr": 5e-5, "d_steps": 5, "clip": 0.01},
                    "Arjovsky et al. 2017 (WGAN), Algorithm 1: RMSProp lr 5e-5, n_critic 5, clipping 0.01"),
    "wgan_gp": ({"optimizer": "adam", "g_lr": 1e-4, "d_lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "d_steps": 5, "gp": 10.0},
                "Gulrajani et al. 2017 (WGAN-GP), Algorithm 1: Adam lr 1e-4, beta1 0, beta2 0.9, n_critic 5, lambda 10"),
    "least_squares": ({"optimizer": "adam", "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.5, "beta2": 0.999},
                      "Mao et al. 2017 (LSGAN), Section 4: Adam lr 2e-4, beta1 0.5"),
    "hinge": ({"optimizer": "adam", "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.0, "beta2": 0.9, "d_steps": 5},
              "Miyato et al. 2018 (SNGAN), the hinge-loss ResNet runs: Adam lr 2e-4, beta1 0, beta2 0.9, n_dis 5"),
    "minkowski": ({"optimizer": "adam", "g_lr": 2e-4, "d_lr": 2e-4, "beta1": 0.5, "beta2": 0.999},
                  "the Minkowski paper, Table 1: Adam lr 2e-4, beta1 0.5, beta2 0.999"),
}


def minkowski_p(setting):
    """p of a "minkowski_p<p>[+technique]" setting name, else None."""
    loss = setting.partition("+")[0]
    return float(loss[len("minkowski_p"):]) if loss.startswith("minkowski_p") else None


def overrides(preset, dataset, setting):
    """The TrainConfig fields of `setting` ("<loss>[+<technique>]") on `dataset` under `preset`:
    preset, then loss setting, then (`recommended`) the loss's own optimiser, then technique (the
    paper preset clips D for every loss)."""
    fields = dict(PRESETS[preset][dataset])
    name, _, technique = setting.partition("+")
    p = minkowski_p(name)
    loss = name if p is None else "minkowski"
    fields.update(LOSS_SETTINGS[loss], **({} if p is None else {"p": p}))
    if preset == "recommended" and loss in LOSS_OPTIMISERS:
        fields.update(LOSS_OPTIMISERS[loss][0])
    fields.update(TECHNIQUES[technique or "none"][0])
    if preset == "paper":
        fields["clip"] = 0.01
    return fields


def train_fields(preset, dataset, given):
    """`kgan train --preset`'s fields on `dataset`: the preset's, and under `recommended` the
    optimiser of the loss the flags `given` name (--loss wasserstein with --gp: WGAN-GP's)."""
    fields = dict(PRESETS[preset][dataset])
    if preset == "recommended":
        loss = given.get("loss", TrainConfig().loss)
        setting = "wgan_gp" if loss == "wasserstein" and given.get("gp") else loss
        fields.update(LOSS_OPTIMISERS.get(setting, ({}, None))[0])
    return fields


def config(preset, dataset, setting, seed, **fields):
    """The `TrainConfig` of one compare run; `fields` (e.g. the run's steps and dirs) override."""
    return TrainConfig(dataset=dataset, seed=seed, **{**overrides(preset, dataset, setting), **fields})
