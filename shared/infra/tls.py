"""A throwaway certificate authority and server certificate for the local secure mode.

`switchboard infra up --secure` runs Kafka over SASL_SSL (SCRAM-SHA-512) and PostgreSQL with TLS
only (`hostssl`), as production should; clients then verify the servers' certificates against
this CA (`KAFKA_SSL_CAFILE`, `sslmode=verify-full&sslrootcert=`). The CA's key stays in the state
dir (0600) and signs only the one server certificate, for `localhost` and `127.0.0.1`.

Made with the `openssl` command (Debian's `openssl` package; installed with the PostgreSQL
server), so the project needs no extra Python dependency for it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.infra.proc import InfraError, write_private

DAYS = 30  # a local cluster lives for days; `down --purge` makes a new CA next time
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class TlsFiles:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def key(self) -> Path:
        """The server's private key, PKCS#8 PEM without a passphrase (0600)."""
        return self.dir / "server.key"

    @property
    def keystore(self) -> Path:
        """Key then certificate chain in one PEM file: Kafka's `ssl.keystore.type=PEM`."""
        return self.dir / "server-keystore.pem"

    @classmethod
    def of(cls, state_dir: Path) -> TlsFiles:
        return cls(state_dir / "tls")

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.ca, self.ca_key, self.cert, self.key, self.keystore))


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise InfraError("openssl not found: install it (Debian/Ubuntu: apt-get install openssl)")
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode != 0:
        raise InfraError(f"openssl {args[0]} failed:\n{done.stderr.strip()}")


def ensure(state_dir: Path, *, days: int = DAYS) -> TlsFiles:
    """The CA and the server's certificate, made once per state dir (kept until a purge)."""
    files = TlsFiles.of(state_dir)
    if files.complete():
        return files
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.dir.chmod(0o700)
    d = files.dir
    # An EC P-256 CA, self-signed, allowed to sign certificates only.
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", "ca.key", cwd=d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", str(days),
             "-subj", "/CN=Switchboard local CA", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    # The server's key (PKCS#8: what Kafka's PEM key store reads) and its certificate.
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", "server.key", cwd=d)
    san = ",".join([*(f"DNS:{h}" for h in HOSTS), *(f"IP:{a}" for a in ADDRESSES)])
    ext = d / "server.ext"
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr",
             cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", "server.ext",
             "-out", "server.crt", cwd=d)
    for name in ("ca.key", "server.key"):
        (d / name).chmod(0o600)
    write_private(files.keystore, files.key.read_text() + files.cert.read_text())
    for leftover in ("server.csr", "server.ext", "ca.srl"):
        (d / leftover).unlink(missing_ok=True)
    return files
