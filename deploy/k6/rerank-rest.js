// REST load test of the re-rank routes with the long-tail workload of workload.js: Cohere's
// POST /v1/rerank (default), /v2/rerank, Hugging Face TEI's POST /rerank, or a mix of the three.
//
//   k6 run deploy/k6/rerank-rest.js                                   # `load` profile, ~13 min
//   BASE_URL=http://rradistill:8080 TARGET_RPS=50 k6 run deploy/k6/rerank-rest.js
//   K6_PROFILE=smoke k6 run deploy/k6/rerank-rest.js                  # ~10 s
//   ROUTE=tei API_KEY=... k6 run deploy/k6/rerank-rest.js             # TEI's shape, with a key
//
// Environment: BASE_URL (default http://127.0.0.1:8080), ROUTE (cohere | cohere-v2 | tei |
// mixed; default cohere), API_KEY (sent as `Authorization: Bearer`, when set), K6_PROFILE
// (smoke | load | soak), TARGET_RPS, P95_MS (latency threshold, default 1000), MODEL, TOP_N,
// MIN_DOCS, MAX_DOCS, QUERY_POOL, ZIPF_S, CACHE_BUST=1. The service's own timing headers
// (x-total-time, x-queue-time, x-tokenization-time, x-inference-time, in ms; every route) are
// recorded as Trends, so the summary shows where the time went on the server next to what the
// client saw. Requests are tagged with their route (`route` tag) for per-route results.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { authorization, config, nextRequest, scenario } from './workload.js';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const P95_MS = __ENV.P95_MS || '1000';

// Each route: its path, its body for a request of the workload, and its results as
// [{index, score}] (Cohere: {results: [{index, relevance_score}]}; TEI: a bare array of
// {index, score}). TEI's `truncate` defaults to false (a text past the window is a 422), and
// the workload has such texts, as real first stages do: truncate as Cohere's routes do.
const ROUTES = {
  cohere: {
    path: '/v1/rerank',
    body: (query, documents) => ({ query, documents, top_n: config.topN }),
    results: (r) => r.json('results').map((x) => ({ index: x.index, score: x.relevance_score })),
  },
  'cohere-v2': {
    path: '/v2/rerank',
    body: (query, documents) => ({ query, documents, top_n: config.topN }),
    results: (r) => r.json('results').map((x) => ({ index: x.index, score: x.relevance_score })),
  },
  tei: {
    path: '/rerank',
    body: (query, documents) => ({ query, texts: documents, top_n: config.topN, truncate: true }),
    results: (r) => r.json().map((x) => ({ index: x.index, score: x.score })),
  },
};
const ROUTE = __ENV.ROUTE || 'cohere';
if (ROUTE !== 'mixed' && !ROUTES[ROUTE]) {
  throw new Error(`ROUTE=${ROUTE}: use ${Object.keys(ROUTES).join(', ')} or mixed`);
}
const MIXED = Object.keys(ROUTES);

const serverTime = {
  'x-total-time': new Trend('rerank_server_total_time', true),
  'x-queue-time': new Trend('rerank_server_queue_time', true),
  'x-tokenization-time': new Trend('rerank_server_tokenization_time', true),
  'x-inference-time': new Trend('rerank_server_inference_time', true),
};
const documentsPerRequest = new Trend('rerank_documents');
const cacheHits = new Counter('rerank_cache_hits');
const documentsScored = new Counter('rerank_documents_scored');
const overloaded = new Rate('rerank_overloaded');

export const options = {
  scenarios: scenario('rerank'),
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${P95_MS}`],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  // /ready is open (probes carry no keys); a wrong API_KEY shows as 401s in the checks.
  const ready = http.get(`${BASE_URL}/ready`);
  if (ready.status !== 200) throw new Error(`${BASE_URL}/ready answered ${ready.status}: is the service up?`);
}

export function rerank() {
  const { query, documents } = nextRequest();
  const routeName = ROUTE === 'mixed' ? MIXED[Math.floor(Math.random() * MIXED.length)] : ROUTE;
  const route = ROUTES[routeName];
  const body = route.body(query, documents);
  if (config.model) body.model = config.model;
  const res = http.post(`${BASE_URL}${route.path}`, JSON.stringify(body), {
    headers: Object.assign({ 'content-type': 'application/json' }, authorization()),
    tags: { name: 'rerank', route: routeName },
  });

  overloaded.add(res.status === 429);
  documentsPerRequest.add(documents.length);
  const ok = check(res, {
    'status is 200': (r) => r.status === 200,
    'top_n results, sorted': (r) => {
      if (r.status !== 200) return false;
      const results = route.results(r);
      if (results.length !== Math.min(config.topN, documents.length)) return false;
      for (let i = 1; i < results.length; i++) {
        if (results[i - 1].score < results[i].score) return false;
      }
      return true;
    },
  });
  if (!ok) return;
  for (const [header, trend] of Object.entries(serverTime)) {
    const value = res.headers[header.replace(/(^|-)(\w)/g, (m, dash, c) => dash + c.toUpperCase())];
    if (value !== undefined) trend.add(parseFloat(value));
  }
  cacheHits.add(parseInt(res.headers['X-Cache-Hits'] || '0', 10));
  documentsScored.add(documents.length);
}
