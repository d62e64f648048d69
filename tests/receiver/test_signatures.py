"""Our verifier against the reference Standard Webhooks implementation, and every refusal."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from receiver.signatures import VerificationError, decode_secret, sign, sign_v1a, verify

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id": "evt_1", "entityType": "client"}'


def reference_headers(secret: str, event_id: str = "evt_1", body: bytes = BODY, at: float | None = None) -> dict[str, str]:
    """Headers as the PyPI ``standardwebhooks`` package signs them."""
    at = int(time.time() if at is None else at)
    signature = Webhook(secret).sign(event_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": event_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_accepts_what_the_reference_signs() -> None:
    verify(reference_headers(SECRET), BODY, [SECRET])


def test_reference_accepts_what_we_sign() -> None:
    at = int(time.time())
    headers = {"webhook-id": "evt_9", "webhook-timestamp": str(at), "webhook-signature": sign(decode_secret(SECRET), "evt_9", at, BODY)}
    assert Webhook(SECRET).verify(BODY, headers) is not None


@pytest.mark.parametrize("size", [24, 32, 64])
def test_random_secrets_of_every_allowed_size(size: int) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(size)).decode()
    verify(reference_headers(secret), BODY, [OTHER, secret])


def test_any_listed_signature_with_any_current_secret() -> None:
    headers = reference_headers(OTHER)
    good = reference_headers(SECRET, at=int(headers["webhook-timestamp"]))["webhook-signature"]
    headers["webhook-signature"] = f"v1a,{base64.b64encode(b'x' * 64).decode()} {headers['webhook-signature']} {good}"
    verify(headers, BODY, [SECRET])


def test_unknown_schemes_and_junk_are_ignored_when_a_v1_signature_verifies() -> None:
    headers = reference_headers(SECRET)
    headers["webhook-signature"] = "v9,abc junk v1,!!!notbase64 " + headers["webhook-signature"]
    verify(headers, BODY, [SECRET])


def _signed(**changes: str) -> dict[str, str]:
    headers = reference_headers(SECRET)
    headers.update(changes)
    return {k: v for k, v in headers.items() if v != "<drop>"}


@pytest.mark.parametrize(
    ("headers", "body", "secrets", "reason"),
    [
        pytest.param(_signed(), BODY + b" ", [SECRET], "no signature matches a current secret", id="tampered-body"),
        pytest.param(_signed(), BODY, [OTHER], "no signature matches a current secret", id="wrong-secret"),
        pytest.param(_signed(**{"webhook-id": "evt_2"}), BODY, [SECRET], "no signature matches a current secret", id="other-id"),
        pytest.param(_signed(**{"webhook-id": "<drop>"}), BODY, [SECRET], "missing webhook-id header", id="no-id"),
        pytest.param(_signed(**{"webhook-signature": "<drop>"}), BODY, [SECRET], "missing webhook-signature header", id="unsigned"),
        pytest.param(_signed(**{"webhook-timestamp": "<drop>"}), BODY, [SECRET], "missing webhook-timestamp header", id="no-ts"),
        pytest.param(_signed(**{"webhook-timestamp": "12.5"}), BODY, [SECRET], "webhook-timestamp is not a Unix time in seconds or milliseconds", id="float-ts"),
        pytest.param(_signed(**{"webhook-timestamp": "9" * 40}), BODY, [SECRET], "webhook-timestamp is not a Unix time in seconds or milliseconds", id="huge-ts"),
        pytest.param(_signed(**{"webhook-timestamp": "-5"}), BODY, [SECRET], "webhook-timestamp is not a Unix time in seconds or milliseconds", id="negative-ts"),
        pytest.param(_signed(**{"webhook-signature": "v1a,AAAA"}), BODY, [SECRET], "no signature matches a current secret", id="only-v1a-for-a-v1-secret"),
        pytest.param(_signed(**{"webhook-signature": "v2,AAAA v1"}), BODY, [SECRET], "webhook-signature has no well-formed v1 or v1a signature", id="unknown-scheme"),
        pytest.param(_signed(**{"webhook-signature": "v1,%%%"}), BODY, [SECRET], "webhook-signature has no well-formed v1 or v1a signature", id="bad-base64"),
        pytest.param(_signed(**{"webhook-signature": "v1a,AAAA"}), BODY, ["whpk_AAAA"], "a v1a public key is not 32 bytes", id="short-public-key"),
        pytest.param(_signed(**{"webhook-signature": " ".join(["v1,AAAA"] * 17)}), BODY, [SECRET], "webhook-signature lists too many signatures", id="too-many"),
        pytest.param(_signed(), BODY, [], "no signing secret is known for this subscription", id="no-secrets"),
        pytest.param(_signed(), BODY, ["whsec_***"], "a signing secret is not valid base64", id="broken-secret"),
    ],
)
def test_refusals_name_their_reason(headers: dict[str, str], body: bytes, secrets: list[str], reason: str) -> None:
    # The table is built at collection, maybe minutes before this runs: judge it at its signing time.
    stamp = headers.get("webhook-timestamp", "")
    now = int(stamp) if stamp.isdigit() and len(stamp) <= 12 else None
    with pytest.raises(VerificationError) as caught:
        verify(headers, body, secrets, now=now)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("offset", "reason"), [(-301, "webhook-timestamp is too old"), (301, "webhook-timestamp is too far in the future")])
def test_timestamp_tolerance_both_ways(offset: int, reason: str) -> None:
    now = time.time()
    headers = reference_headers(SECRET, at=now + offset)
    with pytest.raises(VerificationError, match=reason):
        verify(headers, BODY, [SECRET], tolerance=300, now=now)
    verify(headers, BODY, [SECRET], tolerance=abs(offset) + 5, now=now)


def test_the_error_never_carries_a_secret() -> None:
    with pytest.raises(VerificationError) as caught:
        verify(reference_headers(SECRET), BODY + b"x", [SECRET, OTHER])
    text = repr(caught.value) + str(caught.value)
    assert SECRET not in text and SECRET[6:] not in text and OTHER[6:] not in text


# v1a (Ed25519): the emulator's own signer on one side, plain `cryptography` on the other.

def emulator_v1a() -> tuple[str, bytes]:
    from emulator.signing import new_secret

    public, private = new_secret("v1a")
    assert public.startswith("whpk_") and private is not None
    return public, private


def emulator_signed(private: bytes, at: int, event_id: str = "evt_1") -> dict[str, str]:
    from emulator.signing import sign_v1a as emulator_sign

    return {"webhook-id": event_id, "webhook-timestamp": str(at), "webhook-signature": emulator_sign(private, event_id, at, BODY)}


def test_accepts_what_the_emulator_signs_with_ed25519() -> None:
    public, private = emulator_v1a()
    verify(emulator_signed(private, int(time.time())), BODY, [SECRET, public])


def test_ed25519_refuses_another_key_a_tampered_body_and_a_v1_secret() -> None:
    public, private = emulator_v1a()
    other_public, _ = emulator_v1a()
    headers = emulator_signed(private, int(time.time()))
    for body, secrets in ((BODY, [other_public]), (BODY + b" ", [public]), (BODY, [SECRET])):
        with pytest.raises(VerificationError, match="no signature matches"):
            verify(headers, body, secrets)


def test_what_we_sign_with_ed25519_verifies_with_plain_cryptography() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public, private = emulator_v1a()
    at = int(time.time())
    signature = sign_v1a(private, "evt_7", at, BODY)
    assert signature.startswith("v1a,")
    Ed25519PublicKey.from_public_bytes(decode_secret(public)).verify(base64.b64decode(signature[4:]), f"evt_7.{at}.".encode() + BODY)
    verify({"webhook-id": "evt_7", "webhook-timestamp": str(at), "webhook-signature": signature}, BODY, [public])


def test_a_rotation_between_schemes_passes_with_either_signature() -> None:
    public, private = emulator_v1a()
    at = int(time.time())
    headers = emulator_signed(private, at)
    headers["webhook-signature"] += " " + reference_headers(SECRET, at=at)["webhook-signature"]
    verify(headers, BODY, [public])
    verify(headers, BODY, [SECRET])
