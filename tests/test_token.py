"""Token: the value only through reveal()."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from tests.contract import canary
from tokenstore import Token, fingerprint_of, mask


def test_value_only_through_reveal(caplog: pytest.LogCaptureFixture) -> None:
    value = canary()
    token = Token(value, source="env:X", version="7")
    assert token.reveal() == value
    shown = [str(token), repr(token), f"{token}", f"{token!r}", f"{token:>80}", "%s %r" % (token, token)]
    for text in shown:
        assert value not in text
        assert token.fingerprint in text
    assert repr(token) == f"Token(source='env:X', version='7', fingerprint='{token.fingerprint}')"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug("token %s %r", token, [token])
    assert value not in caplog.text
    assert not hasattr(token, "__dict__")
    with pytest.raises(AttributeError):
        token.value  # type: ignore[attr-defined]  # noqa: B018


def test_pickle_refused_and_copies_share() -> None:
    token = Token(canary(), source="s")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(token, protocol=protocol)
    assert copy.copy(token) is token and copy.deepcopy(token) is token


def test_equality_by_value_hash_by_fingerprint() -> None:
    value = canary()
    a, b = Token(value, source="a"), Token(value, source="b")
    assert a == b and hash(a) == hash(b)
    assert a != Token(canary(), source="a")
    assert a != value  # a Token never equals a bare string


def test_fingerprint_and_mask() -> None:
    value = "EAAG" + "x" * 200
    assert fingerprint_of(value) == "sha256:" + __import__("hashlib").sha256(value.encode()).hexdigest()[:12]
    assert mask(value) == "EAAG…(204 chars)"
    assert mask("short") == "…(5 chars)"  # too short to show any character safely
    assert Token(value, source="s").fingerprint == fingerprint_of(value)


def test_value_must_be_str() -> None:
    with pytest.raises(TypeError):
        Token(b"bytes", source="s")  # type: ignore[arg-type]
