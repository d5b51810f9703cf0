"""`make demo`: every stage of the system on the embedded toy catalog, then ``runs/demo/report.md``.

    python -m toycatalog demo                       # the whole demo (what make demo runs)
    python -m toycatalog demo --only tagger         # one stage again, the stages it needs reused
    python -m toycatalog demo --set tagger.trainer.max_epochs=5   # a changed config: what it touches re-runs
    python -m toycatalog demo --preset tiny --data /tmp/d --out /tmp/r   # the 40-track catalog, minutes

Each stage is the commands a user would type (``python train.py fit``, ``python -m fusion ablation``,
``coldtag annotate`` ...), run in this process, and a few steps of the demo's own (the uploads folder, the
recommendations, the report). A stage is keyed by a hash of its commands, the contents of the configs
they read and the keys of the stages it needs; ``OUT/stages/<stage>.json`` records the key it last
finished with, so a re-run reuses every stage whose key is unchanged, and re-runs a changed one and
those after it that need it. A stage that fails is named, with the command that failed and the one that
runs the stage alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from coldtag.storage import atomic_write, write_json
from tagging.runs import point_outputs_at, split_setting

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
STATE = "stages"
# The toy's traits that live in time rather than in the average spectrum, which the baseline cannot see.
TEMPORAL = ("odd_meter", "triple_meter", "swing", "syncopation", "tempo")


@dataclass(frozen=True)
class Preset:
    """How big the demo is: the toy catalog's preset, and the changes each training config gets (dotted
    keys, as ``--set``), the hidden-taste share of the second listening world, the uploads and resamples."""

    catalog: str
    changes: dict[str, dict[str, object]] = field(default_factory=dict)
    hidden_taste: float = 0.5
    uploads: int = 12
    resamples: int = 1000


PRESETS = {
    "demo": Preset("demo"),
    # Minutes on 2 cores: a smoke run of every stage and of the report, not results.
    "tiny": Preset("tiny", {"tagger": {"trainer.max_epochs": 1}, "multimodal": {"trainer.max_epochs": 2},
                            "fusion": {"trainer.max_epochs": 3}, "audio": {"trainer.max_epochs": 1}},
                   uploads=4, resamples=50),
}
# The training configs the demo reads (configs/), by the name --set uses for them.
BASE_CONFIGS = {"tagger": "tagger_demo.yaml", "multimodal": "multimodal_demo.yaml", "fusion": "fusion_demo.yaml",
                "audio": "fusion_audio_demo.yaml"}


@dataclass
class Command:
    """One command line as a user types it: ``program`` is ``coldtag``, ``-m <module>`` or a script of the
    repository; run here in this process."""

    program: str
    args: list[str]

    def shell(self) -> str:
        head = {"coldtag": ["coldtag"]}.get(self.program) or ["python", *self.program.split(" ", 1)]
        return shlex.join([*head, *self.args])

    def run(self) -> int:
        argv = list(self.args)
        saved = sys.argv
        with warnings.catch_warnings():
            # Commands that call LightningCLI with their own args see this process's argv: theirs, by design.
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            # A module run again as __main__ after an earlier stage imported it: nothing of it is reused.
            warnings.filterwarnings("ignore", message=".*found in sys.modules after import of package.*")
            return self._run(argv, saved)

    def _run(self, argv: list[str], saved: list[str]) -> int:
        try:
            if self.program == "coldtag":  # the console script
                from annotation.cli import main as coldtag

                sys.argv = ["coldtag", *argv]
                coldtag(argv)
            elif self.program.startswith("-m "):
                module = self.program[3:]
                sys.argv = [module, *argv]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                sys.argv = [self.program, *argv]
                runpy.run_path(str(ROOT / self.program), run_name="__main__")
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            sys.argv = saved
        return 0


@dataclass
class Stage:
    """A step of the demo: its ``commands``, then its own ``step`` (a function of the demo), finished when
    ``done`` exists (each stage writes it last). ``configs``: files the commands read whose contents key the
    stage; ``clear``: what a re-run removes first; ``settings``: anything else that keys it."""

    name: str
    what: str
    needs: tuple[str, ...]
    done: Path
    commands: list[Command] = field(default_factory=list)
    step: Callable[[], None] | None = None
    configs: tuple[Path, ...] = ()
    clear: tuple[Path, ...] = ()
    settings: dict = field(default_factory=dict)


class StageFailed(RuntimeError):
    pass


class Demo:
    """The stages of one demo run: the catalog in ``data``, everything else in ``out``."""

    def __init__(self, preset: str = "demo", data: Path = Path("data/demo"), out: Path = Path("runs/demo"),
                 changes: list[str] | tuple[str, ...] = (), seed: int = 0):
        if preset not in PRESETS:
            raise ValueError(f"--preset {preset!r}: choose from {sorted(PRESETS)}")
        self.preset, self.data, self.out, self.seed = PRESETS[preset], Path(data), Path(out), seed
        self.preset_name = preset
        self.changes = parse_changes(changes)
        self.started = time.perf_counter()
        self.stages = self._stages()

    # The stages, in the order they run.
    def _stages(self) -> list[Stage]:
        d, r, p = self.data, self.out, self.preset
        manifest, catalog_manifest = r / "manifest.parquet", d / "manifest.parquet"
        configs = {name: r / "configs" / f"{name}.yaml" for name in BASE_CONFIGS}
        hidden = r / "hidden-world"
        # One torch thread a world: the two worlds' ablations run side by side (`Demo.run`).
        configs_args = ["--fusion-config", str(configs["fusion"]), "--audio-config", str(configs["audio"]),
                        "--threads", "1"]
        ablation = ["--manifest", str(manifest), "--features", str(r / "features.npz"), "--genome", "attribute",
                    "graded", *configs_args, "--resamples", str(p.resamples)]
        # The end-to-end audio rows read no features: their own stages train them beside the tagger, and the
        # ablations reuse them (the demo's longest runs, started as soon as each world has its factors).
        audio_rows = ["ablation", "--audio-only", "--manifest", str(manifest), *configs_args]
        from toycatalog import report

        return [
            Stage("catalog", "the toy catalog: audio, lyrics, covers, labels and listeners", (),
                  catalog_manifest,
                  [Command("-m toycatalog", ["build", "--preset", p.catalog, "--seed", str(self.seed), "--out",
                                             str(d), "--overwrite"])]),
            Stage("factors", "WMF factors of the warm tracks, fold-in factors of the cold ones, the baselines; the "
                  "warm tracks dealt by artist between the tagger and the fusion stage", ("catalog",), manifest,
                  [Command("-m recsys", ["coldstart", "--catalog", str(d), "--out", str(r / "recsys")]),
                   Command("-m fusion", ["split", "--manifest", str(catalog_manifest), "--recsys", str(r / "recsys"),
                                         "--artist-col", "artist_id", "--out", str(manifest)])],
                  clear=(r / "recsys", manifest)),
            Stage("hidden-factors", f"a second listening world: {p.hidden_taste:.0%} of the listeners' taste on audio "
                  "traits the vocabulary does not list; its plays and factors", ("catalog",),
                  hidden / "recsys" / "coldstart.npz",
                  [Command("-m toycatalog", ["plays", "--catalog", str(d), "--hidden-taste", str(p.hidden_taste),
                                             "--out", str(hidden / "plays.parquet")]),
                   Command("-m recsys", ["coldstart", "--plays", str(hidden / "plays.parquet"), "--user-col",
                                         "user_id", "--item-col", "track_id", "--count-col", "plays", "--manifest",
                                         str(catalog_manifest), "--split-col", "item_split", "--artist-col",
                                         "artist_id", "--out", str(hidden / "recsys")])],
                  clear=(hidden / "recsys",)),
            Stage("tagger", "the audio tagger on its share of the warm tracks, tested, beside the log-mel "
                  "statistics baseline", ("factors",), r / "tagger" / "tagger_vs_baseline.md",
                  [Command("-m tagging", ["baseline", "--manifest", str(manifest), "--out", str(r / "baseline.json")]),
                   Command("train.py", ["fit", "--config", str(configs["tagger"])]),
                   Command("train.py", ["test", "--config", str(configs["tagger"]), "--ckpt_path",
                                        str(r / "tagger" / "checkpoints" / "best.ckpt")]),
                   Command("-m tagging", ["evaluate", "baseline", "--tagger", str(r / "tagger" / "test_scores.json"),
                                                   "--baseline", str(r / "baseline.json"), "--out",
                                                   str(r / "tagger"), "--labels", *TEMPORAL])],
                  configs=(configs["tagger"],), clear=(r / "tagger",)),
            Stage("audio", "the end-to-end audio CNN's rows of the ablation (audio -> factors), in the catalog's "
                  "listening world", ("factors",), r / "fusion" / "audio_rows.json",
                  [Command("-m fusion", [*audio_rows, "--recsys", str(r / "recsys"), "--out", str(r / "fusion")])],
                  configs=(configs["audio"],)),
            Stage("hidden-audio", "the end-to-end audio CNN's rows in the second listening world",
                  ("factors", "hidden-factors"), hidden / "fusion" / "audio_rows.json",
                  [Command("-m fusion", [*audio_rows, "--recsys", str(hidden / "recsys"), "--out",
                                         str(hidden / "fusion")])],
                  configs=(configs["audio"],)),
            Stage("features", "every track's content features: the tagger's embedding and scores, lyrics (MiniLM) "
                  "and cover (EfficientNet-Lite0)", ("tagger",), r / "features.npz",
                  [Command("-m tagging", ["features", "--manifest", str(catalog_manifest), "--tagger",
                                                   str(r / "tagger" / "model"), "--out", str(r / "features.npz")])]),
            Stage("multimodal", "the tagger of audio, lyrics and cover features, alone and fused",
                  ("features",), r / "multimodal" / "modalities.md",
                  [Command("train.py", ["fit", "--config", str(configs["multimodal"])]),
                   Command("-m tagging", ["evaluate", "modalities", "--model", str(r / "multimodal" / "model"),
                                                   "--manifest", str(manifest), "--split-column", "fusion_split",
                                                   "--features", str(r / "features.npz"), "--out",
                                                   str(r / "multimodal"), "--resamples", str(p.resamples)])],
                  configs=(configs["multimodal"],), clear=(r / "multimodal",)),
            Stage("ablation", "content -> factors, every row of the paper's table, in the catalog's listening "
                  "world (taste on the traits the vocabulary lists)", ("features", "audio"), r / "fusion" / "table.md",
                  [Command("-m fusion", ["ablation", *ablation, "--recsys", str(r / "recsys"), "--out",
                                         str(r / "fusion")])],
                  configs=(configs["fusion"], configs["audio"])),
            Stage("hidden-world", "the same rows in the second listening world", ("features", "hidden-audio"),
                  hidden / "fusion" / "table.md",
                  [Command("-m fusion", ["ablation", *ablation, "--recsys", str(hidden / "recsys"), "--out",
                                         str(hidden / "fusion")])],
                  configs=(configs["fusion"], configs["audio"])),
            Stage("controls", "listener controls: accuracy against coverage, long tail and artist exposure",
                  ("features",), r / "listener_controls.md",
                  [Command("scripts/listener_controls.py", ["--run", str(r), "--data", str(d), "--resamples",
                                                            str(p.resamples), "--out",
                                                            str(r / "listener_controls.md")])]),
            Stage("pipeline", "the packaged cold-start pipeline: tagger, multimodal tagger, the best content row "
                  "a new track can run, the recommender", ("multimodal", "ablation"), r / "pipeline" / "pipeline.json",
                  [Command("-m fusion", ["package", "--tagger", str(r / "tagger" / "model"), "--multimodal",
                                         str(r / "multimodal" / "model"), "--recsys", str(r / "recsys"),
                                         "--ablation", str(r / "fusion"), "--out", str(r / "pipeline")])],
                  clear=(r / "pipeline",)),
            Stage("uploads", "a folder of new tracks nobody has played (cold-test tracks, in several formats, "
                  "with their lyrics and covers), and a few bad files", ("catalog",), r / "uploads" / "README.txt",
                  step=lambda: report.make_uploads(d, r / "uploads", p.uploads, self.seed),
                  clear=(r / "uploads",), settings={"uploads": p.uploads}),
            Stage("annotate", "coldtag annotate on the uploads with the pipeline: tags, factors, listeners and "
                  "similar tracks of each, an error for each bad file", ("pipeline", "uploads"),
                  r / "annotate" / "summary.json",
                  [Command("coldtag", ["annotate", str(r / "uploads"), "--model", str(r / "pipeline"), "--out",
                                       str(r / "annotate"), "--no-progress"])],
                  clear=(r / "annotate",)),
            Stage("recommend", "cold-start recommendations with explanations for the uploads", ("annotate",),
                  r / "recommendations.md", step=lambda: report.write_recommendations(d, r)),
            Stage("report", "runs/demo/report.md and its plots", ("tagger", "multimodal", "ablation", "hidden-world",
                                                                 "controls", "recommend"),
                  r / "report.md", step=lambda: report.write_report(self)),
        ]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"no stage {name!r}; the stages: {', '.join(s.name for s in self.stages)}")

    def write_configs(self) -> None:
        """``OUT/configs/<name>.yaml``: the repository's demo configs with their paths under OUT, the preset's
        changes and ``--set``'s. Rewritten every run (unchanged bytes keep a stage's key)."""
        changes = {name: {**self.preset.changes.get(name, {}), **self.changes.get(name, {})} for name in BASE_CONFIGS}
        for name, base in BASE_CONFIGS.items():
            config = yaml.safe_load((CONFIGS / base).read_text())
            if name in ("tagger", "multimodal"):
                config = point_outputs_at(config, self.out / name)
                data = config["data"]["init_args"]
                data["manifest"] = str(self.out / "manifest.parquet")
                if name == "multimodal":
                    data["features"] = str(self.out / "features.npz")
                    data["split_column"] = "fusion_split"
            config["seed_everything"] = self.seed
            for key, value in changes[name].items():
                set_dotted(config, key, value, f"{name}.{key}")
            path = self.out / "configs" / f"{name}.yaml"
            text = (f"# configs/{base} as the demo runs it (python -m toycatalog demo): paths under {self.out}, "
                    f"preset {self.preset_name}\n" + yaml.safe_dump(config, sort_keys=False))
            if not path.is_file() or path.read_text() != text:
                atomic_write(path, text)

    def key(self, stage: Stage, keys: dict[str, str]) -> str:
        content = {"stage": stage.name, "commands": [c.shell() for c in stage.commands],
                   "configs": {str(p): p.read_text() for p in stage.configs}, "settings": stage.settings,
                   "needs": {n: keys[n] for n in stage.needs}}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def state(self, stage: Stage) -> dict | None:
        path = self.out / STATE / f"{stage.name}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        for stage in self.stages:
            keys[stage.name] = self.key(stage, keys)
        return keys

    def finished(self, stage: Stage, key: str) -> dict | None:
        """The stage's record when it last finished with ``key`` and its output is still there."""
        state = self.state(stage)
        return state if state is not None and state.get("key") == key and stage.done.exists() else None

    def run_only(self, names: list[str]) -> list[dict]:
        """Run the stages ``names`` again, in this process, in order; the stages they need must have finished."""
        for name in names:
            self.stage(name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        keys = self.keys()
        missing = [s.name for s in self.stages if s.name not in names and s.name in set().union(
            *(self._needed_by(n) for n in names)) and self.finished(s, keys[s.name]) is None]
        if missing:
            raise StageFailed(f"{', '.join(names)} needs {', '.join(missing)}, not finished with these settings: "
                              "run python -m toycatalog demo" + self._cli_tail())
        return [self._run_stage(s, keys[s.name]) for s in self.stages if s.name in names]

    def run(self, jobs: int = 1) -> list[dict]:
        """Every stage whose key changed, in order in this process when ``jobs`` is 1, else each in a process of
        its own (``--only``, its output in ``OUT/logs/<stage>.log``), up to ``jobs`` at once as their needs
        finish, the cores' torch threads shared among the stages running. What each did, in order."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        keys = self.keys()
        results: dict[str, dict] = {}
        for stage in self.stages:
            state = self.finished(stage, keys[stage.name])
            if state is not None and all(n in results for n in stage.needs):
                print(f"== {stage.name}: reused ({stage.done}, {state['seconds']:.0f} s when it ran)", flush=True)
                results[stage.name] = {**state, "reused": True}
        pending = [s for s in self.stages if s.name not in results]
        if jobs == 1:  # one at a time: in this process, its output on the console
            for stage in pending:
                results[stage.name] = self._run_stage(stage, keys[stage.name])
            return [results[s.name] for s in self.stages]
        running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
        failures: list[str] = []
        (self.out / "logs").mkdir(exist_ok=True)
        while pending or running:
            ready = [s for s in pending if all(n in results for n in s.needs)] if not failures else []
            for stage in ready[: max(0, jobs - len(running))]:
                pending.remove(stage)
                threads = max(1, _cores() // min(jobs, len(running) + len(ready)))
                log = self.out / "logs" / f"{stage.name}.log"
                command = [sys.executable, "-m", "toycatalog", "demo", "--only", stage.name, *self._cli_args()]
                # The repository on the path: toycatalog and the scripts are not in the installed wheel.
                path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
                environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                               "PYTHONPATH": path}
                with open(log, "w") as handle:
                    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=os.getcwd(),
                                               env=environment)
                running[stage.name] = (process, log, time.perf_counter())
                print(f"== {stage.name}: {stage.what} (started; {threads} thread{'s' * (threads > 1)}, log {log})",
                      flush=True)
            if not running:
                break
            time.sleep(0.5)
            for name, (process, log, began) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[name]
                if process.returncode == 0 and self.state(self.stage(name)) is not None:
                    results[name] = {**self.state(self.stage(name)), "reused": False}
                    print(f"== {name}: done in {time.perf_counter() - began:.0f} s", flush=True)
                else:
                    lines = log.read_text(errors="replace").splitlines()
                    print(f"== {name}: FAILED (exit {process.returncode}); the end of {log}:", flush=True)
                    print("\n".join("   " + line for line in lines[-25:]), flush=True)
                    failures.append(name)
        if failures:
            raise StageFailed(f"stage {', '.join(failures)} failed (see above and {self.out / 'logs'}); run it alone "
                              f"with `python -m toycatalog demo --only {failures[0]}{self._cli_tail()}` (the stages "
                              "it needs are reused), or all that is left with `python -m toycatalog demo"
                              f"{self._cli_tail()}`")
        if pending:
            raise StageFailed(f"stages {', '.join(s.name for s in pending)} could not start")
        return [results[s.name] for s in self.stages]

    def _needed_by(self, name: str) -> set[str]:
        stage = self.stage(name)
        needed = set(stage.needs)
        for need in stage.needs:
            needed |= self._needed_by(need)
        return needed

    def _run_stage(self, stage: Stage, key: str) -> dict:
        print(f"== {stage.name}: {stage.what}", flush=True)
        alone = f"python -m toycatalog demo --only {stage.name}" + self._cli_tail()
        (self.out / STATE / f"{stage.name}.json").unlink(missing_ok=True)
        for path in stage.clear:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        started = time.perf_counter()
        commands = []
        for command in stage.commands:
            print(f"$ {command.shell()}", flush=True)
            began = time.perf_counter()
            try:
                status = command.run()
            except Exception as error:  # a stage's failure, reported with what re-runs it; the traceback too
                traceback.print_exc()
                raise StageFailed(f"stage {stage.name} failed in `{command.shell()}` ({type(error).__name__}: "
                                  f"{error}); run the stage alone with `{alone}`") from error
            if status != 0:
                raise StageFailed(f"stage {stage.name} failed: `{command.shell()}` exited with status {status}; "
                                  f"run that command as shown, or the stage alone with `{alone}`")
            commands.append({"command": command.shell(), "seconds": time.perf_counter() - began})
        if stage.step is not None:
            try:
                stage.step()
            except Exception as error:
                traceback.print_exc()
                raise StageFailed(f"stage {stage.name} failed ({type(error).__name__}: {error}); run it alone "
                                  f"with `{alone}`") from error
        if not stage.done.exists():
            raise StageFailed(f"stage {stage.name} finished without writing {stage.done}; run it alone with "
                              f"`{alone}`")
        state = {"stage": stage.name, "what": stage.what, "key": key, "seconds": time.perf_counter() - started,
                 "commands": commands, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(self.out / STATE / f"{stage.name}.json", state)
        return {**state, "reused": False}

    def _cli_tail(self) -> str:
        args = self._cli_args()
        return (" " + shlex.join(args)) if args else ""

    def _cli_args(self) -> list[str]:
        tail = []
        if self.preset_name != "demo":
            tail += ["--preset", self.preset_name]
        if self.data != Path("data/demo"):
            tail += ["--data", str(self.data)]
        if self.out != Path("runs/demo"):
            tail += ["--out", str(self.out)]
        if self.seed != 0:
            tail += ["--seed", str(self.seed)]
        for name, changes in self.changes.items():
            tail += [item for key, value in changes.items()
                     for item in ("--set", f"{name}.{key}={json.dumps(value)}")]
        return tail


def parse_changes(changes) -> dict[str, dict[str, object]]:
    """``["tagger.trainer.max_epochs=5", ...]`` -> ``{"tagger": {"trainer.max_epochs": 5}}``; values as YAML.
    The key is read by `tagging.runs.split_setting`, and its first part must name a config of `BASE_CONFIGS`."""
    parsed: dict[str, dict[str, object]] = {}
    for change in changes:
        try:
            (name, *path), value = split_setting(change)
        except ValueError:
            name, path, value = "", [], ""
        key = ".".join(path)
        if not key or name not in BASE_CONFIGS:
            raise ValueError(f"--set {change!r}: expected CONFIG.DOTTED.KEY=VALUE with CONFIG one of "
                             f"{', '.join(BASE_CONFIGS)}, e.g. tagger.trainer.max_epochs=5")
        parsed.setdefault(name, {})[key] = yaml.safe_load(value)
    return parsed


def set_dotted(config: dict, key: str, value, shown: str) -> None:
    node = config
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"--set {shown}: the config has no {part!r} section where the key expects one")
        node = node[part]
    node[last] = copy.deepcopy(value)


def _cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and subprocess.run(
        ["ffmpeg", "-version"], capture_output=True).returncode == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo: the 1,200-track catalog (about 15 min on 2 cores); tiny: 40 tracks, a smoke run")
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="where the catalog is built")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="runs, tables, plots and report.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", metavar="STAGE",
                        help="run these stages again (their inputs must be there); stages: "
                             "catalog factors hidden-factors tagger audio hidden-audio features multimodal "
                             "ablation hidden-world controls pipeline uploads annotate recommend report")
    parser.add_argument("--jobs", type=int, default=_cores(),
                        help="stages run side by side when their inputs are ready (default: the cores)")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="CONFIG.KEY=VALUE",
                        help=f"change a training config ({', '.join(BASE_CONFIGS)}), e.g. "
                             "tagger.trainer.max_epochs=5 or fusion.model.init_args.lr=0.003")


def main(options: argparse.Namespace) -> int:
    try:
        demo = Demo(options.preset, options.data, options.out, options.changes, options.seed)
        if options.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {options.jobs}")
        stages = demo.run_only(options.only) if options.only else demo.run(options.jobs)
    except (StageFailed, ValueError) as error:
        print(f"python -m toycatalog demo: {error}", file=sys.stderr)
        return 1
    ran = [s for s in stages if not s["reused"]]
    wall = time.perf_counter() - demo.started
    print(f"\n{len(ran)} stages ran, {len(stages) - len(ran)} reused: {wall / 60:.1f} min of wall time "
          f"({sum(s['seconds'] for s in ran) / 60:.1f} min of stage time, stages side by side).")
    summary = options.out / "summary.txt"
    if summary.is_file():
        print(summary.read_text())
    with contextlib.suppress(OSError):
        print(f"The report: {options.out / 'report.md'} (plots in {options.out / 'plots'})")
    return 0
