// A real OAuth 2.1 authorization server for the tests: oidc-provider with
// client credentials, resource indicators and JWT access tokens.
//
//   node authserver.mjs PORT KEY_ID [opaque]
//
// Signs with a fresh RSA key named KEY_ID (restart with another id to
// rotate). Clients: agent-a (groups analysts), agent-b (groups ops),
// agent-noscope (no scopes), each with secret "<id>-secret", and
// "resource-server" (secret "resource-server-secret"), which may only
// introspect. Any resource indicator is accepted and becomes the token's
// audience, so a test can ask for a token meant for another server. With
// "opaque", access tokens are opaque and checked through RFC 7662
// introspection at /token/introspection. Prints "READY" when serving.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, kid, format] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };

const client = (id, scope) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ["client_credentials"],
  redirect_uris: [],
  response_types: [],
  ...(scope ? { scope } : {}),
});
const groups = { "agent-a": ["analysts"], "agent-b": ["ops"] };

const provider = new Provider(issuer, {
  clients: [
    client("agent-a", "tools:read tools:files"),
    client("agent-b", "tools:read"),
    client("agent-noscope", ""),
    { ...client("resource-server", ""), grant_types: [] },
  ],
  jwks: { keys: [signing] },
  scopes: ["tools:read", "tools:files"],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => ({
        scope: "tools:read tools:files",
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: format === "opaque" ? "opaque" : "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => ({ groups: groups[token.clientId] ?? [] }),
});
provider.proxy = false;
const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log("READY");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
