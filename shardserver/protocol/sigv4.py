"""AWS Signature Version 4 verification of DynamoDB requests.

What it is: a pure function of the request (method, raw path, raw query,
headers, raw body bytes) and the configured credentials that either returns
the access key id that signed the request or raises the DynamoDB error a real
endpoint would send (MissingAuthenticationTokenException,
UnrecognizedClientException, InvalidSignatureException).

What it owns: parsing the credentials file, parsing the Authorization header,
building the canonical request and string to sign exactly as AWS does, the
credential-scope and clock-skew checks, and a small cache of derived signing
keys.

What it must never do: touch sockets, log or echo a secret (error messages may
echo the Authorization header, which holds only the access key id and the
signature, as AWS does), or trust the client's claim about the body hash: the
body bytes passed in are hashed here.  The body must be the bytes as received,
before any Content-Encoding is undone, because that is what the client signed.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import hashlib
import hmac
import time
import urllib.parse

from shardserver.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "dynamodb"
TERMINATOR = "aws4_request"
DEFAULT_MAX_SKEW_S = 900

MSG_MISSING_TOKEN = "Request is missing Authentication Token"
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."
MSG_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

# Longest Authorization header echoed back in an error message: the echo helps
# a user debug a hand-made header, but a fuzzer must not make us build
# megabyte-sized error bodies.
_ECHO_LIMIT = 512

# Derived signing keys: HMAC chains cost four HMACs per request otherwise.
# The key includes the secret so that a rotated secret never reuses a stale
# key; bounded so that hostile (date, region) variety cannot grow it forever.
_SIGNING_KEYS: dict[tuple[str, str, str], bytes] = {}
_SIGNING_KEYS_MAX = 256


def load_credentials(path) -> dict[str, str]:
    """Read `ACCESS_KEY_ID SECRET` pairs, one per line.

    Blank lines and lines starting with `#` are ignored; a `#` after the two
    fields starts a trailing comment.  A malformed line raises ValueError
    naming the file and line number, never the line's content (it may hold a
    secret).
    """
    credentials: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) > 2 and fields[2].startswith("#"):
                fields = fields[:2]
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 'ACCESS_KEY_ID SECRET', "
                    f"found {len(fields)} field(s)"
                )
            key_id, secret = fields
            if key_id in credentials:
                raise ValueError(f"{path}:{lineno}: access key id {key_id} appears twice")
            credentials[key_id] = secret
    return credentials


def verify(
    method: str,
    path: str,
    query: str,
    headers,
    body: bytes,
    credentials: dict[str, str],
    now: float | None = None,
    max_skew_s: int = DEFAULT_MAX_SKEW_S,
) -> str:
    """Check the request's SigV4 signature; return the signing access key id.

    `path` and `query` are the raw (still percent-encoded) parts of the
    request target, `headers` a list of (name, value) byte or str pairs as
    parsed (repeated headers allowed) or a dict, `body` the raw body bytes.
    `now` is the server's clock in seconds since the epoch (tests pass it).
    """
    if isinstance(method, bytes):
        method = method.decode("latin-1")
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    hdrs = _collect_headers(headers)
    authorization = hdrs.get("authorization")
    if not authorization:
        raise MissingAuthenticationTokenException(MSG_MISSING_TOKEN)
    auth = authorization[-1]
    credential, signed_headers, signature = _parse_authorization(auth, hdrs)
    # The clock before the credential and signature, as AWS: a stale request
    # says "Signature expired" even when its scope or signature is bad too.
    amz_date, stamp = _request_date(hdrs, auth)
    _check_skew(amz_date, stamp, now, max_skew_s)
    if len(signature) != 64 or signature.strip("0123456789abcdefABCDEF"):
        # A signature that cannot be a hex SHA-256 HMAC simply does not match.
        raise InvalidSignatureException(MSG_BAD_SIGNATURE)

    key_id, scope_date, region, service = _parse_credential(credential)
    if scope_date != amz_date[:8]:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
            f"of date from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )

    secret = credentials.get(key_id)
    if secret is None:
        raise UnrecognizedClientException(MSG_UNKNOWN_KEY)

    canonical = _canonical_request(method, path, query, hdrs, signed_headers, body)
    scope = f"{scope_date}/{region}/{service}/{TERMINATOR}"
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
    )
    key = _signing_key(secret, scope_date, region)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise InvalidSignatureException(MSG_BAD_SIGNATURE)
    return key_id


def _collect_headers(headers) -> dict[str, list[str]]:
    """Lower-cased name -> list of values, in arrival order.

    Header bytes are decoded as Latin-1, HTTP's own byte-transparent reading,
    so no header content can make decoding fail.
    """
    out: dict[str, list[str]] = {}
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        key = name.strip().lower()
        values = out.get(key)
        if values is None:
            out[key] = [str(value)]
        else:
            values.append(str(value))
    return out


def _echo(auth: str) -> str:
    if len(auth) > _ECHO_LIMIT:
        return auth[:_ECHO_LIMIT] + "..."
    return auth


def _parse_authorization(auth: str, hdrs: dict[str, list[str]]) -> tuple[str, list[str], str]:
    auth = auth.strip()
    algorithm, _, rest = auth.partition(" ")
    # DynamoDB sends IncompleteSignatureException for the malformed-header
    # cases below; errors.py has no such class, so the closest type is used
    # with DynamoDB's exact wording.
    if algorithm != ALGORITHM and (
        algorithm.startswith("AWS4-") or "Credential=" in rest
    ):
        raise InvalidSignatureException(f"Unsupported AWS 'algorithm': '{algorithm[:64]}'")
    params: dict[str, str] = {}
    if algorithm == ALGORITHM:
        # Components are separated by commas, whitespace, or both: SDKs
        # write ", ", some clients write only "," or only " ".  No value can
        # hold a space (key ids, dates, header names and hex do not).
        for part in rest.split(","):
            for word in part.split() or [""]:
                name, eq, value = word.partition("=")
                if not eq:
                    # An empty part (",,") or a bare word: AWS refuses the header as malformed.
                    raise InvalidSignatureException(
                        f"'{word[:64]}' not a valid key=value pair (missing equal-sign) in "
                        f"Authorization header: '{_echo(auth)}'")
                if name and name not in params:
                    params[name] = value
    problems = []
    if not params.get("Credential"):
        problems.append("Authorization header requires 'Credential' parameter.")
    if not params.get("Signature"):
        problems.append("Authorization header requires 'Signature' parameter.")
    if not params.get("SignedHeaders"):
        problems.append("Authorization header requires 'SignedHeaders' parameter.")
    if "x-amz-date" not in hdrs and "date" not in hdrs:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise InvalidSignatureException(" ".join(problems) + f" Authorization={_echo(auth)}")
    signed_headers = params["SignedHeaders"].split(";")
    if "host" not in signed_headers:    # as every SDK writes it, else normalise the names
        lowered = {h.strip().lower() for h in signed_headers}
        if "host" not in lowered and ":authority" not in lowered:
            raise InvalidSignatureException(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
    return params["Credential"], signed_headers, params["Signature"]


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise InvalidSignatureException(
            "Credential must have the form <access key>/<date>/<region>/<service>/aws4_request. "
            f"Credential={_echo(credential)}"
        )
    key_id, date, region, service, terminator = parts
    if terminator != TERMINATOR:
        raise InvalidSignatureException(
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{_echo(terminator)}'. "
        )
    if service != SERVICE:
        raise InvalidSignatureException(
            f"Credential should be scoped to correct service: '{SERVICE}'. "
        )
    return key_id, date, region, service


def _request_date(hdrs: dict[str, list[str]], auth: str) -> tuple[str, int | None]:
    """The request time in ISO-8601 basic format (YYYYMMDDTHHMMSSZ), and as _parse_basic reads it.

    X-Amz-Date wins over Date, as in AWS; a Date header (RFC 7231 format) is
    converted so that it can take part in the string to sign.
    """
    if "x-amz-date" in hdrs:
        value = hdrs["x-amz-date"][-1].strip()
        stamp = _parse_basic(value)
        if stamp is None:
            raise InvalidSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{_echo(value)}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            )
        return value, stamp
    value = hdrs["date"][-1].strip()
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        raise InvalidSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{_echo(value)}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        )
    try:
        stamp = email.utils.mktime_tz(parsed)
        value = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(stamp))
    except (OverflowError, ValueError, OSError):
        raise InvalidSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{_echo(value)}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    return value, _parse_basic(value)


_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=256)    # a pure function; an SDK's requests of one second share their stamp
def _parse_basic(value: str) -> int | None:
    """Seconds since the epoch of a YYYYMMDDTHHMMSSZ stamp, None if malformed.

    Accepts what ``time.strptime(value, "%Y%m%dT%H%M%SZ")`` accepts in these
    16 characters (a real calendar date, hours to 23, minutes to 59, seconds
    to 61 for its leap seconds), at a fifth of its cost.
    """
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isascii() or not digits.isdigit():
        return None
    hour, minute, second = int(value[9:11]), int(value[11:13]), int(value[13:15])
    if hour > 23 or minute > 59 or second > 61:
        return None
    try:
        day = datetime.date(int(value[:4]), int(value[4:6]), int(value[6:8])).toordinal()
    except ValueError:
        return None
    return (day - _EPOCH_DAY) * 86400 + hour * 3600 + minute * 60 + second


def _format_basic(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def _check_skew(amz_date: str, stamp: int | None, now: float | None, max_skew_s: int) -> None:
    """``stamp`` is ``amz_date`` read by _parse_basic."""
    if now is None:
        now = time.time()
    if stamp < now - max_skew_s:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than "
            f"{_format_basic(now - max_skew_s)} ({_format_basic(now)} - {_window(max_skew_s)})"
        )
    if stamp > now + max_skew_s:
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than "
            f"{_format_basic(now + max_skew_s)} ({_format_basic(now)} + {_window(max_skew_s)})"
        )


def _window(max_skew_s: int) -> str:
    return f"{max_skew_s // 60} min." if max_skew_s % 60 == 0 else f"{max_skew_s} sec."


def _canonical_uri(path: str) -> str:
    """AWS's canonical URI for every service but S3.

    Dot segments and empty segments are removed, then the path as received
    (already percent-encoded) is encoded once more, which is what SigV4
    specifies and what every SDK signs.
    """
    if not path or path == "/":
        return "/"      # what every DynamoDB request has, and what the steps below make of it
    segments = [s for s in path.split("/") if s and s != "."]
    out: list[str] = []
    for s in segments:
        if s == "..":
            if out:
                out.pop()
        else:
            out.append(s)
    normalized = ("/" if path.startswith("/") else "") + "/".join(out)
    if path.endswith("/") and out:
        normalized += "/"
    return urllib.parse.quote(normalized or "/", safe="/~")


def _canonical_query(query: str) -> str:
    """Names and values decoded, then re-encoded with SigV4's rules, sorted."""
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = urllib.parse.quote(urllib.parse.unquote(name), safe="-_.~")
        value = urllib.parse.quote(urllib.parse.unquote(value), safe="-_.~")
        pairs.append((name, value))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _canonical_request(
    method: str,
    path: str,
    query: str,
    hdrs: dict[str, list[str]],
    signed_headers: list[str],
    body: bytes,
) -> str:
    lines = [method.upper(), _canonical_uri(path), _canonical_query(query)]
    for name in signed_headers:
        values = hdrs.get(name.lower(), ())
        if len(values) == 1:    # the usual case, without a generator
            lines.append(name + ":" + " ".join(values[0].split()))
        else:
            lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
    lines.append("")
    lines.append(";".join(signed_headers))
    # Always the hash of the bytes we received: taking X-Amz-Content-SHA256 on
    # trust would let a tampered body through with the original signature.
    lines.append(hashlib.sha256(body).hexdigest())
    return "\n".join(lines)


def _signing_key(secret: str, date: str, region: str) -> bytes:
    cache_key = (secret, date, region)
    key = _SIGNING_KEYS.get(cache_key)
    if key is None:
        key = _hmac(("AWS4" + secret).encode("utf-8"), date)
        key = _hmac(key, region)
        key = _hmac(key, SERVICE)
        key = _hmac(key, TERMINATOR)
        if len(_SIGNING_KEYS) >= _SIGNING_KEYS_MAX:
            _SIGNING_KEYS.clear()
        _SIGNING_KEYS[cache_key] = key
    return key


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()
