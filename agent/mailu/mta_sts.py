"""``mailu.mta_sts.set``: MailU's front serves each domain's MTA-STS policy (RFC 8461).

MailU's front includes every ``overrides/nginx/*.conf`` inside its main HTTPS server, so
one file answers ``/.well-known/mta-sts.txt`` by ``Host``: ``mta-sts.<domain>``. The
control plane sends the whole set each time (an empty set removes the file); the front
restarts only when the file changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.files import write_atomically
from agent.mailu.compose import Compose
from agent.mailu.install import COMPOSE_FILE, Progress, mailu_dir

FILE = "overrides/nginx/mailfleet-mta-sts.conf"
_HOST = re.compile(r"^mta-sts\.([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_POLICY_LINE = re.compile(
    r"^(version: STSv1|mode: (testing|enforce|none)|mx: [*a-z0-9.-]+|max_age: \d+)$"
)


def render(policies: dict[str, str]) -> str:
    """The nginx snippet: one ``return 200`` per host, 404 for any other."""
    lines = [
        "# Managed by MailFleet: MTA-STS policies (RFC 8461). Do not edit.",
        "location = /.well-known/mta-sts.txt {",
        "    default_type text/plain;",
    ]
    for host, policy in sorted(policies.items()):
        body = policy.replace("\r\n", "\\r\\n")
        lines.append(f'    if ($host = "{host}") {{ return 200 "{body}"; }}')
    lines += ["    return 404;", "}"]
    return "\n".join(lines) + "\n"


def _checked(payload: dict[str, Any]) -> dict[str, str]:
    policies = payload.get("policies")
    if not isinstance(policies, dict):
        raise CommandError("payload.policies: a map of mta-sts host to policy text")
    for host, policy in policies.items():
        if not isinstance(host, str) or not _HOST.match(host):
            raise CommandError(f"payload.policies: {host!r} is not an mta-sts.<domain> host")
        lines = policy.split("\r\n") if isinstance(policy, str) else []
        if not lines or lines[-1] != "" or not all(_POLICY_LINE.match(x) for x in lines[:-1]):
            raise CommandError(f"payload.policies[{host}]: not an RFC 8461 policy")
    return dict(policies)


async def set_policies(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    policies = _checked(payload)
    target = mailu_dir(root) / FILE
    wanted = render(policies) if policies else None
    current = target.read_text() if target.exists() else None
    changed = wanted != current
    if changed:
        if wanted is None:
            target.unlink()
        else:
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_atomically(target, wanted, 0o644)
    restarted = False
    if changed and (mailu_dir(root) / COMPOSE_FILE).exists():
        compose = Compose(mailu_dir(root))
        await compose.check_engine()
        await compose.restart("front")
        restarted = True
    return {"hosts": sorted(policies), "changed": changed, "restarted_front": restarted}
