"""The AWS SDK credential endpoints: instance metadata (IMDSv2) and container credentials.

boto3 finds them through ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (see docs/protocols/aws-clients.md). IMDS callers are
identified like any other (usually by address, with the ``environ`` plugin on ``REMOTE_ADDR``)
and get the one account/role they are granted; container callers present an API key as their
``Authorization`` token and name the account and role in the URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import time
from pathlib import Path
from typing import Annotated

import attrs
import msgspec
from werkzeug.wrappers import Response

from credenza.broker import Broker
from credenza.config import Section
from credenza.errors import Forbidden, NotFound, Unauthenticated
from credenza.models import Account, AwsCredentials, AwsOptions, Principal, aws_timestamp
from credenza.secrets import key_file
from credenza.settings import read, setting
from credenza.wsgi.routes import (
    TEXT,
    Family,
    Reply,
    RequestContext,
    Route,
    json_response,
)


@attrs.frozen
class AwsSdkSettings:
    """``[api.aws-sdk]``: the instance metadata endpoints."""

    imds_token_key: str | None = setting(
        "The key that signs IMDSv2 session tokens; replicas behind one address share it", None,
        secret=True, default_text="a key file made in the data directory on first use")
    imds_v1: bool = setting("Answer IMDSv1 (metadata requests without a session token)", False)
    #: where the session token key is kept when none is configured
    data_dir: Path = attrs.field(default=Path(), kw_only=True)

    @classmethod
    def from_section(cls, section: Section) -> AwsSdkSettings:
        """Read ``[api.aws-sdk]``."""
        return attrs.evolve(read(cls, section), data_dir=section.data_dir)

    def token_key(self) -> bytes:
        """The key that signs session tokens."""
        if self.imds_token_key:
            return self.imds_token_key.encode()
        return _stored_key(self.data_dir)


AWS_SDK = Family("aws-sdk", "Credential endpoints for AWS SDKs: IMDSv2 and container credentials.",
                 prefixes=("/latest/", "/v1/container-credentials/"), settings=AwsSdkSettings)

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
MAX_TOKEN_TTL = 21600
# botocore treats credentials with less than ~15 minutes left as expiring and pretends they last
# longer: metadata clients always get at least 30 minutes.
METADATA_MIN_REMAINING = dt.timedelta(minutes=30)
@functools.lru_cache(maxsize=8)
def _stored_key(data_dir: Path) -> bytes:
    return key_file(data_dir / "imds-token.key")


class AwsKeys(msgspec.Struct):
    """What every AWS SDK reads: the key pair, the session token and its expiry
    (``%Y-%m-%dT%H:%M:%SZ``)."""

    AccessKeyId: str
    SecretAccessKey: str
    Token: str
    Expiration: str


class MetadataCredentials(AwsKeys):
    """Credentials in the instance metadata shape (afp-core's too)."""

    Code: str
    LastUpdated: str
    Type: str


class ContainerCredentials(AwsKeys, omit_defaults=True):
    """Credentials as boto3's container provider reads them."""

    AccountId: str | None = None


def metadata_credentials(credentials: AwsCredentials) -> dict[str, str]:
    """Credentials in the instance metadata shape (which afp-core reproduced)."""
    return {
        "Code": "Success",
        "LastUpdated": aws_timestamp(credentials.issued_at),
        "Type": "AWS-HMAC",
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.session_token,
        "Expiration": aws_timestamp(credentials.expiration),
    }


def single_role(broker: Broker, principal: Principal) -> tuple[str, str]:
    """The one account/role pair of ``principal``, as the metadata endpoints need it.

    :raises NotFound: when the caller has none, or more than one.
    """
    pairs = [(account, role) for account, roles in broker.aws_roles(principal).items()
             for role in roles]
    if len(pairs) != 1:
        raise NotFound(f"{principal.name} has {len(pairs)} account/role pairs; the metadata "
                       "endpoint serves callers with exactly one")
    return pairs[0]


def metadata_issue(ctx: RequestContext, role: str) -> tuple[Account, AwsCredentials]:
    """Credentials for the caller's single role, which must be ``role``."""
    principal = ctx.principal()
    account_name, granted = single_role(ctx.broker, principal)
    if role != granted:
        raise NotFound(f"{principal.name} has no role {role!r} (its role is {granted!r})")
    return ctx.broker.issue_aws(principal, account_name, role,
                                AwsOptions(min_remaining=METADATA_MIN_REMAINING))


# -- IMDSv2 session tokens ------------------------------------------------------------------------


def _mac(key: bytes, expires: int, remote_addr: str) -> str:
    digest = hmac.new(key, f"{expires}|{remote_addr}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class SessionTokenRequest(msgspec.Struct):
    """The headers of ``PUT /latest/api/token``."""

    ttl: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKEN_TTL,
                                     description="The token's lifetime in seconds")] = \
        msgspec.field(name=TOKEN_TTL_HEADER)
    forwarded_for: Annotated[str, msgspec.Meta(
        description="Set by a proxy: such requests are refused")] | None = \
        msgspec.field(default=None, name="X-Forwarded-For")


