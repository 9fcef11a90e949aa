"""What every command shares: the Typer app, the consoles, errors, settings and the API client.

The global ``--api-url`` option lives here; the commands are registered by
:mod:`regsearch.cli.components` (the component processes) and :mod:`regsearch.cli.app` (the
commands about jobs).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text

from regsearch.cli.tables import make_console
from regsearch.config import Settings, get_settings
from regsearch.domain.devices import DEVICE_CHOICES, parse_device
from regsearch.domain.spec import SpecError, load_spec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Find where dropout and batch normalization belong in a network, and how strong they should be.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
# A terminal's own width (tables fit it); into a pipe, COLUMNS when set, else no truncation.
console = make_console(sys.stdout)
err = make_console(sys.stderr, stderr=True)
API_URL_HINT = "set the API's address with --api-url URL or REGSEARCH_API_URL"
_api_url: str | None = None  # the global --api-url, when given
# The bundled example ships inside the package (regsearch/examples), beside this cli/ folder.
EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "mnist1d-mlp.yaml"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``. The message is text, never read
    as console markup: ``size must be [height, width]`` keeps its brackets."""
    # soft wrap: a long message (a file path, a field) stays one line that a terminal wraps itself
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def cli_settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # noqa: BLE001 - any settings error is bad input; pydantic names the variable
        fail(f"configuration: {exc}", 2)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both end in the caller's ``finally`` (which stops the children).

    Set explicitly: a process started in the background by a shell inherits SIGINT ignored,
    and SIGTERM's default would leave the children running.
    """
    import signal

    def stop(*_args: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def api_client(settings: Settings, *, timeout_s: float = 30.0) -> Any:
    """A client for ``--api-url``, else REGSEARCH_API_URL, else the default address."""
    from regsearch.client import Client

    if _api_url is not None:
        settings = settings.model_copy(update={"api_url": _api_url})
    return Client.from_settings(settings, timeout_s=timeout_s)


def api_call(call: Any) -> Any:
    from regsearch.client import ApiError

    try:
        return call()
    except ApiError as exc:
        fail(exc.message + (f" ({API_URL_HINT})" if exc.status == 0 else ""), 2 if exc.is_bad_input else 1)


def _print_version(value: bool) -> None:
    if value:
        from regsearch import __version__

        print(f"regsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    api_url: Annotated[str | None, typer.Option(
        "--api-url", metavar="URL", show_default=False,
        help="Where the API is, for the client commands (else REGSEARCH_API_URL, else http://127.0.0.1:8000).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print the installed version and exit.")] = False,
) -> None:
    """Find where dropout and batch normalization belong in a network, and how strong they should be."""
    global _api_url
    if api_url is not None and not api_url.startswith(("http://", "https://")):
        fail(f"--api-url: {api_url!r} is not an http:// or https:// URL", 2)
    _api_url = api_url


def checked_device(device: str) -> str:
    """The ``--device`` value, checked (exit 2 naming the option when it is not a device)."""
    try:
        return str(parse_device(device))
    except ValueError:
        fail(f"--device: {device!r} is not {DEVICE_CHOICES}", 2)


def load_spec_document(path: Path) -> dict[str, Any]:
    try:
        return load_spec(path).model_dump(mode="json", exclude_none=True)
    except SpecError as exc:
        fail(str(exc), 2)
