"""The letter service's guards: malformed and oversized bodies, the bearer token, CORS and Origin, the Host
header, origin patterns, and the extension's minimal manifest."""

import base64
import hashlib
import json

import pytest

pytest.importorskip("fastapi")

from service_client import EXTENSION_ORIGIN, job_body  # noqa: E402

from coverlora.config import EXTENSION_ID, origin_regex  # noqa: E402
from coverlora.errors import ConfigError  # noqa: E402
from coverlora.service import EXTENSION_DIR  # noqa: E402


def test_bad_json_is_400_and_lone_surrogates_are_422_not_500(make_client):
    client = make_client()
    response = client.post("/v1/letters", content=b'{"job": {', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "the body is not valid JSON: Expecting property name enclosed in double "
                                         "quotes at character 9"}
    raw = json.dumps(job_body()).replace('"Acme Corp"', '"Acme \\ud800 Corp"').encode()
    response = client.post("/v1/letters", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "job.company" in response.json()["message"]


def test_body_over_the_limit_is_413(make_client):
    client = make_client(max_body_bytes=2000)
    big = job_body(resume__past_experience="y" * 3000)
    response = client.post("/v1/letters", json=big)
    assert response.status_code == 413
    assert "2000 bytes" in response.json()["detail"]
    # Chunked, without a Content-Length: counted as it arrives.
    payload = json.dumps(big).encode()
    response = client.post("/v1/letters", content=iter([payload[:1500], payload[1500:]]),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.post("/v1/letters", json=job_body()).status_code == 200



# ---------------------------------------------------------------------------- auth, origins, hosts


def test_bearer_token(make_client):
    client = make_client(token="s3cret-token")
    response = client.post("/v1/letters", json=job_body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/v1/letters", json=job_body(), headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status_code == 401
    assert client.post("/v1/letters/stream", json=job_body()).status_code == 401
    right = {"Authorization": "Bearer s3cret-token"}
    assert client.post("/v1/letters", json=job_body(), headers=right).status_code == 200
    health = client.get("/healthz").json()
    assert health["token_required"] and health["token_ok"] is False
    assert client.get("/healthz", headers=right).json()["token_ok"] is True
    assert make_client().get("/healthz").json()["token_ok"] is None


def test_token_from_environment(make_client, monkeypatch):
    monkeypatch.setenv("COVERLORA_TOKEN", "from-the-env")
    client = make_client()
    assert client.post("/v1/letters", json=job_body()).status_code == 401
    assert client.post("/v1/letters", json=job_body(),
                       headers={"Authorization": "Bearer from-the-env"}).status_code == 200


@pytest.mark.parametrize(("origin", "allowed"), [
    (EXTENSION_ORIGIN, ""), ("http://127.0.0.1:8765", ""), ("http://localhost:8765", ""), ("http://[::1]:8765", ""),
    ("http://localhost:5173", "http://localhost:*"), ("http://localhost", "http://localhost:*"),
    ("https://app.example", "https://app.example,http://localhost:*")])
def test_cors_allows_the_extension_the_service_and_the_origins_given(make_client, origin, allowed):
    client = make_client(allowed_origins=allowed)
    preflight = client.options("/v1/letters", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    response = client.post("/v1/letters", json=job_body(), headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example", "null",
                                    "chrome-extension://abcdefghijklmnopabcdefghijklmnop", "https://localhost:8765",
                                    "http://localhost:5173", "http://127.0.0.1:8888", "http://localhost"])
def test_cors_refuses_other_origins(make_client, origin):
    client = make_client()
    response = client.post("/v1/letters", json=job_body(), headers={"Origin": origin})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/v1/letters", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code in (400, 403)
    assert "access-control-allow-origin" not in preflight.headers
    assert client.get("/healthz", headers={"Origin": origin}).status_code == 403


def test_the_services_own_page_may_call_it_under_any_allowed_host_name(make_client):
    client = make_client(allowed_hosts="*")
    own = client.post("/v1/letters", json=job_body(), headers={"Host": "box.lan:8765", "Origin": "http://box.lan:8765"})
    assert own.status_code == 200
    other = client.post("/v1/letters", json=job_body(), headers={"Host": "box.lan:8765", "Origin": "http://box.lan:9999"})
    assert other.status_code == 403


def test_foreign_host_header_is_refused(make_client):
    client = make_client()
    assert client.get("/healthz", headers={"Host": "attacker.example:8765"}).status_code == 400
    assert client.post("/v1/letters", json=job_body(), headers={"Host": "localhost.attacker.example"}).status_code == 400
    assert client.get("/healthz", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "[::1]:8765"}).status_code == 200
    assert make_client(allowed_hosts="*").get("/healthz", headers={"Host": "box.lan"}).status_code == 200


def test_origin_patterns():
    regex = origin_regex("chrome-extension://abc,http://localhost:*,http://*.test")
    assert regex.match("chrome-extension://abc") and regex.match("http://localhost:8080") and regex.match("http://localhost")
    assert regex.match("http://a.test")
    assert not regex.match("chrome-extension://abcd") and not regex.match("http://localhost:8080.evil.com")
    assert not regex.match("http://a.test:80") and not regex.match("http://localhost/x")
    with pytest.raises(ConfigError, match="no scheme"):
        origin_regex("localhost")




# ---------------------------------------------------------------------------- the extension's files


def test_extension_manifest_is_minimal_and_its_id_is_allowed():
    manifest = json.loads((EXTENSION_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["manifest_version"] == 3
    assert sorted(manifest["permissions"]) == ["activeTab", "scripting", "sidePanel", "storage"]
    assert (EXTENSION_DIR / manifest["side_panel"]["default_path"].split("?")[0]).is_file()
    assert sorted(manifest["host_permissions"]) == ["http://127.0.0.1/*", "http://localhost/*"]
    assert "content_scripts" not in manifest and "background" not in manifest
    digest = hashlib.sha256(base64.b64decode(manifest["key"])).hexdigest()[:32]
    assert "".join(chr(ord("a") + int(c, 16)) for c in digest) == EXTENSION_ID
    for name in [manifest["action"]["default_popup"], manifest["options_ui"]["page"], *manifest["icons"].values()]:
        assert (EXTENSION_DIR / name).is_file(), name
    for page in EXTENSION_DIR.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "http://" not in html.replace("http://127.0.0.1", "").replace("http://localhost", "")
        assert "https://" not in html and "<script>" not in html  # no remote or inline code (MV3 CSP)
    for script in EXTENSION_DIR.glob("*.js"):
        code = script.read_text(encoding="utf-8")
        assert "eval(" not in code and "new Function" not in code and "innerHTML" not in code, script.name
