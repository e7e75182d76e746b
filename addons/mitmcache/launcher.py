"""The lean production launcher: the cache in a mitmproxy that loads only what a reverse proxy needs.

    scripts/serve.sh --mode reverse:https://api.internal@0.0.0.0:8080 --set connection_strategy=lazy
    # = PYTHONPATH=addons PYTHONOPTIMIZE=1 .venv/bin/python -m mitmcache ...

Stock ``mitmdump`` hands every hook event of every request (about ten, each followed by an ``update``
event) to each of its ~35 built-in addons in turn, and most of a cache hit's CPU goes there. This
launcher builds a :class:`mitmproxy.master.Master` itself with the addons below, in mitmdump's chain
order, and our :class:`~mitmcache.addon.Cache` where mitmdump's script loader sits:

==================  ==================================================================================
``termlog``         mitmdump's terminal log; ``termlog_verbosity``, ``-q`` and ``-v`` as in mitmdump
``core``            the core options' checks and the built-in commands (``set``, ``flow.*``, ``options.*``)
``block``           *on demand*: only with ``--set block_global=true`` or ``block_private=true``; a
                    reverse proxy serves the clients that reach it, so ``block_global`` defaults to
                    false here (mitmdump kills connections from public addresses by default)
``disable_h2c``     strips ``Upgrade: h2c`` (an upstream switching protocols would break the connection)
                    and kills cleartext HTTP/2 prior-knowledge connections, as mitmdump does
``proxyserver``     the listeners and the proxy core; its options: ``connection_strategy``,
                    ``keep_host_header``, ``stream_large_bodies``, ``body_size_limit``, ...
*the cache*         ``mitmcache.addon.Cache`` (and ``-s`` scripts after it)
``nextlayer``       picks the protocol layers per connection (TLS from the client, HTTP/1, HTTP/2)
``tlsconfig``       TLS to ``https://`` upstreams (verification, SNI, ALPN) and to clients (certificates
                    from ``confdir`` or ``--certs``; HTTP/2 is negotiated over TLS by ALPN)
``update_alt_svc``  points an upstream's ``Alt-Svc`` at the proxy's port instead of the origin's, as
                    mitmdump does in reverse mode (``keep_alt_svc_header``)
``dumper``          *on demand*: mitmdump's per-flow lines, only with ``flow_detail`` > 0 (``-v``
                    sets 2); ``flow_detail`` defaults to 0 here (mitmdump: 1)
``errorcheck``      an error logged during startup (a port in use, a bad script) exits with code 1
==================  ==================================================================================

Errors from mitmproxy's HTTP layer (the 502 page when the upstream is unreachable) need no addon.
Everything else mitmdump loads (replay, map/modify, save, anticache, proxy auth, the console and web
UIs' helpers, ...) is left out; its flags and options are refused with a message that names mitmdump.

The cache is constructed directly rather than loaded from ``addons/cache.py`` by a script loader. The
entry script exists for mitmdump: it purges and re-imports the package so that hot reload picks up
edits. A production process reloads nothing, so the launcher skips the file watcher task and keeps
``mitmcache`` an ordinary module; the code that runs is the same. It is still added the way mitmdump
adds a script (after the command line's options are set, then ``configure`` with every option), so
settings and their errors behave alike; ``-s addons/cache.py`` is accepted as naming it.

Events go through :class:`DispatchTable`, mitmproxy's addon manager with a table of the hooks each
event really has: with the lean chain, walking the chain was still about half of a hit's CPU.

The command line is mitmdump's for what is supported (``--mode``, ``-p/--listen-port``,
``--listen-host``, ``--set`` with mitmdump's parsing and errors, ``-q``, ``-v``, ``-k``, ``--certs``,
``--[no-]http2``, ``-s``, ``--options``, ``--commands``, ``--version``); ``confdir``/config.yaml are read
as mitmdump reads them, and the cache reads ``.env`` and its environment variables as always. One
difference: an option nothing registered (a typo, or an option of an addon left out) stops startup,
where mitmdump ignores it silently.
"""

import argparse
import asyncio
import difflib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mitmproxy import addonmanager, exceptions, master, options, optmanager
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    dumper,
    errorcheck,
    next_layer,
    proxyserver,
    termlog,
    tlsconfig,
    update_alt_svc,
)
from mitmproxy.utils import debug

from .addon import Cache
from .chain import OnDemand, Slot, UsageError
from .compat import DispatchTable
from .writequeue.addon import WriteQueue

PROG = "mitmcache"
# The entry script mitmdump loads (``-s addons/cache.py``): the launcher has the cache built in.
ENTRY_SCRIPT = Path(__file__).resolve().parents[1] / "cache.py"
STOCK_HINT = (
    "for every mitmproxy feature run mitmdump -s addons/cache.py (scripts/run.sh without PRODUCTION=1)"
)
# Flags mitmdump has and the launcher keeps, for messages (the rest are refused).
SUPPORTED_FLAGS = (
    "--mode/-m",
    "--listen-host",
    "--listen-port/-p",
    "--set",
    "--quiet/-q",
    "--verbose/-v",
    "--ssl-insecure/-k",
    "--certs",
    "--cert-passphrase",
    "--[no-]http2",
    "--scripts/-s",
    "--options",
    "--commands",
    "--version",
)


