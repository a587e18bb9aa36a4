"""/docs and /redoc work without internet: every asset they load is served by the app."""

from __future__ import annotations

import re

import httpx
import pytest

from control_plane.api.docs import VENDOR_DIR

EXPECTED = {
    "/docs": {
        "/static/vendor/swagger-ui-bundle.js": "text/javascript",
        "/static/vendor/swagger-ui.css": "text/css",
        "/static/vendor/favicon-32x32.png": "image/png",
    },
    "/redoc": {
        "/static/vendor/redoc.standalone.js": "text/javascript",
        "/static/vendor/favicon-32x32.png": "image/png",
    },
}


@pytest.mark.parametrize("page", sorted(EXPECTED))
async def test_docs_pages_load_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    # No other host at all: no CDN script, no Google fonts, no favicon or validator elsewhere.
    assert not re.search(r"(https?:)?//[a-z0-9]", html, re.I), re.findall(r"\S*//\S+", html)
    assets = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert assets == set(EXPECTED[page]), assets
    assert "/openapi.json" in html
    for url, content_type in EXPECTED[page].items():
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] == content_type, url
        assert len(asset.content) > 500, url
        assert asset.content == (VENDOR_DIR / url.rsplit("/", 1)[1]).read_bytes()


async def test_vendored_versions_are_recorded() -> None:
    versions = (VENDOR_DIR / "VERSIONS").read_text()
    assert "swagger-ui-dist  5.35.0   Apache-2.0" in versions
    assert "redoc            2.5.4    MIT" in versions
    assert b"5.35.0" in (VENDOR_DIR / "swagger-ui-bundle.js").read_bytes()
