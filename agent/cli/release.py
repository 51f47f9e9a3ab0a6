"""`batigate release build|verify|keys gen`: the signed bundle of wheels that `update.install`
installs (agent/lifecycle/release.py), made and checked on the release manager's machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, emit_json, fail, json_option
from agent.i18n import t


@click.group("release")
def release_group() -> None:
    """Build and verify signed release bundles for update.install."""


@release_group.command("build")
@click.argument("wheels", type=click.Path(path_type=Path, file_okay=False))
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True,
              help="the release private key (PEM, mode 0600)")
@click.option("--new-key", is_flag=True,
              help="generate the release key at --key first (KEY.pub beside it for the gateways' "
                   "update.public_key); refused if it exists")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("dist"),
              show_default=True, help="where the bundle, .sha256, .sig and manifest go")
@click.option("--version", "version", help="fail unless the batigate wheel has this version")
@click.option("--url", help="also print the update.install arguments for this download URL")
@json_option
def release_build(wheels: Path, key_path: Path, new_key: bool, out_dir: Path,
                  version: str | None, url: str | None, as_json: bool) -> None:
    """Bundle the wheels of WHEELS (images/wheels.sh output) and sign it.

    \b
    Examples:
      batigate release build wheels/ --key release.key --new-key --out dist/
      batigate release build wheels/ --key release.key --url https://files.example.org/b.tar.gz
    """
    from agent.lifecycle import release  # noqa: PLC0415

    try:
        key = release.generate_key(key_path) if new_key else release.load_private_key(key_path)
        built = release.build(wheels, out_dir, key, version=version)
    except release.ReleaseError as exc:
        fail(str(exc), EXIT_CONFIG, as_json=as_json)
    doc = built.doc
    result = {"ok": True, "bundle": str(built.bundle), "manifest": str(built.manifest),
              "version": doc["version"], "size": doc["size"], "sha256": doc["sha256"],
              "key": doc["key"], "wheels": len(doc["wheels"])}
    if new_key:
        result["public_key"] = str(release.public_path(key_path))
    if url:
        result["update_install"] = release.install_args(doc, url)
    if as_json:
        emit_json(result)
        return
    click.echo(t("release.built", bundle=built.bundle, version=doc["version"],
                 wheels=len(doc["wheels"]), size=doc["size"], sha256=doc["sha256"],
                 key=doc["key"]))
    click.echo(t("release.manifest", path=built.manifest))
    if new_key:
        click.echo(t("release.new_key", path=key_path, public=result["public_key"]))
    if url:
        click.echo(t("release.install_args", args=json.dumps(result["update_install"])))


@release_group.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--pub", "pub_path", type=click.Path(path_type=Path), required=True,
              help="the release public key (the gateways' update.public_key)")
@click.option("--manifest", type=click.Path(path_type=Path),
              help="default: batigate-VERSION.json beside the bundle")
@json_option
def release_verify(bundle: Path, pub_path: Path, manifest: Path | None, as_json: bool) -> None:
    """Check a bundle as a gateway will (size, sha256, signature, only wheels) and its manifest.

    \b
    Example:  batigate release verify dist/batigate-1.5.0.tar.gz --pub release.key.pub
    """
    from agent.lifecycle import release  # noqa: PLC0415
    from agent.commands import signing

    try:
        key = signing.load_public_key(pub_path)
    except (OSError, ValueError) as exc:
        fail(f"{pub_path}: {exc}", EXIT_CONFIG, as_json=as_json)
    try:
        doc = release.verify(bundle, key, manifest)
    except release.ReleaseError as exc:
        fail(str(exc), EXIT_FAILURE, as_json=as_json)
    if as_json:
        emit_json({"ok": True, "version": doc["version"], "sha256": doc["sha256"],
                   "size": doc["size"], "wheels": len(doc["wheels"])})
    else:
        click.echo(t("release.verified", bundle=bundle, version=doc["version"],
                     wheels=len(doc["wheels"]), key=release.fingerprint(key)))
