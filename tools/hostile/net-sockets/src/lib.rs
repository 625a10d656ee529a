//! Hostile: tries every way around `wasi:http` to the network. Through the
//! standard library (`TcpStream`, `UdpSocket`, `ToSocketAddrs`) and through
//! `wasi:sockets` directly (TCP connect, UDP bind and send, name lookup).
//! The host must deny each one; the only network path is `wasi:http`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::http::Request;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::ip_name_lookup::resolve_addresses;
use wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasi::sockets::tcp_create_socket::create_tcp_socket;
use wasi::sockets::udp::OutgoingDatagram;
use wasi::sockets::udp_create_socket::create_udp_socket;

/// Arguments of `sockets`.
#[derive(Deserialize, JsonSchema)]
struct SocketsArgs {
    /// An IPv4 `address:port` to connect to and send datagrams to.
    target: String,
    /// A host name to resolve.
    name: String,
}

/// Arguments of `http_get`.
#[derive(Deserialize, JsonSchema)]
struct HttpGetArgs {
    /// URL to GET through the host's egress policy.
    url: String,
}

/// One attempt's outcome: `error: ...` when refused, `OPENED: ...` when the
/// network was reached.
fn outcome<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("OPENED: {value:?}"),
        Err(err) => format!("error: {err:?}"),
    }
}

fn std_tcp(target: SocketAddr) -> Result<String, std::io::Error> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    stream.write_all(b"GET /hello HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

fn std_udp(target: SocketAddr) -> Result<usize, std::io::Error> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.send_to(b"hostile datagram", target)
}

fn std_dns(name: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
    Ok((name, 80).to_socket_addrs()?.collect())
}

fn wasi_address(target: SocketAddrV4) -> IpSocketAddress {
    let [a, b, c, d] = target.ip().octets();
    IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: target.port(),
        address: (a, b, c, d),
    })
}

fn wasi_tcp(target: SocketAddrV4) -> Result<&'static str, ErrorCode> {
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4)?;
    socket.start_connect(&network, wasi_address(target))?;
    socket.subscribe().block();
    let (_input, _output) = socket.finish_connect()?;
    Ok("connected")
}

fn wasi_udp(target: SocketAddrV4) -> Result<u64, ErrorCode> {
    let network = instance_network();
    let socket = create_udp_socket(IpAddressFamily::Ipv4)?;
    let any = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: 0,
        address: (0, 0, 0, 0),
    });
    socket.start_bind(&network, any)?;
    socket.subscribe().block();
    socket.finish_bind()?;
    let (_incoming, outgoing) = socket.stream(Some(wasi_address(target)))?;
    outgoing.subscribe().block();
    outgoing.check_send()?;
    outgoing.send(&[OutgoingDatagram {
        data: b"hostile datagram".to_vec(),
        remote_address: None,
    }])
}

fn wasi_dns(name: &str) -> Result<Vec<String>, ErrorCode> {
    let network = instance_network();
    let stream = resolve_addresses(&network, name)?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(address)) => found.push(format!("{address:?}")),
            Ok(None) => return Ok(found),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(err) => return Err(err),
        }
    }
}

fn sockets(args: SocketsArgs) -> Result<Output, ToolError> {
    let target: SocketAddrV4 = args
        .target
        .parse()
        .map_err(|_| ToolError::InvalidInput("target: expected an IPv4 address:port".into()))?;
    let report = BTreeMap::from([
        ("std_tcp_connect", outcome(std_tcp(SocketAddr::V4(target)))),
        ("std_udp_send", outcome(std_udp(SocketAddr::V4(target)))),
        ("std_name_lookup", outcome(std_dns(&args.name))),
        ("wasi_tcp_connect", outcome(wasi_tcp(target))),
        ("wasi_udp_send", outcome(wasi_udp(target))),
        ("wasi_name_lookup", outcome(wasi_dns(&args.name))),
    ]);
    Output::json(&report)
}

/// Arguments of `dial`.
#[derive(Deserialize, JsonSchema)]
struct DialArgs {
    /// `address:port` or `name:port` to connect to (a name is looked up).
    target: String,
}

/// Connects with std's TCP (looking the name up first, if it is one) and
/// fails with whatever std says, so only the host's own record can name
/// the rule.
fn dial(args: DialArgs) -> Result<Output, ToolError> {
    std::net::TcpStream::connect(args.target.as_str())
        .map_err(|err| ToolError::Failed(err.to_string()))?;
    Ok(Output::text("connected"))
}

fn http_get(args: HttpGetArgs) -> Result<Output, ToolError> {
    let response = Request::get(&args.url).send()?;
    Ok(Output::text(response.text()))
}

struct NetSockets;

impl Toolbox for NetSockets {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "sockets",
                "Tries TCP, UDP and name lookup without wasi:http; reports each outcome.",
                sockets,
            ),
            Tool::new(
                "dial",
                "Connects with std TCP and fails with std's own message.",
                dial,
            ),
            Tool::new(
                "http_get",
                "GETs a URL through wasi:http, the sanctioned path.",
                http_get,
            ),
        ]
    }
}

stockade_sdk::export_toolbox!(NetSockets);
