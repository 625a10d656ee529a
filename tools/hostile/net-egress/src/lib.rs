//! Hostile: asks the host's `wasi:http` handler for destinations its
//! allowlist forbids (unlisted hosts, loopback, private and metadata
//! addresses, names that resolve to them, the wrong scheme) and follows
//! redirects itself towards them, or loops on a refused URL. The host must
//! refuse each request before a byte leaves, whatever the tool asks for,
//! and keep its own record of the refusals bounded.

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::http::{HttpError, Request};
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// The tool reads up to this much body itself, so the host's
/// `egress.max_response` is the bound that decides.
const GREEDY_BODY: usize = 256 << 20;

/// Arguments of `get`.
#[derive(Deserialize, JsonSchema)]
struct GetArgs {
    /// Any URL; the host decides whether it may be reached.
    url: String,
}

/// Arguments of `follow`.
#[derive(Deserialize, JsonSchema)]
struct FollowArgs {
    /// Where to start.
    url: String,
    /// How many redirects to follow at most (default 5).
    #[serde(default)]
    max_hops: Option<u32>,
}

/// What the guest itself saw, so the test can tell the host's refusal
/// from any other failure.
fn guest_saw(err: HttpError) -> ToolError {
    let kind = match &err {
        HttpError::Denied => "denied",
        HttpError::TooLarge => "too large",
        HttpError::BadUrl(_) => "bad url",
        HttpError::Transport(_) => "transport",
    };
    ToolError::Failed(format!("guest saw {kind}: {err}"))
}

fn get(args: GetArgs) -> Result<Output, ToolError> {
    let response = Request::get(&args.url)
        .max_body(GREEDY_BODY)
        .send()
        .map_err(guest_saw)?;
    Ok(Output::text(format!(
        "{} {}",
        response.status,
        response.text()
    )))
}

fn follow(args: FollowArgs) -> Result<Output, ToolError> {
    let mut url = args.url;
    let mut chain = Vec::new();
    for _ in 0..=args.max_hops.unwrap_or(5) {
        let response = Request::get(&url)
            .max_body(GREEDY_BODY)
            .send()
            .map_err(|err| match guest_saw(err) {
                ToolError::Failed(why) => {
                    ToolError::Failed(format!("after {} hop(s), {url}: {why}", chain.len()))
                }
                other => other,
            })?;
        chain.push(format!("{} {url}", response.status));
        match response.header("location") {
            Some(next) if (300..400).contains(&response.status) => url = next,
            _ => {
                chain.push(response.text());
                return Ok(Output::text(chain.join("\n")));
            }
        }
    }
    Err(ToolError::Failed(format!(
        "too many redirects: {}",
        chain.join(" -> ")
    )))
}

/// Arguments of `hammer`.
#[derive(Deserialize, JsonSchema)]
struct HammerArgs {
    /// The URL to ask for, again and again; `{i}` in it becomes the
    /// attempt's number (from 1), so each attempt can differ.
    url: String,
    /// How many times.
    times: u32,
}

/// Asks for a URL `times` times whatever the answer, then fails in its own
/// words, so the host's record of the refusals is all the client learns.
fn hammer(args: HammerArgs) -> Result<Output, ToolError> {
    let mut refused = 0;
    for i in 1..=args.times {
        let url = args.url.replace("{i}", &i.to_string());
        if Request::get(&url).send().is_err() {
            refused += 1;
        }
    }
    Err(ToolError::Failed(format!(
        "gave up: {refused} of {} requests failed",
        args.times
    )))
}

struct NetEgress;

impl Toolbox for NetEgress {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("get", "GETs any URL and returns status and body.", get),
            Tool::new(
                "follow",
                "GETs a URL and follows 3xx redirects itself.",
                follow,
            ),
            Tool::new(
                "hammer",
                "GETs one URL many times whatever the answer, then fails.",
                hammer,
            ),
        ]
    }
}

stockade_sdk::export_toolbox!(NetEgress);
