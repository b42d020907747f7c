"""The peers' client libraries, unchanged, against the release binary serving the shipped
models file: each changes only its base URL (and sends its API key, as it would to the
peer). Cohere's Python SDK (v2 `ClientV2` and v1 `Client`), Infinity's own client package,
and LangChain's Cohere re-ranker end to end. Cohere's model names are aliases of the default
student in models/models.toml; an unknown name is the SDK's NotFoundError listing what is
served; errors carry the top-level `message` Cohere clients read."""

from __future__ import annotations

import json
import urllib.request

import cohere
import pytest

from conftest import API_KEY

QUERY = "how do I install a package without network access"
DOCUMENTS = [
    "Debian stable is released roughly every two years.",
    "Use dpkg -i with the .deb file you copied onto the machine, then apt-get -f install.",
    "A tuple is an immutable sequence; a list can be changed in place.",
    "Copy the .deb packages over on a USB stick and install them with dpkg.",
]
COHERE_MODELS = ["rerank-v4.0-pro", "rerank-v4.0-fast", "rerank-v3.5", "rerank-english-v3.0",
                 "rerank-multilingual-v3.0", "rerank-english-v2.0", "rerank-multilingual-v2.0"]


def direct(service, model: str, documents: list[str] = DOCUMENTS, **fields) -> list[tuple[int, float]]:
    """The service's own answer (Cohere shape, plain HTTP), for comparison."""
    body = json.dumps({"model": model, "query": QUERY, "documents": documents, **fields}).encode()
    request = urllib.request.Request(service.url + "/v1/rerank", data=body, headers={
        "content-type": "application/json", "authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        answer = json.load(r)
    return [(x["index"], x["relevance_score"]) for x in answer["results"]]


def test_cohere_v2_client_reranks_with_a_cohere_model_name(service):
    co = cohere.ClientV2(api_key=API_KEY, base_url=service.url)
    response = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=2)
    expected = direct(service, "rra-bert-m")
    assert [(r.index, round(r.relevance_score, 5)) for r in response.results] == \
        [(i, round(s, 5)) for i, s in expected[:2]]
    assert all(0.0 <= r.relevance_score <= 1.0 for r in response.results)
    assert response.id  # the request id


def test_cohere_v1_client_returns_documents(service):
    co = cohere.Client(api_key=API_KEY, base_url=service.url)
    response = co.rerank(model="rerank-english-v3.0", query=QUERY, documents=DOCUMENTS,
                         top_n=3, return_documents=True)
    assert len(response.results) == 3
    for r in response.results:
        assert r.document.text == DOCUMENTS[r.index]
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True)


def test_cohere_v1_client_reads_a_long_document_in_chunks(service):
    # The answer after some 400 tokens of text about something else: past the first window.
    filler = " ".join(["The harbour ferry leaves every hour in summer and twice a day in winter.",
                       "Tomatoes ripen faster on the windowsill next to a banana."] * 14)
    documents = [f"{filler} {DOCUMENTS[1]}", DOCUMENTS[0]]
    co = cohere.Client(api_key=API_KEY, base_url=service.url)
    scores = {}
    for chunks in (1, 4):
        response = co.rerank(model="rerank-v3.5", query=QUERY, documents=documents, max_chunks_per_doc=chunks)
        scores[chunks] = {r.index: r.relevance_score for r in response.results}
        expected = dict(direct(service, "rra-bert-m", documents, max_chunks_per_doc=chunks))
        assert scores[chunks] == pytest.approx(expected, abs=1e-5)
    # Read whole, the document's answer counts: it scores above its first window alone (were
    # the SDK's field lost, both would be the server's 4 chunks and score the same).
    assert scores[4][0] > scores[1][0], scores


@pytest.mark.parametrize("model", COHERE_MODELS)
def test_every_current_cohere_rerank_model_name_is_served(service, model):
    co = cohere.ClientV2(api_key=API_KEY, base_url=service.url)
    response = co.rerank(model=model, query=QUERY, documents=DOCUMENTS)
    assert sorted(r.index for r in response.results) == list(range(len(DOCUMENTS)))


def test_an_unknown_model_is_the_sdks_not_found_error_listing_what_is_served(service):
    co = cohere.ClientV2(api_key=API_KEY, base_url=service.url)
    with pytest.raises(cohere.errors.NotFoundError) as raised:
        co.rerank(model="rerank-nobody-configured", query=QUERY, documents=DOCUMENTS)
    message = raised.value.body["message"]
    assert "rerank-nobody-configured" in message and "rra-bert-m" in message


def test_errors_carry_cohere_s_top_level_message(service):
    co = cohere.ClientV2(api_key=API_KEY, base_url=service.url)
    with pytest.raises(cohere.errors.UnprocessableEntityError) as raised:
        co.rerank(model="rerank-v3.5", query="   ", documents=DOCUMENTS)
    assert "query" in raised.value.body["message"]
    wrong_key = cohere.ClientV2(api_key="not-the-key-0123456789", base_url=service.url)
    with pytest.raises(cohere.errors.UnauthorizedError) as raised:
        wrong_key.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)
    assert "API key" in raised.value.body["message"]


def test_infinity_client_on_rerank(service):
    from infinity_client import AuthenticatedClient
    from infinity_client.api.default import rerank
    from infinity_client.models import RerankInput, ReRankResult

    client = AuthenticatedClient(base_url=service.url, token=API_KEY)
    result = rerank.sync(client=client, body=RerankInput(
        query=QUERY, documents=DOCUMENTS, return_documents=True, top_n=3))
    assert isinstance(result, ReRankResult), result
    assert result.object_.value == "rerank"
    assert len(result.results) == 3
    expected = direct(service, "rra-bert-m")
    assert [(r.index, round(r.relevance_score, 5)) for r in result.results] == \
        [(i, round(s, 5)) for i, s in expected[:3]]
    for r in result.results:
        assert r.document == DOCUMENTS[r.index]
    assert result.usage.total_tokens > 0 and result.usage.prompt_tokens == result.usage.total_tokens
    assert result.model == "rra-bert-m"


def test_langchain_cohere_rerank_end_to_end(service):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model="rerank-v3.5", cohere_api_key=API_KEY, base_url=service.url, top_n=2)
    kept = reranker.compress_documents([Document(page_content=d) for d in DOCUMENTS], QUERY)
    expected = direct(service, "rra-bert-m")
    assert [d.page_content for d in kept] == [DOCUMENTS[i] for i, _ in expected[:2]]
    assert all(0.0 <= d.metadata["relevance_score"] <= 1.0 for d in kept)