class SessionToken(msgspec.Struct):
    """The session token a metadata GET carries (optional only where IMDSv1 is enabled)."""

    token: Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[0-9]{1,12}\.[A-Za-z0-9_-]+$",
                                       description="An IMDSv2 session token")] | None = \
        msgspec.field(default=None, name=TOKEN_HEADER)


def new_token(ctx: RequestContext, headers: SessionTokenRequest) -> Response:
    """``PUT /latest/api/token``: a session token bound to the caller's address."""
    if headers.forwarded_for is not None:
        # As AWS does: a token request relayed by a proxy is refused (SSRF protection).
        raise Forbidden("token requests through a proxy (X-Forwarded-For) are refused")
    expires = int(time.time()) + headers.ttl
    mac = _mac(ctx.settings(AWS_SDK).token_key(), expires, ctx.request.remote_addr or "")
    return Response(f"{expires}.{mac}", content_type="text/plain",
                    headers={TOKEN_TTL_HEADER: str(headers.ttl), "Cache-Control": "no-store"})


def require_token(ctx: RequestContext, token: str | None) -> None:
    """Check the session token of a metadata GET (IMDSv1 only where configured)."""
    settings: AwsSdkSettings = ctx.settings(AWS_SDK)
    if token is None and settings.imds_v1:
        return
    expires, _, mac = (token or "0.").partition(".")  # the declared pattern: digits, a dot
    expected = _mac(settings.token_key(), int(expires), ctx.request.remote_addr or "")
    if not (int(expires) > time.time() and hmac.compare_digest(mac, expected)):
        raise Unauthenticated("a valid, unexpired IMDSv2 session token is required "
                              f"({TOKEN_HEADER})", challenges=())


def imds_caller(ctx: RequestContext) -> Principal:
    """A metadata caller: its session token first, then its identity."""
    require_token(ctx, ctx.inputs["headers"].token)
    return ctx.principal()


def imds_role(ctx: RequestContext, headers: SessionToken) -> Response:
    """The caller's role name (plain text, no trailing newline); ``imds_caller`` checked the
    session token."""
    _account, role = single_role(ctx.broker, ctx.principal())
    return Response(role, content_type="text/plain", headers={"Cache-Control": "no-store"})


def imds_credentials(ctx: RequestContext, role: str, headers: SessionToken) -> Response:
    """Credentials for the caller's role, valid for at least 30 more minutes; ``imds_caller``
    checked the session token."""
    _account, credentials = metadata_issue(ctx, role)
    return json_response(metadata_credentials(credentials))


# -- container credentials ------------------------------------------------------------------------


def container_credentials(ctx: RequestContext, account: str, role: str) -> Response:
    """``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (the Authorization header is the caller's API key),
    and credenza's own client (a bearer JWT): credentials with at least 30 minutes left."""
    found, credentials = ctx.broker.issue_aws(
        ctx.principal(), account, role, AwsOptions(min_remaining=METADATA_MIN_REMAINING)
    )
    body = {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.session_token,
        "Expiration": aws_timestamp(credentials.expiration),
    }
    if found.id:
        body["AccountId"] = found.id
    return json_response(body)


ERRORS = {401: "No valid token or identity", 403: "Not granted",
          404: "Not exactly one role / unknown", 503: "STS unavailable"}
ROUTES = (
    Route("/latest/api/token", new_token, methods=("PUT",), family=AWS_SDK,
          authenticated=False, headers=SessionTokenRequest, summary="IMDSv2: a session token",
          responses={200: Reply("The token", str, TEXT), 400: "Missing or bad TTL",
                     403: "Relayed by a proxy"}),
    Route("/latest/meta-data/iam/security-credentials/", imds_role, family=AWS_SDK,
          authenticate=imds_caller, headers=SessionToken,
          summary="IMDS: the caller's single role name",
          responses={200: Reply("The role", str, TEXT), **ERRORS}),
    Route("/latest/meta-data/iam/security-credentials/<role>", imds_credentials, family=AWS_SDK,
          authenticate=imds_caller, headers=SessionToken,
          summary="IMDS: credentials for the caller's role",
          responses={200: Reply("Credentials", MetadataCredentials), **ERRORS}),
    Route("/v1/container-credentials/<account>/<role>", container_credentials, family=AWS_SDK,
          summary="Container credentials (Authorization: an API key or a bearer token)",
          responses={200: Reply("Credentials", ContainerCredentials), 400: "Bad name",
                     **ERRORS}),
)
