"""`mmsearch serve` (issue 13): the JSON API through the real binary on a free loopback port, its
security checks, and the index commits it picks up without a restart."""
import base64
import http.client
import json
import os
import signal
import threading
import urllib.parse
from pathlib import Path

import pytest

from conftest import Runner
from serve_helper import Served, copy_dishes, multipart, wait_until

MODEL = "dishes-tiny"


@pytest.fixture(scope="module")
def served(mmsearch_bin, tiny_models, tmp_path_factory):
    """The demo dishes indexed with the default model, served for the whole module."""
    root = tmp_path_factory.mktemp("serve")
    dishes = copy_dishes(root / "dishes")
    # A link inside the root to a photo outside it: indexed (the walk follows file links), but
    # never served.
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes((dishes / "pizza" / "dish-00031.jpg").read_bytes())
    (dishes / "pizza" / "linked.jpg").symlink_to(outside / "secret.jpg")
    run = Runner(mmsearch_bin, root / "home", tiny_models)
    run("index", dishes, "--model", MODEL, check=0)
    server = Served(mmsearch_bin, root / "home", [dishes], models=tiny_models)
    server.dishes = dishes
    server.run = run
    yield server
    code, log = server.stop()
    assert code == 0, log
    assert "stopped" in log


def names(answer):
    return [r["name"] for r in answer["results"]]


def test_health_models_and_folders(served):
    health = served.json("/api/health")
    assert health["status"] == "ok" and health["store"]["exists"]
    models = served.json("/api/models")["models"]
    default = [m for m in models if m["name"] == MODEL]
    assert default and default[0]["indexed"] and default[0]["itm"]
    assert all(not m["indexed"] for m in models if m["name"] != MODEL)
    folders = served.json("/api/folders")["folders"]
    assert len(folders) == 1
    folder = folders[0]
    assert folder["path"] == str(served.dishes) and folder["files"] == 69  # 68 + the link
    categories = {c["name"]: c["files"] for c in folder["categories"]}
    assert categories == {"dessert": 14, "first course": 16, "pizza": 22, "second course": 17}
    assert {s["name"] for s in folder["subfolders"]} == {"dessert", "first_course", "pizza",
                                                         "second_course"}


