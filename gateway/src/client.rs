//! Who the client is, for limits keyed by address: the peer, or — only when the peer is one of
//! `gateway.trusted_proxies` — the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
//! A header anyone can write is never believed from anyone else.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;
use smb_core::Error;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses ("10.0.0.5") and ranges ("10.0.0.0/8", "fd00::/8").
    pub fn parse(entries: &[String]) -> Result<Self, Error> {
        let mut nets = Vec::new();
        for e in entries {
            let e = e.trim();
            let net = e
                .parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::invalid(format!(
                        "gateway.trusted_proxies: {e:?} is not an IP address or CIDR range"
                    ))
                })?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address behind `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|p| p.trim().parse::<IpAddr>().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }

    /// The client of a gRPC or grpc-web call served through the gateway's HTTP stack (where tonic's own
    /// `remote_addr` is not set): the connection's address from the request extensions.
    pub fn grpc_client<T>(&self, req: &tonic::Request<T>) -> Option<IpAddr> {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| req.remote_addr())?;
        Some(self.client(peer.ip(), &req.metadata().clone().into_headers()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", xff.parse().unwrap());
        m
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            t.client(ip("127.0.0.1"), &h("203.0.113.9")),
            ip("203.0.113.9")
        );
        // A spoofed first entry is skipped: the rightmost untrusted one is the client.
        assert_eq!(
            t.client(ip("10.1.1.1"), &h("1.2.3.4, 203.0.113.9, 10.2.2.2")),
            ip("203.0.113.9")
        );
        assert_eq!(
            t.client(ip("198.51.100.7"), &h("203.0.113.9")),
            ip("198.51.100.7")
        );
        assert_eq!(
            t.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert!(TrustedProxies::parse(&["not an ip".into()]).is_err());
    }
}
