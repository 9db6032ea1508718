"""The ``imgsearch`` command line: the root group, assembled from every package's commands, and ``serve``.

Each package contributes its commands through the ``imgsearch.commands`` entry points in
pyproject.toml (imgsearch.indexer.cli: the commands that write an index folder; imgsearch.search.cli.commands:
those that read one; this module: ``serve``).  A command's module is imported only when it runs.

Errors are reported here, once for every command: an ``ImgsearchError`` (a problem the user can
fix) as one ``Error: <message>`` line and exit status 1 (or the error's ``exit_code``: 75 when
another command is writing the index); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points

import click

from imgsearch.search.cli.commands import index_option
from imgsearch.search.query.numbers import Integer
from imgsearch.web.keys_cli import keys_file_option

ENTRY_POINTS = "imgsearch.commands"


class Commands(click.Group):
    """The subcommands registered under the ``imgsearch.commands`` entry points, loaded on use."""

    def _points(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}

    def list_commands(self, ctx) -> list[str]:
        return sorted(self._points())

    def get_command(self, ctx, name):
        point = self._points().get(name)
        return point.load() if point is not None else None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors (exit 2), --help, Ctrl-C
        except Exception as exc:
            # imported only on a failure: search.errors loads the index readers, slow for 'CMD --help'
            from imgsearch.search.errors import ImgsearchError

            if isinstance(exc, ImgsearchError):
                error = click.ClickException(str(exc))
                error.exit_code = getattr(exc, "exit_code", 1)  # e.g. 75: another command is writing the index
                raise error from exc
            raise


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True,
              help="Log what happens (which runtime, cache hits) and show what TensorFlow and TFLite print.")
@click.version_option(package_name="imgsearch", message="imgsearch %(version)s")
def main(verbose: bool) -> None:
    """imgsearch: image similarity search with pretrained CNN embeddings and FAISS."""
    # read by imgsearch.indexer.quiet, here and in worker processes: without it, the libraries' own output
    # is kept in the cache's models/libraries.log, not shown
    os.environ["IMGSEARCH_VERBOSE"] = "1" if verbose else "0"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@click.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=Integer(0, 65535))
@click.option("--threads", default=8, show_default=True, type=Integer(1, 64),
              help="Worker threads (waitress); they share one loaded model.")
@click.option("--connection-limit", default=1000, show_default=True, type=Integer(1, 100_000),
              help="Open connections, idle ones included, before new ones wait.")
@click.option("--channel-timeout", default=30, show_default=True, type=Integer(1, 3600),
              help="Seconds an idle or trickling connection is kept open.")
@click.option("--allow-url-queries", is_flag=True,
              help="Let clients search by {\"url\": ...}: the server fetches it (public addresses only, see README).")
@click.option("--url-allow-network", "url_allow_networks", multiple=True, metavar="CIDR",
              help="With --allow-url-queries: also fetch from this private or loopback network; repeatable.")
@click.option("--max-url-fetches", type=click.IntRange(1, 64), default=None,
              help="With --allow-url-queries: URL fetches at once; more get 503 busy [default: threads / 4].")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A name clients reach the server by, besides localhost, 127.0.0.1, [::1] and --host; repeatable; "
                   "'*': any (only behind a proxy that checks Host). Other names get 400 (DNS rebinding).")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Another site whose pages may post to this server (e.g. https://front.example); repeatable.")
@click.option("--dev", is_flag=True, help="Use Flask's development server instead of waitress.")
@keys_file_option
@click.option("--require-key", is_flag=True,
              help="Every /api request needs a key (imgsearch keys create); off loopback, writes always need a "
                   "write key.")
@click.option("--allow-training/--no-training", default=None, hidden=True)
def serve(index_dir, host, port, threads, connection_limit, channel_timeout, allow_url_queries, url_allow_networks,
          max_url_fetches, allowed_hosts, allowed_origins, dev, keys_file, require_key, allow_training):
    """Serve the search page and JSON API for one index folder.

    The port is taken before anything is printed: a busy port is an error, not a traceback.
    Facing the internet, put a reverse proxy in front (README, "Serving").
    """
    from imgsearch.web import create_app
    from imgsearch.web.server import make_server, port_in_use

    if allow_training is not None:
        raise click.UsageError("--allow-training and --no-training are gone: off loopback, teaching and deleting heads "
                               "need a write key (imgsearch keys create --scope write); on loopback they are allowed "
                               "unless --require-key")
    logging.getLogger("imgsearch.web.audit").setLevel(logging.INFO)  # every write, with its key's name

    app = create_app({"INDEX_DIR": str(index_dir), "SERVER_THREADS": threads, "CONNECTION_LIMIT": connection_limit,
                      "CHANNEL_TIMEOUT": channel_timeout, "ALLOW_URL_QUERIES": allow_url_queries,
                      "URL_QUERY_ALLOW_NETWORKS": url_allow_networks, "MAX_URL_FETCHES": max_url_fetches,
                      "ALLOWED_HOSTS": allowed_hosts, "ALLOWED_ORIGINS": allowed_origins, "KEYS_FILE": keys_file,
                      "REQUIRE_KEY": require_key, "BOUND_HOST": host})
    engine = app.extensions["imgsearch"]
    try:
        server = None if dev else make_server(app, host, port)
        if dev:
            port_in_use(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                   "choose another --port (or --host)") from None
    port = server.effective_port if server is not None else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"serving {engine.info()['count']} images from {index_dir}")
    click.echo(f"open http://{shown}:{port}/  (JSON API under /api, Ctrl-C to stop)", err=False)
    if host in ("0.0.0.0", "::", "") and not allowed_hosts:
        click.echo("listening on every address: requests must name this server as localhost or 127.0.0.1; add the "
                   "names and addresses others use with --allowed-host NAME", err=True)
    if dev:
        app.run(host=host, port=port, debug=False, threaded=True, use_reloader=False)
    else:
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()


if __name__ == "__main__":
    main()