def test_text_query_finds_the_dish_with_scores_captions_and_paging(served):
    answer = served.json("/api/query", {"text": "a pizza with basil", "k": 5})
    assert answer["model"] == MODEL and answer["against"] == "image"
    assert answer["searched"] == 69 and answer["more"] is True
    hits = answer["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(h["category"] == "pizza" for h in hits)
    assert "basil" in hits[0]["caption"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:
        assert Path(h["path"]).is_relative_to(served.dishes)
        assert h["thumbnail"].startswith("/api/thumbnail?path=")
        assert h["relative"] == str(Path(h["path"]).relative_to(served.dishes))
    assert answer["phases_ms"]["forward"] > 0 and answer["phases_ms"]["total"] >= \
        answer["phases_ms"]["forward"]
    # The next page continues the ranking: ranks 6-10, none repeated.
    page2 = served.json("/api/query", {"text": "a pizza with basil", "k": 5, "offset": 5})
    assert [h["rank"] for h in page2["results"]] == [6, 7, 8, 9, 10]
    assert not set(names(page2)) & set(names(answer))
    whole = served.json("/api/query", {"text": "a pizza with basil", "k": 10})
    assert names(whole) == names(answer) + names(page2)
    # The GET shorthand gives the same answer.
    get = served.json("/api/query?" + urllib.parse.urlencode({"text": "a pizza with basil",
                                                              "k": 5}))
    assert names(get) == names(answer)
    # "more" is exact: the last page of all 69 files says there is nothing after it.
    assert served.json("/api/query", {"text": "a pizza", "k": 68})["more"] is True
    last = served.json("/api/query", {"text": "a pizza", "k": 69})
    assert len(last["results"]) == 69 and last["more"] is False
    assert served.json("/api/query", {"text": "a pizza", "k": 9, "offset": 60})["more"] is False
    # A threshold above every score leaves nothing, and says so.
    none = served.json("/api/query", {"text": "a pizza with basil", "threshold": 10})
    assert none["results"] == [] and none["more"] is False


def test_the_same_ranking_as_the_cli(served):
    cli = served.run.json("query", "--in", served.dishes, "--text", "tiramisu with cocoa", "-k", "8",
                          "--json")
    api = served.json("/api/query", {"text": "tiramisu with cocoa", "k": 8})
    assert [r["path"] for r in api["results"]] == [r["path"] for r in cli["results"]]
    for a, c in zip(api["results"], cli["results"]):
        assert a["score"] == pytest.approx(c["score"], abs=1e-5)


def test_against_filters_and_category(served):
    text = served.json("/api/query", {"text": "a pizza with basil", "against": "text", "k": 3})
    assert text["against"] == "text" and all(h["category"] == "pizza" for h in text["results"])
    mm = served.json("/api/query", {"text": "a pizza", "against": "multimodal", "k": 3})
    assert len(mm["results"]) == 3
    # A category filter keeps only that category, however far down the ranking it starts.
    dessert = served.json("/api/query", {"text": "a pizza with basil", "k": 5,
                                         "categories": ["dessert"]})
    assert len(dessert["results"]) == 5
    assert all(h["category"] == "dessert" for h in dessert["results"])
    # A folder filter searches under that sub-folder only.
    sub = served.json("/api/query", {"text": "a pizza with basil", "k": 50,
                                     "folder": str(served.dishes / "dessert")})
    assert sub["searched"] == 14 and len(sub["results"]) == 14
    assert all(h["category"] == "dessert" for h in sub["results"])
    bad = served.json("/api/query", {"text": "x", "folder": "/etc"}, expect=400)
    assert "not under a served folder" in bad["error"]


def test_more_like_this_and_uploaded_images(served):
    photo = served.dishes / "dessert" / "dish-00004.jpg"
    similar = served.json("/api/query", {"terms": [{"similar": str(photo)}], "k": 5})
    assert str(photo) not in [h["path"] for h in similar["results"]]  # the photo itself is left out
    assert similar["results"][0]["category"] == "dessert"
    assert similar["phases_ms"]["forward"] == 0  # stored vectors: no model pass
    data = photo.read_bytes()
    body, mime = multipart({"query": (None, json.dumps({"terms": [{"upload": "image"}],
                                                        "k": 5}).encode(), "application/json"),
                            "image": ("mine.jpg", data, "image/jpeg")})
    upload = served.json("/api/query", body, headers={"Content-Type": mime})
    # An upload is not an indexed file: the same photo in the folder comes first, at score 1.
    assert upload["results"][0]["path"] == str(photo)
    assert upload["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert upload["terms"] == [{"image": "mine.jpg", "weight": 1.0}]
    inline = served.json("/api/query", {"terms": [{"image_base64": base64.b64encode(data).decode()}],
                                        "k": 5})
    assert names(inline) == names(upload)
    # Text and image together, weighted.
    both = served.json("/api/query", {"terms": [{"text": "a pizza with basil", "weight": 0.7},
                                                {"image_base64": base64.b64encode(data).decode(),
                                                 "weight": 0.3}], "k": 5})
    assert [t.get("weight") for t in both["terms"]] == pytest.approx([0.7, 0.3])
    # An upload that is not an image is a 400 naming it.
    body, mime = multipart({"query": (None, b'{"terms": [{"upload": "image"}]}', "application/json"),
                            "image": ("notes.txt", b"hello", "text/plain")})
    bad = served.json("/api/query", body, headers={"Content-Type": mime}, expect=400)
    assert "notes.txt" in bad["error"]


def test_rerank_adds_itm_scores(served):
    answer = served.json("/api/query", {"text": "a pizza with basil", "k": 5, "rerank": 10})
    assert all("itm" in h and "itc" in h for h in answer["results"])
    assert answer["phases_ms"]["rerank"] > 0
    bad = served.json("/api/query", {"text": "a pizza", "rerank": 5, "against": "text"}, expect=400)
    assert "re-ranking" in bad["error"]


def test_thumbnails_and_files(served):
    photo = served.dishes / "pizza" / "dish-00031.jpg"
    path = urllib.parse.quote(str(photo))
    status, headers, data = served.request(f"/api/thumbnail?path={path}&size=128")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and data[:3] == b"\xff\xd8\xff"
    from PIL import Image
    import io
    thumb = Image.open(io.BytesIO(data))
    assert max(thumb.size) == 128
    # Conditional requests are answered from the ETag.
    status, _, _ = served.request(f"/api/thumbnail?path={path}&size=128",
                                  headers={"If-None-Match": headers["ETag"]})
    assert status == 304
    status, headers, data = served.request(f"/api/file?path={path}")
    assert status == 200 and data == photo.read_bytes() and headers["Content-Type"] == "image/jpeg"
    assert served.json(f"/api/thumbnail?path={path}&size=99", expect=400)["error"]


@pytest.mark.parametrize("path, status", [
    ("/etc/passwd", 403),
    ("{dishes}/../../../../etc/passwd", 403),
    ("{dishes}/pizza/../../outside/secret.jpg", 403),
    ("{dishes}/pizza/linked.jpg", 403),        # indexed, but a link out of the root
    ("{dishes}/pizza/no-such.jpg", 404),
    ("{dishes}/captions.csv", 404),             # under the root, but not an indexed file
    ("pizza/dish-00031.jpg", 400),              # relative
    ("", 400),
])
def test_traversal_and_symlink_escape_are_refused(served, path, status):
    path = path.format(dishes=served.dishes)
    for endpoint in ("thumbnail", "file"):
        answer = served.json(f"/api/{endpoint}?path={urllib.parse.quote(path)}", expect=status)
        assert answer["status"] == status and answer["error"]
    # The raw request line too: an HTTP client that sends ../ unnormalised.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/api/file?path=" + path.replace(" ", "%20"))
    response = conn.getresponse()
    assert response.status in (status, 400)
    assert b"root:" not in response.read()
    conn.close()


def test_a_similar_term_outside_the_roots_is_refused(served):
    bad = served.json("/api/query", {"terms": [{"similar": "/etc/passwd"}]}, expect=403)
    assert "not under a served folder" in bad["error"]


@pytest.mark.parametrize("body, fragment", [
    ("{bad", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"terms": []}', "non-empty array"),
    ('{"terms": [{"text": "a", "image_base64": "AA=="}]}', "exactly one of"),
    ('{"terms": [{"text": "   "}]}', "blank"),
    ('{"text": "a", "k": 0}', '"k" must be an integer'),
    ('{"text": "a", "k": 1e300}', '"k" must be an integer'),
    ('{"text": "a", "k": "5"}', '"k" must be an integer'),
    ('{"text": "a", "offset": 999, "k": 10}', "at most 1000"),
    ('{"text": "a", "against": "pixels"}', '"against" must be'),
    ('{"text": "a", "threshold": "high"}', '"threshold" must be a number'),
    ('{"text": "a", "colour": "red"}', 'unknown field "colour"'),
    ('{"terms": [{"image_base64": "!!!!"}]}', "invalid character"),
    ('{"terms": [{"upload": "image"}]}', 'no multipart field "image"'),
    ('{"text": "a", "model": "no-such-model"}', "no-such-model"),
    ('{"text": "\\ud800"}', "JSON"),
])
def test_bad_requests_get_400_with_the_reason(served, body, fragment):
    answer = served.json("/api/query", body, headers={"Content-Type": "application/json"},
                         expect=400)
    assert fragment in answer["error"], answer


def test_oversized_upload_and_pixel_bomb(served, mmsearch_bin, tiny_models, tmp_path):
    # Bodies over --max-upload are refused before they are read in full.
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=tiny_models,
                    extra=["--max-upload", "0.05", "--max-upload-pixels", "10000"]) as server:
        big = b"x" * 200_000
        status, _, data = server.request("/api/query", big,
                                         headers={"Content-Type": "application/json"})
        assert status == 413 and b"too large" in data
        # A small file that decodes to too many pixels: the bomb guard, on the header.
        from PIL import Image
        import io
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200), (200, 30, 30)).save(buffer, "PNG")
        body = {"terms": [{"image_base64": base64.b64encode(buffer.getvalue()).decode()}]}
        bomb = server.json("/api/query", body, expect=400)
        assert "pixels" in bomb["error"]


