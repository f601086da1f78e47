"""Configuration: the default luigi.cfg shipped with the package, its sections, and where each value comes from.

`[dataset] videos=DIR` (class DatasetConfig) is `--dataset-videos DIR` for any task, and so on: each class names
its section (_Section). Values read from a luigi.Config are not part of a task's identity, so the dataset's
identity (paths, file sizes and mtimes) is hashed into every artifact path explicitly (see pipeline.dataset).

Files read, lowest priority first: the package's pipeline/luigi.cfg, luigi's own (/etc/luigi/luigi.cfg,
./luigi.cfg), then $LUIGI_CONFIG_PATH; the command line overrides them all.
"""
from __future__ import annotations

import configparser
from pathlib import Path

import luigi

DEFAULT_CONFIG = Path(__file__).with_name("luigi.cfg")


def use_package_defaults() -> None:
    """Read the shipped luigi.cfg first, so any other file luigi reads overrides it (idempotent).

    luigi only appends paths (add_config_path gives the highest priority), so the default goes to the front of
    the parser's path list and the files are re-read in order.
    """
    from luigi.configuration import LuigiConfigParser

    paths = LuigiConfigParser._config_paths  # luigi 3.8: class-level list, read in order by reload()
    if str(DEFAULT_CONFIG) not in paths:
        paths.insert(0, str(DEFAULT_CONFIG))
        LuigiConfigParser.reload()


def config_files() -> list[Path]:
    """The configuration files luigi reads, lowest priority first, that exist."""
    from luigi.configuration import LuigiConfigParser

    use_package_defaults()
    return [Path(p).resolve() for p in LuigiConfigParser._config_paths if Path(p).is_file()]


def resolved_config() -> list[dict]:
    """Every configured value and every parameter of this package's tasks and sections, resolved:
    [{"section", "key", "value", "source"}]; source is the file that set it last, or "default" (the parameter's
    default in the code). [detectors] used_recipe is the recipe the run's detectors use (auto resolved)."""
    from luigi.task_register import Register

    parser = luigi.configuration.get_config()
    source: dict[tuple[str, str], str] = {}
    for file in config_files():
        raw = configparser.ConfigParser(interpolation=None)
        raw.read(file)
        for section in raw.sections():
            for key in raw[section]:
                source[(section, key.replace("-", "_"))] = str(file)
    rows = {(sec, key): {"section": sec, "key": key, "value": parser.get(sec, key, raw=True), "source": src}
            for (sec, key), src in source.items() if parser.has_option(sec, key)}
    for name in sorted(Register.task_names()):
        cls = Register.get_task_cls(name)
        concrete = cls.run is not luigi.Task.run or (issubclass(cls, luigi.Config) and not name.startswith("_"))
        if not cls.__module__.startswith("pipeline.") or not concrete:  # shared bases are listed by their tasks
            continue
        for key, param in cls.get_params():
            if (name, key) not in rows and param._default is not luigi.parameter._no_value:
                rows[(name, key)] = {"section": name, "key": key, "value": param.serialize(param._default),
                                     "source": "default"}
    # The recipe the detectors of this run train with, auto resolved (a report, not a setting of its own).
    used = detector_recipe()
    why = ("[detectors] recipe" if DetectorsConfig().recipe != "auto" else
           "auto: your dataset (videos or features given)" if used == "published" else
           "auto: the built-in synthetic dataset")
    rows[("detectors", "used_recipe")] = {"section": "detectors", "key": "used_recipe", "value": used, "source": why}
    return sorted(rows.values(), key=lambda r: (r["section"].lower(), r["key"]))


class _Section(luigi.Config):
    """A luigi.Config read from [<section>] and --<section>-<key>, whatever the class is called.

    luigi names a Config's section, its command-line prefix and its registry entry after get_task_family() (the
    class name by default): returning `section` keeps luigi.cfg's lowercase names while the classes are named
    like classes (a class `dataset` would sit next to the module pipeline.dataset, one named `dask` would shadow
    the dask package).
    """

    section = ""

    @classmethod
    def get_task_family(cls) -> str:
        return cls.section or super().get_task_family()


