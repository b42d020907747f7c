// gRPC load test of rradistill.v1.Rerank/Rerank (proto/rerank.proto) with the same long-tail
// workload and profiles as rerank-rest.js.
//
//   k6 run deploy/k6/rerank-grpc.js                                   # `load` profile
//   GRPC_ADDR=rradistill-grpc:50051 TARGET_RPS=50 k6 run deploy/k6/rerank-grpc.js
//   K6_PROFILE=smoke k6 run deploy/k6/rerank-grpc.js                  # ~10 s
//
// Environment: GRPC_ADDR (default 127.0.0.1:50051), and as rerank-rest.js: API_KEY (sent as
// `authorization: Bearer` metadata, when set), K6_PROFILE, TARGET_RPS, P95_MS, MODEL, TOP_N,
// MIN_DOCS, MAX_DOCS, QUERY_POOL, ZIPF_S, CACHE_BUST.
// The server's cost comes back in the response's `meta` (nanoseconds) and is recorded in
// the same Trends as the REST script's timing headers, in milliseconds.
// Each VU keeps one HTTP/2 connection, as real gRPC clients do: against a Kubernetes
// ClusterIP that pins each VU to one pod (see deploy/README.md on gRPC balancing).
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { authorization, config, nextRequest, scenario } from './workload.js';

const GRPC_ADDR = __ENV.GRPC_ADDR || '127.0.0.1:50051';
const P95_MS = __ENV.P95_MS || '1000';

const client = new grpc.Client();
client.load(['../../proto'], 'rerank.proto');

const serverTime = {
  totalTimeNs: new Trend('rerank_server_total_time', true),
  queueTimeNs: new Trend('rerank_server_queue_time', true),
  tokenizationTimeNs: new Trend('rerank_server_tokenization_time', true),
  inferenceTimeNs: new Trend('rerank_server_inference_time', true),
};
const documentsPerRequest = new Trend('rerank_documents');
const cacheHits = new Counter('rerank_cache_hits');
const documentsScored = new Counter('rerank_documents_scored');
const failed = new Rate('rerank_grpc_failed');
const overloaded = new Rate('rerank_overloaded');

export const options = {
  scenarios: scenario('rerank'),
  thresholds: {
    rerank_grpc_failed: ['rate<0.01'],
    grpc_req_duration: [`p(95)<${P95_MS}`],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

let connected = false;

export function rerank() {
  if (!connected) {
    client.connect(GRPC_ADDR, { plaintext: true, timeout: '10s' });
    connected = true;
  }
  const { query, documents } = nextRequest();
  const request = { query, documents, topN: config.topN };
  if (config.model) request.model = config.model;
  const res = client.invoke('rradistill.v1.Rerank/Rerank', request, { timeout: '30s', metadata: authorization() });

  failed.add(res.status !== grpc.StatusOK);
  overloaded.add(res.status === grpc.StatusResourceExhausted);
  documentsPerRequest.add(documents.length);
  const ok = check(res, {
    'status is OK': (r) => r.status === grpc.StatusOK,
    'top_n results, sorted': (r) => {
      if (r.status !== grpc.StatusOK) return false;
      const results = r.message.results;
      if (results.length !== Math.min(config.topN, documents.length)) return false;
      for (let i = 1; i < results.length; i++) {
        if (results[i - 1].relevanceScore < results[i].relevanceScore) return false;
      }
      return true;
    },
  });
  if (!ok) return;
  // uint64 fields arrive as strings (proto3 JSON mapping); proto3 omits zero values.
  const meta = res.message.meta || {};
  for (const [field, trend] of Object.entries(serverTime)) {
    trend.add(parseInt(meta[field] || '0', 10) / 1e6);
  }
  cacheHits.add(meta.cacheHits || 0);
  documentsScored.add(documents.length);
}
