"""``din-lab``: the lab's command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from din_lab import __version__
from din_lab.errors import DinLabError

log = logging.getLogger("din_lab")



def _seed(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer or none, not {text!r}") from None

def _demo(args: argparse.Namespace) -> int:
    from din_lab.chain import connect
    from din_lab.protocol.scripted import run_lifecycle

    chain = connect(args.chain, accounts=3 + args.participants + args.evaluators)
    report = run_lifecycle(chain, participants=args.participants, evaluators=args.evaluators, rounds=args.rounds)
    print(f"DIN task lifecycle on the {chain.backend} chain: task {report.task}")
    print(f"{report.rounds} training rounds, {report.transactions} transactions, {report.gas_used:,} gas")
    print(f"note: {'; '.join(report.notes)}")
    print(f"\n{'account':<20}{'before':>12}{'after':>12}{'change':>12}")
    for name, before in report.balances_before.items():
        after = report.balances_after[name]
        print(f"{name:<20}{before:>12.2f}{after:>12.2f}{after - before:>+12.2f}")
    print("\nstakes after:", ", ".join(f"{k} {v:.0f}" for k, v in report.stakes_after.items()))
    print("slashed:", ", ".join(report.slashed) or "nobody")
    print("participant scores (BlockFlow median):",
          ", ".join(f"{k} {v:.2f}" for k, v in sorted(report.scores.items())))
    print(f"total supply {report.total_supply:,.0f} DIN (unchanged: no token created or lost)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(report), indent=1))
        print(f"\nresults written to {out.resolve()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from din_lab.config import ExperimentConfig
    from din_lab.experiment import run

    settings: dict = {}
    if args.config:
        try:
            settings = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            print(f"din-lab: error: cannot read --config {args.config}: {e}", file=sys.stderr)
            return 2
    for key in ("participants", "evaluators", "subgroup_size", "evaluators_per_subgroup", "rounds", "dataset",
                "partition", "model", "local_epochs", "scorer", "contribution", "chain", "seed", "evaluation", "he_workers",
                "runtime", "workers", "target_accuracy", "stop_on_budget", "identity", "economy", "licence_supply",
                "licence_price", "harberger_rate", "public_goods_bps"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for key in ("malicious_evaluators", "malicious_participants"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    if args.licences is not None:
        settings["licences"] = args.licences
    if args.secagg is not None:
        settings["secagg"] = args.secagg == "on"
    if args.secagg_graph is not None:
        settings["secagg_graph"] = args.secagg_graph
    if args.dropout is not None:
        settings["dropout"] = args.dropout
    config = ExperimentConfig.from_dict(settings)
    result = run(config, progress=not args.no_progress)
    s = result.summary
    actors = f" ({config.workers} Ray actors)" if config.runtime == "ray" else ""
    print(f"DIN task on the {result.summary['chain']} chain{actors}: {config.participants} participants, {config.evaluators} "
          f"evaluators, {len(s['rounds'])} rounds, {config.dataset} / {config.model}, scorer {config.scorer} "
          + ("in one task-wide game, " if config.contribution_game == "task" else "in each subgroup's own game, ")
          + (f"secure aggregation ({config.secagg_graph} mask graph)" if config.secagg
             else "plaintext updates (baseline: no secure aggregation)")
          + (f", {config.dropout:g} of participants drop out each round" if config.dropout else "")
          + (", encrypted evaluation (CKKS)" if config.evaluation == "he"
             else ", plaintext evaluation (baseline: the test set in the clear)"))
    for note in s["notes"]:
        print(f"note: {note}")
    print("\nround  accuracy  updates  accepted  aborted  disputes  slashed")
    for r in s["rounds"]:
        print(f"{r['round']:>5}  {r['accuracy']:>8.3f}  {r['updates']:>7}  {r['accepted_groups']:>8}  "
              f"{r['aborted_groups']:>7}  {r['disputes']:>8}  {', '.join(r['slashed']) or '-'}")
    stopped = next((r for r in s["rounds"] if r["stopped"]), None)
    if stopped:
        print(f"training stopped after round {stopped['round']}: {stopped['stopped']}")
    top = sorted(s["participants"], key=lambda p: -p["reward"])[:5]
    print("\ntop-paid participants: " + ", ".join(f"{p['name']} ({p['behaviour']}) {p['reward']:.1f}" for p in top))
    slashed = [e for e in s["evaluators"] if e["slashed_amount"] > 0]
    print("slashed evaluators: " + (", ".join(f"{e['name']} ({e['behaviour']}) -{e['slashed_amount']:.0f}"
                                              for e in slashed) or "none"))
    t = s["tokens"]
    print(f"tokens: deposit {t['deposit']:.1f} -> participants {t['paid_participants']:.1f}, evaluator fees "
          f"{t['paid_evaluators']:.1f}, public goods {t['public_goods']:.1f}, owner refund {t['refunded_owner']:.1f}; "
          f"slashed stake to the fund {t['slashed_to_fund']:.1f}; conserved: {t['conserved']}")
    print(f"final accuracy {s['final_accuracy']:.3f}; gas per participant-round {s['gas']['per_participant_round']:,.0f}; "
          f"{s['timing']['total_seconds']:.1f} s")
    if args.out:
        out = result.write(args.out)
        print(f"\ntables and summary.json written to {out.resolve()}")
    return 0


def _ipfs_add(args: argparse.Namespace) -> int:
    from din_lab.storage import open_store

    source = sys.stdin.buffer if args.file == "-" else args.file
    with open_store(args.repo) as store:
        cid = store.add(source, cid_version=args.cid_version, only_hash=args.only_hash, pin=not args.no_pin)
    print(cid)
    return 0


def _ipfs_cat(args: argparse.Namespace) -> int:
    from din_lab.storage import open_store

    with open_store(args.repo) as store:
        out = sys.stdout.buffer
        try:
            for chunk in store.iter_cat(args.cid):
                out.write(chunk)
            out.flush()
        except BrokenPipeError:  # `din-lab ipfs cat CID | head`
            sys.stdout = None  # type: ignore[assignment]  # nothing more can be written
    return 0


def _ipfs_stat(args: argparse.Namespace) -> int:
    from din_lab.storage import open_store

    with open_store(args.repo) as store:
        stat = store.stat(args.cid)
    print(json.dumps({"cid": str(stat.cid), "codec": stat.codec, "size": stat.size,
                      "cumulative_size": stat.cumulative_size, "links": stat.links, "blocks": stat.blocks,
                      "dag_size": stat.dag_size}, indent=1))
    return 0


def _ipfs_gc(args: argparse.Namespace) -> int:
    from din_lab.storage import open_store

    with open_store(args.repo) as store:
        report = store.gc()
    for cid in report.removed:
        print(f"removed {cid}")
    return 0


def _ipfs_daemon(args: argparse.Namespace) -> int:
    import signal

    from din_lab.storage import open_store
    from din_lab.storage.daemon import RpcServer
    from din_lab.storage.embedded import EmbeddedStore

    store = open_store(args.repo)
    if not isinstance(store, EmbeddedStore):
        print("din-lab: error: the daemon serves an embedded store: give --repo DIR or --repo memory", file=sys.stderr)
        return 2
    server = RpcServer(store, host="127.0.0.1", port=args.port, allowed_origins=tuple(args.allow_origin))
    api_file = store.path / "api" if store.path else None
    if api_file:
        api_file.write_text(server.multiaddr + "/http\n")  # where Kubo's tools look for the API

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"store: {store.name}")
    print(f"RPC API server listening on {server.multiaddr} ({server.url}/api/v0/)")
    print("Daemon is ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("daemon stopping")
    finally:
        server.server_close()
        if api_file:
            api_file.unlink(missing_ok=True)
    return 0


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a DIN training task end to end: train, aggregate, vote, score, pay")
    run.add_argument("--config", help="a JSON file of ExperimentConfig settings (flags override it)")
    run.add_argument("--participants", type=int)
    run.add_argument("--evaluators", type=int)
    run.add_argument("--subgroup-size", dest="subgroup_size", type=int)
    run.add_argument("--evaluators-per-subgroup", dest="evaluators_per_subgroup", type=int)
    run.add_argument("--rounds", type=int)
    run.add_argument("--dataset", help="digits, breast_cancer, wine or energy")
    run.add_argument("--partition", help="iid, dirichlet:ALPHA, quantity:SIGMA or shards:K")
    run.add_argument("--model", help="logreg, mlp, mlp-square (x^2 activation: HE-ready) or cnn")
    run.add_argument("--local-epochs", dest="local_epochs", type=int)
    run.add_argument("--scorer", help="shapley, loo or accuracy")
    run.add_argument("--contribution", choices=("task", "subgroup"),
                     help="the game participants are valued in: task (the default: all final-round contributors in "
                          "one game, one scale, screened in prediction space) or subgroup (each subgroup's own game, "
                          "its best member scoring 1)")
    run.add_argument("--evaluation", choices=("plaintext", "he"),
                     help="how evaluators score: on the owner's CKKS-encrypted test set (he, the default: the owner "
                          "decrypts the committee-agreed outputs; needs --model logreg or mlp-square), or on it in "
                          "plaintext (the baseline: the test set is published in the clear)")
    run.add_argument("--he-workers", dest="he_workers", type=int, metavar="N",
                     help="worker processes for encrypted evaluation (default 1: in this process); the outputs "
                          "are byte-identical whatever N")
    run.add_argument("--malicious-evaluators", dest="malicious_evaluators", action="append", metavar="FRACTION:BEHAVIOUR",
                     help="honest, random, extreme, lazy, wrong-aggregate, copycat, forged-shares, withholder, "
                          "inflated-weight (repeatable)")
    run.add_argument("--malicious-participants", dest="malicious_participants", action="append",
                     metavar="FRACTION:BEHAVIOUR",
                     help="random-data, inverted-labels, half-flipped-labels, scaled, free-rider, dropout, sybil "
                          "(repeatable)")
    run.add_argument("--secagg", choices=("on", "off"),
                     help="secure aggregation of updates: masked in subgroups, unmasked as a sum (default on; off is the "
                          "plaintext baseline, where evaluators see and screen each update)")
    run.add_argument("--secagg-graph", dest="secagg_graph", choices=("full", "secagg+"),
                     help="mask graph: O(log n) neighbours (secagg+, Bell et al., the default) or every pair (full, Bonawitz)")
    run.add_argument("--dropout", type=float, metavar="FRACTION",
                     help="fraction of participants that train, then vanish before submitting, each round")
    run.add_argument("--target-accuracy", dest="target_accuracy", type=float, metavar="ACC",
                     help="the owner ends training once its global model reaches ACC on its own test set")
    run.add_argument("--stop-on-budget", dest="stop_on_budget", action="store_true", default=None,
                     help="the owner ends training when its fee budget cannot pay another round's committees and "
                          "scoring")
    run.add_argument("--identity", choices=("open", "allowlist"),
                     help="who may register: anyone (open, default) or only accounts the network's identity "
                          "registry verified, one per person (allowlist: refuses Sybils)")
    run.add_argument("--economy", action="store_true", default=None,
                     help="deploy the network's economy (paper sections 6 and 8): a quadratic-funding public-goods "
                          "fund, governed parameters, voice credits and DIN Proposal Protocols, and evaluator "
                          "licences under a Harberger tax that evaluators buy before they opt in")
    run.add_argument("--no-licences", dest="licences", action="store_false", default=None,
                     help="with --economy: evaluators need no licence")
    run.add_argument("--licence-supply", dest="licence_supply", type=int, metavar="N",
                     help="with --economy: licences in all (default one per evaluator; fewer makes them compete)")
    run.add_argument("--licence-price", dest="licence_price", type=float, metavar="DIN",
                     help="with --economy: the fund's reserve price for a licence (default 50)")
    run.add_argument("--harberger-rate", dest="harberger_rate", type=float, metavar="FRACTION",
                     help="with --economy: licence tax per block, a fraction of the self-assessed price (default 1e-4)")
    run.add_argument("--public-goods-bps", dest="public_goods_bps", type=int, metavar="BPS",
                     help="the task's public-goods share in basis points (default 500); with --economy the "
                          "governed share's starting value")
    run.add_argument("--chain", help="embedded (default) or a JSON-RPC URL")
    run.add_argument("--runtime", choices=("local", "ray"),
                     help="where the agents run: local (default, this process) or ray (spread over Ray actors, each "
                          "with its own JSON-RPC connection and IPFS client; starts anvil and `din-lab ipfs daemon` "
                          "unless --chain URL / DIN_LAB_IPFS=URL name them; pip install 'din-lab[ray]')")
    run.add_argument("--workers", type=int, metavar="K", help="Ray actors for --runtime ray (default 2)")
    run.add_argument("--seed", type=_seed, help="an integer (reproducible: every key follows from it), or "
                     "none (keys from the operating system)")
    run.add_argument("--out", help="directory for the CSV tables and summary.json")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)


def _sweep(args: argparse.Namespace) -> int:
    from din_lab.experiment.sweep import parse_value, run_sweep

    grid: dict[str, list] = {}
    for name, *values in args.param:
        if not values:
            print(f"din-lab: error: -p {name} needs at least one value", file=sys.stderr)
            return 2
        if name in grid:
            print(f"din-lab: error: -p {name} given twice", file=sys.stderr)
            return 2
        grid[name] = [parse_value(v) for v in values]
    fixed = {name: parse_value(value) for name, value in (args.set or [])}
    table = run_sweep(args.notebook, grid=grid, out=args.out, workers=args.workers, fixed=fixed,
                      progress=not args.no_progress)
    print(table.to_string(index=False))
    out = Path(args.out).resolve()
    print(f"\n{len(table)} runs; results.csv{', heatmap.png' if (out / 'heatmap.png').exists() else ''} and the "
          f"executed notebooks in {out}")
    return 0


def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="run a papermill-parameterized notebook over a grid, collect one table")
    sweep.add_argument("notebook", help="a notebook with a cell tagged 'parameters' that calls publish_results")
    sweep.add_argument("-p", "--param", nargs="+", action="append", required=True, metavar=("NAME", "VALUES"),
                       help="a parameter and its values (JSON where they parse: 0.2, 3, true); repeat for a grid")
    sweep.add_argument("--set", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="a parameter held fixed for every run (repeatable)")
    sweep.add_argument("--workers", type=int, default=2, help="notebooks run at once, each in its own kernel")
    sweep.add_argument("--out", default="results/sweep", help="directory for results.csv, heatmap.png and the runs")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_sweep)


def _add_ipfs_parser(sub: argparse._SubParsersAction) -> None:
    ipfs = sub.add_parser("ipfs", help="the lab's IPFS store: add, cat, stat, gc, daemon")
    ipfs.add_argument("--repo", default=None,
                      help="an embedded store directory, 'memory', or a Kubo RPC URL "
                           "(default: $DIN_LAB_IPFS, else $DIN_LAB_HOME/ipfs, else ~/.din-lab/ipfs)")
    cmds = ipfs.add_subparsers(dest="ipfs_command", required=True)
    add = cmds.add_parser("add", help="add a file; prints its CID alone on a line (like ipfs add -Q)")
    add.add_argument("file", help="the file to add ('-' reads standard input)")
    add.add_argument("--only-hash", "-n", action="store_true", help="compute the CID, store nothing")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0,
                     help="0: Qm... with dag-pb leaves (default); 1: base32 with raw leaves")
    add.add_argument("--no-pin", action="store_true", help="do not pin (gc may remove it)")
    add.set_defaults(func=_ipfs_add)
    cat = cmds.add_parser("cat", help="write the content of a CID to standard output")
    cat.add_argument("cid")
    cat.set_defaults(func=_ipfs_cat)
    stat = cmds.add_parser("stat", help="size, links and blocks of a CID's DAG, as JSON")
    stat.add_argument("cid")
    stat.set_defaults(func=_ipfs_stat)
    gc = cmds.add_parser("gc", help="remove every block no pin reaches")
    gc.set_defaults(func=_ipfs_gc)
    daemon = cmds.add_parser("daemon", help="serve the store over Kubo's RPC API on 127.0.0.1")
    daemon.add_argument("--port", type=int, default=5001, help="TCP port (default 5001 like Kubo; 0: a free one)")
    daemon.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (scheme://host[:port], or '*' for any) use the API, like "
                             "Kubo's API.HTTPHeaders.Access-Control-Allow-Origin; repeatable. Other pages get 403")
    daemon.set_defaults(func=_ipfs_daemon)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="din-lab", description="DIN Lab: the Decentralized Intelligence Network, run for real.")
    p.add_argument("--version", action="version", version=f"din-lab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run a scripted task lifecycle and print balances before and after")
    demo.add_argument("--chain", default=None, help="'embedded' (default, or $DIN_LAB_CHAIN) or a JSON-RPC URL")
    demo.add_argument("--participants", type=int, default=6)
    demo.add_argument("--evaluators", type=int, default=4)
    demo.add_argument("--rounds", type=int, default=2)
    demo.add_argument("--out", default=None, help="write the report as JSON here")
    demo.set_defaults(func=_demo)
    _add_run_parser(sub)
    _add_sweep_parser(sub)
    _add_ipfs_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except DinLabError as e:
        print(f"din-lab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
