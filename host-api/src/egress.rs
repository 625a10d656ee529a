//! Egress capability: default-deny outgoing HTTP through an allowlist that
//! is checked on the address actually connected to.

mod address;
mod failure;
mod policy;
mod response;
mod send;

pub use address::{AddressClass, classify};
pub use policy::{
    DEFAULT_MAX_REQUESTS, Destination, EgressDenial, EgressPolicy, EgressRule, EgressScheme,
    HostPattern, RuleParseError,
};
pub use send::{EgressHooks, EgressRecord, default_tls_config};
