"""`RunConfig`: the options of one `python -m harness.run`, typed, in one place.

Each field declares its default, its `--help` text and its *role* (field metadata):
`result` options decide the rows (a resumed run must agree on them, manifests and the
leaderboard record them), `operational` ones only say where and how the run goes (its
directory, W&B mode, workers). The command-line parser is generated from the fields,
and `resolve` layers defaults < `--config` YAML < flags. Every registered attack's
config contributes flags for its own settings (GCG's `--search-width`), kept in
`attack_options`; the sparse method's settings come from `--method-opt NAME=VALUE` or
YAML `method: {name: ..., setting: value}` and are kept in `method_options`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from attacks import available_attacks, get_attack
from attacks.config import SettingError
from plugins import PluginError, unknown_name_message

from harness.errors import UsageError
from harness.models import DEFAULT_MODEL
from harness.yaml_file import read_mapping

RESULT, OPERATIONAL = "result", "operational"


def _list_of(cast, what: str):
    """An argparse type for comma-separated values of `cast`."""

    def parse(text) -> list:
        if isinstance(text, list):
            return [cast(x) for x in text]
        try:
            return [cast(x) for x in str(text).split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    parse.is_list = True
    return parse


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _setting(text: str) -> tuple[str, str]:
    """NAME=VALUE of --method-opt (the method's settings class types the value)."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def option(default, help: str, role: str = RESULT, parse=None, **argparse_kwargs):
    """A RunConfig field: default, help, role, and how the command line parses it."""
    meta = {"help": help, "role": role, "parse": parse, "argparse": argparse_kwargs}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_ints, _floats = _list_of(int, "integers"), _list_of(float, "numbers")
_flag_bool = {"nargs": "?", "const": True}


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run (see `python -m harness.run --help`)."""

    attack: str = option("random", "attack name (random, its nulls filler and far, gcg, none: natural flips only)")
    k_attack: int = option(4, "sparsity k the attack targets")
    k_sweep: list = option([2, 4, 8, 16], "comma-separated k values to evaluate (k-attack is added)", parse=_ints)
    density_sweep: list | None = option(
        None, "instead of a fixed k sweep: densities (kept / causal key blocks at the answer position), e.g. "
              "0.05,0.1,0.2; each item is scored at the k giving each density for its length (k-attack is always "
              "scored)", parse=_floats)
    method: str = option("stream", "sparse method")
    method_options: dict = option({}, "a setting of the sparse method, e.g. --method stream-density --method-opt "
                                      "density=0.1 (repeatable; YAML: method: {name: stream-density, density: 0.1})",
                                  parse=_setting, flag="--method-opt", action="append", metavar="NAME=VALUE")
    block_q: int = option(8, "query block size (--block-size sets both)")
    block_k: int = option(8, "key block size")
    dense_layers: int = option(2, "first layers kept dense")
    sink_blocks: int = option(0, "first key blocks always kept, outside k (HiP's attention sink)")
    local_blocks: int = option(0, "key blocks ending at the diagonal always kept, outside k (0: the diagonal only)")
    model: str = option(DEFAULT_MODEL, "model preset, hub id or local path")
    suite: str = option("needle", "task suite: needle (generated, see --depth), seed4, facts, a .jsonl/.csv/.yaml "
                                  "file or hf:name[:config]:split")
    limit: int | None = option(None, "use the first N items of the suite (needle: N items in all, default 48)",
                               parse=int)
    depth: list | None = option(None, "needle suite: relative depths of the needles (default 0.1,0.5,0.9)",
                                parse=_floats)
    absent: int = option(1, "needle suite: absent-needle questions per context (a person the context never "
                            "mentions; answer no)")
    balance: bool | None = option(None, "needle suite: as many yes as no questions, at every depth (default: true "
                                         "for needle; only generated suites can be balanced)", parse=_bool)
    n_adv: int = option(3, "adversarial tokens")
    steps: int = option(200, "attack budget: candidates (random and its nulls) or steps (gcg)")
    context: str = option("filler", "context builder: none, filler, haystack")
    context_tokens: int = option(256, "context length in tokens")
    full_margin: float = option(0.0, "an item counts only if full attention answers right by at least this much "
                                     "P(correct) - P(wrong) (also the attacks' success criterion)")
    minimal_k: bool = option(False, "also record each item's minimal k (the seed paper's binary search for the "
                                    "smallest k reproducing full attention's next two tokens) on the clean and "
                                    "adversarial prompt, and the flip at the clean prompt's k", parse=_bool,
                             **_flag_bool)
    seed: int = option(0, "RNG seed of items, contexts and attacks")
    batch_size: int = option(16, "candidates scored per forward")
    ascii_only: bool = option(False, "draw adversarial tokens from printable-ASCII tokens only", parse=_bool,
                              **_flag_bool)
    attack_options: dict = option({}, "settings of the chosen attack beyond the shared budget (their own flags)")
    out: str | None = option(None, "run directory (default runs/<timestamp>-<model>-<attack>)", OPERATIONAL)
    wandb: str = option("auto", "auto: online when WANDB_API_KEY is set, else offline", OPERATIONAL,
                        choices=["auto", "online", "offline", "disabled"])
    wandb_project: str = option("flipbench", "W&B project", OPERATIONAL)
    workers: int = option(1, "Ray actors that score items in parallel, each loading the model once (1: no Ray; "
                              "needs the ray extra); rows stay in item order and equal a local run's", OPERATIONAL)
    ray_address: str | None = option(None, "join this Ray cluster for --workers (default: start a local one)",
                                     OPERATIONAL)
    plugin: list = option([], "module name or .py file to import first, to register your own sparse methods or "
                              "attacks (repeatable; installed entry points need none)", OPERATIONAL,
                          action="append")

    def __post_init__(self):
        validate(self)

    @classmethod
    def fields_with_role(cls, role: str) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata["role"] == role]

    def result_config(self) -> dict:
        """The options that decide the rows, as recorded in manifest.json: the result fields,
        with the attack's own settings at the top level (as the first releases wrote them)."""
        out = {name: getattr(self, name) for name in self.fields_with_role(RESULT) if name != "attack_options"}
        return {**out, **self.attack_options}

    def attack_values(self) -> dict:
        """What the attack's config is built from: the shared budget and the attack's own settings."""
        return {**{name: getattr(self, name) for name in ("n_adv", "steps", "k_attack", "batch_size", "ascii_only",
                                                          "full_margin")}, **self.attack_options}

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def attack_option_fields() -> dict[str, dataclasses.Field]:
    """Settings of registered attacks that are not RunConfig fields (their own flags)."""
    own = {f.name for f in dataclasses.fields(RunConfig)}
    found: dict[str, dataclasses.Field] = {}
    for name in available_attacks():
        for f in dataclasses.fields(get_attack(name).config_cls):
            if f.name not in own and f.name not in found:
                found[f.name] = f
    return found


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message + self._suggestion(message))

    def _suggestion(self, message: str) -> str:
        """'; did you mean --limit?' for a mistyped option (argparse only lists what it did not know)."""
        import difflib

        if not message.startswith("unrecognized arguments:"):
            return ""
        unknown = [word.split("=")[0] for word in message.split(":", 1)[1].split() if word.startswith("--")]
        close = difflib.get_close_matches(unknown[0], list(self._option_string_actions), n=1) if unknown else []
        return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    """`python -m harness.run`'s parser, generated from RunConfig's fields and the attacks'."""
    p = _Parser(prog="python -m harness.run",
                description="Find adversarial tokens that flip a yes/no answer under sparse attention, "
                            "sweep k and report flip rates.")
    S = argparse.SUPPRESS  # unset flags stay absent so the YAML file can fill them
    p.add_argument("--config", default=S, help="YAML file with any of these options (flags override it)")
    p.add_argument("--block-size", dest="block_size", type=int, default=S, help="sets both --block-q and --block-k")
    for f in dataclasses.fields(RunConfig):
        if f.name == "attack_options":
            continue
        meta = dict(f.metadata["argparse"])
        flag = meta.pop("flag", _flag(f.name))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        suffix = "" if shown in (None, {}, "") else f" (default {shown})"
        kwargs = {"dest": f.name, "default": S, "help": f"{f.metadata['help']}{suffix}", **meta}
        if f.metadata["parse"] is not None:
            kwargs["type"] = f.metadata["parse"]
        elif meta.get("choices") is None and meta.get("action") != "append" and default is not None:
            kwargs["type"] = type(default)
        p.add_argument(flag, **kwargs)
    for name, f in attack_option_fields().items():
        kind = _bool if isinstance(f.default, bool) else type(f.default)
        p.add_argument(_flag(name), dest=f"attack:{name}", type=kind, default=S, metavar=name.upper(),
                       help=f"attack setting {name} (default {f.default})")
    return p


