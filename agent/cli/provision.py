"""`batigate provision`: the gateway's identity from the technician's side.

    provision                  new EC P-256 key (0600, never printed) + CSR with CN = gateway id
    provision --renew          the same for a rotation: the key waits as <key>.new
    provision install-cert F   checked against the key and the CA, then installed
    provision show             the installed certificate and what is wrong with it
    provision lab-ca init|sign a lab CA, for tests and labs only
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from agent.cli.common import (EXIT_CONFIG, EXIT_FAILURE, config_option, console, emit_json, fail,
                              json_option, load_or_exit)
from agent.i18n import t


def _tls_paths(config: Any, as_json: bool) -> Any:
    tls = config.mqtt.tls
    if tls is None or tls.cert is None or tls.key is None:
        fail(t("provision.no_cert_config"), EXIT_CONFIG, as_json=as_json)
    return tls


@click.group("provision", invoke_without_command=True)
@click.option("--renew", is_flag=True, help="rotation: a new key beside the current one")
@click.option("--csr", "csr_out", type=click.Path(path_type=Path),
              help="where to write the CSR (default: the certificate path + .csr)")
@config_option
@json_option
@click.pass_context
def provision(ctx: click.Context, renew: bool, csr_out: Path | None, config_path: Path,
              as_json: bool) -> None:
    """Generate this gateway's key (on the gateway, mode 0600, never printed or sent) and a
    certificate signing request with CN = gateway id, for the CA.

    \b
    Examples:
      batigate provision                      # first time: key + gw.crt.csr
      batigate provision --renew --json       # rotation: the key waits as gw.key.new
      batigate provision install-cert gw.crt  # when the CA sent the certificate back
    """
    if ctx.invoked_subcommand is not None:
        return
    from provisioning import certs, keys  # noqa: PLC0415

    config = load_or_exit(config_path)
    tls = _tls_paths(config, as_json)
    key_path = certs.pending_key_path(Path(tls.key)) if renew else Path(tls.key)
    if renew:
        key_path.unlink(missing_ok=True)  # an abandoned renewal
    try:
        key = keys.generate(key_path)
    except keys.KeyError_ as exc:
        fail(str(exc), EXIT_FAILURE, as_json=as_json)
    except OSError as exc:
        fail(t("provision.cannot_write", path=key_path, error=exc.strerror or exc), EXIT_FAILURE,
             as_json=as_json)
    pem = keys.csr_pem(keys.csr(key, config.gateway.id))
    target = csr_out or Path(str(tls.cert) + ".csr")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(pem)
    summary = {"ok": True, "gateway": config.gateway.id, "key": str(key_path), "csr": str(target),
               "key_sha256": keys.public_fingerprint(key), "csr_pem": pem}
    if as_json:
        emit_json(summary)
        return
    click.echo(t("provision.key", path=key_path))
    click.echo(t("provision.csr", path=target, cn=config.gateway.id,
                 fingerprint=summary["key_sha256"]))
    click.echo(t("provision.send_csr") + f"\n\n{pem}", nl=False)


@provision.command("install-cert")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA to check against (default: mqtt.tls.ca)")
@config_option
@json_option
def install_cert(cert_file: Path, ca: Path | None, config_path: Path, as_json: bool) -> None:
    """Check CERT_FILE against this gateway's key (or the renewed one), its id and the CA, then
    install it (the previous certificate is kept as .prev). Restart the agent afterwards.

    \b
    Example:  batigate provision install-cert /media/usb/gw-0042.crt && systemctl restart batigate
    """
    from provisioning import certs, keys  # noqa: PLC0415

    config = load_or_exit(config_path)
    tls = _tls_paths(config, as_json)
    key_path = Path(tls.key)
    pending = certs.pending_key_path(key_path)
    now = dt.datetime.now(dt.UTC)
    try:
        chain = certs.load_chain(cert_file.read_bytes(), str(cert_file))
        ca_certs = certs.load_ca(ca or tls.ca)
        rotation = pending.exists() and certs.same_key(chain[0], keys.load(pending))
        key = keys.load(pending if rotation else key_path)
        leaf = certs.check(chain, key, ca_certs, config.gateway.id, now)
        certs.install(chain, Path(tls.cert), key_path, new_key=rotation)
    except (certs.CertProblem, keys.KeyError_) as exc:
        fail(t("provision.not_installed", error=exc), EXIT_FAILURE, as_json=as_json)
    except OSError as exc:
        fail(t("provision.not_installed_kept", error=exc.strerror or exc), EXIT_FAILURE,
             as_json=as_json)
    info = certs.describe(leaf, now)
    if as_json:
        emit_json({"ok": True, "installed": str(tls.cert), "rotation": rotation, **info})
        return
    _print_cert(info, t("provision.installed_renewed" if rotation else "provision.installed",
                        path=tls.cert))
    click.echo(t("provision.restart"))


@provision.command("show")
@config_option
@json_option
def show(config_path: Path, as_json: bool) -> None:
    """The installed certificate (subject, issuer, expiry) and any problem with it.

    \b
    Example:  batigate provision show
    """
    from provisioning import certs, diagnose  # noqa: PLC0415

    config = load_or_exit(config_path)
    tls = _tls_paths(config, as_json)
    try:
        chain = certs.load_chain(Path(tls.cert).read_bytes(), str(tls.cert))
    except OSError as exc:
        fail(t("provision.cannot_read", path=tls.cert, error=exc.strerror), EXIT_FAILURE,
             as_json=as_json)
    except certs.CertProblem as exc:
        fail(str(exc), EXIT_FAILURE, as_json=as_json)
    info = certs.describe(chain[0])
    problems = diagnose.local_problems(tls, config.gateway.id)
    if as_json:
        emit_json({"ok": not problems, **info, "problems": problems})
    else:
        _print_cert(info, str(tls.cert))
        for problem in problems:
            click.secho(t("provision.problem", problem=problem), fg="red", err=True)
    if problems:
        raise SystemExit(EXIT_FAILURE)


def _print_cert(info: dict[str, Any], title: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, show_header=False)
    for key in ("subject", "issuer", "serial", "not_before", "not_after", "days_left", "sha256"):
        table.add_row(key, str(info[key]))
    console().print(table)


# -- lab CA ---------------------------------------------------------------------------------------

@provision.group("lab-ca")
def lab_ca() -> None:
    """A small CA FOR TESTS AND LABS ONLY (its key is a plain file; a fleet needs a real CA)."""


@lab_ca.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="batigate lab CA", show_default=True)
def lab_ca_init(folder: Path, name: str) -> None:
    """Create a lab CA in FOLDER (ca.crt, ca.key).

    \b
    Example:  batigate provision lab-ca init ./lab-ca
    """
    from provisioning import keys, labca  # noqa: PLC0415

    try:
        labca.LabCA.create(name).save(folder)
    except keys.KeyError_ as exc:
        fail(str(exc), EXIT_FAILURE)
    click.echo(t("provision.lab_ca_written", folder=folder))


@lab_ca.command("sign")
@click.argument("csr_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ca-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True)
@click.option("--days", type=click.FloatRange(0.01, 825), default=90, show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="default: stdout")
def lab_ca_sign(csr_file: Path, ca_dir: Path, days: float, output: Path | None) -> None:
    """Sign a gateway CSR with the lab CA.

    \b
    Example:  batigate provision lab-ca sign gw.crt.csr --ca-dir ./lab-ca -o gw.crt
    """
    from provisioning import labca  # noqa: PLC0415

    try:
        cert = labca.LabCA.load(ca_dir).sign_csr(csr_file.read_bytes(), days=days)
    except labca.CsrRefused as exc:
        fail(t("provision.refused", error=exc), EXIT_FAILURE)
    if output:
        output.write_bytes(labca.pem(cert))
        click.echo(t("provision.signed", output=output, cn=cert.subject.rfc4514_string(),
                     days=f"{days:g}"), err=True)
    else:
        click.echo(labca.pem(cert).decode(), nl=False)
