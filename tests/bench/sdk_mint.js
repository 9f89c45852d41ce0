// The same mint as `ramkey-agent-client fetch` (ListAccessKeys snapshot,
// then CreateAccessKey), done by Alibaba Cloud's official Node.js SDK
// (@alicloud/pop-core RPCClient), for tests/bench/bench_mint_vs_sdk.py.
//
//   node sdk_mint.js ENDPOINT            read user names on stdin, one a line;
//                                        for each, mint and print one JSON line
//                                        {"user","ms","access_key_id"}
//   node sdk_mint.js ENDPOINT --once U   one mint for U in a fresh process
//
// The admin key comes from ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET; the
// emulator's CA from NODE_EXTRA_CA_CERTS. The SDK comes from
// tests/interop/node_modules (pinned by tests/interop/package-lock.json).
'use strict';
const path = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const interop = createRequire(path.join(__dirname, '..', 'interop', 'package.json'));
const RPCClient = interop('@alicloud/pop-core').RPCClient;

const endpoint = process.argv[2];
const client = new RPCClient({
  accessKeyId: process.env.ALIBABA_CLOUD_ACCESS_KEY_ID,
  accessKeySecret: process.env.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
  endpoint: endpoint,
  apiVersion: '2015-05-01',
});
const opts = { method: 'POST', timeout: 30000 };

async function mint(user) {
  const t0 = process.hrtime.bigint();
  await client.request('ListAccessKeys', { UserName: user }, opts);
  const r = await client.request('CreateAccessKey', { UserName: user }, opts);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { user: user, ms: ms, access_key_id: r.AccessKey.AccessKeyId };
}

(async () => {
  if (process.argv[3] === '--once') {
    process.stdout.write(JSON.stringify(await mint(process.argv[4])) + '\n');
    return;
  }
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const user = line.trim();
    if (user) process.stdout.write(JSON.stringify(await mint(user)) + '\n');
  }
})().catch((e) => {
  process.stderr.write('sdk_mint: ' + (e.code || '') + ' ' + e.message + '\n');
  process.exit(1);
});
