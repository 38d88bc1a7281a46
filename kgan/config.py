"""`TrainConfig`: every default of `kgan train` in one place.

The defaults are the Minkowski-GAN paper's setting (shared/PAPER.md, Table 1): 200 epochs,
batch 64, Adam lr 2e-4 with beta1 0.5 and beta2 0.999 for both networks, latent size 100; the
loss is the paper's Minkowski loss with p = 4. The default dataset is scikit-learn's 8x8
digits, embedded, so `python train.py` needs no download.
"""

import dataclasses
import json

from kgan.names import DATASETS, LOSSES  # noqa: F401 - re-exported (the choice lists live in kgan.names)


def _resume(default):
    """A field of the RESUME IDENTITY: it shapes the variables or the maths of a training step, so
    a checkpoint written with another value cannot be continued (`resume_fields`)."""
    return dataclasses.field(default=default, metadata={"resume": True})



@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run. Fields made with `_resume(...)` are the resume identity
    (`resume_fields()`): the loss, data, batch geometry, networks, optimiser betas, penalties,
    toolbox, precision and seed. The others may change between a run and its resume: --epochs,
    the learning rates (lowering them is how a diverged run is continued), the strategy and
    devices (a step on R replicas equals one on one replica), determinism, checkpoints, metrics
    and the output paths."""

    # --- loss -------------------------------------------------------------------------------
    loss: str = _resume("minkowski")  # minimax | non_saturating | wasserstein | least_squares | hinge | minkowski
    p: float = _resume(4.0)  # Minkowski order (finite, >= 1); the paper's best is 4
    minkowski_activation: str = _resume("sigmoid")  # sigmoid: D is a probability (paper); linear: raw output
    # --- data ---------------------------------------------------------------------------------
    dataset: str = _resume("digits")  # digits | stacked_digits | ring8 | grid25 | mnist | fashion_mnist | cifar10 | svhn_cropped | celeb_a | folder:PATH
    data_dir: str = None  # TensorFlow Datasets directory (prepared data, downloads)
    image_size: int = _resume(None)  # 8 | 16 | 32 | 64; None: the dataset's size rounded up to one of these
    # --- optimisation (paper, Table 1) -----------------------------------------------------------
    epochs: int = 200
    # Generator steps per epoch (Keras' steps_per_epoch); None: one pass over the data. Set, the
    # data repeats (epoch-deterministically) and the epoch is this many steps: `kgan compare`'s
    # rows are N steps evaluated every E as --steps-per-epoch E --epochs N/E --metrics-every 1.
    # Part of the resume identity: it says which batches, and which steps, an epoch holds.
    steps_per_epoch: int = _resume(None)
    batch_size: int = _resume(64)  # global batch per discriminator update
    latent_dim: int = _resume(100)
    g_lr: float = 2e-4  # different G and D rates give the two time-scale update rule (TTUR)
    d_lr: float = 2e-4
    beta1: float = _resume(0.5)
    beta2: float = _resume(0.999)
    d_steps: int = _resume(1)  # discriminator updates per generator update (WGAN: 5)
    # --- stabilisation --------------------------------------------------------------------------
    clip: float = _resume(None)  # clip every D weight to [-clip, clip] (WGAN: 0.01)
    gp: float = _resume(None)  # WGAN-GP weight lambda (10 in the paper); None: no gradient penalty
    r1: float = _resume(None)  # R1 penalty gamma on real data; None: off
    label_smoothing: float = _resume(0.0)  # one-sided: D's real target becomes 1 - label_smoothing
    instance_noise: float = _resume(0.0)  # std of Gaussian noise added to every D input
    spectral_norm: bool = _resume(False)  # spectral normalisation in D
    # --- toolbox (README "Stabilisation techniques") -------------------------------------------
    arch: str = _resume("dcgan")  # image networks: dcgan | resnet (SNGAN ResNet; spectral norm in D)
    self_attention: int = _resume(None)  # SAGAN self-attention block at this feature resolution (e.g. 16)
    minibatch_std: bool = _resume(False)  # ProGAN minibatch standard-deviation feature in D
    conditional: bool = _resume(False)  # class-conditional G (conditional BN) and projection D; labelled datasets
    ema: float = _resume(None)  # decay of the generator's exponential moving average (e.g. 0.999); exported if set
    ema_start: int = _resume(0)  # generator step from which the average starts (before: a copy)
    feature_matching: float = _resume(0.0)  # weight of the feature-matching term in G's loss (Salimans et al.)
    augment: str = _resume(None)  # diffaugment | ada: differentiable augmentation of every D input
    augment_policy: str = _resume("color,translation,cutout")  # DiffAugment ops
    augment_p: float = _resume(None)  # augmentation probability (diffaugment: 1; ada: the start value, 0)
    ada_target: float = _resume(0.6)  # ADA's target for r_t = E[sign(D(real) - the loss's decision threshold)]
    unroll: int = _resume(0)  # unrolled GAN: G's loss through K simulated D updates (Metz et al.)
    unroll_optimizer: str = _resume("discriminator")  # the simulated updates: discriminator (D's Adam and its state) | sgd
    unroll_lr: float = _resume(None)  # learning rate of --unroll-optimizer sgd (never D's)
    progressive: bool = _resume(False)  # progressive growing, 4x4 up to the image size (DCGAN family)
    progressive_steps: int = _resume(None)  # generator steps per resolution phase; None: an equal share of training
    fade_steps: int = _resume(None)  # steps of each phase's fade-in; None: half a phase
    clip_grad_norm: float = _resume(None)  # clip each player's global gradient norm to this
    historical_averaging: float = _resume(0.0)  # weight of ||theta - mean of past theta||^2 for both players
    # --- scale and survive (kgan/distribute.py) ----------------------------------------------------
    strategy: str = "default"  # default | mirrored | multiworker | tpu
    devices: int = None  # mirrored: number of replicas (splits the CPU when there are too few GPUs)
    sync_bn: bool = _resume(False)  # batch norm statistics over the global batch (all replicas)
    precision: str = _resume("auto")  # auto (bfloat16 on AMX CPUs and Ampere+ GPUs, float16 on Volta/Turing, else float32;
    #                          docs/performance.md) | float32 | mixed_bfloat16 | mixed_float16
    checkpoint_every: int = 1  # epochs between checkpoints (checkpoints/<run>/); 0: none
    keep_checkpoints: int = 3  # keep the last K checkpoints
    checkpoint_dir: str = "checkpoints"  # root of checkpoints (<checkpoint_dir>/<run>/)
    deterministic: bool = False  # deterministic TF ops (tf.config.experimental.enable_op_determinism)
    steps_per_execution: int = None  # train steps per call of the graph (Keras); None: the largest divisor of
    #                                  the steps per epoch <= 100 (1 with several replicas or --progressive)
    log_every: int = 1  # TensorBoard batch_* scalars of every N-th step (written once per block)
    # --- metrics during training (kgan/callbacks.py MetricsCallback, kgan/evaluate.py) ------------
    metrics: str = None  # comma list of fid|fcd|kid|is|pr|dc|modes, or none; None: the dataset's
    #                      defaults (digits: fcd,kid; stacked_digits, ring8, grid25: modes; others: none)
    metrics_every: int = 20  # epochs between evaluations (and the first and last epoch): 11 on the main job, ~5 s
    metrics_samples: int = None  # generated samples per evaluation; None: the protocol's for ring8 / grid25
    #                              (2500, PacGAN) and stacked_digits (25600, Stacked MNIST), else 1000
    features: str = None  # feature network: inception | keras_inception | classifier:<dataset>; None: the
    #                       dataset's (digits: classifier:digits; 2-D points: the raw coordinates)
    # --- run ------------------------------------------------------------------------------------
    seed: int = _resume(0)  # seeds Python, NumPy and TensorFlow
    run_name: str = None  # default: <dataset>-<loss>[-p<p>]-s<seed>
    output: str = "saved_models"  # root of exported models (<output>/<run>/)
    logdir: str = "logs"  # root of TensorBoard logs (<logdir>/<run>/)

    @classmethod
    def resume_fields(cls):
        """Names of the fields a checkpoint must agree on to be resumed (field metadata "resume")."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume"))

    @classmethod
    def float_fields(cls):
        """Names of the float-valued fields (each must be finite when set)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.type in (float, "float"))

    def resolved(self):
        """A copy with derived defaults filled in (the run name)."""
        config = dataclasses.replace(self)
        if config.run_name is None:
            loss = f"{config.loss}-p{config.p:g}" if config.loss == "minkowski" else config.loss
            config.run_name = f"{config.dataset.replace(':', '_').replace('/', '_')}-{loss}-s{config.seed}"
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, values):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
