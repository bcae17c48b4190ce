import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_plugin.auth import Authenticator, AuthError, JwtVerifier, credential_from
from auth_plugin.settings import JwtSettings
from auth_plugin.token_store import TokenStore, hash_token


@pytest.fixture
def store(open_db):
    store = TokenStore(open_db())
    yield store
    store.close()


def test_tokens_are_random_long_and_stored_only_as_hashes(store, open_db, tmp_path):
    token, record = store.issue("alice", ["predict"], 60)
    other, _ = store.issue("alice", ["predict"], 60)
    assert token.startswith("frs_") and len(token) >= 4 + 43 and token != other  # 32 bytes = 256 bits
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite3*"))  # SQLite's file, WAL included
    assert token.encode() not in raw
    rows = open_db().rows("SELECT * FROM tokens")
    assert not any(token in str(value) for row in rows for value in row)
    assert (hash_token(token),) in [(row[1],) for row in rows] and record.scopes == {"predict"}


def test_lookup_revoke_and_list(store, open_db):
    token, record = store.issue("bob", ["predict", "admin"], 60)
    assert store.lookup(token) == record and store.lookup("frs_nope") is None
    other = TokenStore(open_db())  # another process (the CLI, another gateway) on the same database
    assert other.revoke(record.id) and store.lookup(token).revoked
    assert not store.revoke(999)
    assert [r.user for r in store.all()] == ["bob"] and other.all() == store.all()
    other.close()


@pytest.mark.parametrize(("user", "scopes", "ttl"), [("", ["predict"], 60), ("a", [], 60), ("a", ["root"], 60),
                                                     ("a", ["predict"], 0)])
def test_bad_issue_requests_are_refused(store, user, scopes, ttl):
    with pytest.raises(ValueError):
        store.issue(user, scopes, ttl)


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "missing"), ({"Authorization": "Basic abc"}, "malformed"), ({"Authorization": "Bearer"}, "malformed"),
    ({"Authorization": "Bearer a b"}, "malformed"), ({"access_token": "  "}, "missing"),
])
def test_credential_extraction_failures(headers, reason):
    with pytest.raises(AuthError) as caught:
        credential_from(headers)
    assert caught.value.reason == reason and caught.value.status == 401


def test_both_header_forms_are_accepted():
    assert credential_from({"Authorization": "Bearer xyz"}) == credential_from({"access_token": "xyz"}) == "xyz"


async def test_opaque_token_states(store):
    auth = Authenticator(store, None, cache_s=0)
    good, _ = store.issue("carol", ["predict"], 60)
    assert (await auth.authenticate({"Authorization": f"Bearer {good}"}, "predict")).user == "carol"
    with pytest.raises(AuthError) as caught:
        await auth.authenticate({"Authorization": f"Bearer {good}"}, "admin")
    assert (caught.value.status, caught.value.code, caught.value.scope) == (403, "insufficient_scope", "admin")
    assert 'error="insufficient_scope"' in caught.value.headers["WWW-Authenticate"]
    short, _ = store.issue("dave", ["predict"], 0.01)
    time.sleep(0.02)
    revoked, record = store.issue("erin", ["predict"], 60)
    store.revoke(record.id)
    for token, reason in ((short, "expired"), (revoked, "revoked"), ("frs_unknown", "unknown"), ("eyJ.x.y", "unknown")):
        with pytest.raises(AuthError) as caught:
            await auth.authenticate({"Authorization": f"Bearer {token}"}, "predict")
        assert caught.value.reason == reason
        challenge = caught.value.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="food-rotation-serve", error="invalid_token"')


async def test_revocation_is_seen_after_the_cache_window(store):
    auth = Authenticator(store, None, cache_s=0.2)
    token, record = store.issue("frank", ["predict"], 60)
    await auth.authenticate({"Authorization": f"Bearer {token}"}, "predict")
    store.revoke(record.id)
    time.sleep(0.25)
    with pytest.raises(AuthError):
        await auth.authenticate({"Authorization": f"Bearer {token}"}, "predict")


def _pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(params=["RS256", "ES256"])
def signer(request, tmp_path):
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if request.param == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    public_file = tmp_path / "idp.pem"
    public_file.write_bytes(_pem(private))
    settings = JwtSettings(public_key_file=public_file, audience="food-rotation-serve", issuer="https://idp.test")
    return request.param, private, JwtVerifier(settings)


def _claims(**overrides):
    now = int(time.time())
    return {"sub": "gina", "aud": "food-rotation-serve", "iss": "https://idp.test", "exp": now + 60, "nbf": now - 5,
            "scope": "predict admin", **overrides}


def test_jwt_valid(signer):
    algorithm, private, verifier = signer
    principal = verifier.verify(jwt.encode(_claims(), private, algorithm=algorithm))
    assert principal.user == "jwt:gina" and principal.scopes == {"predict", "admin"} and principal.source == "jwt"


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"sub": None}, "malformed"),  # no sub: every such token was one user, "unknown"
    ({"sub": ""}, "malformed"),
    ({"sub": 42}, "malformed"),
    ({"exp": "far"}, "malformed"),
])
def test_a_jwt_must_name_its_user(signer, overrides, reason):
    algorithm, private, verifier = signer
    claims = {key: value for key, value in _claims(**overrides).items() if value is not None}
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(claims, private, algorithm=algorithm))
    assert caught.value.reason == reason and caught.value.status == 401


