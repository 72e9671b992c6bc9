"""Fetch an image by URL without becoming an SSRF hole (standard library only).

Every address a host resolves to must be public: loopback, private, link-local (the instance
metadata service at 169.254.169.254), multicast, reserved and IPv4-mapped spellings of those are
refused. Checking resolved addresses covers decimal (2130706433), hex (0x7f000001), short (127.1)
and IPv6 spellings alike. The connection goes to the address that was checked, so a DNS answer
cannot change between check and connect. Redirects are followed by hand and checked the same way.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 3
MAX_BYTES = 10 * 1024 * 1024
TIMEOUT_S = 5.0


class FetchError(ValueError):
    """The URL is refused or its answer is not usable. status is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def public_address(host: str, port: int, allowed_hosts: frozenset) -> str:
    """Resolve host; return one address to connect to, refusing any non-public one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"cannot resolve host {host!r}") from None
    addresses = [info[4][0] for info in infos]
    if host in allowed_hosts:
        return addresses[0]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        if not ip.is_global or ip.is_multicast:
            raise FetchError(f"refused: {host!r} resolves to a non-public address ({address})", 403)
    return addresses[0]


class _Pinned(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(
    url: str, allowed_hosts: frozenset = frozenset(), max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT_S
) -> bytes:
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http(s) URLs are fetched, got {parts.scheme or 'no'} scheme")
        if not parts.hostname:
            raise FetchError("the URL has no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("the URL has an invalid port") from None
        address = public_address(parts.hostname, port, allowed_hosts)
        cls = _PinnedTLS if parts.scheme == "https" else _Pinned
        conn = cls(parts.hostname, port, address, timeout=max(0.1, deadline - time.monotonic()))
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers={"User-Agent": "clothes-serverless/1", "Accept": "image/*"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError("redirect without a Location header", 422)
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"the URL answered HTTP {response.status}", 422)
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"the image at the URL is larger than {max_bytes:,} bytes", 413)
            body = bytearray()
            while chunk := response.read(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"the image at the URL is larger than {max_bytes:,} bytes", 413)
                if time.monotonic() > deadline:
                    raise FetchError(f"fetching the URL took longer than {timeout:g} s", 408)
            return bytes(body)
        except TimeoutError:
            raise FetchError(f"fetching the URL took longer than {timeout:g} s", 408) from None
        except (OSError, http.client.HTTPException) as e:
            raise FetchError(f"cannot fetch the URL: {type(e).__name__}: {e}", 422) from None
        finally:
            conn.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", 422)
