"""Every choice list of kgan, in one TF-free module (no imports): the command line, the config's
validation and the registries all read their names from here.

A registry (losses, penalties, augmentations, networks, metrics, strategies, precisions, datasets)
must accept exactly the names listed here; tests/test_names.py checks that each one does.
"""

#: `--loss` (kgan.losses).
LOSSES = ("minimax", "non_saturating", "wasserstein", "least_squares", "hinge", "minkowski")
#: The gradient penalties (kgan.penalties; `gp` is accepted for gradient_penalty). The command
#: line sets them by weight: `--gp`, `--r1`.
PENALTIES = ("gradient_penalty", "r1")
#: `--minkowski-activation` (kgan.losses.Minkowski).
MINKOWSKI_ACTIVATIONS = ("sigmoid", "linear")
#: The 2-D Gaussian mixtures (PacGAN / VEEGAN protocol; kgan.data.mixtures).
MIXTURES = ("ring8", "grid25")
#: Datasets with mode metrics (`--metrics modes`; kgan.metrics.modes).
MODE_DATASETS = (*MIXTURES, "stacked_digits")
#: `--dataset`, besides folder:PATH (kgan.data).
DATASETS = ("digits", "stacked_digits", *MIXTURES, "mnist", "fashion_mnist", "cifar10", "svhn_cropped", "celeb_a")
#: Datasets with one class label per example (conditional GANs), and their number of classes.
NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "svhn_cropped": 10}
#: `--image-size`.
IMAGE_SIZES = (8, 16, 32, 64)
#: `--arch` (kgan.networks): the image networks, and PacGAN's MLP pair for 2-D points.
IMAGE_ARCHS = ("dcgan", "resnet")
ARCHS = (*IMAGE_ARCHS, "pacgan")
#: `--augment` (kgan.augment).
AUGMENTS = ("diffaugment", "ada")
#: `--optimizer` (kgan.run.make_optimizer).
OPTIMIZERS = ("adam", "rmsprop")
#: `--unroll-optimizer` (kgan.unrolled).
UNROLL_OPTIMIZERS = ("discriminator", "sgd")
#: `--updates` (kgan.gan.GAN): D then G each step, or both from one forward pass (PacGAN's).
UPDATES = ("alternating", "simultaneous")
#: `--strategy` (kgan.distribute).
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
#: `--precision` (kgan.distribute).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
#: `--xla` (kgan.distribute.resolve_xla).
XLA = ("auto", "on", "off")
#: `--metrics` (kgan.evaluate, kgan.metrics).
METRICS = ("fid", "fcd", "kid", "is", "pr", "dc", "modes")