def load_yaml(path: str) -> dict:
    """A --config file as option values (names as in RunConfig; `method` may be a mapping)."""
    data = read_mapping(path, "config file", "a mapping of option: value")
    own = {f.name: f for f in dataclasses.fields(RunConfig)}
    attack_fields = attack_option_fields()
    out: dict = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name == "block_size":
            out[name] = value
        elif name in attack_fields:
            out.setdefault("attack_options", {})[name] = value
        elif name not in own or name == "attack_options":
            close = unknown_name_message("option", name, list(own) + list(attack_fields) + ["block_size"])
            raise UsageError(f"config file {path}: {close}")
        elif name == "method" and isinstance(value, dict):  # method: {name: stream-density, density: 0.1}
            settings = {str(k): v for k, v in value.items()}
            if "name" not in settings:
                raise UsageError(f"config file {path}: method needs a name, e.g. method: {{name: stream, ...}}")
            out["method"] = settings.pop("name")
            out["method_options"] = {**out.get("method_options", {}), **settings}
        elif name == "method_options":
            if not isinstance(value, dict):
                raise UsageError(f"config file {path}: method_options must be a mapping of setting: value")
            out["method_options"] = {**out.get("method_options", {}), **{str(k): v for k, v in value.items()}}
        else:
            parse = own[name].metadata["parse"]
            if parse is not None and getattr(parse, "is_list", False) and value is not None:
                try:
                    value = parse(value)
                except argparse.ArgumentTypeError as exc:
                    raise UsageError(f"config file {path}: {name}: {exc}") from None
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
    """Import a plugin module or .py file once; any failure of user code is one UsageError."""
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


