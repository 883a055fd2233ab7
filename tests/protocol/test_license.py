"""Licenses, sealed content keys, encrypted paid packages, revenue splits."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol import license as lic
from bitterbot.protocol import paidpkg
from bitterbot.protocol.codec import decode, encode
from bitterbot.protocol.identity import Identity

PUBLISHER = Identity.from_seed(b"\x0a" * 32)
BUYER = Identity.from_seed(b"\x0b" * 32)
OTHER = Identity.from_seed(b"\x0c" * 32)
KEY = bytes(range(32))


def issue(**kw: object) -> lic.License:
    args: dict[str, object] = dict(
        skill="summarize",
        buyer=BUYER.public_key,
        version_min="1.0.0",
        version_below="2.0.0",
        amount=250,
        voucher=b"v" * 32,
        purchase=b"p" * 16,
        content_key=KEY,
        now_ms=1_700_000_000_000,
    )
    args.update(kw)
    return lic.issue_license(PUBLISHER, **args)  # type: ignore[arg-type]


def test_valid_license_verifies_for_its_buyer() -> None:
    got = lic.verify_license(
        issue().to_bytes(),
        buyer=BUYER.public_key,
        skill="summarize",
        version="1.4.2",
        publisher=PUBLISHER.public_key,
    )
    assert got.amount == 250 and got.purchase == b"p" * 16


def test_license_for_another_buyers_key_is_refused() -> None:
    with pytest.raises(lic.LicenseWrongBuyerError) as info:
        lic.verify_license(
            issue().to_bytes(), buyer=OTHER.public_key, skill="summarize", version="1.0.0"
        )
    assert info.value.code == "license_wrong_buyer"


def test_tampered_license_is_refused() -> None:
    obj = decode(issue().to_bytes())
    obj["payload"]["amount"] = 1
    with pytest.raises(lic.LicenseTamperedError):
        lic.verify_license(encode(obj), buyer=BUYER.public_key, skill="summarize", version="1.0.0")
    obj = decode(issue().to_bytes())
    obj["payload"]["buyer"] = OTHER.public_key  # hand my license to someone else
    with pytest.raises(lic.LicenseTamperedError):
        lic.verify_license(encode(obj), buyer=OTHER.public_key, skill="summarize", version="1.0.0")


def test_license_signed_by_someone_else_than_the_named_publisher_is_refused() -> None:
    draft = issue()
    from bitterbot.protocol.envelope import seal

    env = seal(lic.LICENSE_KIND, draft.payload(), OTHER, 1)  # payload names PUBLISHER
    with pytest.raises(lic.LicenseTamperedError):
        lic.verify_license(
            env.to_bytes(), buyer=BUYER.public_key, skill="summarize", version="1.0.0"
        )
    ok = issue()
    with pytest.raises(lic.LicenseWrongSkillError):
        lic.verify_license(
            ok.to_bytes(),
            buyer=BUYER.public_key,
            skill="summarize",
            version="1.0.0",
            publisher=OTHER.public_key,
        )


@pytest.mark.parametrize("version", ["0.9.9", "2.0.0", "2.0.1", "10.0"])
def test_version_out_of_range_is_refused(version: str) -> None:
    with pytest.raises(lic.LicenseVersionError):
        lic.verify_license(
            issue().to_bytes(), buyer=BUYER.public_key, skill="summarize", version=version
        )


def test_license_for_another_skill_is_refused() -> None:
    with pytest.raises(lic.LicenseWrongSkillError):
        lic.verify_license(
            issue().to_bytes(), buyer=BUYER.public_key, skill="translate", version="1.0.0"
        )


def test_sealed_key_opens_only_for_the_buyer_and_matches_the_license() -> None:
    license_ = issue()
    sealed = lic.seal_key(KEY, BUYER.public_key)
    assert lic.open_sealed_key(sealed, BUYER, license_) == KEY
    with pytest.raises(lic.SealedKeyError):
        lic.open_sealed_key(sealed, OTHER)
    wrong = lic.seal_key(bytes(32), BUYER.public_key)
    with pytest.raises(lic.SealedKeyError):
        lic.open_sealed_key(wrong, BUYER, license_)


def test_paid_package_is_useless_without_the_key() -> None:
    data = os.urandom(5000)
    blob = paidpkg.encrypt_package(data, KEY, nonce=b"n" * 24)
    assert paidpkg.is_paid_package(blob) and data not in blob
    assert paidpkg.decrypt_package(blob, KEY) == data
    with pytest.raises(paidpkg.PaidPackageError):
        paidpkg.decrypt_package(blob, bytes(32))
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(paidpkg.PaidPackageError):
        paidpkg.decrypt_package(bytes(flipped), KEY)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=1, max_value=3000), max_size=3),
)
def test_revenue_split_adds_up_and_publisher_gets_the_rest(amount: int, bps: list[int]) -> None:
    shares = [(bytes([i + 1]) * 32, b) for i, b in enumerate(bps)]
    parts = lic.revenue_split(amount, PUBLISHER.public_key, shares)
    assert sum(a for _, a in parts) == amount
    assert parts[0][0] == PUBLISHER.public_key
    assert all(isinstance(a, int) and a >= 0 for _, a in parts)


def test_revenue_split_over_100_percent_is_refused() -> None:
    with pytest.raises(lic.LicenseError):
        lic.revenue_split(100, PUBLISHER.public_key, [(b"a" * 32, 6000), (b"b" * 32, 5000)])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_as_license_only_raise_license_errors(data: bytes) -> None:
    with pytest.raises(lic.LicenseError):
        lic.verify_license(data, buyer=BUYER.public_key, skill="x", version="1.0.0")
