"""Authenticator: plain tokens, scrypt hashes, the shared secret, token files,
and constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from vclock import auth
from vclock.auth import SHARED, Authenticator, hash_token

SALT = bytes(range(16))


@pytest.fixture(scope="module")
def hashed() -> str:
    return hash_token("s3cret", salt=SALT)


@pytest.fixture
def compares(monkeypatch) -> list[tuple[bytes, bytes]]:
    """Every call to hmac.compare_digest made by vclock.auth, with its arguments."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    return calls


# Plain tokens


def test_a_plain_token_authenticates_its_id_only():
    a = Authenticator({"A": "alpha", "B": "beta"})
    assert a.check("A", "alpha")
    assert a.check("B", "beta")
    assert not a.check("A", "beta")
    assert not a.check("A", "alph")
    assert not a.check("A", "alpha ")
    assert not a.check("A", "")
    assert not a.check("A", None)


def test_an_unknown_or_missing_id_fails():
    a = Authenticator({"A": "alpha"})
    assert not a.check("Z", "alpha")
    assert not a.check(None, "alpha")
    assert not a.check(None, None)


def test_an_authenticator_needs_an_entry():
    with pytest.raises(ValueError, match="at least one"):
        Authenticator({})


# Hashes


def test_hash_token_has_the_token_file_form(hashed):
    assert re.fullmatch(r"scrypt\$[0-9a-f]{32}\$[0-9a-f]{64}", hashed)
    assert hashed.split("$")[1] == SALT.hex()
    assert hash_token("s3cret", salt=SALT) == hashed  # same salt, same hash
    assert hash_token("other", salt=SALT) != hashed


def test_hash_token_salts_randomly_by_default():
    first, second = hash_token("x"), hash_token("x")
    assert first != second
    assert first.split("$")[1] != second.split("$")[1]


def test_a_hashed_secret_checks_the_token_not_the_hash(hashed):
    a = Authenticator({"A": hashed})
    assert a.check("A", "s3cret")
    assert not a.check("A", "s3creT")
    assert not a.check("A", hashed)  # the hash itself is not a token
    assert not a.check("Z", "s3cret")


@pytest.mark.parametrize("secret", ["scrypt$00", "scrypt$aa$bb$cc", "scrypt$zz$00", "scrypt$00$xy"])
def test_a_malformed_hash_is_refused_naming_the_id(secret):
    with pytest.raises(ValueError, match="'A'"):
        Authenticator({"A": secret})


# The shared secret


def test_a_shared_secret_lets_any_id_in():
    a = Authenticator({SHARED: "team"})
    assert a.check("anyone", "team")
    assert a.check("A", "team")
    assert not a.check("A", "nope")
    assert not a.check("A", None)


def test_a_shared_secret_never_lets_anyone_take_a_listed_id():
    a = Authenticator({"*": "team", "A": "alpha"})
    assert a.check("A", "alpha")
    assert not a.check("A", "team")
    assert a.check("B", "team")
    assert not a.check("B", "alpha")


def test_a_hashed_shared_secret(hashed):
    a = Authenticator({"*": hashed})
    assert a.check("anyone", "s3cret")
    assert not a.check("anyone", "nope")


def test_even_a_shared_secret_needs_an_id():
    # The hub documents that with auth "every hello must carry an id and a token".
    assert not Authenticator({"*": "team"}).check(None, "team")


# Token files


def test_from_text_reads_ids_and_secrets_skipping_comments_and_blanks(hashed):
    text = f"# tokens\n\nA alpha\n  B   {hashed}  \n\t# more\n* team\n"
    a = Authenticator.from_text(text)
    assert a.check("A", "alpha")
    assert a.check("B", "s3cret")
    assert a.check("C", "team")
    assert not a.check("A", "beta")


@pytest.mark.parametrize(
    ("text", "line", "fields"),
    [("A alpha\nB\n", 2, 1), ("# c\n\nA alpha beta\n", 3, 3), ("A a\nB b\n\nC c d e\n", 4, 4)],
)
def test_from_text_names_the_malformed_line(text, line, fields):
    with pytest.raises(ValueError) as info:
        Authenticator.from_text(text)
    assert str(info.value).startswith(f"line {line}:")
    assert f"got {fields} fields" in str(info.value)


