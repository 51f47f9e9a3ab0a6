"""`batigate remote config apply` and `batigate remote update`: the two remote verbs that change
what a gateway runs, each guarded the way an operator would do it by hand (agent/remote/apply.py,
agent/remote/rollout.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, emit_json, fail, json_option
from agent.cli.remote import Context, run, targets_of
from agent.i18n import english, t


@click.group("config")
def config_group() -> None:
    """Change a gateway's config remotely."""


@config_group.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("gateway")
@click.option("--yes", is_flag=True, help="apply without asking after the diff")
@click.option("--confirm-within", type=click.FloatRange(30, 86400), default=300,
              show_default=True, help="seconds before the gateway rolls back by itself")
@click.option("--settle", type=float, default=15, show_default=True,
              help="seconds to watch the gateway before confirming")
@click.option("--no-confirm", is_flag=True, help="apply, then let it roll back (a trial)")
@json_option
@click.pass_obj
def config_apply(ctx: Context, file: Path, gateway: str, yes: bool, confirm_within: float,
                 settle: float, no_confirm: bool, as_json: bool) -> None:
    """Show the diff and the planned live changes of FILE against GATEWAY's running config,
    apply it, watch it settle, then confirm it (or let it roll back when unhealthy).

    \b
    Example:  batigate remote config apply gateway.yaml res-les-pins/gw-0042
    """
    from agent.sdk.errors import ConfigError  # noqa: PLC0415
    from agent.remote import apply, commands, link  # noqa: PLC0415

    text = file.read_text()
    key = ctx.key()

    async def body(connected: link.Link) -> int:
        target, = await targets_of(connected, gateway, None)
        sender = commands.Sender(connected, key=key, by=link.operator_name(),
                                 final_timeout=confirm_within + 60)
        try:
            return await _apply(connected, sender, target)
        finally:
            await sender.close()

    async def _apply(connected: Any, sender: Any, target: Any) -> int:
        got = await sender.run(target, "config.get", {})
        if not got.ok:
            fail(t("remote.config_get_failed", target=target, status=got.status,
                   error=got.as_dict()["error"] or ""), as_json=as_json)
        running = got.final["result"]
        try:
            new, plan, lines = apply.prepare(text, str(file), running["config"])
        except ConfigError as exc:
            for line in exc.problems:
                click.echo(line, err=True)
            fail(t("remote.problems", count=len(exc.problems), file=file), EXIT_CONFIG,
                 as_json=as_json, problems=exc.problems)
        report: dict[str, Any] = {"gateway": str(target), "plan": plan.as_dict(), "diff": lines}
        if not as_json:
            click.echo("\n".join(lines) or t("remote.no_difference"))
            click.echo(t("remote.plan", plan="; ".join(plan.lines())))
        if plan.empty and not lines:
            return _done(report, True, t("remote.nothing_to_apply"))
        if not yes and not click.confirm(t("remote.apply_to", target=target), err=True):
            return _done(report, False, t("remote.not_applied"))
        states = await sender.run(target, "ping", {})
        old_sess = (states.final or {}).get("result", {}).get("sess") if states.ok else None
        applied = await sender.run(target, "config.apply",
                                   {"config": text, "confirm_within": confirm_within},
                                   until_final=False)
        report["apply"] = applied.as_dict()
        if applied.status != "in_progress":
            return _done(report, applied.ok, f"config.apply: {applied.status}")
        health = await apply.settle(connected, sender, target,
                                    devices=[d["id"] for d in new.get("devices") or []],
                                    restart=bool(plan.restart), old_sess=old_sess,
                                    seconds=settle)
        report["health"] = {"ok": health.ok, "reasons": health.reasons}
        if health.ok and not no_confirm:
            confirmed = await sender.run(target, "config.confirm", {})
            report["confirm"] = confirmed.as_dict()
            if not confirmed.ok:
                return _done(report, False, f"config.confirm: {confirmed.status}")
        elif not as_json:
            click.echo(t("remote.not_confirming",
                         why="; ".join(health.reasons) or "--no-confirm"), err=True)
        final = await sender.follow(applied)
        report["final"] = final.as_dict()
        good = final.ok and health.ok and not no_confirm
        answer = f"{final.status} {final.as_dict()['error'] or ''}".strip()
        return _done(report, good, t("remote.final", answer=answer))

    def _done(report: dict[str, Any], good: bool, line: str) -> int:
        if as_json:
            emit_json({"ok": good, **report, "outcome": english(line)})
        else:
            click.secho(line, fg="green" if good else "red")
        return 0 if good else EXIT_FAILURE

    run(ctx, body)


