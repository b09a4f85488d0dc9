//! The fixtures do what the demo and the tests rely on: scripted DNS answers
//! over UDP and TCP, a handler served over plain HTTP and over TLS with a
//! certificate that chains to the local CA.

use airlock_fixtures::{DnsAnswer, DnsResponder, HttpServer, LocalCa};
use bytes::Bytes;
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use http_body_util::Full;
use hyper::Response;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m.to_vec().expect("encode")
}

fn ask_udp(dns: &DnsResponder, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&query(name, qtype), dns.addr()).expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("answer");
    Message::from_vec(&buf[..n]).expect("decode")
}

fn ask_tcp(dns: &DnsResponder, name: &str, qtype: RecordType) -> Message {
    let mut s = TcpStream::connect(dns.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let q = query(name, qtype);
    let mut framed = u16::try_from(q.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).expect("send");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).expect("answer");
    Message::from_vec(&buf).expect("decode")
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn dns_answers_scripted_names_over_udp_and_tcp_and_nxdomain_otherwise() {
    let dns = DnsResponder::start().expect("start");
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    dns.set("Api.Demo.Test.", DnsAnswer::Fixed(vec![LOCAL, v6]));
    let public = IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14));
    dns.set(
        "rebind.test",
        DnsAnswer::Sequence(vec![vec![public], vec![LOCAL]]),
    );

    assert_eq!(
        addrs(&ask_udp(&dns, "api.demo.test.", RecordType::A)),
        vec![LOCAL]
    );
    assert_eq!(
        addrs(&ask_tcp(&dns, "api.demo.test.", RecordType::AAAA)),
        vec![v6]
    );
    assert_eq!(dns.queries("api.demo.test"), 2);

    assert_eq!(
        addrs(&ask_udp(&dns, "rebind.test.", RecordType::A)),
        vec![public]
    );
    assert_eq!(
        addrs(&ask_udp(&dns, "rebind.test.", RecordType::A)),
        vec![LOCAL]
    );
    assert_eq!(
        addrs(&ask_udp(&dns, "rebind.test.", RecordType::A)),
        vec![LOCAL]
    );

    let nx = ask_udp(&dns, "other.test.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(addrs(&nx), Vec::<IpAddr>::new());
}

fn ok(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

#[test]
fn plain_server_serves_the_handler_and_counts_requests_and_connections() {
    let server = HttpServer::start(LOCAL, None, |req| {
        let body = if req.uri().path() == "/a" {
            "a"
        } else {
            "other"
        };
        async move { ok(body) }
    })
    .expect("start");
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\na"), "{resp}");
    assert_eq!((server.hits(), server.connections()), (1, 1));
}

#[test]
fn tls_server_certificate_chains_to_the_local_ca() {
    let ca = LocalCa::new("fixture test CA").expect("CA");
    let tls = ca.server_config(&["api.demo.test"], &[]).expect("config");
    let server = HttpServer::start(LOCAL, Some(tls), |_| async { ok("hello") }).expect("start");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("PEM"))
        .expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(client), "api.demo.test".try_into().expect("name"))
            .expect("client");
    let tcp = TcpStream::connect(server.addr()).expect("connect");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET / HTTP/1.1\r\nHost: api.demo.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello"), "{resp}");
    assert_eq!(server.hits(), 1);
}
