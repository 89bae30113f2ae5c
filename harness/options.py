"""Command-line options of `python -m harness.run`: defaults < --config YAML < flags.

Every attack's config dataclass contributes its own flags (e.g. GCG's
`--search-width`), so registering an attack is enough to make it tunable.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from attacks import available_attacks, get_attack
from plugins import PluginError, unknown_name_message

from .errors import UsageError
from .models import DEFAULT_MODEL
from .results import ADDED_OPTION_DEFAULTS
from .yaml_file import read_mapping


DEFAULTS = {
    "attack": "random",
    "k_attack": 4,
    "k_sweep": [2, 4, 8, 16],
    "method": "stream",
    "block_q": 8,
    "block_k": 8,
    "dense_layers": 2,
    "model": DEFAULT_MODEL,
    "suite": "needle",
    "limit": None,
    "n_adv": 3,
    "steps": 200,
    "context": "filler",
    "context_tokens": 256,
    "seed": 0,
    "batch_size": 16,
    "ascii_only": False,
    "out": None,
    "wandb": "auto",
    "wandb_project": "flipbench",
    "workers": 1,
    "ray_address": None,
    **ADDED_OPTION_DEFAULTS,
    "absent": 1,
    "balance": None,  # None: on for the needle suite (resolved in `resolve`)
}

# Options that do not change results, so a resumed run may differ in them.
NOT_RESULT_KEYS = {"out", "wandb", "wandb_project", "config", "plugin", "workers", "ray_address"}


def _list_of(cast, what: str):
    """An argparse type for comma-separated values of `cast`."""

    def parse(text: str) -> list:
        try:
            return [cast(x) for x in str(text).split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    return parse


_int_list = _list_of(int, "integers")
_float_list = _list_of(float, "numbers")


def _setting(text: str) -> tuple[str, str]:
    """NAME=VALUE of --method-opt (the method's settings class types the value)."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m harness.run",
        description="Find adversarial tokens that flip a yes/no answer under sparse attention, "
        "sweep k and report flip rates.",
    )
    S = argparse.SUPPRESS  # unset flags stay absent so the YAML file can fill them
    p.add_argument("--config", default=S, help="YAML file with any of these options (flags override it)")
    p.add_argument("--plugin", action="append", default=S,
                   help="module name or .py file to import first, to register your own sparse methods or attacks "
                        "(repeatable)")
    p.add_argument("--attack", default=S, help=f"attack name ({', '.join(available_attacks())}; default random)")
    p.add_argument("--k-attack", dest="k_attack", type=int, default=S, help="sparsity k the attack targets (default 4)")
    p.add_argument("--k-sweep", dest="k_sweep", type=_int_list, default=S,
                   help="comma-separated k values to evaluate (default 2,4,8,16; k-attack is added)")
    p.add_argument("--density-sweep", dest="density_sweep", type=_float_list, default=S,
                   help="instead of a fixed k sweep: densities (kept / causal key blocks at the answer position), "
                        "e.g. 0.02,0.05,0.1,0.25; each item is scored at the k giving each density for its length "
                        "(k-attack is always scored)")
    p.add_argument("--method", default=S, help="sparse method (default stream)")
    p.add_argument("--block-size", dest="block_size", type=int, default=S, help="sets both --block-q and --block-k (default 8)")
    p.add_argument("--block-q", dest="block_q", type=int, default=S)
    p.add_argument("--block-k", dest="block_k", type=int, default=S)
    p.add_argument("--dense-layers", dest="dense_layers", type=int, default=S, help="first layers kept dense (default 2)")
    p.add_argument("--sink-blocks", dest="sink_blocks", type=int, default=S,
                   help="first key blocks always kept, outside k (HiP's attention sink; default 0)")
    p.add_argument("--local-blocks", dest="local_blocks", type=int, default=S,
                   help="key blocks ending at the diagonal always kept, outside k (default 0: the diagonal only)")
    p.add_argument("--method-opt", dest="method_options", action="append", type=_setting, default=S,
                   metavar="NAME=VALUE",
                   help="a setting of the sparse method, e.g. --method stream-density --method-opt density=0.1 "
                        "(repeatable; YAML: method: {name: stream-density, density: 0.1})")
    p.add_argument("--model", default=S, help="model preset, hub id or local path (default qwen2.5-1.5b)")
    p.add_argument("--suite", default=S, help="task suite: needle (default; generated, see --depth), seed4, facts, "
                                              "a .jsonl/.csv/.yaml file or hf:name[:config]:split")
    p.add_argument("--limit", type=int, default=S, help="use the first N items of the suite (needle: N items in all, "
                                                          "default 48)")
    p.add_argument("--depth", type=_float_list, default=S,
                   help="needle suite: relative depths of the needles in the context (default 0.1,0.5,0.9)")
    p.add_argument("--absent", type=int, default=S,
                   help="needle suite: absent-needle questions per context (a person the context never mentions; "
                        "answer no), default 1")
    p.add_argument("--balance", type=_bool, default=S,
                   help="needle suite: as many yes as no questions, at every depth (default true for needle; "
                        "only generated suites can be balanced)")
    p.add_argument("--n-adv", dest="n_adv", type=int, default=S, help="adversarial tokens (default 3)")
    p.add_argument("--steps", type=int, default=S, help="attack budget: candidates (random) or steps (gcg) (default 200)")
    p.add_argument("--context", default=S, help="context builder: none, filler, haystack (default filler)")
    p.add_argument("--context-tokens", dest="context_tokens", type=int, default=S, help="context length in tokens (default 256)")
    p.add_argument("--full-margin", dest="full_margin", type=float, default=S,
                   help="a flip counts only if full attention answers right by at least this much "
                        "P(correct) - P(wrong) (default 0.0; also the attacks' success criterion)")
    p.add_argument("--minimal-k", dest="minimal_k", type=_bool, nargs="?", const=True, default=S,
                   help="also record each item's seed k (binary search for the smallest k reproducing full "
                        "attention's next two tokens) on the clean and adversarial prompt, and the flip at the "
                        "clean prompt's k (costs a few forwards per item)")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=S, help="candidates scored per forward (default 16)")
    p.add_argument("--ascii-only", dest="ascii_only", type=_bool, nargs="?", const=True, default=S,
                   help="draw adversarial tokens from printable-ASCII tokens only")
    p.add_argument("--out", default=S, help="run directory (default runs/<timestamp>-<model>-<attack>)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], default=S,
                   help="auto: online when WANDB_API_KEY is set, else offline")
    p.add_argument("--wandb-project", dest="wandb_project", default=S)
    p.add_argument("--workers", type=int, default=S,
                   help="Ray actors that score items in parallel, each loading the model once (default 1: no Ray; "
                        "needs the ray extra); rows stay in item order and equal a local run's")
    p.add_argument("--ray-address", dest="ray_address", default=S,
                   help="join this Ray cluster for --workers (default: start a local one)")
    seen = set(DEFAULTS) | {"block_size"}
    for name in available_attacks():
        for f in dataclasses.fields(get_attack(name).config_cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            kind = _bool if isinstance(f.default, bool) else type(f.default)
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=S,
                           help=f"{name} attack: {f.name} (default {f.default})")
    return p