@click.command("update")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--url", required=True, help="where the gateways download BUNDLE (http or https)")
@click.option("--site", help="every gateway of SITE")
@click.option("--gateway", "gateways", multiple=True, help="SITE/GW (repeatable) instead of --site")
@click.option("--canary", help="the gateway updated first (default: the first by name)")
@click.option("--pub", type=click.Path(path_type=Path, dir_okay=False),
              help="the release public key: verify the bundle here before sending")
@click.option("--manifest", type=click.Path(path_type=Path, dir_okay=False),
              help="default: batigate-VERSION.json beside the bundle")
@click.option("--wait", "final_wait", type=float, default=1200, show_default=True,
              help="seconds for each gateway's final answer (install + health_within)")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@json_option
@click.pass_obj
def update(ctx: Context, bundle: Path, url: str, site: str | None, gateways: tuple[str, ...],
           canary: str | None, pub: Path | None, manifest: Path | None, final_wait: float,
           concurrency: int, as_json: bool) -> None:
    """Staged agent update: one gateway first, the rest once it came back healthy.

    \b
    Example:
      batigate remote update dist/batigate-1.5.0.tar.gz --site res-les-pins \\
          --url https://files.example.org/batigate-1.5.0.tar.gz --pub release.key.pub
    """
    from agent.lifecycle import release  # noqa: PLC0415
    from agent.commands import signing
    from agent.remote import commands, link, rollout  # noqa: PLC0415

    try:
        doc = (release.verify(bundle, signing.load_public_key(pub), manifest) if pub
               else release.read_manifest(manifest or release.manifest_for(bundle)))
    except (release.ReleaseError, OSError, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG, as_json=as_json)
    args = release.install_args(doc, url)
    key = ctx.key()
    if key is None:
        fail(t("remote.must_sign"), EXIT_CONFIG, as_json=as_json)

    async def body(connected: link.Link) -> int:
        if gateways:
            targets = [t for g in gateways for t in await targets_of(connected, g, site)]
        else:
            targets = await targets_of(connected, None, site)
        if not targets:
            fail(t("remote.no_gateway_to_update"), EXIT_FAILURE, as_json=as_json)
        first = None
        if canary is not None:
            first, = await targets_of(connected, canary, site)
            if first not in targets:
                fail(t("remote.canary_not_target", canary=first), EXIT_CONFIG,
                     as_json=as_json)
        sender = commands.Sender(connected, key=key, by=link.operator_name(),
                                 final_timeout=final_wait, concurrency=concurrency)
        try:
            report = await rollout.run(connected, sender, targets, args, canary=first)
        finally:
            await sender.close()
        if as_json:
            emit_json({"version": doc["version"], **report.as_dict()})
        else:
            from agent.remote import render  # noqa: PLC0415

            render.results(f"update.install {doc['version']}", report.results)
            if report.canary_health:
                click.secho(t("remote.canary_unhealthy", canary=report.canary,
                              why="; ".join(report.canary_health)), fg="red")
            if report.skipped:
                click.secho(t("remote.stopped_after_canary",
                              gateways=", ".join(map(str, report.skipped))), fg="red")
        return 0 if report.ok else EXIT_FAILURE

    run(ctx, body)
