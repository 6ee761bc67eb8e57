// k6 load script for Tollgate: the same small chat request, non-streamed or streamed, at a fixed
// number of virtual users for a fixed time. Point it at the mock provider or at the gateway.
//
//   k6 run -e MODE=json   -e TARGET=http://127.0.0.1:8080 -e VUS=32 -e DURATION=15s loadtest/chat.js
//   k6 run -e MODE=stream -e TARGET=http://127.0.0.1:8091 loadtest/chat.js
//
// Env: MODE (json | stream, default json), TARGET (base URL without /v1, default
// http://127.0.0.1:8080), VUS (default 32), DURATION (k6 duration, default 15s), SUMMARY_FILE
// (optional: write the end-of-test summary there as JSON; run.sh uses it).
//
// The request bodies are body-json.json and body-stream.json next to this script (model `demo`,
// ~300 bytes of message text; the stream body adds `stream_options.include_usage`), the same
// files run.sh hands to oha and wrk. No remote imports: it runs without network beyond TARGET.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const MODE = __ENV.MODE || 'json';
if (MODE !== 'json' && MODE !== 'stream') {
  throw new Error(`MODE must be json or stream, not ${MODE}`);
}
const TARGET = (__ENV.TARGET || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const URL = `${TARGET}/v1/chat/completions`;
const VUS = parseInt(__ENV.VUS || '32', 10);
const DURATION = __ENV.DURATION || '15s';

const BODIES = {
  // BODY_FILE (run.sh's BODY) replaces the json body.
  json: open(__ENV.BODY_FILE || './body-json.json'),
  stream: open('./body-stream.json'),
};

const PARAMS = {
  headers: {
    'Content-Type': 'application/json',
    // The mock provider requires a bearer key when hit directly; the gateway ignores the client's.
    Authorization: 'Bearer test',
  },
  timeout: '30s',
};

const badStatus = new Counter('bad_status');
const badBody = new Counter('bad_body');

function scenario(exec) {
  return { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '5s', exec };
}

const SCENARIOS = { json: scenario('json'), stream: scenario('stream') };

export const options = {
  // Only the scenario MODE selects runs.
  scenarios: { [MODE]: SCENARIOS[MODE] },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'max'],
  thresholds: {
    checks: ['rate==1'],
  },
  discardResponseBodies: false,
  noConnectionReuse: false,
};

function record(res, bodyOk) {
  const statusOk = check(res, { 'status is 200': (r) => r.status === 200 });
  if (!statusOk) {
    badStatus.add(1, { status: String(res.status) });
    return;
  }
  if (!check(res, bodyOk)) {
    badBody.add(1);
  }
}

export function json() {
  const res = http.post(URL, BODIES.json, PARAMS);
  record(res, {
    'body has choices': (r) => typeof r.body === 'string' && r.body.includes('"choices"'),
  });
}

export function stream() {
  const res = http.post(URL, BODIES.stream, PARAMS);
  record(res, {
    'stream ends with data: [DONE]': (r) =>
      typeof r.body === 'string' && r.body.trimEnd().endsWith('data: [DONE]'),
  });
}

function metric(data, name, key) {
  const m = data.metrics[name];
  return m && m.values && m.values[key] !== undefined ? m.values[key] : 0;
}

export function handleSummary(data) {
  const s = {
    mode: MODE,
    target: TARGET,
    requests: metric(data, 'http_reqs', 'count'),
    rps: metric(data, 'http_reqs', 'rate'),
    p50_ms: metric(data, 'http_req_duration', 'med'),
    p99_ms: metric(data, 'http_req_duration', 'p(99)'),
    checks_passed: metric(data, 'checks', 'passes'),
    checks_failed: metric(data, 'checks', 'fails'),
    bad_status: metric(data, 'bad_status', 'count'),
    bad_body: metric(data, 'bad_body', 'count'),
  };
  const line =
    `k6 ${MODE} ${URL}: ${s.requests} requests, ${s.rps.toFixed(1)} req/s, ` +
    `p50 ${s.p50_ms.toFixed(3)} ms, p99 ${s.p99_ms.toFixed(3)} ms, ` +
    `bad status ${s.bad_status}, bad body ${s.bad_body}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_FILE) {
    out[__ENV.SUMMARY_FILE] = JSON.stringify(s);
  }
  return out;
}
