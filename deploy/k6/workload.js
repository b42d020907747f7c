// The re-rank workload shared by rerank-rest.js and rerank-grpc.js: what search frontends
// send. Queries follow a long tail (a few head queries asked over and over, most asked once
// or twice: Zipf over QUERY_POOL distinct queries, head ones short, tail ones long), and each
// query comes with its first-stage candidates: 20-100 documents whose lengths are
// log-normal (median ~60 words, a tail past the model's window, so truncation happens).
// Everything is drawn from seeded generators, so a query always comes with the same
// candidates, as a real first stage would give: repeated queries hit the score cache as
// they would in production. CACHE_BUST=1 salts every query to measure without the cache.

const WORDS = (
  'install package network offline debian python rust server latency cache query document ' +
  'ranking search index vector embedding model training teacher student distillation batch ' +
  'token window truncation score threshold cluster node kubernetes pod service deploy scale ' +
  'gpu cpu memory thread queue request response error timeout retry limit budget metric ' +
  'alert dashboard prometheus grafana histogram percentile throughput benchmark profile ' +
  'recipe chicken garlic oven bake minutes flour sugar butter salt pepper lemon tomato pasta ' +
  'weather forecast rain snow wind temperature city travel flight hotel ticket price cheap ' +
  'best review phone laptop battery screen camera warranty repair store open hours near me ' +
  'history war empire king revolution century treaty population language culture music ' +
  'guitar piano song album lyrics band concert festival movie actor director award season ' +
  'football match team league score player transfer coach injury stadium final goal ' +
  'health symptom fever cough doctor treatment vaccine sleep diet exercise protein vitamin ' +
  'mortgage loan interest rate bank account tax refund salary insurance pension invest stock'
).split(' ');

const HEAD_QUERIES = [
  'weather', 'python install', 'best laptop', 'football score', 'pasta recipe',
  'flight ticket price', 'bank interest rate', 'phone battery', 'kubernetes pod', 'fever symptom',
];

export const config = {
  queryPool: parseInt(__ENV.QUERY_POOL || '10000', 10),
  zipfS: parseFloat(__ENV.ZIPF_S || '1.1'),
  minDocs: parseInt(__ENV.MIN_DOCS || '20', 10),
  maxDocs: parseInt(__ENV.MAX_DOCS || '100', 10),
  topN: parseInt(__ENV.TOP_N || '10', 10),
  model: __ENV.MODEL || '',
  cacheBust: __ENV.CACHE_BUST === '1',
  // The service's client key (its API_KEY), sent as a Bearer token when set; unset: no
  // authorization header, for a service that runs without keys.
  apiKey: __ENV.API_KEY || '',
};

// The authorization header (REST) or metadata (gRPC) for config.apiKey: empty without a key.
export function authorization() {
  return config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {};
}

// mulberry32: small, fast, seedable.
function rng(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(rand) {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

function words(rand, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)]);
  return out.join(' ');
}

// Cumulative Zipf weights over query ranks 1..queryPool, built once per VU.
const cumulative = (() => {
  const c = new Float64Array(config.queryPool);
  let total = 0;
  for (let r = 0; r < config.queryPool; r++) {
    total += 1 / Math.pow(r + 1, config.zipfS);
    c[r] = total;
  }
  for (let r = 0; r < config.queryPool; r++) c[r] /= total;
  return c;
})();

function zipfRank(u) {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cumulative[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// The query of a rank: the head is short and popular, the tail long and specific.
function queryText(rank, rand) {
  if (rank < HEAD_QUERIES.length) return HEAD_QUERIES[rank];
  const length = Math.min(3 + Math.floor(Math.log(rank + 1)) + Math.floor(rand() * 6), 30);
  return words(rand, length) + (rand() < 0.3 ? '?' : '');
}

// One request's worth: a query from the long tail and its candidate documents.
export function nextRequest() {
  const rank = zipfRank(Math.random());
  const rand = rng(rank * 2654435761);
  let query = queryText(rank, rand);
  if (config.cacheBust) query += ` ${Math.random().toString(36).slice(2, 8)}`;
  const count = config.minDocs + Math.floor(rand() * (config.maxDocs - config.minDocs + 1));
  const documents = [];
  for (let i = 0; i < count; i++) {
    // log-normal word count: median 60, ~5% over 250 words (past a 256-token window).
    const length = Math.max(3, Math.min(600, Math.round(Math.exp(Math.log(60) + 0.85 * normal(rand)))));
    documents.push(words(rand, length));
  }
  return { rank, query, documents };
}

// Load profiles. `smoke`: ~10 s at a few requests per second, to prove the script and the
// service work together (deploy/tests). `load` (default): ramp to TARGET_RPS, hold, push to
// twice that to find the knee, ramp down (13 minutes). `soak`: TARGET_RPS for an hour.
export function scenario(exec) {
  const target = parseInt(__ENV.TARGET_RPS || '20', 10);
  const profiles = {
    smoke: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: 4,
      maxVUs: 8,
      stages: [
        { target: 4, duration: '4s' },
        { target: 4, duration: '6s' },
      ],
    },
    load: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: Math.max(10, target),
      maxVUs: Math.max(50, target * 10),
      stages: [
        { target: target, duration: '2m' },
        { target: target, duration: '5m' },
        { target: target * 2, duration: '2m' },
        { target: target * 2, duration: '3m' },
        { target: 0, duration: '1m' },
      ],
    },
    soak: {
      executor: 'constant-arrival-rate',
      rate: target,
      timeUnit: '1s',
      duration: '1h',
      preAllocatedVUs: Math.max(10, target),
      maxVUs: Math.max(50, target * 10),
    },
  };
  const name = __ENV.K6_PROFILE || 'load';
  if (!profiles[name]) throw new Error(`K6_PROFILE=${name}: use smoke, load or soak`);
  return { [name]: Object.assign({ exec }, profiles[name]) };
}
