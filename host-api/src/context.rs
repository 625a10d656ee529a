//! Who is calling: the verified identity the host hands to a tool.

/// The caller of one tool call, as authenticated by the transport.
///
/// A tool reads it through the `host.caller` import; it is informational
/// for the tool, never something the tool can change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The client (a transport session, an API key's name, an OAuth client).
    pub client: String,
    /// The end user, when known.
    pub user: Option<String>,
    /// Groups the caller belongs to.
    pub groups: Vec<String>,
    /// OAuth scopes (or an API key's scopes) the caller holds.
    pub scopes: Vec<String>,
    /// How many Stockade calls led to this one: 0 for a client's own call,
    /// N when the request came from a tool at depth N − 1 (read from the
    /// [`CALL_DEPTH_HEADER`] of an incoming request). Every request a tool
    /// sends carries this plus one.
    pub call_depth: u32,
}

/// The header that carries the call depth on every request a tool sends,
/// so a server that calls Stockade again can be refused past
/// `server.max_call_depth` instead of looping.
pub const CALL_DEPTH_HEADER: &str = "stockade-call-depth";
