"""`screenvisit token mint`: a staff token signed with this server's own key, for an evaluator
or an integration (an EHR, a booking system) of the deployment's own organisations.

Whoever can read the server's key file can mint; each minted token is recorded in the audit log
by its `jti` (so `screenvisit token revoke` can kill it), never the token itself."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
import time

import jwt

from rooms.audit import AuditRecord, SqlAuditLog
from rooms.roles import DEFAULT_SECTOR, Role, Sector
from rooms.sql import open_database
from server.cli_common import add_setting_flags, local_issuer, settings_from
from server.config import Settings
from server.trust import DEFAULT_MAX_LIFETIME

#: Roles a token can be minted for: staff. Citizens, relatives and interpreters get their seat
#: tokens from a booking (their invite links), never from here.
MINTABLE = (Role.EVALUATOR, Role.NURSE, Role.GP, Role.SPECIALIST, Role.ADMIN)
DEFAULT_HOURS = 8.0


async def _mint(settings: Settings, args: argparse.Namespace, role: Role, seconds: int) -> str:
    issuer = await local_issuer(settings)
    sector = Sector(args.sector) if args.sector else DEFAULT_SECTOR[role]
    subject = args.subject or f"minted-{secrets.token_hex(6)}"
    token = issuer.sign(sub=subject, role=role, sector=sector, lifetime=seconds, org=settings.org)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    db = await open_database(settings.database_url or None, settings.database_path)
    try:
        await SqlAuditLog(db).record(
            AuditRecord(
                action="mint-token",
                result="allowed",
                reason=f"jti {jti}, {seconds} s",
                subject=f"local-operator:{getpass.getuser()}",
                sector=sector.value,
                org=settings.org,
                role=role.value,
                client="local",
            )
        )
    finally:
        await db.close()
    return token


def token_mint(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    role = Role(args.role)
    cap = DEFAULT_MAX_LIFETIME[role]
    hours = args.hours if args.hours is not None else min(DEFAULT_HOURS, cap / 3600)
    seconds = int(hours * 3600)
    if not 0 < seconds <= cap:
        raise SystemExit(
            f"screenvisit: --hours: a {role.value} token lives more than 0 and at most"
            f" {cap / 3600:g} h (the server refuses longer ones)"
        )
    token = asyncio.run(_mint(settings, args, role, seconds))
    claims = jwt.decode(token, options={"verify_signature": False})
    expires = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(claims["exp"]))
    report = f"{settings.base_url}/evaluation#{token}" if role is Role.EVALUATOR else None
    if args.json:
        out = {"token": token, "jti": claims["jti"], "expires_at": claims["exp"], "role": role}
        if report:
            out["report_url"] = report
        print(json.dumps(out))
        return 0
    # The token alone on standard output (TOKEN=$(screenvisit token mint ...)); the rest on
    # standard error for the person at the terminal.
    print(token)
    print(
        f"{role.value} token for {claims.get('org')}, jti {claims['jti']}, valid until {expires}",
        file=sys.stderr,
    )
    if report:
        print(f"report: {report}", file=sys.stderr)
    return 0


def add_mint_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "mint", help="print a staff token signed with this server's key (evaluators, integrations)"
    )
    parser.add_argument("--role", required=True, choices=[r.value for r in MINTABLE])
    parser.add_argument("--sector", choices=[s.value for s in Sector], help="default: the role's")
    parser.add_argument(
        "--hours",
        type=float,
        help=f"how long it lives (default {DEFAULT_HOURS:g}, at most the role's cap)",
    )
    parser.add_argument("--subject", help="the token's subject (default: a random id)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_setting_flags(parser)
    parser.set_defaults(func=token_mint)
