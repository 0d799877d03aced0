"""Bearer-token roles for the admin API: ``viewer`` reads, ``admin`` reads and writes.

Tokens come from the environment variables named in ``api.admin_token_env`` /
``api.viewer_token_env`` (default ``CTNODE_ADMIN_TOKEN`` / ``CTNODE_VIEWER_TOKEN``), read on every
request so a rotated token takes effect without a restart. Never from a file, never logged:
this module logs only the role that was granted or refused.

- no ``Authorization: Bearer`` header, or a token matching neither → **401** with
  ``WWW-Authenticate: Bearer`` (RFC 6750 3.1);
- the viewer token on a write → **403**;
- an unset (or empty) variable grants nothing: with no admin token configured there are no
  writes at all; anonymous requests never write.

Comparison is constant-time (``hmac.compare_digest``) against **both** tokens every time, so the
response time says nothing about which token, or how much of one, was guessed.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, status

from dicom_node.settings import ApiSettings

logger = logging.getLogger(__name__)

Role = Literal["viewer", "admin"]
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    role: Role
    client: str  # the peer address: for the audit trail ("requeued by admin@10.0.0.5")

    @property
    def who(self) -> str:
        return f"{self.role}@{self.client}" if self.client else self.role


class TokenAuth:
    def __init__(self, api: ApiSettings, environ: Mapping[str, str] | None = None) -> None:
        self.api = api
        self._environ = environ if environ is not None else os.environ

    def tokens(self) -> dict[Role, str]:
        found: dict[Role, str] = {}
        admin = self._environ.get(self.api.admin_token_env, "")
        viewer = self._environ.get(self.api.viewer_token_env, "")
        if admin:
            found["admin"] = admin
        if viewer:
            found["viewer"] = viewer
        return found

    def configuration_warnings(self) -> list[str]:
        """What an operator should fix (names of variables only, never values)."""
        warnings = []
        tokens = self.tokens()
        if "admin" not in tokens:
            warnings.append(f"${self.api.admin_token_env} is not set: the admin API accepts no writes")
        for role, token in tokens.items():
            if len(token) < MIN_TOKEN_LENGTH:
                warnings.append(f"the {role} token is shorter than {MIN_TOKEN_LENGTH} characters")
        if tokens.get("admin") and tokens.get("admin") == tokens.get("viewer"):
            warnings.append("the admin and viewer tokens are the same: every viewer is an admin")
        return warnings

    def role_for(self, presented: str) -> Role | None:
        """The role whose token equals ``presented`` (admin wins a tie), compared in constant time."""
        given = presented.encode()
        matched: Role | None = None
        tokens = self.tokens()
        roles: tuple[Role, ...] = ("viewer", "admin")  # both compared every time; admin last wins
        for role in roles:
            token = tokens.get(role)
            # compare_digest of unequal lengths still takes time independent of the content
            if token is not None and hmac.compare_digest(given, token.encode()):
                matched = role
        return matched

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        role = self.role_for(presented.strip()) if scheme.lower() == "bearer" and presented.strip() else None
        if role is None:
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="ct-ai-node"'},
            )
        return Principal(role=role, client=request.client.host if request.client else "")

    def require(self, role: Role) -> Callable[[Request], Principal]:
        """A FastAPI dependency: the caller's principal, at least ``role``."""

        def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if role == "admin" and principal.role != "admin":
                logger.warning("admin API: %s refused a write (%s)", principal.role, request.url.path)
                raise HTTPException(
                    status_code=status.HTTP_403_FORBIDDEN, detail="this action needs the admin role"
                )
            return principal

        return dependency
