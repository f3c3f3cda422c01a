#!/usr/bin/env python3
"""Measures `ddpm bench` against the same network in diffusers (dev/bench_diffusers.py,
eager and torch.compile), with the same torch, threads, batch and precision, and reports each
figure's ratio ours/peer.

Why interleaved: on a shared machine the speed available to a process drifts by tens of percent
within minutes, so timing the processes one after another compares different moments. Here the
three processes of a figure start together (`--sync`), warm up (and compile), and then take
turns: each round every process runs its --steps steps while the others wait, the one going
first rotating from round to round. Each round's ratio therefore compares measurements taken
seconds apart; the report gives the median of the per-round ratios and their min and max.

With --variant NAME=ARGS (our binary with extra arguments) or --variant-binary NAME=PATH
(another build) the same interleaving measures one of our own settings or builds against
another; --no-diffusers leaves the diffusers peers out. With --package FILE.pt2 (`ddpm compile`
of a model of the same config) the sampling figures also run `ddpm bench --checkpoint FILE.pt2`
as the process "package"; the report then gives both ours/peer and package/peer.

Figures: training (--train-batch x --train-steps per round); DDIM sampling (a whole chain of
--ddim-steps per round); DDPM sampling (--ddpm-steps of the T-step chain per round,
extrapolated to T). Each process's JSON, its stderr and OUT/summary.json are written to --out.

Exit codes: 0 success, 2 a usage or setup error (nothing was run), 1 a benchmark process failed
or timed out, 130 interrupted (143 terminated).
"""
import argparse
import json
import math
import os
import pathlib
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "dev" / "bench_diffusers.py"
FIGURES = ("train", "ddim", "ddpm")
SETUP_HINT = ("run `bash scripts/setup.sh --test` (it builds build/ddpm and installs torch and "
              "diffusers into .venv)")
STDERR_TAIL_LINES = 15


class UsageError(Exception):
    """Bad options or a missing prerequisite: one line, exit code 2."""


class Failure(Exception):
    """A benchmark process failed or timed out: the message (with its stderr) and exit code 1."""


class Terminated(BaseException):
    """SIGTERM, handled like Ctrl-C so that the children are stopped too."""


# ---------------------------------------------------------------------------------------------
# One benchmark process speaking the --sync protocol.

class Child:
    """Runs `command` with piped stdin/stdout and stderr to a file (read only when reporting a
    failure, so a chatty stderr can never block it). A thread forwards each stdout line to the
    figure's shared `events` queue as (child, line), then (child, None) at the end of the
    output, so that one wait notices any child dying, not just the one being waited for."""

    def __init__(self, name, command, json_path, stderr_path, events):
        self.name = name
        self.command = command
        self.json_path = json_path
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "w")
        try:
            # Its own process group: Ctrl-C reaches only us (we stop it), and killing the group
            # also ends torch.compile's worker processes.
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                text=True, errors="replace", bufsize=1, process_group=0)
        except OSError as error:
            self._stderr.close()
            raise Failure(f"cannot start {name}: {error}\n  command: {shlex.join(command)}") \
                from None
        threading.Thread(target=self._forward_stdout, args=(events,), daemon=True).start()

    def _forward_stdout(self, events):
        for line in self.process.stdout:
            events.put((self, line.rstrip("\n")))
        events.put((self, None))

    def send_go(self):
        try:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        except OSError:  # a broken pipe: it has exited
            raise Failure(self.describe("exited before its round could start")) from None

    def exit_code(self, timeout):
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        self._stderr.close()

    def describe(self, what):
        """A failure report: what happened, the command, and the end of its stderr."""
        self._stderr.flush()
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        tail = "\n".join(f"    {line}" for line in lines[-STDERR_TAIL_LINES:]) or "    (empty)"
        return (f"{self.name} {what}\n  command: {shlex.join(self.command)}\n"
                f"  last lines of its stderr ({self.stderr_path}):\n{tail}")


def next_event(events, deadline, waiting_for, late):
    """The next (child, line) of any child; past the deadline, a failure naming the `late`
    children with their commands and stderr."""
    timeout = deadline - time.monotonic()
    try:
        if timeout <= 0:
            raise queue.Empty
        return events.get(timeout=timeout)
    except queue.Empty:
        raise Failure(f"timed out waiting for {waiting_for}\n" + "\n".join(
            child.describe("is the one late") for child in late)) from None


