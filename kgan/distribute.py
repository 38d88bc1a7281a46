"""Distribution strategies by name, CPU splitting, and the mixed-precision policy by name.

    get_strategy("default")             the default (one device) strategy
    get_strategy("mirrored")            MirroredStrategy over the visible GPUs (or the CPU)
    get_strategy("mirrored", devices=2) ... over 2 logical CPU devices (tests, demos)
    get_strategy("multiworker")         MultiWorkerMirroredStrategy from TF_CONFIG
    get_strategy("tpu")                 TPUStrategy through the TPU cluster resolver

Global batch = `--batch-size`: `fit` splits each batch across the replicas, and `GAN` reduces
its per-example losses with `tf.nn.compute_average_loss` (sum / global batch), so a step on R
replicas equals a step on one replica with the same global batch.

`--devices N` must take effect before TensorFlow initialises its devices (the first op, the
first `tf.config.list_logical_devices`): call `get_strategy` before building anything.
"""

import os

import tensorflow as tf

from kgan.errors import UsageError
from kgan.names import PRECISIONS, STRATEGIES  # noqa: F401 - re-exported (the choice lists live in kgan.names)


def split_cpu(devices):
    """Splits the first physical CPU into `devices` logical CPUs (before TF initialises them).

    Raises:
        UsageError: if TensorFlow's devices are already initialised with a different split.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
    except RuntimeError:  # already initialised: fine if it already has the requested split
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise UsageError(
                f"--devices {devices}: TensorFlow's devices were initialised before the CPU could "
                "be split (start a new process)"
            ) from None
    return [f"/cpu:{i}" for i in range(devices)]


_STRATEGIES = {}


def get_strategy(name="default", devices=None):
    """A `tf.distribute.Strategy` by name.

    Args:
        name: one of `STRATEGIES`.
        devices: with "mirrored": the number of replicas. On a machine without GPUs (or with
            fewer than `devices`) the CPU is split into that many logical devices. None: all
            visible GPUs, or the CPU.

    Returns:
        The strategy; build and compile the model inside `strategy.scope()`. The same arguments
        return the same strategy object (a process configures its devices once).

    Raises:
        UsageError: unknown name, bad device count, TF_CONFIG missing for "multiworker", or no
            TPU found.
    """
    if name not in STRATEGIES:
        raise UsageError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if devices is not None and int(devices) < 1:
        raise UsageError(f"--devices must be >= 1; got {devices}")
    if devices is not None and name != "mirrored":
        raise UsageError(f"--devices applies to --strategy mirrored only (got --strategy {name})")
    if name == "default":
        return tf.distribute.get_strategy()
    key = (name, devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _make_strategy(name, devices)
    return _STRATEGIES[key]


def _make_strategy(name, devices):
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if devices is None:
            return tf.distribute.MirroredStrategy() if gpus else tf.distribute.MirroredStrategy(["/cpu:0"])
        devices = int(devices)
        if len(gpus) >= devices:
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices)])
        # CPU replicas: MirroredStrategy's default NCCL all-reduce is GPU-only.
        return tf.distribute.MirroredStrategy(
            split_cpu(devices), cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}})'
            )
        check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:  # tpu
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as error:
        raise UsageError(f"--strategy tpu: no TPU found ({error})") from None
    return tf.distribute.TPUStrategy(resolver)


def check_tf_config(text):
    """Raises UsageError (one line) unless `text` is a TF_CONFIG a multi-worker run can use: JSON
    with "cluster" mapping job names to non-empty lists of "host:port", and "task" naming one of
    them ({"type": job, "index": i} with 0 <= i < the job's size)."""
    import json

    example = '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}})'
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UsageError(f"TF_CONFIG is not valid JSON ({error}) {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError(f"TF_CONFIG has no \"cluster\" object {example}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() and a.rpartition(":")[0] for a in addresses):
            raise UsageError(f"TF_CONFIG cluster job {job!r} must be a non-empty list of \"host:port\"; got {addresses!r}")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise UsageError(f"TF_CONFIG \"task\" must name a job of the cluster ({', '.join(cluster)}); got {task!r}")
    index = task.get("index", 0)
    size = len(cluster[task["type"]])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
        raise UsageError(f"TF_CONFIG task index {index!r} is not in [0, {size}): the {task['type']!r} job lists "
                         f"{size} address(es)")


def synchronize_batch_norm(model):
    """Makes every `BatchNormalization` layer of `model` use GLOBAL batch statistics (`--sync-bn`).

    Under a multi-replica strategy each replica otherwise normalises with its own slice's mean and
    variance, so training differs from one replica with the same global batch. Call it before the
    first training step (the layers read `synchronized` when the step is traced).

    Returns:
        The number of layers changed.
    """
    import keras

    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def replica():
    """(replica id, number of replicas in sync) in the current replica context; (0, 1) outside."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: treat as a single replica
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def replica_slice(draw, local_batch):
    """This replica's rows of `draw(global_batch)`: a random draw made for the GLOBAL batch.

    Every replica makes the same draw from the same seed and keeps its own slice, so random
    inputs (noise, labels, augmentation parameters) do not depend on the number of replicas.
    """
    replica_id, num_replicas = replica()
    values = draw(local_batch * num_replicas)
    return values[replica_id * local_batch : (replica_id + 1) * local_batch]


def all_reduce_sum(values):
    """Sum of `values` (a tensor or a list of tensors) over the replicas in sync.

    Outside a replica context, or with one replica, returns `values` itself. The sum is
    differentiable: `ReplicaContext.all_reduce` has a gradient (the all-reduce of the upstream
    gradients), so a tape around a computation that sums over replicas sees through it.
    """
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
    return values


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Smallest image side at which bfloat16 pays on a CPU with avx512_bf16 but no AMX. Measured on
# a 2-core AMD EPYC (docs/performance.md), kgan's DCGAN step, batch 64, bf16 vs float32: 8x8
# 7.7 vs 7.2 ms (the main job: 90 vs 85 s), 16x16 35.2 vs 35.7 ms, 32x32 146-151 vs 194 ms.
AVX512_BF16_MIN_IMAGE_SIZE = 32


def auto_precision(data_shape=None):
    """(policy name, reason): the fastest mixed-precision policy for the hardware found.

    GPUs: compute capability >= 8.0 (Ampere and later) -> mixed_bfloat16; >= 7.0 (Volta,
    Turing: float16 tensor cores) -> mixed_float16. CPUs with AMX (amx_bf16 in /proc/cpuinfo:
    Sapphire Rapids and later) -> mixed_bfloat16. CPUs with avx512_bf16 but no AMX (e.g. AMD
    Zen 4): mixed_bfloat16 for images of `AVX512_BF16_MIN_IMAGE_SIZE` pixels and more, where it
    was measured faster, float32 for smaller data (the per-op conversions cost more than the
    16-bit maths saves). Otherwise float32 (bfloat16 would be emulated).

    Args:
        data_shape: shape of one example, (D,) or (H, W, C); None when unknown (the CPU rule
            for avx512_bf16 then keeps float32).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        if tuple(capability) >= (8, 0):
            return "mixed_bfloat16", f"GPU compute capability {capability[0]}.{capability[1]} (bfloat16)"
        if tuple(capability) >= (7, 0):
            return "mixed_float16", f"GPU compute capability {capability[0]}.{capability[1]} (float16 tensor cores)"
        return "float32", f"GPU compute capability {capability[0]}.{capability[1]} (no fast 16-bit math)"
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return "mixed_bfloat16", "CPU with AMX (amx_bf16)"
    if "avx512_bf16" in flags:
        size = min(data_shape[:2]) if data_shape is not None and len(data_shape) == 3 else 0
        if size >= AVX512_BF16_MIN_IMAGE_SIZE:
            return "mixed_bfloat16", f"CPU with avx512_bf16 (no AMX) and {size}x{size} images"
        data = (f"{size}x{size} images" if size else "unknown data" if data_shape is None
                else f"data of shape {tuple(data_shape)}")
        return "float32", (f"CPU with avx512_bf16 but no AMX, and {data} (bfloat16 pays from "
                           f"{AVX512_BF16_MIN_IMAGE_SIZE}x{AVX512_BF16_MIN_IMAGE_SIZE} images)")
    return "float32", "CPU without AMX or avx512_bf16"


#: `--xla auto` compiles the step with XLA for images up to this size, on a CPU with one replica.
#: Measured with `benchmarks/bench_choices.py --xla-sizes` (docs/performance.md): kgan's DCGAN step,
#: batch 64, without vs with XLA: 8x8 1.73x (float32) and 1.64x (bfloat16) faster, 16x16 1.14x and
#: 1.06x, 32x32 0.90x and 0.67x (slower); the mixture MLP 1.0x.
XLA_MAX_IMAGE_SIZE = 16
#: ... and for runs of at least this many generator steps: compiling costs about 2 s (the main
#: job's trace 1.1 -> 3.1 s) and saves about 1.8 ms a step at 8x8 (bench_small's floor 5.19 -> 3.35
#: ms), so it pays from about 1,100 steps; 2,000 keeps a margin (short runs and tests stay fast).
XLA_MIN_STEPS = 2000


def resolve_xla(name, data_shape=None, num_replicas=1, deterministic=False, steps=None):
    """(whether to XLA-compile the train step, the reason for `--xla auto`'s choice or None).

    Args:
        name: "on", "off" or "auto" (`kgan.names.XLA`). auto: on for images of at most
            `XLA_MAX_IMAGE_SIZE` pixels trained on a CPU by one replica, where the per-op overhead
            that XLA's fusion removes dominates a step; off for 2-D points (no gain measured), larger
            images (slower), several replicas and GPUs (not measured).
        data_shape: shape of one example.
        num_replicas: replicas in sync.
        deterministic: op determinism is on (`--deterministic`): Keras 3 then compiles nothing
            with XLA (not every op has a deterministic XLA kernel), so auto is off (and `run.validate`
            refuses `--xla on --deterministic`).
        steps: generator steps of the run (this fit), or None (unknown: not a reason to say off).
    """
    if name != "auto":
        return name == "on", None
    if deterministic:
        return False, "--deterministic (Keras runs no XLA under op determinism)"
    if tf.config.list_physical_devices("GPU"):
        return False, "a GPU (XLA not measured there)"
    if num_replicas > 1:
        return False, f"{num_replicas} replicas"
    if data_shape is None or len(data_shape) != 3:
        return False, "2-D points (no gain measured)"
    size = max(data_shape[:2])
    if size > XLA_MAX_IMAGE_SIZE:
        return False, f"{size}x{size} images (XLA pays up to {XLA_MAX_IMAGE_SIZE}x{XLA_MAX_IMAGE_SIZE})"
    if steps is not None and steps < XLA_MIN_STEPS:
        return False, f"{steps} steps (compiling pays from about {XLA_MIN_STEPS})"
    return True, f"CPU, one replica, {size}x{size} images, {steps or 'unknown'} steps"


def set_precision(name, data_shape=None):
    """Sets Keras' global dtype policy by name (before building the networks).

    Args:
        name: one of `PRECISIONS`; "auto" picks with `auto_precision(data_shape)`.
        data_shape: shape of one example (for "auto").

    Returns:
        (policy name set, reason it was chosen or None).
    """
    import keras

    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    reason = None
    if name == "auto":
        name, reason = auto_precision(data_shape)
    keras.mixed_precision.set_global_policy(name)
    return name, reason


def is_chief(strategy):
    """True on the worker that writes (checkpoints, exports): always, except multi-worker non-chiefs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)