def attack_option_names() -> set[str]:
    names = set()
    for name in available_attacks():
        names |= {f.name for f in dataclasses.fields(get_attack(name).config_cls)}
    return names - set(DEFAULTS)


def load_yaml(path: str) -> dict:
    data = read_mapping(path, "config file", "a mapping of option: value")
    known = set(DEFAULTS) | {"block_size"} | attack_option_names()
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise UsageError(f"config file {path}: unknown option {key!r}")
        if name == "k_sweep" and not isinstance(value, list):
            value = _int_list(value)
        if name in ("density_sweep", "depth") and value is not None and not isinstance(value, list):
            value = _float_list(value)
        if name == "method" and isinstance(value, dict):  # method: {name: stream-density, density: 0.1}
            settings = {str(k): v for k, v in value.items()}
            if "name" not in settings:
                raise UsageError(f"config file {path}: method needs a name, e.g. method: {{name: stream, ...}}")
            value = settings.pop("name")
            out["method_options"] = {**out.get("method_options", {}), **settings}
        if name == "method_options" and not isinstance(value, dict):
            raise UsageError(f"config file {path}: method_options must be a mapping of setting: value")
        if name == "method_options":
            value = {**out.get("method_options", {}), **{str(k): v for k, v in value.items()}}
        out[name] = value
    return out


