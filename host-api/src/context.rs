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
}
