"""Fetch an image by URL without becoming an SSRF hole or a way to hold the function (standard library only).

Every address a host resolves to must be public: loopback, private, link-local (the instance
metadata service at 169.254.169.254), multicast, reserved, and IPv6 spellings that embed such an
IPv4 address (IPv4-mapped and -compatible, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32)
are refused. Checking resolved addresses covers decimal (2130706433), hex (0x7f000001), short
(127.1) and IPv6 spellings alike. The connection goes to the address that was checked, so a DNS
answer cannot change between check and connect. Redirects are followed by hand and checked the
same way. Only ports 80 and 443 are fetched by default, so refusals cannot map anyone's ports.

One wall-clock deadline covers the whole fetch: DNS (resolved in a worker thread), connect, TLS
handshake, request, headers, body and every redirect. A socket timeout alone bounds each read,
not their sum: a server trickling one byte a second would hold the function for as long as it
likes. So every read goes through `_DeadlineReader`, which gives each recv only the time left.
"""

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import quote, urljoin, urlsplit

MAX_REDIRECTS = 3
MAX_BYTES = 10 * 1024 * 1024
TIMEOUT_S = 5.0
PORTS = frozenset({80, 443})
# Prefixes whose last 32 bits are an IPv4 address the traffic may end up at.
_EMBEDS_IPV4 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96")]
# The local-use NAT64 prefix (RFC 8215) embeds IPv4 where the operator chooses: refused whole.
_REFUSED = [ipaddress.ip_network("64:ff9b:1::/48")]
# Keep what is already a valid URL character (and existing %XX escapes); encode the rest (non-ASCII, spaces).
_URL_SAFE = "/:@!$&'()*+,;=-._~%"


class FetchError(ValueError):
    """The URL is refused or its answer is not usable; each subclass is the HTTP status it gets."""

    status = 400  # the URL itself is not acceptable


class Refused(FetchError):
    status = 403  # it points at a non-public address


class FetchTimeout(FetchError):
    status = 408


class TooLarge(FetchError):
    status = 413


class BadAnswer(FetchError):
    status = 422  # the server at the URL did not give a usable image


class Deadline:
    def __init__(self, seconds: float):
        self.seconds, self.at = seconds, time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; past the deadline, FetchTimeout."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise FetchTimeout(f"fetching the URL took longer than {self.seconds:g} s")
        return left


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list:
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    found += [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) for net in _EMBEDS_IPV4 if ip in net]
    return [a for a in found if a is not None]


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    candidates = [ip]
    if ip.version == 6:
        if any(ip in net for net in _REFUSED):
            return False
        # Traffic to 6to4/NAT64/Teredo/mapped addresses ends at the IPv4 inside: judge that alone
        # (whether the IPv6 wrapper itself is "global" differs between Python releases).
        candidates = embedded_ipv4(ip) or candidates
    return all(a.is_global and not a.is_multicast for a in candidates)


def resolve(host: str, port: int, deadline: Deadline) -> list[str]:
    """getaddrinfo in a daemon thread, so a slow resolver costs at most the time left."""
    answer = {}

    def work():
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as e:
            answer["error"] = e

    thread = threading.Thread(target=work, daemon=True, name=f"resolve {host}")
    thread.start()
    thread.join(deadline.remaining())
    if thread.is_alive():  # left to finish on its own: a daemon thread holds nothing the answer needs
        raise FetchTimeout(f"fetching the URL took longer than {deadline.seconds:g} s (resolving {host!r})")
    if "error" in answer or not answer["infos"]:
        raise FetchError(f"cannot resolve host {host!r}")
    return [info[4][0] for info in answer["infos"]]


def public_address(host: str, port: int, allowed_hosts: frozenset, deadline: Deadline) -> str:
    """Resolve host; return one address to connect to, refusing any non-public one."""
    addresses = resolve(host, port, deadline)
    if host not in allowed_hosts:
        for address in addresses:
            if not is_public(address):
                raise Refused(f"refused: {host!r} resolves to a non-public address ({address})")
    return addresses[0]


class _DeadlineReader(io.RawIOBase):
    """The socket's reads, each given only the time left before the deadline."""

    def __init__(self, owner: "_DeadlineSocket"):
        self.owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.owner.sock.settimeout(self.owner.deadline.remaining())
        return self.owner.sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self.owner.release()
        super().close()


