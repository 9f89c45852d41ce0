// Resolve credentials exactly as an Alibaba Cloud Node.js program would:
// through the official provider's default chain (environment variables,
// ~/.aliyun/config.json profiles including External mode, the INI file
// named by ALIBABA_CLOUD_CREDENTIALS_FILE, ...). Prints one JSON line:
// {"provider":..., "access_key_id":..., "access_key_secret":...}.
'use strict';
const Credential = require('@alicloud/credentials').default;

(async () => {
  const cred = new Credential();
  const c = await cred.getCredential();
  process.stdout.write(JSON.stringify({
    provider: c.providerName || c.type || null,
    access_key_id: c.accessKeyId,
    access_key_secret: c.accessKeySecret,
  }) + '\n');
})().catch((e) => {
  process.stderr.write('credentials provider failed: ' + e.message + '\n');
  process.exit(1);
});
