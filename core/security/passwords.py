"""Login passwords, stored only as salted PBKDF2-SHA256 hashes. `STUDIO_AUTH_FILE` holds one
`user:hash` per line, made with `python -m core.security.passwords USER` (it asks for the password);
the plain `STUDIO_AUTH` variable still works for a quick start and is hashed in memory at start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 310_000  # OWASP's figure for PBKDF2-HMAC-SHA256
_DUMMY = None  # a hash to check against for unknown users, so both cases cost the same


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        rounds = int(iterations)
        if algorithm != ALGORITHM or not 1_000 <= rounds <= 10_000_000:
            return False
        expected = _unb64(digest)
        got = hashlib.pbkdf2_hmac("sha256", str(password).encode("utf-8", "surrogatepass"), _unb64(salt), rounds)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class PasswordCheck:
    """The `auth` callable Gradio's login calls: True when the user exists and the password matches."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = dict(hashes)
        self._dummy = hash_password(secrets.token_urlsafe(16))

    @property
    def users(self) -> list[str]:
        return sorted(self._hashes)

    def __call__(self, username: str, password: str) -> bool:
        encoded = self._hashes.get(str(username))
        ok = verify_password(password, encoded or self._dummy)
        return ok and encoded is not None


def load_users_file(path: Path) -> dict[str, str]:
    """`user:hash` lines; blank lines and # comments are skipped. A malformed line stops the start-up
    with its line number (never its content: it may hold a password pasted by mistake)."""
    users: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user.strip() or not encoded.startswith(ALGORITHM + "$") or encoded.count("$") != 3:
            raise ValueError(
                f"{path}: line {number} is not 'user:{ALGORITHM}$...' "
                "(make lines with: python -m core.security.passwords USER)"
            )
        users[user.strip()] = encoded.strip()
    return users


def main(argv: list[str] | None = None) -> int:
    import argparse
    import getpass
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m core.security.passwords", description="Print a STUDIO_AUTH_FILE line for USER."
    )
    parser.add_argument("user")
    args = parser.parse_args(argv)
    if ":" in args.user or not args.user.strip():
        parser.error("the user name must not be empty or contain ':'")
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        parser.error("use a password of at least 8 characters")
    print(f"{args.user}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