def ended_early(child, waiting_for):
    code = child.exit_code(timeout=10)
    status = "is still running" if code is None else f"exited with code {code}"
    return Failure(child.describe(f"closed its output and {status} while we waited for "
                                  f"{waiting_for}"))


def unexpected(child, line, waiting_for):
    return Failure(child.describe(f"printed {line!r} while we waited for {waiting_for}"))


def parse_round(child, line, waiting_for):
    word, _, value = line.partition(" ")
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if word != "round" or not (math.isfinite(rate) and rate > 0):
        raise unexpected(child, line, waiting_for)
    return rate


def recorded_rounds(child, result, printed):
    """The rounds of the process's JSON: the ones it printed, at full precision (`ddpm bench`
    prints 6 digits), so that our medians are exactly the figures of its own JSON."""
    recorded = result.get("rounds") if isinstance(result, dict) else None
    if not (isinstance(recorded, list) and len(recorded) == len(printed) and
            all(isinstance(value, (int, float)) and math.isclose(value, rate, rel_tol=1e-4)
                for value, rate in zip(recorded, printed))):
        raise Failure(child.describe(f"printed the rounds {printed} but its JSON "
                                     f"{child.json_path} has {recorded!r}"))
    return [float(value) for value in recorded]


# ---------------------------------------------------------------------------------------------
# One figure: its processes started together, then their rounds interleaved.

def run_figure(title, commands, args, log):
    """commands: [(name, command, json_path, stderr_path)], ours first. Returns the rates of each
    process per round, the go order of each round and each process's JSON."""
    events = queue.Queue()
    children = []
    try:
        for name, command, json_path, stderr_path in commands:
            children.append(Child(name, command, json_path, stderr_path, events))
        log(f"==> {title}: warming up {', '.join(c.name for c in children)}")
        started = time.monotonic()
        deadline = started + args.ready_timeout
        waiting = set(children)
        while waiting:
            what = (f"{', '.join(sorted(c.name for c in waiting))} to print 'ready' "
                    f"(--ready-timeout {args.ready_timeout:g} s; torch.compile can take minutes "
                    "on a cold cache)")
            child, line = next_event(events, deadline, what, sorted(waiting, key=children.index))
            if line is None:
                raise ended_early(child, what)
            if line != "ready" or child not in waiting:
                raise unexpected(child, line, what)
            waiting.remove(child)
        log(f"    ready after {time.monotonic() - started:.0f} s")

        rates = {child.name: [] for child in children}
        orders = []
        for r in range(args.rounds):
            # Rotate who goes first, so that no process always runs right after the same one.
            order = children[r % len(children):] + children[:r % len(children)]
            orders.append([child.name for child in order])
            for active in order:
                what = f"round {r + 1} of {active.name} (--round-timeout {args.round_timeout:g} s)"
                active.send_go()
                deadline = time.monotonic() + args.round_timeout
                while True:
                    child, line = next_event(events, deadline, what, [active])
                    if len(rates[child.name]) == args.rounds:
                        continue  # its closing report and exit, checked below
                    if line is None:
                        raise ended_early(child, what)
                    if child is not active:
                        raise unexpected(child, line, what)
                    rates[child.name].append(parse_round(child, line, what))
                    break
            log(f"    round {r + 1}/{args.rounds}: " +
                ", ".join(f"{name} {rates[name][-1]:.4g}" for name in orders[-1]) + " images/s")

        results = {}
        for child in children:
            child.process.stdin.close()  # it has had all its rounds
        for child in children:
            code = child.exit_code(timeout=args.round_timeout)
            if code != 0:
                raise Failure(child.describe(
                    f"did not exit within {args.round_timeout:g} s after its rounds" if code is None
                    else f"exited with code {code} after its rounds"))
            try:
                results[child.name] = json.loads(child.json_path.read_text())
            except (OSError, ValueError) as error:
                raise Failure(child.describe(f"wrote no readable JSON ({error})")) from None
            rates[child.name] = recorded_rounds(child, results[child.name], rates[child.name])
        return rates, orders, results
    finally:
        for child in children:
            child.kill()


