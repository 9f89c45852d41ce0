// Resolve credentials exactly as an Alibaba Cloud Node.js program would
// (@alicloud/credentials' default chain: here ~/.aliyun/config.json, a
// StsToken or External profile), then call STS GetCallerIdentity with
// them, signed v1 by @alicloud/pop-core and v3 (ACS3-HMAC-SHA256) by
// @alicloud/openapi-client. Prints one JSON line:
// {"provider","access_key_id","has_token","v1":{"ok","arn"|"error"},"v3":...}
//
//   node sts_calls.js https://127.0.0.1:PORT/
//
// The emulator's CA comes from NODE_EXTRA_CA_CERTS.
'use strict';
const Credential = require('@alicloud/credentials').default;
const RPCClient = require('@alicloud/pop-core').RPCClient;
const OpenApi = require('@alicloud/openapi-client');

const endpoint = process.argv[2].replace(/\/+$/, '');

async function v1(c) {
  const client = new RPCClient({
    accessKeyId: c.accessKeyId,
    accessKeySecret: c.accessKeySecret,
    securityToken: c.securityToken,
    endpoint: endpoint,
    apiVersion: '2015-04-01',
  });
  const r = await client.request('GetCallerIdentity', {}, { method: 'POST' });
  return r.Arn;
}

async function v3(cred) {
  const url = new URL(endpoint);
  const client = new OpenApi.default(new OpenApi.Config({
    credential: cred,
    endpoint: url.host,
    protocol: url.protocol.replace(':', '').toUpperCase(),
  }));
  const params = new OpenApi.Params({
    action: 'GetCallerIdentity', version: '2015-04-01', protocol: 'HTTPS',
    pathname: '/', method: 'POST', authType: 'AK', style: 'RPC',
    reqBodyType: 'formData', bodyType: 'json',
  });
  const r = await client.callApi(params, new OpenApi.OpenApiRequest({}), {});
  return r.body.Arn;
}

async function attempt(fn, arg) {
  try {
    return { ok: true, arn: await fn(arg) };
  } catch (e) {
    return { ok: false, error: (e.code || '') + ' ' + e.message };
  }
}

(async () => {
  const cred = new Credential();
  const c = await cred.getCredential();
  const out = {
    provider: c.providerName || c.type || null,
    access_key_id: c.accessKeyId,
    has_token: !!c.securityToken,
    v1: await attempt(v1, c),
    v3: await attempt(v3, cred),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
  process.stderr.write('sts_calls: ' + e.message + '\n');
  process.exit(1);
});