# -- command line ------------------------------------------------------------------------------------


def make_parser(opts: optmanager.OptManager) -> argparse.ArgumentParser:
    """mitmdump's parser (``mitmproxy.tools.cmdline``) cut down to the supported flags.

    Flags for options are generated from the options as mitmdump generates them, so their spelling,
    types and ``--no-`` forms are mitmdump's.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [options]",
        description="The caching reverse proxy on a lean mitmproxy (see docs/launcher.md).",
        allow_abbrev=False,  # an unsupported mitmdump flag must not pass as a prefix of a supported one
    )
    parser.add_argument("--version", action="store_true", help="show version numbers and exit")
    parser.add_argument("--options", action="store_true", help="show all options and their values")
    parser.add_argument("--commands", action="store_true", help="show all commands and their signatures")
    parser.add_argument(
        "--set",
        type=str,
        dest="setoptions",
        default=[],
        action="append",
        metavar="option[=value]",
        help="Set an option, as mitmdump does (repeat it for sequence options).",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="Quiet: log errors only.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug log, and flow_detail=2.")
    opts.make_parser(parser, "mode", short="m")
    opts.make_parser(parser, "listen_host", metavar="HOST")
    opts.make_parser(parser, "listen_port", metavar="PORT", short="p")
    opts.make_parser(parser, "ssl_insecure", short="k")
    opts.make_parser(parser, "certs", metavar="SPEC")
    opts.make_parser(parser, "cert_passphrase", metavar="PASS")
    opts.make_parser(parser, "http2")
    parser.add_argument(
        "-s",
        "--scripts",
        dest="lean_scripts",
        action="append",
        default=[],
        metavar="SCRIPT",
        help="Load an addon script once at startup (no hot reload). addons/cache.py is built in: "
        "naming it changes nothing.",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="Leave the cache addon out (to measure the addons given with -s on the lean mitmproxy).",
    )
    return parser


def parse_args(argv: Sequence[str], opts: optmanager.OptManager) -> argparse.Namespace:
    """Parse ``argv``; raise :class:`UsageError` for anything mitmdump accepts and we do not.

    Malformed values of supported flags (``-p abc``) exit through argparse, as with mitmdump.
    """
    args, unknown = make_parser(opts).parse_known_args(list(argv))
    if unknown:
        raise UsageError(describe_unsupported_args(unknown))
    return args


def describe_unsupported_args(unknown: Sequence[str]) -> str:
    listed = " ".join(unknown)
    stock = _mitmdump_parser()
    try:
        _, still_unknown = stock.parse_known_args(list(unknown))
    except (SystemExit, argparse.ArgumentError):  # a mitmdump flag with a bad value: still mitmdump's
        still_unknown = []
    known_to_mitmdump = not still_unknown
    what = (
        "mitmdump argument(s) the lean launcher does not support"
        if known_to_mitmdump
        else "unknown argument(s)"
    )
    return f"{what}: {listed}. Supported: {', '.join(SUPPORTED_FLAGS)}; {STOCK_HINT}."


def _mitmdump_parser() -> argparse.ArgumentParser:
    from mitmproxy.tools import cmdline

    parser = cmdline.mitmdump(mitmdump_options()[0])
    parser.exit_on_error = False
    return parser


def mitmdump_options() -> tuple[options.Options, dict[str, str]]:
    """Every option stock mitmdump has, and for each the addon that registers it ("" for the core).

    Built by calling the ``load`` of the addons mitmdump loads with a loader that only records.
    """
    from mitmproxy.addons import default_addons, keepserving, readfile

    opts = options.Options()
    owners = dict.fromkeys(opts.keys(), "")
    stub = SimpleNamespace(options=opts, commands=SimpleNamespace(add=lambda *_: None))
    loader = addonmanager.Loader(stub)
    for addon in [
        *default_addons(),
        dumper.Dumper(),
        keepserving.KeepServing(),
        readfile.ReadFileStdin(),
    ]:
        before = opts.keys()
        if hasattr(addon, "load"):
            addon.load(loader)
        for name in opts.keys() - before:
            owners[name] = addonmanager._get_name(addon)
    opts.add_option("termlog_verbosity", str, "info", "Log verbosity.")  # the master's termlog
    owners["termlog_verbosity"] = "termlog"
    return opts, owners


# -- addons ------------------------------------------------------------------------------------------


def _block_wanted(opts: Any) -> bool:
    return bool(opts.block_global or opts.block_private)


def _dumper_wanted(opts: Any) -> bool:
    return bool(opts.flow_detail > 0)


class LeanMaster(master.Master):
    """A mitmproxy master with the addons a caching reverse proxy needs (see the module docstring).

    ``load(cache=..., scripts=...)`` adds the cache and scripts once the options are set.
    """

    def __init__(self, opts: options.Options, *, with_termlog: bool = True) -> None:
        super().__init__(opts)
        self.addons = DispatchTable(self)
        if with_termlog:  # as Master.__init__ does, on our addon manager
            self._termlog_addon = termlog.TermLog()
            self.addons.add(self._termlog_addon)
        self.cache: Cache | None = None
        self.slot = Slot()
        self.addons.add(
            core.Core(),
            OnDemand(block.Block(), _block_wanted, {"block_global": False}),
            disable_h2c.DisableH2C(),
            proxyserver.Proxyserver(),
            self.slot,
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            update_alt_svc.UpdateAltSvc(),
            OnDemand(dumper.Dumper(), _dumper_wanted, {"flow_detail": 0}),
            errorcheck.ErrorCheck(),
        )

    def load(self, *, cache: bool = True, scripts: Sequence[str] = ()) -> None:
        """Add the cache (unless ``cache`` is false) and ``scripts``, then configure them.

        Raises ``ValueError`` (a bad .env file or environment variable, named), ``OptionsError`` (a
        bad setting, named) or ``UsageError`` (a script that does not load).
        """
        if cache:
            self.cache = Cache()
            self.slot.add(self.cache)
            self.slot.add(WriteQueue(self.cache))  # off unless ASYNC_ROUTES is set
        for path in scripts:
            self.slot.add_script(path)
        self.slot.configure_all()


# -- startup -----------------------------------------------------------------------------------------


def apply_options(opts: options.Options, args: argparse.Namespace) -> None:
    """mitmdump's order (``mitmproxy.tools.main.run``): ``--set`` (unknown names deferred), then
    ``confdir``'s config.yaml, then ``-q``/``-v``, then the flags for options."""
    opts.set(*args.setoptions, defer=True)
    optmanager.load_paths(
        opts,
        os.path.join(opts.confdir, "config.yaml"),
        os.path.join(opts.confdir, "config.yml"),
    )
    flags = dict(vars(args))
    if args.quiet or args.options or args.commands:
        flags.update(termlog_verbosity="error", flow_detail=0)
    if args.verbose:
        flags.update(termlog_verbosity="debug", flow_detail=2)
    opts.update(**{key: value for key, value in flags.items() if key in opts and value is not None})


