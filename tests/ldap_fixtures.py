"""A real OpenLDAP (Debian's slapd) on loopback, with TLS, users and every kind of group.

Built as ../shared/TESTING.md describes: a cn=config LDIF and the data loaded with slapadd, then
slapd listening on ldap:// (StartTLS available) and ldaps:// with a throwaway CA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.tls import make_ca_and_server_cert

SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=credenza,ou=services,{SUFFIX}"
PASSWORDS = {"admin": "admin-secret", "service": "service-secret", "alice": "alice-pw",
             "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}


def _ssha(password: str) -> str:
    return subprocess.run(["slappasswd", "-s", password], capture_output=True, text=True,
                          check=True).stdout.strip()


def config_ldif(directory: Path) -> str:
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {directory}/slapd.pid
olcArgsFile: {directory}/slapd.args
olcTLSCACertificateFile: {directory}/ca.pem
olcTLSCertificateFile: {directory}/cert.pem
olcTLSCertificateKeyFile: {directory}/key.pem

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ADMIN_DN}
olcRootPW: {_ssha(PASSWORDS["admin"])}
olcDbDirectory: {directory}/data
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: member eq
olcDbIndex: uniqueMember eq
olcDbIndex: memberUid eq
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by users read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
"""


# slapadd bypasses the memberof overlay: memberOf is written here, as an AD export would carry it.
MEMBER_OF = {
    "alice": [f"cn=aws-prod-admin,ou=groups,{SUFFIX}", f"cn=ops,ou=groups,{SUFFIX}"],
    "dave": [f"cn=aws-dev-deployer,ou=elsewhere,{SUFFIX}"],
}


def _person(uid: str, number: int) -> str:
    member_of = "".join(f"memberOf: {dn}\n" for dn in MEMBER_OF.get(uid, []))
    return f"""dn: uid={uid},ou=people,{SUFFIX}
objectClass: inetOrgPerson
objectClass: posixAccount
uid: {uid}
cn: {uid.title()}
sn: {uid.title()}
mail: {uid}@example.com
uidNumber: {number}
gidNumber: {number}
homeDirectory: /home/{uid}
userPassword: {_ssha(PASSWORDS[uid])}
{member_of}"""


def data_ldif() -> str:
    people = "\n".join(_person(uid, 1000 + i)
                       for i, uid in enumerate(["alice", "bob", "carol", "dave", "erin"]))
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: ou=elsewhere,{SUFFIX}
objectClass: organizationalUnit
ou: elsewhere

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: credenza
userPassword: {_ssha(PASSWORDS["service"])}

{people}
dn: cn=aws-prod-admin,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: aws-prod-admin
member: uid=alice,ou=people,{SUFFIX}

dn: cn=ops,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: ops
member: uid=alice,ou=people,{SUFFIX}

dn: cn=platform,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: platform
member: cn=ops,ou=groups,{SUFFIX}

dn: cn=aws-dev-reader,ou=groups,{SUFFIX}
objectClass: posixGroup
cn: aws-dev-reader
gidNumber: 2001
memberUid: bob

dn: cn=aws-prod-viewer,ou=groups,{SUFFIX}
objectClass: groupOfUniqueNames
cn: aws-prod-viewer
uniqueMember: uid=carol,ou=people,{SUFFIX}

dn: cn=aws-dev-deployer,ou=elsewhere,{SUFFIX}
objectClass: groupOfNames
cn: aws-dev-deployer
member: uid=dave,ou=people,{SUFFIX}
"""


class Slapd:
    """One slapd process: ``url`` (ldap://, StartTLS on offer), ``ldaps_url``, ``ca``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port, self.ldaps_port = free_port(), free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.ca = directory / "ca.pem"
        self.process: subprocess.Popen[bytes] | None = None

    def build(self) -> None:
        """Write the configuration and load the data (slapadd, offline)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        make_ca_and_server_cert(self.directory)
        (self.directory / "slapd.d").mkdir()
        (self.directory / "data").mkdir()
        (self.directory / "config.ldif").write_text(config_ldif(self.directory))
        (self.directory / "data.ldif").write_text(data_ldif())
        for db, ldif in (("0", "config.ldif"), ("1", "data.ldif")):
            subprocess.run(["slapadd", f"-n{db}", "-F", str(self.directory / "slapd.d"), "-l",
                            str(self.directory / ldif), "-q"], check=True, capture_output=True)

    def start(self) -> None:
        """Start slapd and wait until it accepts connections."""
        self.process = subprocess.Popen(
            ["slapd", "-d", "0", "-F", str(self.directory / "slapd.d"),
             "-h", f"{self.url}/ {self.ldaps_url}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                        timeout=0.5):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("slapd did not start within 10 s")

    def stop(self) -> None:
        """Stop slapd and wait for it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


def _require_slapd() -> None:
    if not shutil.which("slapd") and not os.path.exists("/usr/sbin/slapd"):
        pytest.fail("slapd is not installed: apt-get install slapd ldap-utils (.ci/run does)")


@contextlib.contextmanager
def running_slapd(directory: Path) -> Iterator[Slapd]:
    """A built and started slapd, stopped afterwards."""
    _require_slapd()
    slapd = Slapd(directory)
    slapd.build()
    slapd.start()
    try:
        yield slapd
    finally:
        slapd.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One slapd for the session (tests that stop a server start their own)."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server
