"""TF-GAN 2.1.0's loss and eval maths, loaded without importing the (broken) package.

`import tensorflow_gan` fails on TensorFlow >= 2.16 because the package imports tf.estimator.
Its submodules `losses_impl` and `classifier_metrics` only need TensorFlow (and
tensorflow-probability / tf-keras), so we register empty parent packages whose `__path__`
points at the installed folders and import those two modules directly. TF-GAN is a test-only
dependency: kgan never imports it at run time.
"""

import importlib
import importlib.util
import sys
import types

_PARENTS = (
    "tensorflow_gan",
    "tensorflow_gan.python",
    "tensorflow_gan.python.losses",
    "tensorflow_gan.python.eval",
)


def _install_stub_parents():
    spec = importlib.util.find_spec("tensorflow_gan")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow-gan is not installed: pip install -e '.[test]'")
    root = spec.submodule_search_locations[0]
    for name in _PARENTS:
        if name in sys.modules and getattr(sys.modules[name], "__kgan_stub__", False):
            continue
        module = types.ModuleType(name)
        module.__path__ = [root + name[len("tensorflow_gan"):].replace(".", "/")]
        module.__kgan_stub__ = True
        sys.modules[name] = module


def load():
    """Returns TF-GAN's `(losses_impl, classifier_metrics)` modules."""
    _install_stub_parents()
    losses_impl = importlib.import_module("tensorflow_gan.python.losses.losses_impl")
    classifier_metrics = importlib.import_module(
        "tensorflow_gan.python.eval.classifier_metrics"
    )
    return losses_impl, classifier_metrics