def test_a_jwt_that_lives_too_long_is_refused_and_its_user_keeps_its_source(signer):
    algorithm, private, verifier = signer
    far = jwt.encode(_claims(exp=int(time.time()) + 30 * 86400), private, algorithm=algorithm)
    with pytest.raises(AuthError) as caught:
        verifier.verify(far)
    assert caught.value.reason == "too_long_lived" and "86400" in caught.value.message
    admin = verifier.verify(jwt.encode(_claims(sub="admin"), private, algorithm=algorithm))
    assert admin.user == "jwt:admin" and admin.subject_key == "jwt:admin"  # never the opaque token user "admin"


@pytest.mark.parametrize(("overrides", "reason"), [  # times relative to when the test runs, not when it was collected
    (lambda now: {"exp": now - 120}, "expired"),
    (lambda now: {"nbf": now + 600}, "not_yet_valid"),
    (lambda now: {"aud": "someone-else"}, "wrong_audience"),
    (lambda now: {"iss": "https://evil.test"}, "wrong_issuer"),
])
def test_jwt_claims_are_checked(signer, overrides, reason):
    algorithm, private, verifier = signer
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(_claims(**overrides(int(time.time()))), private, algorithm=algorithm))
    assert caught.value.reason == reason


def test_jwt_from_another_key_or_algorithm_is_refused(signer):
    algorithm, _, verifier = signer
    stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256"
                else ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(_claims(), stranger, algorithm=algorithm))
    assert caught.value.reason == "bad_signature"
    with pytest.raises(AuthError) as caught:  # the classic: HS256 signed with the public key as the secret
        verifier.verify(jwt.encode(_claims(), "a-shared-secret-of-enough-length-32b", algorithm="HS256"))
    assert caught.value.reason == "bad_signature"


def test_hs256_secret_and_scope_list_claim():
    verifier = JwtVerifier(JwtSettings(secret="s" * 32, algorithms=("HS256",), scope_claim="scp"))
    token = jwt.encode({"sub": "h", "aud": "food-rotation-serve", "exp": int(time.time()) + 60, "scp": ["predict"]},
                       "s" * 32, algorithm="HS256")
    assert verifier.verify(token).scopes == {"predict"}
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode({"sub": "h", "aud": "food-rotation-serve"}, "s" * 32, algorithm="HS256"))
    assert caught.value.reason == "malformed"  # no exp


async def test_authenticator_routes_jwts_to_the_verifier(store, signer):
    algorithm, private, verifier = signer
    auth = Authenticator(store, verifier, cache_s=0.5)
    token = jwt.encode(_claims(scope="predict"), private, algorithm=algorithm)
    assert (await auth.authenticate({"Authorization": f"Bearer {token}"}, "predict")).user == "jwt:gina"


def test_a_token_signed_for_the_other_key_family_is_a_401_not_a_500(signer):
    """An ES256 header against an RSA key (or RS256 against an EC key) raised PyJWT's InvalidKeyError."""
    algorithm, _, verifier = signer
    other = ec.generate_private_key(ec.SECP256R1()) if algorithm == "RS256" else rsa.generate_private_key(
        public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(_claims(), other, algorithm="ES256" if algorithm == "RS256" else "RS256"))
    assert caught.value.status == 401


def test_a_key_that_fits_none_of_the_algorithms_stops_the_start(tmp_path):
    public_file = tmp_path / "idp.pem"
    public_file.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ValueError, match="fits the configured ec key"):
        JwtVerifier(JwtSettings(public_key_file=public_file, algorithms=("RS256",)))


@pytest.mark.parametrize("scope", [{"admin": False, "predict": False}, 7, True, ["predict", 1], None])
def test_a_scope_claim_that_is_not_a_string_or_a_list_of_strings_is_refused(signer, scope):
    algorithm, private, verifier = signer
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(_claims(scope=scope), private, algorithm=algorithm))
    assert caught.value.reason == "malformed"


def test_a_crit_header_is_refused(signer):
    algorithm, private, verifier = signer
    token = jwt.encode(_claims(), private, algorithm=algorithm, headers={"crit": ["exp"]})
    with pytest.raises(AuthError, match="crit"):
        verifier.verify(token)


@pytest.mark.parametrize("token", ["frs_abc\x7f", "frs_\u00e9t\u00e9", "frs_a\rbc", "frs_\udcff"],
                         ids=["DEL", "non-ASCII", "CR", "lone-surrogate"])
async def test_a_token_with_characters_no_token_has_is_malformed(store, token):
    auth = Authenticator(store, None, cache_s=0.5)
    with pytest.raises(AuthError) as caught:
        await auth.authenticate({"Authorization": f"Bearer {token}"}, "predict")
    assert caught.value.reason == "malformed" and caught.value.status == 401
