"""Command line: a thin layer over safeglass.api. Heavy imports happen only in the commands that need them."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from safeglass.registry import KINDS
from safeglass.version import __version__


def _shard(text: str) -> tuple[int, int]:
    try:
        rank, world = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes RANK/WORLD such as 0/2, not {text!r}") from None
    if not (world >= 1 and 0 <= rank < world):
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= RANK < WORLD")
    return rank, world


# Where a crash's traceback is kept, as --help says it (safeglass.eval.crash.crash_log is the path itself).
CRASH_LOG = "$SAFEGLASS_HOME/logs/last-crash.txt"


def exit_statuses() -> str:
    """The exit statuses, for ``--help`` (the README's CLI section lists the same)."""
    from safeglass.eval.crash import EXIT_CRASH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

    rows = [(EXIT_OK, "done"),
            (EXIT_FAILED, "some generations or judgments failed; finished work is kept, and the same command\n"
                          "run again retries only those"),
            (EXIT_USAGE, "a config or usage error (the message names the file and field), or bad records\n"
                         "with --fail-on-skipped"),
            (EXIT_CRASH, "a crash: its type and message are printed and its traceback saved to\n"
                         f"{CRASH_LOG} (--traceback prints it); a crashed worker's\n"
                         "traceback is shown"),
            (EXIT_INTERRUPTED, "interrupted (Ctrl-C); the message says what was finished and saved")]
    return "exit status:\n" + "\n".join(f"  {code:<4} " + text.replace("\n", "\n       ") for code, text in rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safeglass", description="Attack, defend, measure and report on VLM safety.",
                                epilog=exit_statuses(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"safeglass {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (and tracebacks of errors)")
    p.add_argument("--traceback", action="store_true", help="print the traceback of an error, not only its cause")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run or resume an audit from a YAML config")
    r.add_argument("config", help="run config (YAML)")
    r.add_argument("--out", help="run directory (default runs/<config name>)")
    r.add_argument("--limit", type=int, help="at most this many samples per dataset")
    r.add_argument("--dry-run", action="store_true", help="plan only: count the calls a run would make")
    r.add_argument("--workers", type=int, default=1,
                   help="split generation over N local processes (they share the cores: see --threads)")
    r.add_argument("--threads", type=int,
                   help="torch threads per process (default: all cores for one process, cores // N for N workers)")
    r.add_argument("--backend", choices=("process", "ray"), default="process")
    r.add_argument("--shard", type=_shard, help="run only shard RANK/WORLD (no judging, no report)")
    r.add_argument("--no-judge", action="store_true", help="generate only; judge later with `safeglass judge`")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--fail-on-skipped", action="store_true",
                   help="stop (exit 2) when a dataset skipped bad records, before generating anything")

    j = sub.add_parser("rejudge", help="(re-)judge a run's stored generations without regenerating, then write its "
                                       "summary and report again")
    j.add_argument("run_dir", help="a run directory")
    j.add_argument("--judges", nargs="+", help="judge names (default: the run config's judges and scorers)")
    j.add_argument("--no-progress", action="store_true")
    j.add_argument("--no-report", action="store_true", help="do not rewrite summary.json, samples.jsonl, report.html")

    jg = sub.add_parser("judges", help="judges: measure one against human labels, or two against each other")
    jsub = jg.add_subparsers(dest="judges_command", required=True)
    c = jsub.add_parser(
        "calibrate", help="measure a judge against human labels",
        description="Run a judge over human-labelled responses and report accuracy, precision, recall, F1 and "
                    "Cohen's kappa with bootstrap 95 percent intervals; the result is saved to "
                    "$SAFEGLASS_HOME/calibration/<judge key>/<labels name>.json, where run reports find it.",
        epilog="The PyRIT sets are a held-out yardstick: never train, tune or pick thresholds on them.")
    c.add_argument("--judge", required=True, help="judge name (see `safeglass list judges`) or module:attr")
    c.add_argument("--labels", action="append", required=True, metavar="LABELS",
                   help="pyrit:refusal, pyrit:objective, pyrit:objective/<name>, or a labelled CSV/JSONL file; "
                        "repeat for several")
    c.add_argument("--label-kind", choices=("refusal", "objective"),
                   help="what a labels file labels (1 = refusal, or 1 = objective achieved); pyrit sets know")
    c.add_argument("--field", action="append", default=[], metavar="TARGET=COLUMN",
                   help="column mapping for a generic file: prompt=, response=, label=, category=")
    c.add_argument("--limit", type=int, help="score only the first N items of each set (quick look)")
    c.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-save", action="store_true", help="do not write the result to the calibration store")
    c.add_argument("--out", help="calibration store folder (default $SAFEGLASS_HOME/calibration)")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    ag = jsub.add_parser("agree", help="per-row agreement and Cohen's kappa of two judges over a finished run",
                         description="Compare two judges' stored verdicts on a run, per (target, dataset, defense, "
                                     "attack) row; rows with kappa below 0.6 are flagged. Judge the run with both "
                                     "first: safeglass rejudge RUN_DIR --judges A B.")
    ag.add_argument("run_dir")
    ag.add_argument("--judges", nargs=2, required=True, metavar=("A", "B"), help="two judge names (or keys)")
    ag.add_argument("--json", action="store_true")

    rep = sub.add_parser("report", help="write summary.json, samples.jsonl and report.html for a run")
    rep.add_argument("run_dir")
    rep.add_argument("--show-harmful", action="store_true",
                     help="show model outputs on harmful prompts without a click (hidden by default)")
    rep.add_argument("--check", action="store_true",
                     help="open the report in headless Chromium and fail on console errors or network requests")

    m = sub.add_parser("merge", help="merge worker shards of a run into its main store")
    m.add_argument("run_dir")

    sv = sub.add_parser("serve", help="an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models) in front of a "
                                      "target behind a defense configuration (docs/serve.md)")
    sv.add_argument("--config", help="serve config (YAML: target, defense, host, port, token_env, limits, batch, "
                                     "log_to); the flags override its fields")
    sv.add_argument("--target", help="the target's registry name (a config gives its args)")
    sv.add_argument("--defense", help="a defense name or preset (S+A); a config takes {name, args} or a chain")
    sv.add_argument("--host", help="address to bind (default 127.0.0.1; any other needs --token-env)")
    sv.add_argument("--port", type=int, help="port (default 8000)")
    sv.add_argument("--token-env", help="environment variable holding the bearer token clients must send")
    sv.add_argument("--log-to", help="run folder: store every answered request as a run stores a reply "
                                     "(safeglass rejudge / report read it)")

    ls = sub.add_parser("list", help="list registered components and their options, or the defense presets")
    ls.add_argument("kind", choices=(*KINDS, "presets"))
    ls.add_argument("name", nargs="?", help="only this component")
    ls.add_argument("--brief", action="store_true", help="names and descriptions only")
    ls.add_argument("--json", action="store_true")

    org = sub.add_parser("organisms", help="model organisms: small models safeglass trains on its own worlds")
    osub = org.add_subparsers(dest="organisms_command", required=True)
    ol = osub.add_parser("list", help="list the model organisms and where their weights are")
    ol.add_argument("--json", action="store_true")
    ob = osub.add_parser("build", help="train a model organism and write its weights and card.json")
    ob.add_argument("name")
    ob.add_argument("--profile", choices=("full", "tiny", "v1"), default=None,
                    help="tiny trains in seconds (for tests); full is the real recipe (the default; an earlier "
                         "version such as safesmol-v1 builds with its own, v1)")
    ob.add_argument("--out", help="output folder (default $SAFEGLASS_HOME/organisms/NAME)")
    ob.add_argument("--seed", type=int, default=0)
    ov = osub.add_parser("verify", help="re-measure a model organism from its weights and compare with its card")
    ov.add_argument("name")
    ov.add_argument("--path", help="a build folder (default: $SAFEGLASS_HOME/organisms/NAME, then the package's)")
    ov.add_argument("--json", action="store_true")
    ov.add_argument("--update-card", action="store_true",
                    help="write the re-measured figures, judges and goals into card.json (weights must match)")
    _neurons_parser(sub)
    _clip_parser(sub)
    _rl_parser(sub)
    _continual_parser(sub)
    _align_parser(sub)
    st = sub.add_parser("study", help="studies: the defense comparison (configurations x attack classes x targets)")
    ssub = st.add_subparsers(dest="study_command", required=True)
    sd = ssub.add_parser("defenses", help="compare defense configurations across attack classes: attack success, "
                                          "over-refusal, cost, winners, Pareto plot, an adaptive selector; resumable",
                         description="CONFIG names targets, datasets, configurations, attack classes, benign sets, "
                                     "the judge and the selector (see safeglass.study.defense_study for the format). "
                                     "Writes OUT/study.json and OUT/study.html; the run under OUT/run resumes.")
    sd.add_argument("config", help="defense study config (YAML)")
    sd.add_argument("--out", required=True, help="output folder (run, signals, selectors, study.json, study.html)")
    sd.add_argument("--limit", type=int, help="at most N samples per dataset (smoke run)")
    sd.add_argument("--workers", type=int, default=1, help="split generation over N processes")
    sd.add_argument("--no-progress", action="store_true")
    sd.add_argument("--json", action="store_true", help="print study.json")
    return p


def _config_command(p: argparse.ArgumentParser, config_help: str, out_help: str, json_help: str | None) -> None:
    """The arguments every capability command shares: its config, --out, --json (when it prints a result file)
    and --no-progress."""
    p.add_argument("config", help=config_help)
    p.add_argument("--out", required=True, help=out_help)
    if json_help is not None:
        p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--no-progress", action="store_true")


def _clip_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("clip", help="CLIP robustness: zero-shot accuracy under typographic attack, SCAM, and the "
                                    "Dyslexify head-ablation defense")
    csub = c.add_subparsers(dest="clip_command", required=True)
    for name, help_text, out in (
            ("eval", "clean vs typographic zero-shot accuracy and the SCAM object-vs-word choice", "clip-eval.json"),
            ("defend", "Dyslexify: score heads, ablate greedily on the fit split, score on the held-out split",
             "clip-defend.json"),
            ("segment", "MaskCLIP zero-shot segmentation mIoU on clean vs typographic images", "clip-segment.json"),
            ("vqa", "a VLM's answers and SCAM two-option choices on clean vs typographic images, with and without "
                    "a prompt defense", "clip-vqa.json"),
            ("amplify", "the amplification table: typographic damage per task, the base model against its robust "
                        "variants (the config's amplify block)", "clip-amplify.json")):
        e = csub.add_parser(name, help=help_text, description=f"Writes OUT/{out} and prints a short table.")
        _config_command(e, "clip config (YAML; see safeglass.clip.config)", f"output folder ({out})", f"print {out}")
        e.add_argument("--organism", help="use this CLIP organism instead of the config's model "
                                          "(e.g. shapeclip-fare-eps4)")
    a = csub.add_parser("attack", help="clean vs l-inf PGD / APGD zero-shot accuracy at the config's eps list",
                        description="Writes OUT/clip-attack.json and prints a short table.")
    _config_command(a, "clip config (YAML) with an `adversarial` block (default eps 2 and 4 /255)",
                    "output folder (clip-attack.json)", "print clip-attack.json")
    a.add_argument("--organism", help="attack this CLIP organism instead of the config's model "
                                      "(e.g. shapeclip-tecoa-eps4)")
    r = csub.add_parser("robust-train", help="TeCoA / FARE adversarial fine-tuning of the vision tower",
                        description="Writes vision.safetensors and card.json into OUT (resumes a killed run).")
    _config_command(r, "clip config (YAML) with a `robust` block",
                    "output folder; --install writes into the package instead", "print card.json")
    r.add_argument("--install", action="store_true",
                   help="write into the package's organism weights (safeglass/organisms/weights/NAME) instead of OUT")
    _clip_analysis_parsers(csub)


def _clip_analysis_parsers(csub: argparse._SubParsersAction) -> None:
    v = csub.add_parser("vary", help="natural-variation search: which ShapeWorld scene attributes flip predictions",
                        description="Writes OUT/clip-vary.json and prints the flips in words.")
    _config_command(v, "clip config (YAML) with a shapeworld data source",
                    "output folder (clip-vary.json)", "print clip-vary.json")
    v.add_argument("--budget", type=int, default=20_000, help="images to encode at most (default 20000)")
    v.add_argument("--top", type=int, default=7,
                   help="attributes combined in pairs, those whose values flip most (default 7: all)")
    t = csub.add_parser("typo", help="write an ImageNet-typo style attacked copy of the config's image folder",
                        description="Writes OUT/<n>/label=<class>_text=<word>.png (readable as data.source: rta100), "
                                    "OUT/manifest.jsonl and OUT/typo-copy.json.")
    _config_command(t, "clip config (YAML) with a folder data source and an attack block", "output folder", None)
    r = csub.add_parser("report", help="the failure-mode report of a clip run folder, with pictures",
                        description="Reads RUN_DIR/clip-*.json; writes clip-report.md, clip-report.html and the "
                                    "pictures they show into RUN_DIR.")
    r.add_argument("run_dir")
    r.add_argument("--worst", type=int, default=6, help="failures shown with attribution maps (default 6)")
    r.add_argument("--no-progress", action="store_true")


def _rl_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("rl", help="deep-RL MU-MIMO scheduler: CSI-manipulation attacks (FGGM, white-box PGD, "
                                  "greedy, random) on the victim DQN, with CROWN / interval bounds")
    rsub = r.add_subparsers(dest="rl_command", required=True)
    a = rsub.add_parser("attack", help="the attack suite over the config's seeds; resumable",
                        description="Writes OUT/rl-attack.json and OUT/rl-report.html; a rerun into the same OUT "
                                    "runs only the missing episodes (see safeglass.rl.config for the format).")
    _config_command(a, "rl config (YAML; see safeglass.rl.config)",
                    "output folder (rl-attack.json, rl-report.html, episodes.jsonl)", "print rl-attack.json")


def _continual_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("continual", help="continual learning under synthetic-image contamination: strategies, "
                                         "failure modes, the entropy-gate mitigation")
    csub = c.add_subparsers(dest="continual_command", required=True)
    for name, help_text, out in (
            ("run", "every strategy at the config's contamination ratio and seed", "continual-run.json"),
            ("sweep", "strategies x contamination ratios x seeds, with intervals; resumable per cell",
             "continual-sweep.json")):
        e = csub.add_parser(name, help=help_text, description=f"Writes OUT/{out}, OUT/cells/ (one file a "
                                                              "finished cell, reused by a rerun) and OUT/plots/.")
        _config_command(e, "continual config (YAML; see safeglass.continual.config)",
                        f"output folder ({out}, cells/, plots/)", f"print {out}")
    g = csub.add_parser("generate", help="write the config's synthetic images as a folder of class subfolders")
    g.add_argument("config", help="continual config (YAML)")
    g.add_argument("--out", required=True, help="output folder (<class>/<i>.png and generated.json)")
    g.add_argument("--per-class", type=int, default=100)
    g.add_argument("--seed", type=int, default=0)


def _align_parser(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("align", help="alignment durability: per-example forgetting, the unlearning attack at equal "
                                     "budget, persistence and relearning")
    asub = a.add_subparsers(dest="align_command", required=True)
    e = asub.add_parser("audit", help="the durability audit of one model; resumable phase by phase",
                        description="Writes OUT/phases/*.json as each phase finishes (a rerun reuses them) and "
                                    "OUT/align-audit.json, and prints a short table. See docs/alignment.md.")
    _config_command(e, "align config (YAML; see safeglass.align.config)",
                    "output folder (phases/, align-audit.json)", "print align-audit.json")
    e.add_argument("--save-weights", metavar="DIR", help="also write the easy-subset attack's LoRA adapter to DIR "
                                                        "(otherwise unlearned weights stay in memory)")


def _neurons_parser(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("neurons", help="SGM / AurA: find toxic expert neurons and make glasses that dampen them")
    nsub = n.add_subparsers(dest="neurons_command", required=True)
    f = nsub.add_parser("find", help="record a target's neurons on toxic / non-toxic items; write expertise, "
                                     "default glasses and summary.json",
                        description="CONFIG names the target, toxic and non-toxic sources, span, pooling, "
                                    "batch_size and seed (see safeglass.neurons.find for the format).")
    f.add_argument("config", help="neurons config (YAML)")
    f.add_argument("--out", required=True, help="output folder (expertise; glasses in OUT/glasses)")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = nsub.add_parser("apply", help="derive glasses from saved expertise, without loading the model")
    a.add_argument("expertise", help="an expertise folder (the --out of `neurons find`)")
    a.add_argument("--method", choices=("aura", "damp", "det0", "sgm"), default="sgm")
    a.add_argument("--k", type=int, help="damp, det0: how many top neurons")
    a.add_argument("--alpha", type=float, help="damp: the factor for the top-k neurons, in [0, 1]")
    a.add_argument("--strength", type=float, help="sgm: suppression strength (default 1.0)")
    a.add_argument("--curve", choices=("linear", "sqrt", "square"), help="sgm: expertise weighting (default linear)")
    a.add_argument("--layers", type=int, nargs="+", help="sgm: only these language-model layers")
    a.add_argument("--min-auroc", type=float, help="sgm: only neurons above this AUROC (default 0.5)")
    a.add_argument("--include-vision", action="store_true",
                   help="also dampen vision-tower / projector sites when the expertise has them")
    a.add_argument("--out", required=True, help="glasses folder to write")
    e = nsub.add_parser("eval", help="evaluate glasses over a suppression-strength curve (toxicity, harm, "
                                     "fluency, utility); resumable",
                        description="CONFIG names the expertise, target, a grid of methods and the blocks to "
                                    "measure (see safeglass.neurons.evaluate for the format). Writes OUT/curve.json "
                                    "and OUT/neurons.html; the runs under OUT/run resume where they stopped.")
    e.add_argument("config", help="neurons eval config (YAML)")
    e.add_argument("--out", required=True, help="output folder (glasses, runs, fluency cache, curve, report)")
    e.add_argument("--limit", type=int, help="at most N samples per dataset and N fluency texts (smoke run)")
    e.add_argument("--expertise", help="expertise folder (overrides the config's 'expertise')")
    e.add_argument("--workers", type=int, default=1, help="split generation over N processes")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--json", action="store_true", help="print the curve as JSON")


# Spellings of earlier versions, answered with the one that replaced them (one spelling per command).
RENAMED = {"judge": "`safeglass rejudge RUN_DIR` (re-judge a run) or `safeglass judges calibrate` (measure a judge)",
           "judge-calibrate": "`safeglass judges calibrate`"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in RENAMED:
        print(f"safeglass: `{command}` is now {RENAMED[command]}", file=sys.stderr)
        return 2
    if "--traceback" in argv:  # anywhere on the line: the crash message suggests adding it to the command as typed
        argv = ["--traceback", *(a for a in argv if a != "--traceback")]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc)
    except Exception as exc:  # every error leaves with its cause named and the status of its kind
        return _failed(args, exc)


def _interrupted(args: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    from safeglass.eval.crash import EXIT_INTERRUPTED, Interrupted

    if isinstance(exc, Interrupted) and args.command in ("run", "rejudge"):
        # a nested run (a study's block) knows only its own part, so only these commands say what it saved
        again = "; run the same command again to resume" if exc.generations or exc.judgments else ""
        print(f"interrupted: {exc.saved()}{again}", file=sys.stderr)
    elif args.command == "study":
        print(f"interrupted: the run under {Path(args.out) / 'run'} keeps every chunk it finished; run the same "
              "command again to resume", file=sys.stderr)
    elif args.command == "neurons" and args.neurons_command == "eval":
        print(f"interrupted: the runs under {Path(args.out) / 'run'} keep every chunk they finished; run the same "
              "command again to resume", file=sys.stderr)
    else:
        print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _failed(args: argparse.Namespace, exc: Exception) -> int:
    """Print an error's cause (and its traceback where asked or where it is a crash) and return its exit status."""
    import traceback

    from safeglass.eval.crash import EXIT_USAGE, WorkerCrashed, crash_log, describe, exit_status, write_traceback

    status = exit_status(exc)
    show = args.verbose or args.traceback
    if status == EXIT_USAGE and not isinstance(exc, WorkerCrashed):
        print(f"safeglass: error: {exc}", file=sys.stderr)
        if show:
            traceback.print_exception(exc, file=sys.stderr)
        return status
    print(f"safeglass: crashed: {describe(exc)}", file=sys.stderr)
    if isinstance(exc, WorkerCrashed) and exc.report:
        print(f"the worker's traceback ({exc.where}):\n{exc.report.rstrip()}", file=sys.stderr)
    if show:
        traceback.print_exception(exc, file=sys.stderr)
    try:
        log = write_traceback(crash_log(), exc)
        kept = f"the traceback is in {log}" + ("" if show else " (--traceback prints it)")
    except OSError as err:  # a read-only home must not hide the crash itself
        kept = f"the traceback could not be saved ({err}); --traceback prints it"
    print(f"safeglass: {kept}. This is not a config error and not a failed generation: a rerun will probably "
          "crash the same way; please report it with the traceback", file=sys.stderr)
    return status


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        return _list(args)
    from safeglass import api

    if args.command == "run":
        result = api.run(args.config, out=args.out, limit=args.limit, dry_run=args.dry_run, workers=args.workers,
                         shard=args.shard, judge=not (args.no_judge or args.shard),
                         report=not (args.no_report or args.shard),
                         progress=not args.no_progress, backend=args.backend, threads=args.threads,
                         fail_on_skipped=args.fail_on_skipped)
        skipped = _skipped(result.plan)
        if args.dry_run:
            print(f"plan: {result.planned} generations, {result.done_before} already done, "
                  f"{result.calls['generate']} generate calls and at most {result.calls['judge']} judge calls to make")
            if skipped:
                print(skipped)
            return 0
        print(f"generated {result.generated} ({result.done_before} were already done, {result.failed} failed)")
        _print_outputs(result.outputs)
        if skipped:
            print(skipped)
        return _failures(result.failed, result.judge_failed, "run the same command again")
    if args.command == "rejudge":
        judged = api.judge(args.run_dir, args.judges, progress=not args.no_progress, report=not args.no_report)
        print(f"added {judged.added} judgments ({judged.failed} failed)")
        _print_outputs(judged.outputs)
        return _failures(0, judged.failed, "run the same command again")
    if args.command == "judges":
        return _calibrate(args)
    if args.command == "organisms":
        return _organisms(args)
    if args.command == "neurons":
        return _neurons(args)
    if args.command == "study":
        return _study(args)
    if args.command == "clip":
        return _clip(args)
    if args.command == "rl":
        return _rl(args)
    if args.command == "continual":
        return _continual(args)
    if args.command == "align":
        return _align(args)
    if args.command == "report":
        paths = api.report(args.run_dir, show_harmful=args.show_harmful)
        _print_outputs(paths)
        return _check_report(paths["report"]) if args.check else 0
    if args.command == "serve":
        if args.config is None and args.target is None:
            from safeglass.schema import ConfigError

            raise ConfigError("safeglass serve: give --target NAME (and --defense) or --config FILE")
        api.serve(args.config, target=args.target, defense=args.defense, host=args.host, port=args.port,
                  token_env=args.token_env, log_to=args.log_to)
        return 0
    if args.command == "merge":
        from safeglass.eval.runner import merge_shards

        print(f"merged {merge_shards(Path(args.run_dir))} generations")
        return 0
    raise AssertionError(args.command)


def _list(args: argparse.Namespace) -> int:
    from safeglass.api import component_options, list_components

    if args.kind == "presets":
        return _list_presets(args)
    entries = list_components(args.kind)
    if args.name:
        from safeglass.registry import registry

        entries = [registry(args.kind).entry(args.name)]
    rows = [(e, None if args.brief else component_options(args.kind, e.name)) for e in entries]
    if args.json:
        print(json.dumps([{"name": e.name, "description": e.description, "tags": list(e.tags),
                           **({} if o is None else {"open": o.open, "options": [
                               {"name": x.name, "default": None if x.required else x.default,
                                "required": x.required, "help": x.help} for x in o.options]})}
                          for e, o in rows], indent=2))
        return 0
    width = max((len(e.name) for e in entries), default=0)
    for e, o in rows:
        print(f"{e.name:<{width}}  {e.description}")
        if o is None:
            continue
        ow = max((len(x.name) for x in o.options), default=0)
        for x in o.options:
            default = "required" if x.required else f"default {_short(x.default)}"
            print(f"    {x.name:<{ow}}  {x.help}{'  ' if x.help else ''}[{default}]")
        if o.open:
            print("    (also takes options it does not declare)")
    if args.kind == "defenses" and not args.name:
        print("\nNamed chains (defenses: [preset:NAME]): `safeglass list presets`")
    return 0


def _list_presets(args: argparse.Namespace) -> int:
    """The defense presets: named chains a run config gives as ``preset:NAME``."""
    from safeglass.defenses.presets import PRESETS
    from safeglass.registry import registry

    presets = [p for p in PRESETS.values() if not args.name or p.name == args.name]
    if args.name and not presets:
        print(f"unknown preset {args.name!r}; known: {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    missing = {p.name: [s for s in p.steps if s not in registry("defenses")] for p in presets}
    if args.json:
        print(json.dumps([{"name": p.name, "steps": list(p.steps), "description": p.description, "study": p.study,
                           "unavailable": missing[p.name]} for p in presets], indent=2))
        return 0
    width = max(len(p.name) for p in presets)
    for p in presets:
        note = f"  (needs {', '.join(missing[p.name])}, not registered here)" if missing[p.name] else ""
        study = "  [study]" if p.study else ""
        print(f"{p.name:<{width}}  {' > '.join(p.steps)}: {p.description}{study}{note}")
    print("\nIn a run config: defenses: [preset:S+A+R] (id S+A+R) or {preset: S+A+R, id: mine}; steps in the "
          "order they act, the first sees the request first. [study]: the six configurations of the defense study.")
    return 0


def _print_outputs(outputs: dict[str, Path]) -> None:
    """The files written and, from the summary, the finding's table and the machine and dtype of each target."""
    for name, path in outputs.items():
        print(f"{name}: {path}")
    if "summary" in outputs:
        from safeglass.reporting.console import digest

        print("\n" + digest(json.loads(Path(outputs["summary"]).read_text(encoding="utf-8"))))


def _skipped(plan: Any) -> str:
    """The end-of-run line on bad records the datasets skipped ("" when none were)."""
    from safeglass.eval.plan import skipped_line

    skipped = plan.skipped() if plan is not None else {}
    if not skipped:
        return ""
    return (f"{skipped_line(skipped)}; all are listed in the report's errors, and --fail-on-skipped makes them "
            "an error")


def _check_report(path: Path) -> int:
    """Exit 1 with each problem when the report logs a console error or makes a network request."""
    from safeglass.eval.crash import UsageError
    from safeglass.reporting.browser import BrowserError, check_report

    try:
        problems = check_report(path)
    except BrowserError as exc:
        raise UsageError(f"report --check needs headless Chromium: {exc}") from None
    for problem in problems:
        print(f"safeglass: {path}: {problem}", file=sys.stderr)
    print(f"report check: {'clean' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _failures(generations: int, judgments: int, again: str) -> int:
    """Exit status 1, with what failed, when any generation or judgment failed; the errors are in the store
    and the report, and finished work is kept."""
    parts = [f"{n} {what}{'s' if n != 1 else ''} failed" for n, what in ((generations, "generation"),
                                                                         (judgments, "judgment")) if n]
    if not parts:
        return 0
    print(f"safeglass: {' and '.join(parts)} (the errors are in the report); finished work is kept: {again} "
          "to retry only what failed", file=sys.stderr)
    return 1


def _organisms(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.organisms.registry import get as get_organism
    from safeglass.organisms.registry import headline

    if args.organisms_command == "list":
        rows = api.list_organisms()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            if r["measured"]:
                where = (f"built ({r['profile']} profile) at {r['weights']}: "
                         f"{headline(r['name'], r['measured'])}, goals met: {r['goals_met']}")
            else:
                where = f"not built (safeglass organisms build {r['name']})"
            print(f"model organism {r['name']}: {r['description']}\n    {where}")
        return 0
    if args.organisms_command == "build":
        card = api.build_organism(args.name, profile=args.profile, seed=args.seed, out=args.out,
                                  progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(f"model organism {card['name']} ({card['profile']} profile, seed {card['seed']}) built in "
              f"{card['build_seconds']:.1f} s: {headline(card['name'], card['measured'])}; "
              f"goals met: {card['goals_met']}" + (f", short by {card['shortfall']}" if card["shortfall"] else ""))
        return 0
    if args.organisms_command == "verify":
        r = api.verify_organism(args.name, args.path, update=args.update_card,
                                progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            m, c = r["measured"], r["card"]
            figures = ", ".join(f"{k} {m.get(k, float('nan')):.3f} (card {c.get(k, float('nan')):.3f})"
                                for k in get_organism(r["name"]).verify_keys)
            print(f"model organism {r['name']} at {r['path']}: "
                  f"{'re-carded' if r['updated'] else 'matches its card' if r['ok'] else 'DOES NOT match its card'}"
                  f"\n    {figures}, weights hash "
                  f"{'matches' if r['weights_sha256_matches'] else 'differs'}")
            if r["judges"]["changed"]:
                print(f"    the judges changed since the card was measured ({r['judges']['card'] or 'not recorded'} -> "
                      f"{r['judges']['now']}): differences are the judges', not the weights'"
                      + ("" if r["updated"] else "; `--update-card` re-cards it"))
            if r["updated"]:
                print(f"    card updated: {r['path']}/card.json")
        return 0 if r["ok"] else 1
    raise AssertionError(args.organisms_command)


def _neurons(args: argparse.Namespace) -> int:
    from safeglass import api

    if args.neurons_command == "find":
        res = api.find_experts(args.config, args.out, progress=not args.no_progress)
        s = res["summary_data"]
        if args.json:
            print(json.dumps(s, indent=2, default=str))
            return 0
        e, g = s["expertise"], s["glasses"]
        if res.get("reused"):  # nothing was recorded this time: the figures are those of the finished recording
            print(f"reused the finished recording in {res['expertise']} (same config and weights): "
                  f"{s['n_toxic']} toxic and {s['n_non_toxic']} non-toxic items (span {s['span']}, pooling "
                  f"{s['pooling']}), {e['experts']} of {e['neurons']} neurons with AUROC > 0.5")
        else:
            print(f"recorded {s['n_toxic']} toxic and {s['n_non_toxic']} non-toxic items (span {s['span']}, pooling "
                  f"{s['pooling']}) in {s['seconds']['record']:.1f} s; AUROC of {e['neurons']} neurons in "
                  f"{s['seconds']['auroc']:.2f} s: {e['experts']} with AUROC > 0.5")
        for site in e["per_site"]:
            print(f"  {site['site']:<16} experts {site['experts']:>6} / {site['neurons']:<6} "
                  f"> 0.7: {site['above_0.7']:>5}  max {site['max_auroc']:.3f}")
        print(f"glasses ({g['method']}, {g['dampened']} neurons dampened, hash {g['hash']}): {res['glasses']}")
        print(f"expertise: {res['expertise']}\nsummary: {res['summary']}")
        return 0
    if args.neurons_command == "apply":
        params = {"k": args.k, "alpha": args.alpha, "strength": args.strength, "curve": args.curve,
                  "layers": args.layers, "min_auroc": args.min_auroc}
        if args.include_vision:
            params["post_fusion_only"] = False
        try:
            glasses = api.make_glasses(args.expertise, args.method, out=args.out, **params)
        except ValueError as exc:  # the glasses' parameters (or the expertise folder) named on this command line
            from safeglass.eval.crash import UsageError

            raise UsageError(str(exc)) from exc
        print(f"glasses ({glasses.method}, {glasses.n_dampened} of {glasses.n_neurons} neurons dampened, "
              f"hash {glasses.hash}): {args.out}")
        return 0
    if args.neurons_command == "eval":
        from safeglass.neurons.evaluate import format_table

        res = api.evaluate_glasses(args.config, args.out, limit=args.limit, expertise=args.expertise,
                                   progress=not args.no_progress, workers=args.workers)
        curve = res["data"]
        if args.json:
            print(json.dumps(curve, indent=2, sort_keys=True, default=str))
        else:
            print(format_table(curve))
            made = ", ".join(f"{k} {v}" for k, v in curve["generated"].items()) or "none"
            print(f"\ngenerated this time: {made}; perplexities computed: {curve['fluency_computed']}")
            print(f"curve: {res['curve']}\nreport: {res['html']}")
        for e in curve["errors"]:
            print(f"safeglass: {e['block']}: {e['stage']} failed: {e['message']}", file=sys.stderr)
        if curve["errors"]:
            print("safeglass: some generations failed; run the same command again to retry them", file=sys.stderr)
        return 1 if curve["errors"] else 0
    raise AssertionError(args.neurons_command)


def _clip(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.clip import amplify, run, segrun, vqarun

    progress = None if args.no_progress else (lambda line: print(line, file=sys.stderr))
    if args.clip_command in ("vary", "report", "typo"):
        return _clip_analysis(args, progress)
    if args.clip_command in ("attack", "robust-train"):
        return _clip_robust(args, progress)
    command, table = {"eval": (api.clip_eval, run.table), "defend": (api.clip_defend, run.table),
                      "amplify": (api.clip_amplify, amplify.table), "segment": (api.clip_segment, segrun.table),
                      "vqa": (api.clip_vqa, vqarun.table)}[args.clip_command]
    config: Any = args.config
    if args.organism:
        from safeglass.clip.attack_run import with_organism
        from safeglass.clip.config import load_clip_config

        config = with_organism(load_clip_config(args.config), args.organism)
    result = command(config, args.out, progress=progress)
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


def _clip_analysis(args: argparse.Namespace, progress: Any) -> int:
    from safeglass import api

    if args.clip_command == "vary":
        from safeglass.clip.variation import table

        result = api.clip_vary(args.config, args.out, budget=args.budget, top=args.top, progress=progress)
        print(json.dumps(result, indent=2, default=str) if args.json else table(result))
        return 0
    if args.clip_command == "typo":
        info = api.clip_typo_copy(args.config, args.out)
        print(f"clip typo: {info['n']} attacked images in {args.out} (mean box area {info['mean_box_area']})")
        return 0
    paths = api.clip_report(args.run_dir, worst=args.worst, progress=progress)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _rl(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.rl.run import table

    progress = None if args.no_progress else (lambda line: print(line, file=sys.stderr))
    result = api.rl_attack(args.config, args.out, progress=progress)
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


def _align(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.align.audit import table

    progress = None if args.no_progress else (lambda line: print(line, file=sys.stderr))
    result = api.align_audit(args.config, args.out, save_weights=args.save_weights, progress=progress)
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


def _continual(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.continual.run import table

    if args.continual_command == "generate":
        record = api.continual_generate(args.config, args.out, per_class=args.per_class, seed=args.seed)
        print(f"wrote {record['images']} images ({record['per_class']} a class) to {args.out}")
        return 0
    command = {"run": api.continual_run, "sweep": api.continual_sweep}[args.continual_command]
    progress = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    result = command(args.config, args.out, progress=progress)
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


def _clip_robust(args: argparse.Namespace, progress: Any) -> int:
    from safeglass import api
    from safeglass.clip.attack_run import attack_table, install_dir, robust_table

    if args.clip_command == "attack":
        result = api.clip_attack(args.config, args.out, organism=args.organism, progress=progress)
        print(json.dumps(result, indent=2, default=str) if args.json else attack_table(result))
        return 0
    out = install_dir(args.config) if args.install else args.out
    card = api.clip_robust_train(args.config, out, progress=progress)
    print(json.dumps(card, indent=2, default=str) if args.json else robust_table(card))
    return 0


def _study(args: argparse.Namespace) -> int:
    from safeglass import api
    from safeglass.study.defense_study import format_summary

    res = api.study_defenses(args.config, args.out, limit=args.limit, progress=not args.no_progress,
                             workers=args.workers)
    data = res["data"]
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(data))
        print(f"study: {res['paths']['json']}\nreport: {res['paths'].get('html')}")
    errors = data["provenance"]["run"]["failed"]
    if errors:
        print(f"safeglass: {errors} generations failed; run the same command again to retry them", file=sys.stderr)
    return 1 if errors else 0


def _calibrate(args: argparse.Namespace) -> int:
    from safeglass import api

    if args.judges_command == "agree":
        from safeglass.eval.agreement import format_agreement, run_agreement

        res = run_agreement(args.run_dir, *args.judges)
        print(json.dumps(res, indent=2, default=str) if args.json else format_agreement(res))
        return 0
    from safeglass.judges.calibration import format_result

    fields = {}
    for item in args.field:
        target, sep, column = item.partition("=")
        if not sep or not target or not column:
            from safeglass.eval.crash import UsageError

            raise UsageError(f"--field takes TARGET=COLUMN such as label=is_refusal, not {item!r}")
        fields[target.strip()] = column.strip()
    results = api.calibrate(args.judge, args.labels, label_kind=args.label_kind, fields=fields or None,
                            limit=args.limit, resamples=args.resamples, seed=args.seed, save=not args.no_save,
                            store_dir=args.out)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True, default=str))
    else:
        for r in results:
            print(format_result(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
