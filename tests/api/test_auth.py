"""API keys and tenant isolation, over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from live import LiveServer, wait_for_status

PROTECTED = [
    ("GET", "/v1/jobs"),
    ("GET", "/v1/job-kinds"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef"),
    ("POST", "/v1/audits"),
    ("GET", "/v1/audits/0123456789abcdef0123456789abcdef/report"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_key_is_401_with_a_problem(server: LiveServer, method: str, path: str) -> None:
    with server.client(None) as client:
        response = client.request(method, path, json={"kind": "test.noop", "params": {}})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "key",
    [
        "nonsense",
        "pa_000000000000_" + "A" * 43,  # well-formed, unknown id
    ],
)
def test_invalid_keys_are_401(server: LiveServer, key: str) -> None:
    with server.client(key) as client:
        assert client.get("/v1/jobs").status_code == 401


def test_a_right_id_with_a_wrong_secret_is_401(server: LiveServer, tenant_a_key: str) -> None:
    forged = tenant_a_key[:-5] + ("AAAAA" if not tenant_a_key.endswith("AAAAA") else "BBBBB")
    with server.client(forged) as client:
        assert client.get("/v1/jobs").status_code == 401


def test_x_api_key_header_works_too(server: LiveServer, tenant_a_key: str) -> None:
    response = httpx.get(f"{server.url}/v1/jobs", headers={"X-API-Key": tenant_a_key})
    assert response.status_code == 200


def test_revoked_key_is_401_once_the_auth_cache_expires(server: LiveServer) -> None:
    from privaudit.api.db import Database
    from privaudit.api.keys import revoke_key

    key = server.create_key("tenant-revoke")
    with server.client(key) as client:
        assert client.get("/v1/jobs").status_code == 200
        database = Database(f"sqlite:///{server.data_dir / 'privaudit.db'}", pooled=False)
        with database.session() as session:
            assert revoke_key(session, key.split("_")[1])
        database.dispose()
        revoked_at = time.monotonic()
        # Verified keys are trusted for PRIVAUDIT_AUTH_CACHE_TTL_S (1 s in these tests).
        while client.get("/v1/jobs").status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "revocation ignored past the TTL"
            time.sleep(0.05)
        assert client.get("/v1/jobs").status_code == 401


def test_missing_scope_is_403(server: LiveServer) -> None:
    reader = server.create_key("tenant-reader", scopes=["jobs:read"])
    with server.client(reader) as client:
        assert client.get("/v1/jobs").status_code == 200
        response = client.post("/v1/jobs", json={"kind": "test.noop", "params": {}})
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "jobs:write" in response.json()["detail"]


def test_a_kind_can_demand_a_scope_beyond_jobs_write(server: LiveServer, tenant_a_key: str) -> None:
    with server.client(tenant_a_key) as client:
        response = client.post("/v1/jobs", json={"kind": "test.admin_only", "params": {}})
    assert response.status_code == 403
    admin = server.create_key("tenant-admin", scopes=["admin"])
    with server.client(admin) as client:
        assert client.post("/v1/jobs", json={"kind": "test.admin_only"}).status_code == 202


def test_tenant_a_gets_404_for_tenant_b_jobs(
    server: LiveServer, tenant_a_key: str, tenant_b_key: str
) -> None:
    with server.client(tenant_b_key) as b:
        theirs = b.post("/v1/jobs", json={"kind": "test.noop", "params": {}}).json()
        wait_for_status(b, theirs["id"], {"succeeded"})
        assert b.get(f"/v1/jobs/{theirs['id']}/result").status_code == 200
    with server.client(tenant_a_key) as a:
        for method, path in [
            ("GET", f"/v1/jobs/{theirs['id']}"),
            ("GET", f"/v1/jobs/{theirs['id']}/result"),
            ("GET", f"/v1/jobs/{theirs['id']}/events"),
            ("POST", f"/v1/jobs/{theirs['id']}/cancel"),
        ]:
            response = a.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["code"] == "not_found"
        listed = {job["id"] for job in a.get("/v1/jobs", params={"limit": 1000}).json()["items"]}
    assert theirs["id"] not in listed


def test_health_needs_no_key(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "ok"