def test_rate_limit_answers_429(served, mmsearch_bin, tiny_models):
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=tiny_models,
                    extra=["--rate", "2"]) as server:
        statuses = [server.request("/api/health")[0] for _ in range(40)]
        assert statuses[0] == 200 and 429 in statuses
        status, headers, data = server.request("/api/health")
        assert status == 429 and int(headers["Retry-After"]) >= 1 and b"--rate" in data
        # The page itself is not rate limited (only /api/).
        assert server.request("/")[0] == 200


def test_concurrent_clients_all_get_answers(served):
    errors, answers = [], []

    def client(i):
        try:
            for q in ("a pizza", "a dessert with cream", "spaghetti with tomato"):
                answers.append(served.json("/api/query", {"text": q, "k": 3 + i % 3}))
                served.request(f"/api/thumbnail?path={urllib.parse.quote(str(served.dishes / 'pizza' / 'dish-00031.jpg'))}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(answers) == 36
    assert served.json("/api/health")["server_errors"] == 0


def test_loopback_only_without_a_token(served):
    # DNS rebinding: a foreign Host header is refused when there is no token.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/api/health", headers={"Host": "attacker.example:8765"})
    response = conn.getresponse()
    assert response.status == 403 and b"not this machine" in response.read()
    conn.close()
    assert served.request("/api/health", headers={"Host": f"localhost:{served.port}"})[0] == 200


def test_a_non_local_bind_needs_a_token(served, mmsearch_bin, tiny_models):
    proc = served.run("serve", served.dishes, "--host", "0.0.0.0", "--port", "0", check=2,
                      timeout=60)
    assert "--token" in proc.stderr
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=tiny_models,
                    extra=["--host", "0.0.0.0", "--token", "generate"]) as server:
        token = server.token
        assert token and len(token) >= 24 and f"token={token}" in server.info["url"]
        assert server.request("/api/health", headers={"Authorization": "none"})[0] == 401
        status, headers, data = server.request("/api/health", headers={"Authorization": "Bearer nope"})
        assert status == 401 and b"wrong token" in data and headers["WWW-Authenticate"] == "Bearer"
        assert server.request("/api/health", headers={"Authorization": f"Bearer {token}"})[0] == 200
        # Image URLs carry the token as a parameter.
        photo = urllib.parse.quote(str(served.dishes / "pizza" / "dish-00031.jpg"))
        assert server.request(f"/api/thumbnail?path={photo}&token={token}",
                              headers={"Authorization": "x"})[0] == 200
        assert server.request(f"/api/thumbnail?path={photo}&token=wrong",
                              headers={"Authorization": "x"})[0] == 401
        # The page loads without the token (it holds nothing private) and then sends it.
        assert server.request("/", headers={"Authorization": "x"})[0] == 200