def test_from_text_with_no_entries_is_refused():
    with pytest.raises(ValueError):
        Authenticator.from_text("# nothing here\n\n")


def test_from_text_refuses_a_malformed_hash():
    with pytest.raises(ValueError, match="'A'"):
        Authenticator.from_text("A scrypt$00\n")


# Constant time


def test_a_check_compares_with_compare_digest(compares):
    a = Authenticator({"A": "alpha"})
    assert a.check("A", "alpha")
    assert compares == [(b"alpha", b"alpha")]
    assert not a.check("A", "beta")
    assert compares[-1] == (b"beta", b"alpha")


def test_an_unknown_id_costs_a_comparison_too(compares):
    a = Authenticator({"A": "alpha"})
    assert not a.check("Z", "alpha")
    assert len(compares) == 1
    assert compares[0][1] != b"alpha"  # compared with a dummy, not another id's secret


def test_a_hashed_check_compares_hashes_with_compare_digest(compares, hashed):
    a = Authenticator({"A": hashed})
    assert a.check("A", "s3cret")
    assert compares == [(hashed.encode(), hashed.encode())]


def test_an_unknown_id_costs_a_hash_like_a_known_one(monkeypatch, compares, hashed):
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(auth.hashlib, "scrypt", counting)
    a = Authenticator({"A": hashed})
    assert not a.check("A", "wrong")
    known = (len(calls), len(compares))
    assert not a.check("Z", "wrong")
    assert (len(calls) - known[0], len(compares) - known[1]) == known == (1, 1)


def test_the_shared_secret_is_compared_with_compare_digest(compares):
    a = Authenticator({"*": "team"})
    assert a.check("B", "team")
    assert (b"team", b"team") in compares
    assert all(isinstance(x, bytes) and isinstance(y, bytes) for x, y in compares)


@pytest.mark.parametrize("kind", ["plain", "hashed"])
def test_with_a_shared_secret_listed_and_unlisted_ids_cost_the_same(
    monkeypatch, compares, hashed, kind
):
    scrypts = []
    real = hashlib.scrypt
    monkeypatch.setattr(auth.hashlib, "scrypt", lambda *a, **k: scrypts.append(1) or real(*a, **k))
    own, shared = ("alpha", "team") if kind == "plain" else (hashed, hash_token("team", salt=SALT))
    a = Authenticator({"A": own, "*": shared})
    costs = []
    for client_id in ["A", "Z", None]:
        before = (len(compares), len(scrypts))
        assert not a.check(client_id, "wrong")
        costs.append((len(compares) - before[0], len(scrypts) - before[1]))
    assert costs[0] == costs[1], "a listed id must not be told apart from an unlisted one"


@pytest.mark.parametrize("shared", [False, True])
def test_in_a_file_mixing_plain_and_hashed_entries_every_refusal_costs_the_same(
    monkeypatch, compares, hashed, shared
):
    # Issue 12 item 14: an unknown id cost a scrypt (37 ms), a listed plain one did not
    # (0.2 ms), which told an attacker which ids exist. Count the work, not the time.
    scrypts = []
    real = hashlib.scrypt
    monkeypatch.setattr(auth.hashlib, "scrypt", lambda *a, **k: scrypts.append(1) or real(*a, **k))
    entries = {"A": "alpha", "B": hashed}
    if shared:
        entries[SHARED] = "team"
    a = Authenticator(entries)
    costs = {}
    for client_id in ["A", "B", "Z", None]:  # plain, hashed, unknown, no id at all
        before = (len(scrypts), len(compares))
        assert not a.check(client_id, "wrong")
        costs[client_id] = (len(scrypts) - before[0], len(compares) - before[1])
    assert len(set(costs.values())) == 1, costs
    assert costs["Z"][0] == 1  # the id's own slot hashes once, however it is stored
    assert a.check("A", "alpha") and a.check("B", "s3cret")  # and still tells right from wrong


def test_operations_md_says_the_shared_secret_does_not_admit_listed_ids():
    # Issue 12 item 17: the guide said the shared token admits ids with their own
    # line; the code refuses them (test_a_shared_secret_never_lets_anyone_take_a_listed_id),
    # the safer choice. The guide must say what the code does.

    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    text = " ".join(guide.split())
    assert "including ids that have their own line" not in text
    assert "admits **any id that has no line of its own**" in text
    assert "never with the shared one" in text
