//! `[http]` in `stockade.toml`: the listener, its limits and TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::tls::TlsSettings;
use crate::config::ConfigError;
use crate::units::{parse_duration, parse_size};

/// `[http]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    listen: Option<String>,
    resource: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    max_body: Option<String>,
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
    max_sessions: Option<usize>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    #[serde(default)]
    allow_insecure: bool,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_certs: ClientCerts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ClientCerts {
    #[default]
    Optional,
    Required,
}

/// `[http]`, checked; `listen` may still be overridden by `--http`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// This server's canonical resource URI, when set (else derived from
    /// the address: `http(s)://ADDR/mcp`).
    pub resource: Option<String>,
    /// `Host` values accepted (`host` or `host:port`); `None` means the
    /// loopback names plus the resource URI's host.
    pub allowed_hosts: Option<Vec<String>>,
    /// `Origin` values accepted; a request with any other Origin is 403.
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_body: usize,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Requests being handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Legacy sessions open at once.
    pub max_sessions: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    pub body_timeout: Duration,
    /// Serve plain HTTP on a non-loopback address.
    pub allow_insecure: bool,
    /// TLS, when configured.
    pub tls: Option<TlsSettings>,
}

impl RawHttp {
    /// Checks every value; paths are relative to `base`.
    pub fn check(
        self,
        base: &Path,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<HttpSettings, ConfigError> {
        let listen = self
            .listen
            .as_deref()
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|_| invalid("http.listen", "an address such as \"127.0.0.1:8700\""))
            })
            .transpose()?;
        if let Some(resource) = &self.resource {
            let uri: http::Uri = resource
                .parse()
                .map_err(|_| invalid("http.resource", "an absolute https:// URL"))?;
            if !matches!(uri.scheme_str(), Some("https" | "http"))
                || uri.host().is_none()
                || uri.query().is_some()
                || resource.contains('#')
            {
                return Err(invalid(
                    "http.resource",
                    "an absolute URL without query or fragment, such as \"https://mcp.example.com/mcp\"",
                ));
            }
        }
        for origin in &self.allowed_origins {
            let uri: Option<http::Uri> = origin.parse().ok();
            let plain = uri.as_ref().is_some_and(|u| {
                u.scheme().is_some()
                    && u.host().is_some()
                    && u.path_and_query()
                        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty())
            });
            if !plain || origin.ends_with('/') {
                return Err(invalid(
                    "http.allowed_origins",
                    "origins such as \"https://app.example.com\" (scheme, host and optional port only)",
                ));
            }
        }
        let size = |key: &str, text: &Option<String>, default: u64, most: u64| match text {
            None => Ok(default as usize),
            Some(text) => parse_size(text)
                .ok()
                .filter(|n| (1024..=most).contains(n))
                .map(|n| n as usize)
                .ok_or_else(|| invalid(key, &format!("a size from 1KiB to {}MiB", most >> 20))),
        };
        let duration = |key: &str, text: &Option<String>, default: u64| match text {
            None => Ok(Duration::from_secs(default)),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero() && d.as_secs() <= 600)
                .ok_or_else(|| invalid(key, "a duration from 1s to 10m, such as \"10s\"")),
        };
        let count = |key: &str, value: Option<usize>, default: usize, most: usize| match value {
            None => Ok(default),
            Some(n) if (1..=most).contains(&n) => Ok(n),
            Some(_) => Err(invalid(key, &format!("a number from 1 to {most}"))),
        };
        let tls = self
            .tls
            .map(|raw| {
                if raw.client_certs == ClientCerts::Required && raw.client_ca_file.is_none() {
                    return Err(invalid(
                        "http.tls.client_certs",
                        "\"optional\" unless http.tls.client_ca_file names the CAs to check them against",
                    ));
                }
                Ok(TlsSettings {
                    cert: base.join(raw.cert_file),
                    key: base.join(raw.key_file),
                    client_ca: raw.client_ca_file.map(|p| base.join(p)),
                    client_cert_required: raw.client_certs == ClientCerts::Required,
                })
            })
            .transpose()?;
        Ok(HttpSettings {
            listen,
            resource: self.resource,
            allowed_hosts: self.allowed_hosts,
            allowed_origins: self.allowed_origins,
            max_body: size("http.max_body", &self.max_body, 4 << 20, 64 << 20)?,
            max_connections: count("http.max_connections", self.max_connections, 512, 100_000)?,
            max_in_flight: count("http.max_in_flight", self.max_in_flight, 256, 100_000)?,
            max_sessions: count("http.max_sessions", self.max_sessions, 1024, 100_000)?,
            header_timeout: duration("http.header_timeout", &self.header_timeout, 10)?,
            body_timeout: duration("http.body_timeout", &self.body_timeout, 30)?,
            allow_insecure: self.allow_insecure,
            tls,
        })
    }
}
