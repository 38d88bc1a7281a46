"""The import graph of kgan has no cycle (function-level imports included), and the TF-free
modules stay TF-free: a cycle makes "which module owns this?" unanswerable and forces lazy
imports to paper over it; a TF import in a names module costs every `kgan --help` seconds."""

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import kgan

PACKAGE = pathlib.Path(kgan.__file__).parent


def _module_name(path):
    """kgan.x.y for kgan/x/y.py, kgan.x for kgan/x/__init__.py."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    """{module name: path} of every module in kgan/."""
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(module, path, node):
    """The absolute module name a `from ... import` node names (relative imports resolved)."""
    if not node.level:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _nearest_module(name, modules):
    """`name` or its longest prefix that is a kgan module (kgan.a.b.func -> kgan.a.b)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph():
    """{module: set of kgan modules it imports anywhere in its body}.

    `from kgan import x` is an edge to kgan.x when x is a module, else to the package. The
    implicit import of a module's parent packages is not an edge: a package `__init__` may
    re-export its submodules (kgan/__init__ and kgan/metrics/__init__ do so lazily, so that
    importing one leaf does not load the others; `test_tf_free_modules_...` checks that)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target and target.split(".")[0] == "kgan":
                    found = _nearest_module(target, modules)
                    if found and found != module:
                        edges.add(found)
        graph[module] = edges
    return graph


def find_cycle(graph):
    """One cycle as a list of modules [a, b, ..., a], or None (iterative DFS)."""
    state = {}
    for root in sorted(graph):
        if root in state:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = "done"
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_package_init_imports_nothing_of_kgan():
    """kgan/__init__ is lazy: its submodules are imported by name on first use, so that
    importing any kgan module does not import every other one."""
    assert import_graph()["kgan"] == set()


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _loaded(code):
    """The heavy modules (tensorflow, scipy, keras) loaded after running `code` in a fresh
    interpreter."""
    probe = code + "\nimport sys\nprint(','.join(m for m in ('tensorflow', 'scipy', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    return [m for m in result.stdout.strip().splitlines()[-1].split(",") if m] if result.stdout.strip() else []


def test_tf_free_modules_load_no_tensorflow_or_scipy():
    code = "import kgan.names, kgan.config, kgan.registry, kgan.data.mixtures, kgan.metrics.modes"
    assert _loaded(code) == []


def test_cli_help_loads_no_tensorflow():
    code = ("import contextlib, io\nfrom kgan import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    cli.main(['--help'])")
    assert "tensorflow" not in _loaded(code)


def test_the_clis_tensorflow_import_skips_keras_optional_scikit_learn_and_matplotlib():
    """`import_tensorflow_quietly` (the CLI's, compare's workers') imports Keras without the
    scikit-learn and matplotlib Keras would import for features kgan does not use; both stay
    importable afterwards, and the main job's data needs neither."""
    code = textwrap.dedent("""
        import sys
        from kgan.quiet import import_tensorflow_quietly
        import_tensorflow_quietly()
        import keras, tensorflow
        skipped = [m for m in ("sklearn", "matplotlib") if m in sys.modules]
        from kgan import data
        images, _ = data.digits_arrays()
        after_digits = [m for m in ("sklearn", "matplotlib") if m in sys.modules]
        import matplotlib.pyplot, sklearn.datasets  # still installed and importable
        print(skipped, after_digits, images.shape, keras.ops.sum(keras.ops.ones((2, 3))).numpy())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.stdout.strip().splitlines()[-1] == "[] [] (1797, 8, 8, 1) 6.0"


def test_kgan_hparams_skips_the_tensorboard_stubs_s3_set_up():
    """TensorBoard's HParams plugin imports its TensorFlow stub, which imports boto3 (when
    installed) for an S3 file system TensorFlow's writers never use: kgan.hparams hides it."""
    code = textwrap.dedent("""
        import sys
        from kgan.quiet import import_tensorflow_quietly
        import_tensorflow_quietly()
        import kgan.hparams
        print([m for m in ("boto3", "botocore") if m in sys.modules], kgan.hparams.hp.HParam("lr").name)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.stdout.strip().splitlines()[-1] == "[] lr"
