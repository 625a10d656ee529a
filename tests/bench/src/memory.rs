//! Memory at scale: bursts of many calls in flight on one stdio session,
//! each waiting in a host call (an HTTP GET of a loopback server that
//! answers only after a delay), so that every call holds its instance at
//! once. The server's peak resident set size is read after each burst.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::deploy::{Artifacts, sha256_of};
use crate::raw::RawSession;
use crate::stdio::{ServerCommand, process_peak_rss};

/// How long the loopback server holds every request.
const HOLD: Duration = Duration::from_millis(300);

/// What the bursts did to the server's memory.
pub struct Bursts {
    /// Resident set size once started and listed, before any call.
    pub before: u64,
    /// Peak resident set size after the first burst.
    pub first: u64,
    /// Peak resident set size after the last burst.
    pub last: u64,
}

/// Serves `GET /` on a free loopback port, answering `ok` after `HOLD`.
pub async fn slow_server() -> Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            tokio::time::sleep(HOLD).await;
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Writes a config serving `fetch`, allowed to reach `target` only, with
/// room for `in_flight` calls at once; returns its path.
pub fn write_config(
    artifacts: &Artifacts,
    dir: &Path,
    cache_dir: &Path,
    target: SocketAddr,
    in_flight: usize,
) -> Result<PathBuf> {
    let fetch = artifacts.wasm("fetch")?;
    let quoted = |path: &Path| serde_json::Value::from(path.to_string_lossy()).to_string();
    std::fs::write(
        dir.join("slow-fetch.toml"),
        format!(
            "[tool]\nname = \"fetch\"\ncomponent = {}\nsha256 = \"{}\"\n\n\
             [limits]\nfuel = 500_000_000\nmemory = \"64MiB\"\ntimeout = \"30s\"\n\
             max_output = \"512KiB\"\nconcurrency = {in_flight}\n\n\
             [egress]\nallow = [{{ url = \"http://{target}\", private = true }}]\n",
            quoted(&fetch),
            sha256_of(&fetch)?
        ),
    )?;
    let config = dir.join("memory.toml");
    std::fs::write(
        &config,
        format!(
            "tools = [\"slow-fetch.toml\"]\n\n[server]\nname = \"stockade-bench\"\n\
             cache_dir = {}\nmax_concurrent_calls = {in_flight}\ntool_share = {in_flight}\n\
             queue_timeout = \"30s\"\n\n[stdio]\nclient = \"bench\"\nmax_in_flight = {in_flight}\n",
            quoted(cache_dir)
        ),
    )?;
    Ok(config)
}

/// Runs `bursts` bursts of `in_flight` calls of `fetch` at `target`, each
/// burst sent whole before any answer is read; every answer must be `ok`.
pub fn bursts(
    command: &ServerCommand,
    target: SocketAddr,
    in_flight: usize,
    bursts: usize,
) -> Result<Bursts> {
    let mut session = RawSession::start(command)?;
    let before = session.rss()?;
    let arguments = json!({ "url": format!("http://{target}/") });
    let mut first = 0;
    for burst in 0..bursts {
        for _ in 0..in_flight {
            session.send_tool_call("fetch", &arguments)?;
        }
        for _ in 0..in_flight {
            let answer = session.receive()?;
            let text = answer
                .pointer("/result/content/0/text")
                .and_then(serde_json::Value::as_str);
            if text != Some("ok") {
                bail!("unexpected answer in burst {burst}: {answer}");
            }
        }
        if burst == 0 {
            first = process_peak_rss(session.pid())?;
        }
    }
    let last = process_peak_rss(session.pid()).context("reading the peak RSS")?;
    session.close()?;
    Ok(Bursts {
        before,
        first,
        last,
    })
}