def load_plugins(argv) -> None:
    """Import every `--plugin` and every installed plugin (entry points) before the parser is
    built, so plugins' attacks get flags and a broken plugin is one line, not a traceback."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            import_plugin(argv[i + 1])
        elif arg.startswith("--plugin="):
            import_plugin(arg.split("=", 1)[1])
    from sparse import available_sparse_methods

    try:
        available_attacks()
        available_sparse_methods()
    except PluginError as exc:
        raise UsageError(str(exc)) from None


_LOADED_PLUGINS: set[str] = set()


def import_plugin(spec: str) -> None:
    import importlib
    import importlib.util

    if spec in _LOADED_PLUGINS:  # registering twice would be an error
        return
    try:
        if spec.endswith(".py"):
            path = Path(spec)
            if not path.is_file():
                raise UsageError(f"plugin file {spec} does not exist")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
        _LOADED_PLUGINS.add(spec)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise UsageError(f"cannot import plugin {spec}: {type(exc).__name__}: {exc}") from None


def resolve(argv) -> dict:
    """The run's options, validated: defaults, then the YAML file, then the flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    load_plugins(argv)
    args = vars(build_parser().parse_args(argv))
    from_file = load_yaml(args.pop("config")) if "config" in args else {}
    if "method_options" in args:  # flags add to (and override) the file's settings
        args["method_options"] = {**from_file.get("method_options", {}), **dict(args["method_options"])}
    opts = {**DEFAULTS, **from_file, **args}
    block = opts.pop("block_size", None)
    if block is not None:
        for name in ("block_q", "block_k"):
            if name not in from_file and name not in args:
                opts[name] = block
    if opts["balance"] is None:
        opts["balance"] = opts["suite"] == "needle"
    validate(opts)
    if opts["density_sweep"] is not None:
        opts["density_sweep"] = sorted(set(float(d) for d in opts["density_sweep"]))
        opts["k_sweep"] = []  # each item's k values follow from its length; k_attack is always scored
    ks = sorted(set(int(k) for k in opts["k_sweep"]) | {int(opts["k_attack"])})
    opts["k_sweep"] = ks
    return opts


def validate(opts: dict) -> None:
    def positive(name, minimum=1):
        value = opts.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}")

    for name in ("k_attack", "block_q", "block_k", "n_adv", "batch_size"):
        positive(name)
    positive("steps")
    positive("workers")
    positive("dense_layers", 0)
    positive("sink_blocks", 0)
    positive("local_blocks", 0)
    positive("context_tokens", 0)
    if opts.get("limit") is not None:
        positive("limit")
    densities = opts.get("density_sweep")
    if densities is not None:
        if not isinstance(densities, list) or not densities:
            raise UsageError("--density-sweep must list at least one density, e.g. 0.02,0.05,0.1,0.25")
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1 for d in densities):
            raise UsageError(f"--density-sweep values must be numbers in (0, 1], got {densities}")
    from tasks.needle import MIN_CONTEXT_TOKENS

    if opts.get("suite") == "needle" and opts["context_tokens"] < MIN_CONTEXT_TOKENS:
        raise UsageError(f"--context-tokens must be >= {MIN_CONTEXT_TOKENS} for the needle suite, "
                         f"got {opts['context_tokens']}")
    from tasks.needle import MAX_ABSENT

    absent = opts.get("absent")
    if isinstance(absent, bool) or not isinstance(absent, int) or not 0 <= absent <= MAX_ABSENT:
        raise UsageError(f"--absent must be an integer in [0, {MAX_ABSENT}], got {absent!r}")
    if opts.get("balance") not in (True, False):
        raise UsageError(f"--balance must be true or false, got {opts.get('balance')!r}")
    if opts["balance"] and opts.get("suite") != "needle":
        raise UsageError(f"--balance applies to generated suites (needle) only; suite {opts.get('suite')!r} "
                         "has fixed answers: use --balance false")
    depth = opts.get("depth")
    if depth is not None and (not isinstance(depth, list) or not depth
                              or any(isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 1
                                     for d in depth)):
        raise UsageError(f"--depth must list needle depths in [0, 1], e.g. 0.1,0.5,0.9, got {depth!r}")
    margin = opts.get("full_margin")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise UsageError(f"--full-margin must be a number in [0, 1), got {margin!r}")
    sweep = opts.get("k_sweep")
    if not isinstance(sweep, list) or not sweep:
        raise UsageError("--k-sweep must list at least one k, e.g. 2,4,8,16")
    if any(not isinstance(k, int) or k < 1 for k in sweep):
        raise UsageError(f"--k-sweep values must be integers >= 1, got {sweep}")
    if opts["attack"] not in available_attacks():
        raise UsageError(unknown_name_message("attack", opts["attack"], available_attacks()))
    from sparse import available_sparse_methods

    if opts["method"] not in available_sparse_methods():
        raise UsageError(unknown_name_message("sparse method", opts["method"], available_sparse_methods()))
    from sparse import make_settings

    if not isinstance(opts.get("method_options"), dict):
        raise UsageError(f"method settings must be a mapping of setting: value, got {opts.get('method_options')!r}")
    try:
        make_settings(opts["method"], opts["method_options"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from tasks import available_contexts

    if opts["context"] not in available_contexts():
        raise UsageError(unknown_name_message("context", opts["context"], available_contexts()))
