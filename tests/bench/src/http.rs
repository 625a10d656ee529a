//! End to end over Streamable HTTP: stateless 2026-07-28 `tools/call`
//! POSTs from 1, 8 or 64 clients at once (one keep-alive connection each),
//! authenticated with an API key or an RS256 JWT from an issuer this
//! process runs, against Stockade and against the native rmcp server
//! serving the same tool over HTTP without authentication.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Digest;
use tokio::process::{Child, Command};

use crate::stats::Samples;
use crate::{TRANSFORM_INPUT, TRANSFORM_OUTPUT};

/// A server listening on loopback and the process behind it.
pub struct Served {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    child: Child,
}

impl Served {
    /// Stops the server.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A free loopback address (bound, then released for the server).
fn free_addr() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Starts `program args… ADDR-args` and waits for `/healthz` (or, for the
/// native server, for the port to accept).
pub async fn start(program: &Path, args: &[String], addr_flag: &str) -> Result<Served> {
    let addr = free_addr()?;
    let child = Command::new(program)
        .args(args)
        .args([addr_flag, &addr.to_string()])
        .env("STOCKADE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("{} did not listen on {addr}", program.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Served {
        url: format!("http://{addr}/mcp"),
        child,
    })
}

/// An API key and the config lines that accept it.
pub fn api_key() -> Result<(String, String)> {
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let key = format!(
        "stk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let config = format!(
        "\n[[auth.api_keys]]\nclient = \"bench\"\ngroups = [\"analysts\"]\nsha256 = \"{digest}\"\n"
    );
    Ok((key, config))
}

/// A token issuer on loopback: RFC 8414 metadata and a JWKS with one
/// RSA-2048 key, which it signs RS256 access tokens with.
pub struct Issuer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    key: jsonwebtoken::EncodingKey,
    server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    /// Generates the key and starts serving.
    pub async fn start() -> Result<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
        let der = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())?;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let public = pair.public_key();
        let jwks = serde_json::json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        }]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let metadata = serde_json::json!({ "issuer": url, "jwks_uri": format!("{url}/jwks") });
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, key, server })
    }

    /// The config lines that trust this issuer.
    pub fn config(&self) -> String {
        format!("\n[auth.oauth]\nissuer = \"{}\"\n", self.url)
    }

    /// A token for `audience`, valid for an hour, unlike any other (its
    /// `jti` is random).
    pub fn token(&self, audience: &str) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let claims = serde_json::json!({
            "iss": self.url, "aud": audience, "sub": "bench", "client_id": "bench",
            "jti": hex::encode(jti),
            "iat": now, "nbf": now, "exp": now + 3600, "groups": ["analysts"],
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("bench".into());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One keep-alive client sending `tools/call` for `transform`.
struct Caller {
    client: Client<HttpConnector, Full<Bytes>>,
    url: http::Uri,
    body: Bytes,
}

impl Caller {
    fn new(url: &str) -> Result<Self> {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": "transform",
                "arguments": { "text": TRANSFORM_INPUT, "op": "upper" },
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        });
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http(),
            url: url.parse()?,
            body: Bytes::from(serde_json::to_vec(&body)?),
        })
    }

    /// One call; its time; an error unless the result is right.
    async fn call(&self, bearer: Option<&str>) -> Result<Duration> {
        let mut request = http::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "transform");
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        let request = request.body(Full::new(self.body.clone()))?;
        let started = Instant::now();
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let took = started.elapsed();
        if !status.is_success()
            || !body
                .windows(TRANSFORM_OUTPUT.len())
                .any(|w| w == TRANSFORM_OUTPUT.as_bytes())
        {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(took)
    }
}

/// Sequential calls on one connection, the series taking turns call by
/// call (so drift over the run touches them alike); each series cycles
/// through its credentials (one, or one fresh token per call). One sample
/// set per series.
pub async fn interleaved(
    url: &str,
    series: &[Vec<Option<String>>],
    warmup: usize,
    calls: usize,
) -> Result<Vec<Samples>> {
    let caller = Caller::new(url)?;
    let mut timings = vec![Vec::with_capacity(calls); series.len()];
    for i in 0..warmup + calls {
        for (which, bearers) in series.iter().enumerate() {
            let took = caller.call(bearers[i % bearers.len()].as_deref()).await?;
            if i >= warmup {
                timings[which].push(took);
            }
        }
    }
    Ok(timings.into_iter().map(Samples::new).collect())
}

/// `clients` callers at once, `calls` in all: calls per second and each
/// call's latency.
pub async fn concurrent(
    url: &str,
    bearer: Option<&str>,
    clients: usize,
    calls: usize,
) -> Result<(f64, Samples)> {
    let bearer: Option<Arc<str>> = bearer.map(Arc::from);
    let callers: Vec<Arc<Caller>> = (0..clients)
        .map(|_| Caller::new(url).map(Arc::new))
        .collect::<Result<_>>()?;
    for caller in &callers {
        caller.call(bearer.as_deref()).await?;
    }
    let per_client = calls.div_ceil(clients);
    let started = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            let bearer = bearer.clone();
            tokio::spawn(async move {
                let mut timings = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    timings.push(caller.call(bearer.as_deref()).await?);
                }
                anyhow::Ok(timings)
            })
        })
        .collect();
    let mut timings = Vec::with_capacity(per_client * clients);
    for task in tasks {
        timings.extend(task.await??);
    }
    let rate = timings.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, Samples::new(timings)))
}