# ---------------------------------------------------------------------------------------------
# Commands and the report.

def figure_commands(figure, args, python):
    """(title, rate key, {process: arguments after the program}) of one figure."""
    common = ["--config", str(args.config), "--threads", str(args.threads), "--precision",
              args.precision, "--device", args.device, "--rounds", str(args.rounds), "--sync"]
    if figure == "train":
        title = f"training, batch {args.train_batch}, {args.train_steps} steps per round"
        ours = peer = ["--mode", "train", "--batch", str(args.train_batch),
                       "--steps", str(args.train_steps), "--warmup", "5"]
    else:
        # The CLIs differ in sample mode: our --chain-steps (DDIM) is the peer's --sample-steps,
        # and the peer runs the DDPM chain only --sample-steps deep (ours: --steps deep).
        steps = str(args.ddim_steps if figure == "ddim" else args.ddpm_steps)
        sample = ["--mode", "sample", "--sampler", figure, "--batch", str(args.sample_batch),
                  "--steps", steps, "--warmup", "2"]
        ours = sample + (["--chain-steps", steps] if figure == "ddim" else [])
        peer = sample + ["--sample-steps", steps]
        title = (f"DDIM-{steps} sampling, batch {args.sample_batch}, a whole chain per round"
                 if figure == "ddim" else
                 f"DDPM sampling, batch {args.sample_batch}, {steps} steps per round "
                 "extrapolated to T")
    processes = {"ours": [str(args.ddpm), "bench", *common, *ours]}
    for name, kind, value in args.variant + args.variant_binary:
        processes[name] = ([str(args.ddpm), "bench", *common, *ours, *value] if kind == "arguments"
                           else [str(value), "bench", *common, *ours])
    if args.package and figure != "train":
        no_config = common[2:]  # the package holds its config
        processes["package"] = [str(args.ddpm), "bench", *no_config, *ours, "--checkpoint",
                                str(args.package)]
    if not args.no_diffusers:
        processes["eager"] = [python, str(PEER_SCRIPT), *common, *peer]
    if not args.no_compile and not args.no_diffusers:
        # The last --warmup wins: 3 steps, the first of which compiles.
        processes["compiled"] = [python, str(PEER_SCRIPT), *common, *peer, "--compile",
                                 "--warmup", "3"]
    key = "train_images_per_s" if figure == "train" else "sample_images_per_s"
    return title, key, processes


def ratios_to(reference, rates):
    """Per peer: the per-round ratios reference/peer, their median, min and max."""
    ratios = {}
    for peer in rates:
        if peer == reference:
            continue
        per_round = [ours / theirs for ours, theirs in zip(rates[reference], rates[peer])]
        ratios[peer] = {"rounds": per_round, "median": statistics.median(per_round),
                        "min": min(per_round), "max": max(per_round)}
    return ratios


def summarize(rates, orders, results, title):
    processes = {name: {"rounds": values, "median_images_per_s": statistics.median(values),
                        "peak_memory_bytes": results[name].get("peak_memory_bytes")}
                 for name, values in rates.items()}
    summary = {"title": title, "go_order": orders, "processes": processes,
               "ratios": ratios_to("ours", rates)}
    if "package" in rates:
        summary["package_ratios"] = ratios_to("package", rates)
    return summary


def print_table(summary):
    print(f"\nddpm bench vs its peers: {summary['config']} | {summary['threads']} threads, "
          f"{summary['precision']}, {summary['device']} | {summary['rounds']} interleaved "
          "rounds; ratio = ours/peer, median of the rounds [min, max]")
    for figure in summary["figures"].values():
        width = max(9, *(len(name) for name in figure["processes"]))
        print(f"\n{figure['title']}")
        print(f"  {'process':<{width}} {'images/s':>10}  {'ratio [min, max]':<24} "
              f"{'peak MiB':>9}")
        for name, process in figure["processes"].items():
            ratio = figure["ratios"].get(name)
            spread = (f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]"
                      if ratio else "")
            memory = process["peak_memory_bytes"]
            memory = f"{memory / 2**20:.0f}" if isinstance(memory, (int, float)) else "?"
            rate = process["median_images_per_s"]
            rate = f"{rate:.2f}" if rate >= 1 else f"{rate:.4f}"
            print(f"  {name:<{width}} {rate:>10}  {spread:<24} {memory:>9}")
        if "package_ratios" in figure:
            print("  package/peer: " + ", ".join(
                f"{name} {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"
                for name, r in figure["package_ratios"].items()))