def resolve(argv=None) -> RunConfig:
    """The run's config, validated: defaults, then the YAML file, then the flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    load_plugins(argv)
    args = vars(build_parser().parse_args(argv))
    from_file = load_yaml(args.pop("config")) if "config" in args else {}
    flags: dict = {}
    attack_options = dict(from_file.pop("attack_options", {}))
    for key, value in args.items():
        if key.startswith("attack:"):
            attack_options[key.split(":", 1)[1]] = value
        else:
            flags[key] = value
    if "method_options" in flags:  # flags add to (and override) the file's settings
        flags["method_options"] = {**from_file.get("method_options", {}), **dict(flags["method_options"])}
    values = {**from_file, **flags, "attack_options": attack_options}
    block = values.pop("block_size", None)
    if block is not None:
        for name in ("block_q", "block_k"):
            if name not in from_file and name not in flags:
                values[name] = block
    if values.get("balance") is None:
        values["balance"] = values.get("suite", "needle") == "needle"
    cfg = RunConfig(**values)
    from sparse import make_settings
    from sparse.settings import settings_dict

    # every setting of the method, typed (a flag gives "0.5", the manifest records 0.5)
    cfg = cfg.replace(method_options=settings_dict(make_settings(cfg.method, cfg.method_options)))
    if cfg.density_sweep is not None:  # each item's k values follow from its length; k_attack is always scored
        cfg = cfg.replace(density_sweep=sorted(set(float(d) for d in cfg.density_sweep)), k_sweep=[cfg.k_attack])
    return cfg.replace(k_sweep=sorted(set(int(k) for k in cfg.k_sweep) | {int(cfg.k_attack)}))


def _integer(cfg: RunConfig, name: str, minimum: int = 1) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{_flag(name)} must be an integer >= {minimum}, got {value!r}")


def validate(cfg: RunConfig) -> None:
    """Every option's check, once (attack settings are checked by the attack's own config)."""
    for name in ("k_attack", "block_q", "block_k", "workers"):
        _integer(cfg, name)
    for name in ("dense_layers", "sink_blocks", "local_blocks", "context_tokens"):
        _integer(cfg, name, 0)
    if cfg.limit is not None:
        _integer(cfg, "limit")
    if cfg.density_sweep is not None:
        if not isinstance(cfg.density_sweep, list) or not cfg.density_sweep:
            raise UsageError("--density-sweep must list at least one density, e.g. 0.05,0.1,0.2")
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1 for d in cfg.density_sweep):
            raise UsageError(f"--density-sweep values must be numbers in (0, 1], got {cfg.density_sweep}")
    from tasks.needle import MAX_ABSENT, MIN_CONTEXT_TOKENS

    if cfg.suite == "needle" and cfg.context_tokens < MIN_CONTEXT_TOKENS:
        raise UsageError(f"--context-tokens must be >= {MIN_CONTEXT_TOKENS} for the needle suite, "
                         f"got {cfg.context_tokens}")
    if isinstance(cfg.absent, bool) or not isinstance(cfg.absent, int) or not 0 <= cfg.absent <= MAX_ABSENT:
        raise UsageError(f"--absent must be an integer in [0, {MAX_ABSENT}], got {cfg.absent!r}")
    if cfg.balance not in (True, False, None):
        raise UsageError(f"--balance must be true or false, got {cfg.balance!r}")
    if cfg.balance and cfg.suite != "needle":
        raise UsageError(f"--balance applies to generated suites (needle) only; suite {cfg.suite!r} "
                         "has fixed answers: use --balance false")
    if cfg.depth is not None and (not isinstance(cfg.depth, list) or not cfg.depth or any(
            isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 1 for d in cfg.depth)):
        raise UsageError(f"--depth must list needle depths in [0, 1], e.g. 0.1,0.5,0.9, got {cfg.depth!r}")
    if not isinstance(cfg.k_sweep, list) or not cfg.k_sweep:
        raise UsageError("--k-sweep must list at least one k, e.g. 2,4,8,16")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in cfg.k_sweep):
        raise UsageError(f"--k-sweep values must be integers >= 1, got {cfg.k_sweep}")
    if cfg.attack not in available_attacks():
        raise UsageError(unknown_name_message("attack", cfg.attack, available_attacks()))
    spec = get_attack(cfg.attack)
    try:
        spec.make_config(**cfg.attack_values())
    except SettingError as exc:  # every attack setting is a flag: name it
        raise UsageError(f"{_flag(exc.name)} {exc.problem}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from sparse import available_sparse_methods, make_settings

    if cfg.method not in available_sparse_methods():
        raise UsageError(unknown_name_message("sparse method", cfg.method, available_sparse_methods()))
    if not isinstance(cfg.method_options, dict):
        raise UsageError(f"method settings must be a mapping of setting: value, got {cfg.method_options!r}")
    try:
        make_settings(cfg.method, cfg.method_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from sparse import get_sparse_method

    if get_sparse_method(cfg.method).is_kv and (cfg.sink_blocks or cfg.local_blocks):
        raise UsageError(f"--sink-blocks and --local-blocks apply to block-sparse methods; {cfg.method!r} is a "
                         "kv-cache method (its own settings keep sink or recent tokens)")
    from tasks import available_contexts

    if cfg.context not in available_contexts():
        raise UsageError(unknown_name_message("context", cfg.context, available_contexts()))
