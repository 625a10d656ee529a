//! Hostile: looks for authority it was never granted: environment
//! variables (the host's secrets would be there), command-line arguments,
//! standard input, a working directory, preopened directories — also while
//! the host reads its tool list, which must run with no grant at all. Also
//! reports fresh random bytes, which must differ from call to call, and the
//! caller the host vouches for.

use std::io::Read;

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// Arguments of `ambient`.
#[derive(Deserialize, JsonSchema)]
struct AmbientArgs {
    /// A variable the host process is known to hold; the tool asks for it
    /// by name as well as listing everything.
    probe_var: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ambient(args: AmbientArgs) -> Result<Output, ToolError> {
    let mut stdin = Vec::new();
    let stdin_read = std::io::stdin().read_to_end(&mut stdin);
    let preopens: Vec<String> = wasi::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    let report = serde_json::json!({
        "std_env": std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect::<Vec<_>>(),
        "wasi_env": wasi::cli::environment::get_environment()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        "probe_var": std::env::var_os(&args.probe_var).map(|v| v.to_string_lossy().into_owned()),
        "std_args": std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        "wasi_args": wasi::cli::environment::get_arguments(),
        "wasi_cwd": wasi::cli::environment::initial_cwd(),
        "stdin_bytes": stdin.len(),
        "stdin_error": stdin_read.err().map(|e| e.to_string()),
        "preopens": preopens,
        "random": hex(&wasi::random::random::get_random_bytes(16)),
        "insecure_random": hex(&wasi::random::insecure::get_insecure_random_bytes(16)),
    });
    Output::json(&report)
}

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

fn whoami(_: NoArgs) -> Result<Output, ToolError> {
    let caller = stockade_sdk::caller();
    Output::json(&serde_json::json!({
        "client": caller.client,
        "user": caller.user,
        "groups": caller.groups,
    }))
}

struct ResourceAmbient;

impl Toolbox for ResourceAmbient {
    fn tools() -> Vec<Tool> {
        // Runs when the host lists the tools, too: what it sees then goes
        // into the description, where a test can read it.
        let preopens: Vec<String> = wasi::filesystem::preopens::get_directories()
            .into_iter()
            .map(|(_, path)| path)
            .collect();
        vec![
            Tool::new(
                "ambient",
                &format!(
                    "Reports the environment, arguments, stdin, cwd, preopens and random bytes it sees. Preopens seen here: {preopens:?}"
                ),
                ambient,
            ),
            Tool::new("whoami", "Returns the caller the host reports.", whoami),
        ]
    }
}

stockade_sdk::export_toolbox!(ResourceAmbient);
