import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tfgan():
    """TF-GAN's maths as an independent reference: `(losses_impl, classifier_metrics)`."""
    from tests import tfgan_reference

    return tfgan_reference.load()


def run_replica_script(module, timeout=300):
    """Runs `python -m <module>` in a new process and returns its last line of stdout, parsed as JSON.

    A multi-replica check on the CPU must split it into logical devices before TensorFlow
    initialises them, which the pytest process has already done; so the test module computes its
    result in its `__main__` block and prints it as one JSON line.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_replicas(request):
    """The requesting test module's 2-replica result: `run_replica_script(<that module>)`, once per module."""
    return run_replica_script(request.module.__name__)