class DatasetConfig(_Section):
    section = "dataset"
    videos = luigi.Parameter(default="", description="folder of <video_id>.<ext> files; empty: synthetic dataset")
    annotations = luigi.Parameter(default="", description="annotation file (ActivityNet/ActionFormer JSON or G-TAD "
                                                          "CSV)")
    train_subset = luigi.Parameter(default="", description="subset used for training (case-insensitive; empty: the "
                                                           "preset's, thumos14 train, anet training)")
    test_subset = luigi.Parameter(default="", description="subset used for evaluation (case-insensitive; empty: "
                                                          "the preset's, thumos14 test, anet validation)")
    features = luigi.Parameter(default="", description="precomputed features (.npy folder or HDF5); skips frames+I3D")
    preset = luigi.ChoiceParameter(default="thumos14", choices=["thumos14", "anet"],
                                   description="recipe defaults (stages/presets.py): thumos14 (native inputs) or "
                                               "anet (inputs resized to 192 steps, class-agnostic detection + video "
                                               "classes, tIoU 0.5:0.05:0.95, Soft-NMS 0.75, 100 detections)")


class PathsConfig(_Section):
    section = "paths"
    workdir = luigi.Parameter(default="runs", description="where every artifact is written")


class SyntheticConfig(_Section):
    section = "synthetic"
    videos = luigi.IntParameter(default=16)
    seed = luigi.IntParameter(default=0)
    duration = luigi.FloatParameter(default=40.0, description="mean video duration in seconds")
    size = luigi.IntParameter(default=128, description="frame size of the written mp4 files")


class DaskConfig(_Section):
    section = "dask"
    scheduler = luigi.Parameter(default="threads", description="threads | processes | synchronous | tcp://host:port")
    workers = luigi.IntParameter(default=0, description="videos processed at once (0: one per core)")


class DetectorsConfig(_Section):
    section = "detectors"
    recipe = luigi.ChoiceParameter(default="auto", choices=["auto", "published", "small"],
                                   description="detector recipes (stages/detectors/recipes.py): published (each "
                                               "reference's THUMOS14 / ActivityNet config), small (small-data "
                                               "recipes), auto: published on videos or features you give, small on "
                                               "the built-in synthetic dataset")


class _DetectorSettings(_Section):
    """One detector's settings: JSON objects over its defaults, part of every TrainDetector artifact hash."""

    model = luigi.DictParameter(default={}, description="constructor options of the detector (models/<detector>)")
    train = luigi.DictParameter(default={}, description="training settings (stages.detectors.training.DEFAULT_TRAIN "
                                                        "keys)")
    fusion = luigi.DictParameter(default={}, description="+BAPG fusion settings: models.fusion.BAPGFusion options "
                                                         "(hidden, channel_dropout, input_dropout, lr_scale; "
                                                         "extensions, off by default: gate, gate_penalty, "
                                                         "gate_lr_scale, gate_threshold, rank_normalise)")


DETECTOR_SETTINGS: dict[str, type[_DetectorSettings]] = {}  # section name -> class (pipeline.detectors registers)


def detector_section(name: str) -> type[_DetectorSettings]:
    """The configuration section [name] of a detector (model, train and fusion JSON; --<name>-train '{...}'),
    made once when the detector is registered (pipeline.detectors.register_detector)."""
    if name not in DETECTOR_SETTINGS:
        DETECTOR_SETTINGS[name] = type(f"{name.title().replace('_', '')}Settings", (_DetectorSettings,),
                                       {"section": name, "__module__": __name__})
    return DETECTOR_SETTINGS[name]


def dataset_preset():
    """The configured dataset preset ([dataset] preset, --dataset-preset): a stages.presets.Preset."""
    from tal_pipeline.stages.presets import get_preset

    return get_preset(DatasetConfig().preset)


def detector_recipe() -> str:
    """The detector recipe this run uses ([detectors] recipe, --detectors-recipe): auto is published when the
    dataset is the user's (videos or features given) and small on the built-in synthetic dataset."""
    recipe = DetectorsConfig().recipe
    if recipe != "auto":
        return recipe
    data = DatasetConfig()
    return "published" if (data.videos or data.features) else "small"


def detector_settings(name: str) -> dict:
    """{"model", "train", "fusion", "recipe", "post"} of detector `name`: the recipe's model options and training
    settings (stages.detectors.recipes; small: the dataset preset's training settings, thumos14 adds none) under
    the detector's own JSON from luigi.cfg / the command line; post: the recipe's Detect settings."""
    from pipeline.hashing import plain
    from tal_pipeline.stages.detectors.recipes import recipe_entry

    section = DETECTOR_SETTINGS[name]()
    recipe = detector_recipe()
    entry = recipe_entry(recipe, dataset_preset(), name)
    return {"model": {**entry["model"], **plain(section.model)}, "train": {**entry["train"], **plain(section.train)},
            "fusion": plain(section.fusion), "recipe": recipe, "post": entry["post"]}