class _DeadlineSocket:
    """What http.client uses of a socket (sendall, makefile, close), under the deadline.

    Like socket.socket, the descriptor stays open until the connection and every reader made by
    makefile() are closed: http.client closes the connection before the response is read.
    """

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self.sock, self.deadline, self.users, self.closed = sock, deadline, 1, False

    def sendall(self, data) -> None:
        self.sock.settimeout(self.deadline.remaining())
        self.sock.sendall(data)  # its timeout bounds the whole call, not each send

    def makefile(self, mode: str = "rb", *args, **kwargs):
        self.users += 1
        return io.BufferedReader(_DeadlineReader(self))

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.sock.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.release()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Built once per container (loading the CA bundle costs milliseconds); honours SSL_CERT_FILE."""
    return ssl.create_default_context()


class _Pinned(http.client.HTTPConnection):
    """A connection to the checked address (not a fresh DNS answer), under the deadline."""

    def __init__(self, host: str, port: int, address: str, deadline: Deadline, tls: bool):
        super().__init__(host, port)
        self.address, self.deadline, self.tls = address, deadline, tls

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.deadline.remaining())
        try:
            if self.tls:
                # The handshake's timeout bounds the whole handshake (CPython keeps its own deadline).
                sock.settimeout(self.deadline.remaining())
                sock = tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self.deadline)


def _target(url: str, allowed_ports: frozenset, error: type) -> tuple:
    """(scheme, ASCII host, port, request path) of url, or `error` saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        scheme, hostname, port = parts.scheme, parts.hostname, parts.port
    except ValueError as e:
        raise error(f"invalid URL: {e}") from None
    if scheme not in ("http", "https"):
        raise error(f"only http(s) URLs are fetched, got {scheme or 'no'} scheme")
    if not hostname:
        raise error("the URL has no host")
    try:
        host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise error(f"invalid host name {hostname!r}") from None
    port = port or (443 if scheme == "https" else 80)
    if port not in allowed_ports:
        raise error(f"only ports {', '.join(map(str, sorted(allowed_ports)))} are fetched, got {port}")
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_SAFE + "?")
    return scheme, host, port, path


def fetch(
    url: str,
    allowed_hosts: frozenset = frozenset(),
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_S,
    allowed_ports: frozenset = PORTS,
) -> bytes:
    """The body of url's answer (following redirects), or a FetchError; at most `timeout` seconds in all."""
    deadline = Deadline(timeout)
    error = FetchError  # the client's own URL; a redirect's target is the server's answer
    for _ in range(MAX_REDIRECTS + 1):
        conn = response = None
        try:
            scheme, host, port, path = _target(url, allowed_ports, error)
            address = public_address(host, port, allowed_hosts, deadline)
            conn = _Pinned(host, port, address, deadline, tls=scheme == "https")
            conn.request("GET", path, headers={"User-Agent": "clothes-serverless/1", "Accept": "image/*"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise BadAnswer("redirect without a Location header")
                try:
                    url, error = urljoin(url, location), BadAnswer
                except ValueError as e:
                    raise BadAnswer(f"redirect to an invalid URL: {e}") from None
                continue
            if response.status != 200:
                raise BadAnswer(f"the URL answered HTTP {response.status}")
            if (response.length or 0) > max_bytes:
                raise TooLarge(f"the image at the URL is larger than {max_bytes:,} bytes")
            body = bytearray()
            while chunk := response.read(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise TooLarge(f"the image at the URL is larger than {max_bytes:,} bytes")
            return bytes(body)
        except TimeoutError:
            raise FetchTimeout(f"fetching the URL took longer than {timeout:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            if isinstance(e, FetchError):
                raise
            if time.monotonic() >= deadline.at:  # a read cut short at the deadline, whatever it raised
                raise FetchTimeout(f"fetching the URL took longer than {timeout:g} s") from None
            raise BadAnswer(f"cannot fetch the URL: {type(e).__name__}: {e}") from None
        finally:
            for opened in (response, conn):
                if opened is not None:
                    opened.close()
    raise BadAnswer(f"more than {MAX_REDIRECTS} redirects")