# ---------------------------------------------------------------------------------------------
# Arguments and prerequisites.

def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got '{text}'")
        return value
    return parse


def figure_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIGURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(FIGURES)}, got '{text}'")
    return [figure for figure in FIGURES if figure in names]


RESERVED_NAMES = ("ours", "eager", "compiled", "package")


def variant(kind):
    """An argparse type for NAME=VALUE: (name, kind, value); NAME names files, so it is plain."""
    def parse(text):
        name, separator, value = text.partition("=")
        if not separator or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise argparse.ArgumentTypeError(
                f"expected NAME=VALUE with NAME of letters, digits, - or _, got {text!r}")
        if name in RESERVED_NAMES:
            raise argparse.ArgumentTypeError(f"the name {name!r} is taken; choose another")
        if kind == "arguments":
            try:
                return name, kind, shlex.split(value)
            except ValueError as error:
                raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
        return name, kind, pathlib.Path(value)
    return parse


def parse_args(argv):
    build = pathlib.Path(os.environ["DDPM_BUILD_DIR"]) if os.environ.get("DDPM_BUILD_DIR") \
        else ROOT / "build"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(
        prog="bench_compare.py", description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 success, 2 a usage or setup error, 1 a benchmark process failed "
               "or timed out, 130 interrupted (143 terminated).")
    parser.add_argument("config", type=pathlib.Path, metavar="CONFIG", help="our JSON config")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "bench",
                        metavar="DIR", help="where the JSON files go (default: build/bench)")
    parser.add_argument("--figures", type=figure_list, default=list(FIGURES), metavar="LIST",
                        help="which figures, comma-separated (default: train,ddim,ddpm)")
    parser.add_argument("--train-batch", type=positive(int), default=16, metavar="B",
                        help="training batch (default: 16)")
    parser.add_argument("--train-steps", type=positive(int), default=20, metavar="K",
                        help="training steps per round (default: 20)")
    parser.add_argument("--sample-batch", type=positive(int), default=64, metavar="B",
                        help="sampling batch, DDIM and DDPM (default: 64)")
    parser.add_argument("--ddim-steps", type=positive(int), default=20, metavar="S",
                        help="the DDIM chain, timed whole each round (default: 20)")
    parser.add_argument("--ddpm-steps", type=positive(int), default=20, metavar="S",
                        help="reverse steps timed per round of the T-step DDPM chain, "
                             "extrapolated to T (default: 20)")
    parser.add_argument("--threads", type=positive(int), default=cores or 1, metavar="N",
                        help=f"threads of every process (default: all cores, {cores})")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: autocast, CUDA only for ddpm bench (default: fp32)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="default: cpu")
    parser.add_argument("--rounds", type=positive(int), default=7, metavar="R",
                        help="interleaved timed rounds per figure (default: 7)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the torch.compile peer")
    parser.add_argument("--no-diffusers", action="store_true",
                        help="leave out both diffusers peers (compare ours with --variant and "
                             "--variant-binary only)")
    parser.add_argument("--package", type=pathlib.Path, metavar="FILE.pt2",
                        help="also sample with this ddpm compile package (same config)")
    parser.add_argument("--variant", type=variant("arguments"), action="append", default=[],
                        metavar="NAME=ARGS",
                        help="also run our binary with these extra `ddpm bench` arguments as "
                             "peer NAME, e.g. contiguous='--memory-format contiguous' "
                             "(repeatable): an A/B of one setting")
    parser.add_argument("--variant-binary", type=variant("binary"), action="append", default=[],
                        metavar="NAME=PATH",
                        help="also run another build of ddpm with the same arguments as peer "
                             "NAME (repeatable): an A/B of two builds")
    parser.add_argument("--ddpm", type=pathlib.Path, default=build / "ddpm", metavar="PATH",
                        help="our binary (default: $DDPM_BUILD_DIR/ddpm, else build/ddpm)")
    parser.add_argument("--python", type=pathlib.Path, default=ROOT / ".venv" / "bin" / "python",
                        metavar="PATH",
                        help="the Python with torch and diffusers that runs "
                             "dev/bench_diffusers.py (default: .venv/bin/python)")
    parser.add_argument("--ready-timeout", type=positive(float), default=900.0, metavar="SECONDS",
                        help="for every process of a figure to warm up and compile "
                             "(default: 900)")
    parser.add_argument("--round-timeout", type=positive(float), default=600.0,
                        metavar="SECONDS", help="for one process's round (default: 600)")
    args = parser.parse_args(argv)
    names = [name for name, _, _ in args.variant + args.variant_binary]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        parser.error(f"peer names must differ: {', '.join(duplicates)} given twice")
    if args.no_diffusers and not names:
        parser.error("--no-diffusers leaves nothing to compare with: add --variant or "
                     "--variant-binary")
    return args