def test_the_page_and_its_assets(served):
    status, headers, data = served.request("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    page = data.decode()
    assert '<script src="/static/app.js">' in page and "http" not in page.replace("http-equiv", "")
    for asset, mime in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        status, headers, data = served.request(asset)
        assert status == 200 and headers["Content-Type"].startswith(mime) and len(data) > 1000
        # Nothing from elsewhere: no absolute URLs in the page's code.
        assert b"http://" not in data and b"https://" not in data
    assert served.json("/no/such/page", expect=404)["error"]


def test_similarity_matrix(served):
    m = served.json(f"/api/simmatrix?kind=image-text&folder={urllib.parse.quote(str(served.dishes / 'dessert'))}")
    assert m["kind"] == "image-text" and len(m["rows"]) == 14
    assert len(m["scores"]) == len(m["rows"]) * len(m["columns"])
    assert served.json("/api/simmatrix?kind=colour", expect=400)["error"]
    assert served.json("/api/simmatrix?folder=/etc", expect=400)["error"]


def test_picks_up_what_a_concurrent_index_commits(mmsearch_bin, tiny_models, tmp_path):
    dishes = copy_dishes(tmp_path / "dishes")
    moved = tmp_path / "later"
    (dishes / "dessert").rename(moved)  # indexed later, while the server runs
    run = Runner(mmsearch_bin, tmp_path / "home", tiny_models)
    run("index", dishes, "--model", MODEL, check=0)
    server = Served(mmsearch_bin, tmp_path / "home", [dishes], models=tiny_models)
    try:
        before = server.json("/api/query", {"text": "a tiramisu", "k": 5})
        assert before["searched"] == 54
        assert all(h["category"] != "dessert" for h in before["results"])
        moved.rename(dishes / "dessert")
        run("index", dishes, "--model", MODEL, check=0)
        after = wait_until(lambda: (a := server.json("/api/query", {"text": "a tiramisu", "k": 5}))
                           ["searched"] == 68 and a)
        assert after and after["results"][0]["category"] == "dessert"
        assert server.json("/api/folders")["folders"][0]["files"] == 68
    finally:
        code, log = server.stop(signal.SIGINT)
    assert code == 0, log
    assert "stopping (signal 2)" in log


def test_serving_before_anything_is_indexed(mmsearch_bin, tiny_models, tmp_path):
    dishes = copy_dishes(tmp_path / "dishes")
    with Served(mmsearch_bin, tmp_path / "home", [dishes], models=tiny_models) as server:
        answer = server.json("/api/query", {"text": "a pizza"}, expect=404)
        assert "mmsearch index" in answer["error"]
        assert server.json("/api/health")["store"]["exists"] is False
        Runner(mmsearch_bin, tmp_path / "home", tiny_models)("index", dishes, "--model", MODEL,
                                                             check=0)
        assert server.json("/api/query", {"text": "a pizza", "k": 3})["results"]


def test_port_in_use_is_a_clear_error(served):
    proc = served.run("serve", served.dishes, "--port", str(served.port), check=2, timeout=60)
    assert f"127.0.0.1:{served.port}" in proc.stderr and "--port" in proc.stderr


def test_translated_query(served, mmsearch_bin, tiny_models, tmp_path):
    marian = Path(os.environ.get("MMSEARCH_TEST_MARIAN", "")) if os.environ.get(
        "MMSEARCH_TEST_MARIAN") else None
    from test_cli_translate import MARIAN  # noqa: F401 - the bundle's name
    built = Path(__file__).resolve().parents[2] / "build" / "tests" / "tmp" / "marian" / "tiny" / MARIAN
    marian = marian or (built if (built / "mmsearch.json").exists() else None)
    if marian is None:
        # Without a translation bundle on the path the API says so.
        answer = served.json("/api/query", {"text": "una pizza", "translate": "it"}, expect=400)
        assert "translate" in answer["error"]
        return
    models = tmp_path / "models"
    models.mkdir()
    for entry in tiny_models.iterdir():
        (models / entry.name).symlink_to(entry)
    (models / MARIAN).symlink_to(marian)
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=models) as server:
        answer = server.json("/api/query", {"text": "una pizza al basilico", "translate": "it",
                                            "k": 3})
        assert answer["terms"][0]["original"] == "una pizza al basilico"
        assert len(answer["results"]) == 3


def test_a_client_that_stalls_is_timed_out(served, mmsearch_bin, tiny_models):
    import socket
    import time
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=tiny_models,
                    extra=["--timeout", "1"]) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        start = time.monotonic()
        data = sock.recv(4096)  # the server closes the connection
        assert time.monotonic() - start < 8
        assert b"200 OK" not in data
        sock.close()
        # Other clients are served meanwhile and after.
        assert server.json("/api/health")["status"] == "ok"


def test_serve_model_option(served, mmsearch_bin, tiny_models):
    proc = served.run("serve", served.dishes, "--port", "0", "--model", "no-such-model", check=2,
                      timeout=60)
    assert "--model" in proc.stderr and "no-such-model" in proc.stderr
    # A --model the folder was not indexed with: requests naming none get a clear 404.
    with Served(mmsearch_bin, served.run.home, [served.dishes], models=tiny_models,
                    extra=["--model", "blip-base"]) as server:
        answer = server.json("/api/query", {"text": "a pizza"}, expect=404)
        assert "blip-base" in answer["error"] and "mmsearch index" in answer["error"]
        assert server.json("/api/query", {"text": "a pizza", "model": MODEL, "k": 2})["results"]