def check_no_leftovers(opts: options.Options) -> None:
    """Options set but never registered: refused (mitmdump ignores them silently)."""
    if not opts.deferred:
        return
    stock_owners = mitmdump_options()[1]
    problems = []
    for name in sorted(opts.deferred):
        owner = stock_owners.get(name)
        if owner is not None:
            problems.append(
                f"{name} (an option of mitmproxy's {owner or 'core'} addon, which the lean launcher does not load)"
            )
        else:
            close = difflib.get_close_matches(name, sorted(opts.keys()), n=1)
            problems.append(f"{name} (unknown{f'; did you mean {close[0]}?' if close else ''})")
    raise UsageError(
        f"unsupported option(s): {'; '.join(problems)}. {STOCK_HINT[0].upper()}{STOCK_HINT[1:]}."
    )


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(os.path.expanduser(a.strip("'\" "))).resolve() == b
    except OSError:
        return False


def _configure_logging() -> None:
    """As ``mitmproxy.tools.main.run`` does for mitmdump."""
    logging.getLogger().setLevel(logging.DEBUG)
    for name in ("tornado", "asyncio", "hpack", "quic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _version() -> str:
    return f"{debug.dump_system_info()}\nLauncher: {PROG} (lean; {Path(__file__).resolve()})"


async def serve(args: argparse.Namespace, opts: options.Options) -> int:
    """Build the master, apply the options, run until SIGINT/SIGTERM; the process's exit code."""
    _configure_logging()
    debug.register_info_dumpers()
    scripts = list(args.lean_scripts)
    if not args.no_cache:
        scripts = [s for s in scripts if not _same_file(s, ENTRY_SCRIPT)]
    lean = LeanMaster(opts)
    try:
        apply_options(opts, args)
        try:
            lean.load(cache=not args.no_cache, scripts=scripts)
        except ValueError as e:  # the cache's load(): a bad .env file or environment variable, named
            raise UsageError(str(e)) from e
        check_no_leftovers(opts)
    except (exceptions.OptionsError, exceptions.AddonManagerError, UsageError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if args.options:
        optmanager.dump_defaults(opts, sys.stdout)
        return 0
    if args.commands:
        lean.commands.dump()
        return 0

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lean.shutdown)
    # A client or terminal that goes away must not kill the proxy (mitmproxy issue #6744).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    await lean.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    opts = options.Options()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, opts)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if args.version:
        print(_version())
        return 0
    return asyncio.run(serve(args, opts))
