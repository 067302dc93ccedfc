"""Typed, strict presets: package defaults < preset file < user file < key=value overrides.

Every layer is checked against the schema below; every problem (unknown key, wrong type, bad
value) is collected with the file it came from, and all of them are reported together.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kohaku_prep.presets
from kohaku_prep import trainer_values
from kohaku_prep.errors import PrepError
from kohaku_prep.tomlout import dumps

# the shipped presets: the top-level presets/ folder, installed as the package kohaku_prep.presets
PRESET_DIR = Path(kohaku_prep.presets.__file__).resolve().parent
LYCORIS_PRESET_DIR = PRESET_DIR / "lycoris"  # network presets read by LyCORIS itself, not by this schema


@dataclass
class ColumnsSection:
    """The name a dump gives each post column where it is not danbooru's own (empty: danbooru's, or
    what the recognised dump layout calls it), e.g. tag_string_general = "general"."""

    id: str = ""
    created_at: str = ""
    rating: str = ""
    fav_count: str = ""
    file_ext: str = ""
    is_deleted: str = ""
    is_banned: str = ""
    md5: str = ""
    file_url: str = ""
    tag_string_general: str = ""
    tag_string_character: str = ""
    tag_string_copyright: str = ""
    tag_string_artist: str = ""
    tag_string_meta: str = ""


@dataclass
class InputSection:
    metadata: str = ""  # a Parquet file, a folder of shards, or a normalized post/tag/posttagrelation folder
    images: str = ""  # danbooru2023 tar shards (searched recursively) or a folder of <id>.<ext> files
    shape: Literal["auto", "flat", "normalized"] = "auto"
    # danbooru's `s` meant *safe* until about May 2022; such dumps need "danbooru-pre2022"
    rating_scheme: Literal["danbooru", "danbooru-pre2022"] = "danbooru"
    # a bad post (null id, unknown rating, tag holding "," or "|||", ...): "fail" stops with a one-line error
    # naming it; "skip" leaves it out and counts it as a stage of the report. Unreadable files, missing or
    # mistyped columns and an empty selection are errors either way.
    bad_metadata: Literal["fail", "skip"] = "fail"
    columns: ColumnsSection = field(default_factory=ColumnsSection)


@dataclass
class Pool:
    start: int = 0
    end: int | None = None  # exclusive; omitted means no upper bound
    take: int | Literal["all"] = "all"


@dataclass
class SelectionSection:
    seed: int = 0
    pools: list[Pool] = field(default_factory=lambda: [Pool()])


@dataclass
class FiltersSection:
    drop_deleted: bool = True
    drop_hidden: bool = True  # is_banned, or md5/file_url null: only Gold accounts could see the file
    image_extensions: list[str] = field(default_factory=lambda: ["jpg", "jpeg", "png", "webp", "bmp"])


@dataclass
class CaptionSection:
    quality: Literal["epsilon", "percentiles", "none"] = "percentiles"
    quality_max_id: int | None = None  # posts above this id get no quality tag
    year_quirks: bool = False  # HakuBooru's: unparseable or pre-2005 -> "early", 2025+ -> none


@dataclass
class OutputSection:
    dir: str = ""
    ids_per_folder: int = 10_000  # sd-scripts does not recurse; one subset folder per id range
    workers: int = 2


@dataclass
class DatasetSection:
    """Values of the sd-scripts dataset TOML (caption_extension and keep_tokens_separator are fixed)."""

    resolution: int = 1024
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int = 4096
    bucket_reso_steps: int = 64
    batch_size: int = 4
    num_repeats: int = 1
    shuffle_caption: bool = True
    caption_tag_dropout_rate: float = 0.0


@dataclass
class ModelSection:
    pretrained: str = ""  # the SDXL base checkpoint (.safetensors)
    vae: str = ""  # optional separate VAE
    tokenizer_cache_dir: str = ""  # offline CLIP tokenizers (kohaku-prep tokenizers DIR); empty: the hub


@dataclass
class NetworkSection:
    module: Literal["lycoris.kohya"] = "lycoris.kohya"
    # a LyCORIS preset file (see find_file); "" for none: LyCORIS then picks modules by its own default
    preset: str = "lycoris/delta_lokr.toml"
    algo: Literal["lokr"] = "lokr"
    dim: int = 10000
    alpha: float = 10000.0
    factor: int = 8
    conv_dim: int = 10000
    conv_alpha: float = 10000.0
    dropout: float = 0.0
    train_norm: bool = True
    train_text_encoder: bool = True


@dataclass
class OptimizerSection:
    type: str = "Lion8bit"
    unet_lr: float = 2e-5
    text_encoder_lr: float = 5e-6
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    max_grad_norm: float = 1.0


@dataclass
class ScheduleSection:
    lr_scheduler: str = "constant_with_warmup"
    warmup_optimizer_steps: int = 1000  # counted in optimizer steps, whatever the number of processes
    epochs: int = 1
    max_steps: int = 0  # 0: the epochs decide; else stop after this many optimizer steps
    gradient_accumulation_steps: int = 1
    seed: int = 1337  # the first part's; part i (from 0) launches with seed + i
    # a run is a chain of launches, each one part of the data: a crash loses at most one part.
    # The most optimizer steps of one part; 0: one part per epoch
    steps_per_part: int = 0


@dataclass
class TrainingSection:
    mixed_precision: Literal["no", "fp16", "bf16"] = "fp16"
    full_fp16: bool = False
    save_precision: Literal["fp16", "bf16", "float"] = "fp16"
    attention: Literal["xformers", "sdpa", "mem_eff_attn", "none"] = "sdpa"
    gradient_checkpointing: bool = True
    min_snr_gamma: float = 0.0
    noise_offset: float = 0.0
    max_token_length: Literal[75, 150, 225] = 225
    max_data_loader_n_workers: int = 8


@dataclass
class SavingSection:
    output_name: str = "lokr"
    # the LoKr of the first part end at or past each multiple is kept (output/<name>-stepNNNNNNNN);
    # 0: only the latest and the final one
    every_n_steps: int = 0
    keep_states: int = 2  # part-end states kept (the latest continues the run; >= 1)


@dataclass
class LaunchSection:
    device: Literal["cuda", "cpu"] = "cuda"
    num_processes: int = 1  # in all, over every machine
    num_machines: int = 1
    machine_rank: int = 0  # the default; command.sh takes MACHINE_RANK from the environment
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 29500
    ddp_timeout_minutes: int = 0  # 0: the trainer's default
    ddp_gradient_as_bucket_view: bool = False


@dataclass
class LoggingSection:
    log_with: Literal["tensorboard", "wandb", "all"] = "tensorboard"
    wandb_run_name: str = ""  # the key comes from WANDB_API_KEY in the environment, never the command


@dataclass
class SamplesSection:
    prompts: str = ""  # a prompt file (see find_file); empty: no samples
    every_n_steps: int = 0
    sampler: str = "euler_a"


@dataclass
class RunSection:
    dataset: str = ""  # a dataset folder built by `kohaku-prep dataset`
    dir: str = ""  # the run folder: config, command, logs, saved states and the LoKr file
    retries: int = 0  # launches of a failed part tried again before the run stops


@dataclass
class Preset:
    input: InputSection = field(default_factory=InputSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    filters: FiltersSection = field(default_factory=FiltersSection)
    caption: CaptionSection = field(default_factory=CaptionSection)
    output: OutputSection = field(default_factory=OutputSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    model: ModelSection = field(default_factory=ModelSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    saving: SavingSection = field(default_factory=SavingSection)
    launch: LaunchSection = field(default_factory=LaunchSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    samples: SamplesSection = field(default_factory=SamplesSection)
    run: RunSection = field(default_factory=RunSection)


# ---------------------------------------------------------------- layering

@dataclass
class Layer:
    name: str  # a file path, or "override"
    data: dict[str, Any]


def read_layer(path: Path) -> Layer:
    try:
        with open(path, "rb") as fh:
            return Layer(str(path), tomllib.load(fh))
    except FileNotFoundError:
        raise PrepError(f"{path}: no such preset file") from None
    except IsADirectoryError:
        raise PrepError(f"{path}: a folder, not a preset file") from None
    except OSError as exc:
        raise PrepError(f"{path}: cannot read the preset file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PrepError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise PrepError(f"{path}: not valid TOML: {exc}") from None


def find_file(name: str) -> Path | None:
    """The one rule for a file named in a command or a preset (a preset, a LyCORIS preset, a prompt file):
    a file at that path wins, so the user's own file is never shadowed; else the shipped file of that name
    (relative to presets/); None when neither exists."""
    given = Path(name)
    if given.is_file():
        return given
    shipped = PRESET_DIR / name
    return shipped if name and not given.is_absolute() and shipped.is_file() else None


def find_preset(name_or_path: str) -> Path:
    """A preset file by path, else a shipped preset by name (`epsilon`) or file name (`epsilon.toml`)."""
    for candidate in (name_or_path, f"{name_or_path}.toml"):
        found = find_file(candidate)
        if found is not None and LYCORIS_PRESET_DIR not in found.resolve().parents:
            return found
    if Path(name_or_path).is_dir():
        raise PrepError(f"{name_or_path}: a folder, not a preset file")
    names = ", ".join(p.stem for p in shipped_presets())
    raise PrepError(f"no preset file '{name_or_path}' and no shipped preset of that name (shipped: {names})")


def shipped_presets() -> list[Path]:
    return sorted(p for p in PRESET_DIR.rglob("*.toml") if LYCORIS_PRESET_DIR not in p.parents)


def shipped_lycoris_presets() -> list[Path]:
    return sorted(LYCORIS_PRESET_DIR.rglob("*.toml"))


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`selection.pools.0.take=500` -> (["selection", "pools", 0, "take"], 500)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise PrepError(f"override '{text}': expected key=value, e.g. selection.seed=7")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words and paths are strings
    return path, value


def dotted(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _merge(into: dict, data: dict, source: str, sources: dict[str, str], prefix: list) -> None:
    for key, value in data.items():
        path = prefix + [key]
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source, sources, path)
        else:
            into[key] = value
            _record_sources(value, path, source, sources)


def _record_sources(value: Any, path: list, source: str, sources: dict[str, str]) -> None:
    sources[dotted(path)] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _record_sources(v, path + [k], source, sources)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record_sources(v, path + [i], source, sources)


def _apply_override(data: dict, path: list[str | int], value: Any) -> Any:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise PrepError(f"override {dotted(path)}: no element {part} in {dotted(path[:i])}")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise PrepError(f"override {dotted(path)}: {dotted(path[:i])} is not a table")
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise PrepError(f"override {dotted(path)}: no element {last}")
        old, node[last] = node[last], value
    else:
        if not isinstance(node, dict):
            raise PrepError(f"override {dotted(path)}: {dotted(path[:-1])} is not a table")
        old, node[last] = node.get(last), value
    return old


@dataclass
class Resolved:
    preset: Preset
    layers: list[str]  # where each layer came from, lowest first
    overrides: list[str]  # one printable line per override

    def to_toml(self) -> str:
        header = "\n".join(["The resolved preset: package defaults, then each layer below, then the overrides.",
                            *[f"layer: {name}" for name in self.layers], *self.overrides])
        return dumps(to_dict(self.preset), header)


def resolve(preset_file: Path | None, user_file: Path | None = None, overrides: Sequence[str] = ()) -> Resolved:
    merged = to_dict(Preset())
    sources: dict[str, str] = {}
    _record_sources(merged, [], "package defaults", sources)
    layer_names = ["package defaults"]
    for layer_file in (preset_file, user_file):
        if layer_file is not None:
            layer = read_layer(layer_file)
            _merge(merged, layer.data, layer.name, sources, [])
            layer_names.append(layer.name)
    printed = []
    for text in overrides:
        path, value = parse_override(text)
        old = _apply_override(merged, path, value)
        _record_sources(value, path, "override", sources)
        printed.append(f"override {dotted(path)} = {_show(value)} (was {_show(old)})")
    errors: list[str] = []
    preset = _build(Preset, merged, [], sources, errors)
    if not errors:
        errors.extend(check_values(preset))
    if len(errors) == 1:
        raise PrepError(errors[0])
    if errors:
        raise PrepError(f"{len(errors)} problem(s) in the preset:\n  " + "\n  ".join(errors))
    return Resolved(preset, layer_names, printed)


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)


# ---------------------------------------------------------------- typed build

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"an array of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]


def _convert(tp: Any, value: Any, path: list, sources: dict, errors: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, path, sources, errors)
    elif origin is Literal:
        if value in typing.get_args(tp) and type(value) is not bool:
            return value
    elif origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            trial: list[str] = []
            out = _convert(option, value, path, sources, trial)
            if not trial:
                return out
    elif origin is list:
        if isinstance(value, list):
            (item_tp,) = typing.get_args(tp)
            return [_convert(item_tp, v, path + [i], sources, errors) for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    errors.append(f"{_source(path, sources)}: '{dotted(path)}' must be {_type_name(tp)}, got {value!r}")
    return None


def _source(path: list, sources: dict[str, str]) -> str:
    for cut in range(len(path), 0, -1):
        if dotted(path[:cut]) in sources:
            return sources[dotted(path[:cut])]
    return "preset"


def _build(cls: type, data: dict, path: list, sources: dict, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in hints:
            near = difflib.get_close_matches(key, known, n=1)
            fix = f"did you mean '{dotted(path + [near[0]])}'?" if near else f"known keys: {', '.join(known)}"
            errors.append(f"{_source(path + [key], sources)}: unknown key '{dotted(path + [key])}'; {fix}")
    kwargs = {}
    for name in known:
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], path + [name], sources, errors)
    return cls(**kwargs)


def check_values(p: Preset) -> list[str]:
    """Checks across fields that types alone cannot express."""
    errors = []
    d = p.dataset
    if d.bucket_reso_steps < 32 or d.bucket_reso_steps % 32:
        errors.append(f"dataset.bucket_reso_steps = {d.bucket_reso_steps}: SDXL needs a positive multiple of 32")
    if not d.min_bucket_reso <= d.resolution <= d.max_bucket_reso:
        errors.append("dataset: need min_bucket_reso <= resolution <= max_bucket_reso")
    if not 0.0 <= d.caption_tag_dropout_rate < 1.0:
        errors.append("dataset.caption_tag_dropout_rate must be in [0, 1)")
    if not d.shuffle_caption and d.caption_tag_dropout_rate == 0.0:
        errors.append("dataset: with shuffle_caption = false and no tag dropout, sd-scripts leaves the "
                      "'|||' separator in the text it tokenizes; turn one of them on")
    if d.batch_size < 1 or d.num_repeats < 1:
        errors.append("dataset: batch_size and num_repeats must be at least 1")
    if p.output.ids_per_folder < 1 or p.output.workers < 1:
        errors.append("output: ids_per_folder and workers must be at least 1")
    pools = sorted(p.selection.pools, key=lambda q: q.start)
    for i, pool in enumerate(pools):
        name = f"selection.pools ({pool.start}, {pool.end})"
        if pool.end is not None and pool.end <= pool.start:
            errors.append(f"{name}: end must be greater than start")
        if isinstance(pool.take, int) and pool.take < 0:
            errors.append(f"{name}: take must be 'all' or a count >= 0")
        if i + 1 < len(pools) and (pool.end is None or pool.end > pools[i + 1].start):
            errors.append(f"{name} overlaps the pool starting at {pools[i + 1].start}")
    if not p.selection.pools:
        errors.append("selection.pools is empty: nothing could be selected")
    return errors + check_training_values(p)


def _out_of_range(key: str, value: float, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, also: tuple = ()) -> str | None:
    """`key = value: must be in <range>` when value is outside it (or not finite), else None."""
    if value in also:
        return None
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return None
    if low is not None and high is not None:
        wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        wanted = f"{'>' if low_open else '>='} {low:g}"
    else:
        wanted = f"{'<' if high_open else '<='} {high:g}"
    extra = f" or {', '.join(map(str, also))}" if also else ""
    return f"{key} = {value!r}: must be {wanted}{extra}"


def check_training_values(p: Preset) -> list[str]:
    errors = []
    t, la, s, n, o = p.training, p.launch, p.schedule, p.network, p.optimizer
    if t.full_fp16 and t.mixed_precision != "fp16":
        errors.append("training.full_fp16 needs training.mixed_precision = \"fp16\" (sd-scripts asserts it)")
    if la.num_processes < 1 or la.num_machines < 1 or la.num_processes % la.num_machines:
        errors.append("launch.num_processes must be a positive multiple of launch.num_machines")
    if not 0 <= la.machine_rank < la.num_machines:
        errors.append("launch.machine_rank must be in [0, launch.num_machines)")
    if la.device == "cpu" and (la.num_processes > 1 or t.mixed_precision == "fp16"):
        errors.append("launch.device = \"cpu\" runs one process without fp16 (the fp16 scaler needs a GPU)")
    if s.gradient_accumulation_steps < 1 or s.epochs < 1 or s.warmup_optimizer_steps < 0 or s.max_steps < 0:
        errors.append("schedule: gradient_accumulation_steps and epochs must be >= 1, warmup and max_steps >= 0")
    if len(o.betas) != 2:
        errors.append("optimizer.betas must hold two numbers")
    if p.samples.prompts and p.samples.every_n_steps < 1:
        errors.append("samples.every_n_steps must be >= 1 when samples.prompts is set")
    if not p.saving.output_name or p.saving.every_n_steps < 0 or p.saving.keep_states < 1:
        errors.append("saving: output_name must be set, every_n_steps >= 0 and keep_states >= 1")
    if s.steps_per_part < 0 or p.run.retries < 0:
        errors.append("schedule.steps_per_part and run.retries must be >= 0")
    elif "/" in p.saving.output_name or p.saving.output_name in (".", ".."):
        errors.append(f"saving.output_name = {p.saving.output_name!r}: a file name, not a path (the files go "
                      "into run.dir/output)")
    # what the trainer would reject late, or silently misuse
    problem = trainer_values.optimizer_problem(o.type)
    if problem:
        errors.append(f"optimizer.type = {problem}")
    if s.lr_scheduler not in trainer_values.SCHEDULERS:
        near = difflib.get_close_matches(s.lr_scheduler, trainer_values.SCHEDULERS, n=1)
        errors.append(f"schedule.lr_scheduler = {s.lr_scheduler!r}: not a scheduler this run can use"
                      f"{'; did you mean ' + repr(near[0]) + '?' if near else ''} (one of "
                      f"{', '.join(trainer_values.SCHEDULERS)})")
    elif s.lr_scheduler in trainer_values.NO_WARMUP_SCHEDULERS and s.warmup_optimizer_steps:
        errors.append(f"schedule.lr_scheduler = {s.lr_scheduler!r} takes no warmup (sd-scripts raises): use "
                      "\"constant_with_warmup\" or schedule.warmup_optimizer_steps = 0")
    samplers = trainer_values.choices("sample_sampler")
    if p.samples.sampler not in samplers:
        near = difflib.get_close_matches(p.samples.sampler, samplers, n=1)
        errors.append(f"samples.sampler = {p.samples.sampler!r}: not a sampler of the trainer"
                      f"{'; did you mean ' + repr(near[0]) + '?' if near else ''} (one of {', '.join(samplers)})")
    for key, name in (("network.preset", n.preset), ("samples.prompts", p.samples.prompts)):
        if name and find_file(name) is None:
            errors.append(f"{key} = {name!r}: no such file, here or among the shipped presets")
    ranges = [
        _out_of_range("optimizer.unet_lr", o.unet_lr, 0, low_open=True),
        _out_of_range("optimizer.text_encoder_lr", o.text_encoder_lr, 0),
        _out_of_range("optimizer.weight_decay", o.weight_decay, 0),
        *[_out_of_range(f"optimizer.betas[{i}]", b, 0, 1, high_open=True) for i, b in enumerate(o.betas)],
        _out_of_range("optimizer.max_grad_norm", o.max_grad_norm, 0),
        _out_of_range("network.dim", n.dim, 1),
        _out_of_range("network.alpha", n.alpha, 0, low_open=True),
        _out_of_range("network.factor", n.factor, 1, also=(-1,)),  # -1: LyCORIS picks the split
        _out_of_range("network.conv_dim", n.conv_dim, 0),
        _out_of_range("network.conv_alpha", n.conv_alpha, 0, low_open=True),
        _out_of_range("network.dropout", n.dropout, 0, 1, high_open=True),
        _out_of_range("schedule.seed", s.seed, 0, 2**32 - 1),  # numpy's seed range (the trainer seeds numpy)
        _out_of_range("training.min_snr_gamma", t.min_snr_gamma, 0),
        _out_of_range("training.noise_offset", t.noise_offset, 0),
        _out_of_range("training.max_data_loader_n_workers", t.max_data_loader_n_workers, 0),
        _out_of_range("samples.every_n_steps", p.samples.every_n_steps, 0),
        _out_of_range("launch.main_process_port", la.main_process_port, 1, 65535),
        _out_of_range("launch.ddp_timeout_minutes", la.ddp_timeout_minutes, 0),
        _out_of_range("dataset.resolution", p.dataset.resolution, 64),
        _out_of_range("dataset.min_bucket_reso", p.dataset.min_bucket_reso, 64),
    ]
    return errors + [r for r in ranges if r]


# ---------------------------------------------------------------- output

def to_dict(obj: Any) -> Any:
    """Plain data for TOML: unset optional values are left out (TOML has no null)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj
