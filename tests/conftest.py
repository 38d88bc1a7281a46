import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tfgan():
    """TF-GAN's maths as an independent reference: `(losses_impl, classifier_metrics)`."""
    from tests import tfgan_reference

    return tfgan_reference.load()
