"""Print a development token: `python -m devstack.token alice [--device phone] [--role admin]
[--ttl-hours 24]`.

Signed with `AUTH_JWT_SECRET` as the services read it (environment, then `.env`), so the token is
accepted by a fleet started from the same checkout. Prints the token only, for `$(make token)`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from shared.auth import DEFAULT_DEVICE, issue_token
from shared.settings import CommonSettings

DEFAULT_TTL = timedelta(hours=24)


def dev_token(
    user: str,
    secret: str,
    *,
    device: str = DEFAULT_DEVICE,
    ttl: timedelta = DEFAULT_TTL,
    roles: tuple[str, ...] = (),
) -> str:
    """A token for `user`, valid for `ttl`, carrying `roles` (e.g. `("admin",)`)."""
    return issue_token(user, secret, device_id=device, ttl=ttl, roles=roles)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.token", description=__doc__)
    parser.add_argument("user", help="the user id (the token's `sub`)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="the device id")
    parser.add_argument(
        "--role", action="append", default=[], help="a role claim (repeatable): admin"
    )
    parser.add_argument("--ttl-hours", type=float, default=24.0, help="lifetime in hours")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if not args.user.strip():
        print("a user id is required", file=sys.stderr)
        return 2
    if args.ttl_hours <= 0:
        print("--ttl-hours must be positive", file=sys.stderr)
        return 2
    secret = CommonSettings().auth_jwt_secret
    roles = tuple(role for role in args.role if role)
    ttl = timedelta(hours=args.ttl_hours)
    print(dev_token(args.user, secret, device=args.device, ttl=ttl, roles=roles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
