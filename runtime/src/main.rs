//! `stockade`: serve sandboxed WebAssembly tools over MCP.

mod admin;
mod alerts;
mod approval;
mod audit;
mod audit_cli;
mod auth;
mod call;
mod cli;
mod config;
mod confine;
mod control;
mod control_cli;
#[cfg(test)]
mod fuzz;
mod http;
mod hygiene;
mod idempotency;
mod import_policy;
mod lint;
mod lock;
mod logging;
mod manifest;
mod mcp;
mod metrics;
mod policy;
mod registry;
mod reload;
mod sbom;
mod secrets;
mod stdio;
mod units;
mod versions;

fn main() -> std::process::ExitCode {
    cli::main()
}