def check_prerequisites(args):
    if not args.config.is_file():
        raise UsageError(f"config file not found: {args.config}")
    if not (args.ddpm.is_file() and os.access(args.ddpm, os.X_OK)):
        raise UsageError(f"ddpm binary not found: {args.ddpm}; {SETUP_HINT}, or pass "
                         "--ddpm PATH")
    if args.package and not args.package.is_file():
        raise UsageError(f"--package {args.package}: no such file; make it with ddpm compile")
    for name, kind, value in args.variant_binary:
        if not (value.is_file() and os.access(value, os.X_OK)):
            raise UsageError(f"--variant-binary {name}={value}: no executable file there")
    if args.no_diffusers:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").unlink(missing_ok=True)
        return
    if not (args.python.is_file() and os.access(args.python, os.X_OK)):
        raise UsageError(f"Python for the diffusers peer not found: {args.python}; "
                         f"{SETUP_HINT}, or pass --python PATH")
    probe = ("import importlib.util as u; "
             "print(' '.join(m for m in ('torch', 'diffusers') if u.find_spec(m) is None))")
    try:
        missing = subprocess.run([str(args.python), "-c", probe], stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=120).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UsageError(f"cannot run {args.python}: {error}") from None
    if missing:
        raise UsageError(f"{' and '.join(missing)} not installed in {args.python}; {SETUP_HINT}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").unlink(missing_ok=True)  # never leave a stale one behind
    except OSError as error:
        raise UsageError(f"--out {args.out}: {error}") from None


def write_atomically(path, text):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def main(argv=None):
    args = parse_args(argv)
    args.out = args.out.resolve()
    check_prerequisites(args)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    summary = {"config": str(args.config), "threads": args.threads, "precision": args.precision,
               "device": args.device, "rounds": args.rounds, "figures": {}}
    for figure in args.figures:
        title, key, processes = figure_commands(figure, args, str(args.python))
        commands = []
        for name, command in processes.items():
            json_path = args.out / f"{name}_{figure}.json"
            json_path.unlink(missing_ok=True)  # so that a stale one can never be read back
            commands.append((name, [*command, "--json", str(json_path)], json_path,
                             args.out / f"{name}_{figure}.stderr"))
        try:
            rates, orders, results = run_figure(title, commands, args, log)
        except Failure as error:
            raise Failure(f"{title}: {error}") from None
        summary["figures"][figure] = {"rate_key": key,
                                      **summarize(rates, orders, results, title)}
    write_atomically(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"\nsummary: {args.out / 'summary.json'}")
    return 0


def stop_on_sigterm(signum, frame):
    raise Terminated


if __name__ == "__main__":
    if sys.version_info < (3, 11):  # subprocess.Popen(process_group=...)
        sys.exit("bench_compare.py: error: needs Python 3.11 or newer; this is "
                 f"{sys.version.split()[0]}")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        sys.exit(main())
    except UsageError as error:
        print(f"bench_compare.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except (Failure, OSError) as error:  # OSError: writing to --out failed
        print(f"bench_compare.py: error: {error}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as stop:
        print("bench_compare.py: interrupted; the benchmark processes were stopped",
              file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)  # 128 + SIGTERM or SIGINT
