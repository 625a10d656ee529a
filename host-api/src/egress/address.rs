//! Which IP addresses a tool may reach without an explicit private grant.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// An ordinary public unicast address.
    Public,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 ranges and IPv6 unique-local `fc00::/7`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance-metadata endpoints (`169.254.169.254`, `fd00:ec2::254`, ...).
    Metadata,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedNat,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Broadcast, documentation, benchmarking, reserved and other special ranges.
    Reserved,
}

impl AddressClass {
    /// The phrase used in denial messages: "... is a link-local address".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Metadata => "a cloud metadata address",
            Self::SharedNat => "a carrier-grade NAT address",
            Self::Multicast => "a multicast address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// Classifies an address; IPv6 forms that embed an IPv4 address
/// (mapped, compatible, NAT64, 6to4) are judged by the embedded address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        AddressClass::Metadata
    } else if a == 0 {
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if a == 100 && (b & 0xc0) == 64 {
        AddressClass::SharedNat
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if a >= 240
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 192 && b == 88 && c == 99)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let seg = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if seg[0] == 0xfd00 && seg[1] == 0x0ec2 {
        AddressClass::Metadata
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (seg[0] & 0xff00) == 0xff00 {
        AddressClass::Multicast
    } else if (seg[0] & 0xffc0) == 0xfec0
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || (seg[0] == 0x2001 && seg[1] == 0)
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])
        || (seg[0] & 0xe000) != 0x2000
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address carried inside an IPv6 one, for the forms a resolver or
/// a guest could use to smuggle an IPv4 destination past a v6 check.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if let Some(mapped) = ip.to_ipv4_mapped() {
        Some(mapped)
    } else if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        // IPv4-compatible (deprecated) ::a.b.c.d
        Some(low)
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96
        Some(low)
    } else if seg[0] == 0x2002 {
        // 6to4 2002:AABB:CCDD::/48
        Some(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn refuses_every_non_public_range() {
        assert_eq!(class("127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("127.255.0.9"), AddressClass::Loopback);
        assert_eq!(class("::1"), AddressClass::Loopback);
        assert_eq!(class("10.0.0.1"), AddressClass::Private);
        assert_eq!(class("172.16.4.4"), AddressClass::Private);
        assert_eq!(class("192.168.1.1"), AddressClass::Private);
        assert_eq!(class("fd12::1"), AddressClass::Private);
        assert_eq!(class("169.254.169.254"), AddressClass::Metadata);
        assert_eq!(class("fd00:ec2::254"), AddressClass::Metadata);
        assert_eq!(class("169.254.1.1"), AddressClass::LinkLocal);
        assert_eq!(class("fe80::1"), AddressClass::LinkLocal);
        assert_eq!(class("100.64.0.1"), AddressClass::SharedNat);
        assert_eq!(class("224.0.0.1"), AddressClass::Multicast);
        assert_eq!(class("ff02::1"), AddressClass::Multicast);
        assert_eq!(class("0.0.0.0"), AddressClass::Unspecified);
        assert_eq!(class("::"), AddressClass::Unspecified);
        assert_eq!(class("255.255.255.255"), AddressClass::Reserved);
        assert_eq!(class("192.0.2.7"), AddressClass::Reserved);
        assert_eq!(class("2001:db8::1"), AddressClass::Reserved);
    }

    #[test]
    fn judges_v6_wrappers_by_the_v4_inside() {
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::Metadata);
        assert_eq!(class("::10.0.0.1"), AddressClass::Private);
        assert_eq!(class("64:ff9b::a00:1"), AddressClass::Private);
        assert_eq!(class("2002:7f00:1::1"), AddressClass::Loopback);
        assert_eq!(class("::ffff:93.184.216.34"), AddressClass::Public);
    }

    #[test]
    fn accepts_public_addresses() {
        assert_eq!(class("93.184.216.34"), AddressClass::Public);
        assert_eq!(class("1.1.1.1"), AddressClass::Public);
        assert_eq!(class("2606:4700::1111"), AddressClass::Public);
        assert_eq!(class("100.128.0.1"), AddressClass::Public);
    }
}
