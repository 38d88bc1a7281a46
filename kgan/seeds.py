"""Independent random streams of one run, each seeded from the run seed.

Every `keras.random.SeedGenerator` of a run (the latent noise, the fake class labels, the
instance noise, the gradient penalty's interpolation weights, the augmentation's draws) gets its
own seed, derived from the run seed as NumPy's `SeedSequence(seed).spawn(n)[i]` does
(`SeedSequence(seed, spawn_key=(i,))`, i the stream's fixed index in `STREAMS`). Generators
seeded `[seed, 0]` alike would produce the same numbers: the gradient penalty's alpha at step 0
would be the augmentation's first uniforms. New streams are appended to `STREAMS`, so the
existing ones keep their seeds.
"""

import keras
import numpy as np

#: Stream names, in the (fixed) order of their spawn index.
STREAMS = ("latent", "labels", "instance_noise", "penalty", "augment")


def stream_seed(seed, stream):
    """The int seed of `stream` in a run seeded `seed` (None stays None: nondeterministic).

    Args:
        seed: the run seed, an int >= 0, or None.
        stream: one of `STREAMS`.

    Returns:
        An int in [0, 2**32), distinct for distinct streams of one seed (with overwhelming
        probability), or None.

    Raises:
        ValueError: for an unknown stream.
    """
    if stream not in STREAMS:
        raise ValueError(f"Unknown random stream {stream!r}; one of {STREAMS}")
    if seed is None:
        return None
    state = np.random.SeedSequence(int(seed), spawn_key=(STREAMS.index(stream),)).generate_state(1, np.uint32)
    return int(state[0])


def seed_generator(seed, stream, name=None):
    """A `keras.random.SeedGenerator` for `stream` of a run seeded `seed`."""
    return keras.random.SeedGenerator(stream_seed(seed, stream), name=name)
