//! `wasi:sockets` stays shut: the only network path a tool has is
//! `wasi:http` through the egress policy. wasmtime-wasi already refuses
//! every socket and name lookup (the call's context allows no TCP, UDP or
//! lookup); the two socket constructors and `resolve-addresses` are linked
//! through a wrapper so that a refusal is also recorded on the call and
//! named to the client, not only reported to the guest (as
//! `access-denied`, or `permanent-resolver-failure` for a lookup).

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

use crate::call::CallState;
use crate::refusals::Refusals;

/// The rule a refused socket is named by.
const RULE: &str = "socket denied: wasi:sockets is not granted to tools; \
                    the only network path is HTTP through egress.allow";
/// The rule a refused name lookup is named by.
const LOOKUP_RULE: &str = "socket denied: name lookup through wasi:sockets is not granted to \
                           tools; HTTP through egress.allow resolves names itself";

/// wasmtime-wasi's sockets view plus the call's refusals.
pub(crate) struct ShutSockets<'a> {
    inner: WasiSocketsCtxView<'a>,
    refusals: Refusals,
}

/// Marks [`ShutSockets`] as the data the constructors run on.
struct Shut;

impl HasData for Shut {
    type Data<'a> = ShutSockets<'a>;
}

fn shut(state: &mut CallState) -> ShutSockets<'_> {
    let refusals = state.refusals.clone();
    ShutSockets {
        inner: state.sockets(),
        refusals,
    }
}

/// Replaces the socket constructors in `linker` (which must already hold
/// wasmtime-wasi's) with ones that refuse and record.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = tcp_create_socket::add_to_linker::<CallState, Shut>(linker, shut)
        .and_then(|()| udp_create_socket::add_to_linker::<CallState, Shut>(linker, shut))
        .and_then(|()| ip_name_lookup::add_to_linker::<CallState, Shut>(linker, shut));
    linker.allow_shadowing(false);
    linked
}

impl network::Host for ShutSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for ShutSockets<'_> {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

impl tcp_create_socket::Host for ShutSockets<'_> {
    fn create_tcp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        self.refusals.record(RULE);
        Err(ErrorCode::AccessDenied.into())
    }
}

impl udp_create_socket::Host for ShutSockets<'_> {
    async fn create_udp_socket(
        &mut self,
        _family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        self.refusals.record(RULE);
        Err(ErrorCode::AccessDenied.into())
    }
}

impl ip_name_lookup::Host for ShutSockets<'_> {
    fn resolve_addresses(
        &mut self,
        _network: Resource<Network>,
        _name: String,
    ) -> SocketResult<Resource<ResolveAddressStream>> {
        self.refusals.record(LOOKUP_RULE);
        Err(ErrorCode::PermanentResolverFailure.into())
    }
}

/// Never reached (no stream is ever made); delegated all the same.
impl ip_name_lookup::HostResolveAddressStream for ShutSockets<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> SocketResult<Option<IpAddress>> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.inner, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.inner, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.inner, stream)
    }
}
