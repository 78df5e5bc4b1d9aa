// The OpenID provider the integration tests start: the certified
// oidc-provider package, issuing access tokens for the JMAP server through
// the client_credentials grant (RFC 6749 §4.4) with resource indicators
// (RFC 8707), and answering token introspection (RFC 7662).
//
// Usage: node provider.mjs PORT [AUDIENCE]
// The issuer is http://127.0.0.1:PORT.  "listening" is printed once it
// serves.  Everything here is for tests only: secrets are fixed, keys are
// made afresh at each start and live in memory.

import { generateKeyPairSync } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT);
const audience = process.argv[3] ?? process.env.AUDIENCE ?? 'https://jmap.test';
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.mjs PORT [AUDIENCE]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// Custom client metadata: which user a client's tokens name (the "email"
// claim), how long they live, and whether they are JWTs or opaque.
const USER = 'urn:jmap-test:user';
const TTL = 'urn:jmap-test:ttl';
const FORMAT = 'urn:jmap-test:format';

function client(id, user, extra = {}) {
  return {
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    [USER]: user,
    ...extra,
  };
}

const clients = [
  client('alice-app', 'alice@example.com'),
  client('bob-app', 'bob@example.com'),
  // Tokens that expire a few seconds after they are issued.
  client('short-app', 'alice@example.com', { [TTL]: 4 }),
  // Opaque tokens, which only introspection can vouch for.
  client('opaque-app', 'alice@example.com', { [FORMAT]: 'opaque' }),
  // A user the JMAP server has never heard of.
  client('newcomer-app', 'carol@example.com'),
  // The JMAP server itself, allowed to introspect.
  client('jmap-server', undefined),
];

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = {
  ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256',
};

let jwksServed = 0;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signing] },
  cookies: { keys: ['cookie-key-for-tests-only'] },
  ttl: {
    ClientCredentials(ctx, token) {
      return token.resourceServer?.accessTokenTTL ?? 300;
    },
  },
  extraClientMetadata: {
    properties: [USER, TTL, FORMAT],
    validator() {},
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy(ctx, caller) {
        return caller.clientId === 'jmap-server';
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource() {
        return audience;
      },
      useGrantedResource() {
        return true;
      },
      getResourceServerInfo(ctx, resource, asking) {
        if (resource !== audience) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'jmap',
          audience,
          accessTokenTTL: asking[TTL] ?? 300,
          accessTokenFormat: asking[FORMAT] ?? 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // The claim naming the user, taken from the asking client's metadata.
  async extraTokenClaims(ctx, token) {
    const asking = ctx.oidc.client ?? await ctx.oidc.provider.Client.find(token.clientId);
    return asking?.[USER] ? { email: asking[USER] } : undefined;
  },
});

// How often the key set was fetched, for the tests that flood the JMAP
// server with tokens naming unknown keys.
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/jwks-served') {
    ctx.body = { count: jwksServed };
    return;
  }
  if (ctx.path === '/jwks') {
    jwksServed += 1;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
