"""``imgsearch keys``: create, list and revoke the API keys a server checks (web/keys.py, web/auth.py)."""

from __future__ import annotations

import click

keys_file_option = click.option(
    "--keys", "keys_file", type=click.Path(dir_okay=False), default=None, envvar="IMGSEARCH_KEYS",
    help="The keys file [default: $IMGSEARCH_KEYS, else ~/.config/imgsearch/keys.json]; keep it outside the index.")


@click.group()
def keys():
    """API keys: read keys search, write keys also teach and delete heads (the server stores hashes only)."""


@keys.command("create")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True,
              help="read: every query; write: also teaching and deleting heads, marking and removing duplicates.")
@click.option("--name", default=None, help="A name for the key, shown in lists and in the server's log of writes "
                                           "[default: SCOPE-xxxxxxxx].")
@keys_file_option
def create(scope, name, keys_file):
    """Make a key and print it, once: only its hash is stored."""
    from imgsearch.web.keys import KeyStore

    store = KeyStore(keys_file)
    token, record = store.create(scope, name)
    click.echo(token)
    click.echo(f"key {record.name!r} ({record.scope}) stored as a hash in {store.path}: copy it now, it will not be "
               "shown again", err=True)


@keys.command("list")
@keys_file_option
def list_keys(keys_file):
    """The keys: name, scope, creation time and fingerprint (never the key)."""
    from imgsearch.web.keys import KeyStore

    store = KeyStore(keys_file)
    found = store.keys()
    if not found:
        click.echo(f"no keys in {store.path} (imgsearch keys create --scope read|write)", err=True)
    for key in found:
        click.echo(f"{key.name}\t{key.scope}\t{key.created}\t{key.fingerprint}")


@keys.command("revoke")
@click.argument("name")
@keys_file_option
def revoke(name, keys_file):
    """Remove key NAME: servers refuse it from their next request on."""
    from imgsearch.web.keys import KeyStore

    store = KeyStore(keys_file)
    gone = store.revoke(name)
    click.echo(f"revoked {gone.name!r} ({gone.scope}, fingerprint {gone.fingerprint})")
