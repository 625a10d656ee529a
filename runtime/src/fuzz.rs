//! Fuzzed parsers: every parser that reads text an operator, a client or a
//! tool controls is fed mutations of the committed seeds in `fuzz/seeds/`
//! (proptest drives the search and shrinks what it finds). Each target
//! checks more than "no panic": errors name their file, answers keep their
//! request's id, admitted destinations are ones the allowlist names, and
//! scrubbed text holds no run of the credential.
//!
//! `STOCKADE_FUZZ_CASES` sets the cases per target (default 512; CI runs
//! the default, a longer local run takes e.g. 100000). A failure proptest
//! finds is saved under `runtime/proptest-regressions/` and replayed first
//! on every later run: commit it with the fix, so it stays a regression test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use stockade_host_api::egress::{EgressPolicy, EgressRule, HostPattern, classify};
use stockade_host_api::secrets::SecretValue;
use stockade_host_api::secrets::redact::Redactor;

use crate::auth::jwt::JwtVerifier;
use crate::stdio::framing::{Verdict, judge, recover_id};

/// Fragments worth splicing into any of the inputs: delimiters, escapes,
/// numbers at the edges, odd hosts and units.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    ":",
    "\n",
    "\\",
    "\\u0000",
    "\\ud800",
    "#",
    "@",
    "%",
    "%2e",
    "/",
    "..",
    "*.",
    "[::1]",
    "0x7f000001",
    "-1",
    "0",
    "1e999",
    "18446744073709551616",
    "\"\"\"",
    "'''",
    "[[",
    "]]",
    "inf",
    "nan",
    "true",
    "null",
    "KiB",
    "GiB",
    "ms",
    "d",
    "/day",
    "\u{feff}",
    "\u{202e}",
    "é",
    "\u{0}",
];

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    /// Insert a byte.
    Byte(Index, u8),
    /// Insert one of [`TOKENS`].
    Token(Index, Index),
    /// Remove up to 8 bytes.
    Remove(Index, u8),
    /// Copy a span of the input to another place.
    Splice(Index, Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(at, t)| Edit::Token(at, t)),
        (any::<Index>(), 1u8..8).prop_map(|(at, n)| Edit::Remove(at, n)),
        (any::<Index>(), any::<Index>(), 1u8..32)
            .prop_map(|(from, to, n)| Edit::Splice(from, to, n)),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = input.len() + 1;
        match edit {
            Edit::Byte(at, byte) => input.insert(at.index(len), *byte),
            Edit::Token(at, token) => {
                let token = TOKENS[token.index(TOKENS.len())].as_bytes();
                let at = at.index(len);
                input.splice(at..at, token.iter().copied());
            }
            Edit::Remove(at, count) => {
                let at = at.index(len);
                let end = (at + *count as usize).min(input.len());
                input.drain(at.min(end)..end);
            }
            Edit::Splice(from, to, count) => {
                let from = from.index(len);
                let end = (from + *count as usize).min(input.len());
                let span: Vec<u8> = input[from.min(end)..end].to_vec();
                let to = to.index(input.len() + 1);
                input.splice(to..to, span);
            }
        }
    }
    input
}

/// The seed directory of `target` (`fuzz/seeds/`).
fn seed_path(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`: the files of a directory, or the lines of a
/// `.txt` file.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let path = seed_path(target);
    let seeds: Vec<Vec<u8>> = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    } else {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect()
    };
    assert!(!seeds.is_empty(), "no seeds in {}", path.display());
    seeds
}

/// Seeds of `target`, each edited a few times (the seeds themselves too).
fn mutated(target: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds = seeds(target);
    (0..seeds.len(), prop::collection::vec(edit(), 0..6))
        .prop_map(move |(seed, edits)| apply(seeds[seed].clone(), &edits))
}

/// Text the same way, for parsers that take `&str`.
fn mutated_text(target: &str) -> impl Strategy<Value = String> + use<> {
    mutated(target).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("STOCKADE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A scratch directory with a file `name` holding `bytes`.
fn scratch(name: &str, bytes: &[u8]) -> (PathBuf, PathBuf) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stockade-fuzz-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    (dir, file)
}

/// The allowlist the URL target checks against.
fn fixed_policy() -> EgressPolicy {
    EgressPolicy {
        rules: vec![
            EgressRule::parse("https://api.example.com", false).unwrap(),
            EgressRule::parse("https://*.example.org", false).unwrap(),
        ],
        ..EgressPolicy::default()
    }
}

/// A JSON value of bounded size and depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A verifier whose issuer publishes one Ed25519 key (from a loopback
/// server), the tokens signed with it, and the runtime they run on.
struct Issuer {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    /// The one token that passes.
    valid: String,
    /// Seeds: the valid token and signed tokens each wrong in one way.
    seeds: Vec<String>,
}

const ISSUER: &str = "http://127.0.0.1/issuer";
const AUDIENCE: &str = "http://127.0.0.1/mcp";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn issuer() -> &'static Issuer {
    static ISSUER_ONCE: std::sync::OnceLock<Issuer> = std::sync::OnceLock::new();
    ISSUER_ONCE.get_or_init(|| {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let key = || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
        };
        let (pair, attacker) = (key(), key());
        let jwks = serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
            "x": b64(pair.public_key().as_ref()),
        }]});
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        let settings = crate::auth::settings::OAuthSettings {
            issuer: ISSUER.into(),
            jwks_uri: Some(format!("http://127.0.0.1:{port}/jwks")),
            algorithms: vec![jsonwebtoken::Algorithm::EdDSA, jsonwebtoken::Algorithm::RS256],
            token_types: vec![],
            groups_claim: "groups".into(),
            leeway: std::time::Duration::from_secs(30),
            jwks_refresh: std::time::Duration::from_secs(3600),
            scopes_supported: vec![],
            introspection: None,
        };
        let verifier = JwtVerifier::new(settings, AUDIENCE.into()).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let sign_with = |key: &Ed25519KeyPair, header: &Value, claims: &Value| {
            let text = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
            format!("{text}.{}", b64(key.sign(text.as_bytes()).as_ref()))
        };
        let sign = |header: Value, claims: Value| sign_with(&pair, &header, &claims);
        let header = serde_json::json!({ "alg": "EdDSA", "kid": "k1", "typ": "at+jwt" });
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "exp": now + 3600, "iat": now, "scope": "tools",
        });
        let with = |mut value: Value, key: &str, new: Value| {
            value[key] = new;
            value
        };
        let valid = sign(header.clone(), claims.clone());
        let seeds = vec![
            valid.clone(),
            sign(with(header.clone(), "alg", "none".into()), claims.clone()),
            sign(with(header.clone(), "alg", "RS256".into()), claims.clone()),
            sign(with(header.clone(), "alg", "HS256".into()), claims.clone()),
            sign(with(header.clone(), "kid", "k2".into()), claims.clone()),
            sign(with(header.clone(), "crit", serde_json::json!(["exp"])), claims.clone()),
            // Signed by another key, which the header points at (never
            // fetched), or simply claims as `k1`.
            sign_with(&attacker, &with(header.clone(), "jku", "http://127.0.0.1:9/evil".into()), &claims),
            sign_with(&attacker, &header, &claims),
            sign(header.clone(), with(claims.clone(), "exp", (now - 3600).into())),
            sign(header.clone(), with(claims.clone(), "iat", (now + 3600).into())),
            sign(header.clone(), with(claims.clone(), "aud", "http://elsewhere/mcp".into())),
            sign(header.clone(), with(claims.clone(), "iss", "http://127.0.0.1/other".into())),
            sign(header.clone(), with(claims.clone(), "nbf", (now + 3600).into())),
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), valid.split('.').nth(1).unwrap()),
        ];
        Issuer { runtime, verifier, valid, seeds }
    })
}

/// Signed tokens, each edited a few times.
fn mutated_tokens() -> impl Strategy<Value = String> {
    let seeds = issuer().seeds.clone();
    (0..seeds.len(), prop::collection::vec(edit(), 0..4)).prop_map(move |(seed, edits)| {
        String::from_utf8_lossy(&apply(seeds[seed].clone().into_bytes(), &edits)).into_owned()
    })
}

proptest! {
    #![proptest_config(config())]

    /// Bearer JWTs: only the one token signed by the issuer's key with
    /// every claim right passes, and only unchanged (its signature's text
    /// may differ only where base64 decodes to the same bytes); every other
    /// seed, each wrong in one way, and every edit are refused.
    #[test]
    fn jwt_tokens(token in mutated_tokens()) {
        let issuer = issuer();
        let verdict = issuer.runtime.block_on(issuer.verifier.verify(&token));
        if verdict.is_ok() {
            let signed = |t: &str| t.rsplit_once('.').map(|(text, _)| text.to_owned());
            prop_assert_eq!(signed(&token), signed(&issuer.valid), "accepted {}", token);
        }
    }

    /// Manifests: every error names the file; nothing panics.
    #[test]
    fn manifest_parsing(bytes in mutated("manifest")) {
        let (dir, file) = scratch("tool.toml", &bytes);
        if let Err(err) = crate::manifest::load(&file) {
            let message = err.to_string();
            prop_assert!(message.starts_with(&file.display().to_string()), "{message}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `stockade.toml`: every error names the file; nothing panics.
    #[test]
    fn config_parsing(bytes in mutated("config")) {
        let (dir, file) = scratch("stockade.toml", &bytes);
        std::fs::copy(seed_path("manifest/everything.toml"), dir.join("tool.toml")).unwrap();
        match crate::config::StockadeConfig::load(&file) {
            Ok((_, manifest_errors)) => {
                for err in manifest_errors {
                    prop_assert!(err.to_string().starts_with(&dir.display().to_string()));
                }
            }
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.starts_with(&file.display().to_string()), "{message}");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Input lines: an answer is always a JSON-RPC error with one of the
    /// three codes, and carries the request's own id whenever the line has
    /// one that can be read.
    #[test]
    fn jsonrpc_lines(line in mutated("jsonrpc.txt")) {
        let id = recover_id(&line);
        if let Verdict::Answer(answer) = judge(&line, 64) {
            prop_assert_eq!(&answer["jsonrpc"], "2.0");
            let code = answer["error"]["code"].as_i64().unwrap();
            prop_assert!([-32700, -32600, -32602].contains(&code), "{answer}");
            let parsed: Option<Value> = serde_json::from_slice(&line).ok();
            if let Some(request_id) = parsed.as_ref().and_then(|v| v.get("id"))
                && (request_id.is_string() || request_id.is_i64() || request_id.is_u64())
            {
                prop_assert_eq!(&answer["id"], request_id);
            } else {
                prop_assert_eq!(&answer["id"], &id);
            }
        }
    }

    /// Well-formed `tools/call` requests of any name and arguments are
    /// never refused at the edge: rmcp gets them.
    #[test]
    fn jsonrpc_calls_pass(id in any::<i64>(), name in ".{0,20}", arguments in json_value()) {
        let arguments = match arguments {
            Value::Object(map) => Value::Object(map),
            other => serde_json::json!({ "value": other }),
        };
        let line = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": name, "arguments": arguments },
        });
        let verdict = judge(line.to_string().as_bytes(), 64);
        prop_assert!(matches!(verdict, Verdict::Forward(_)), "{verdict:?}");
    }

    /// Allowlist entries: a parsed entry admits exactly the destination it
    /// names; nothing panics.
    #[test]
    fn egress_rules(entry in mutated_text("egress-rule.txt"), private in any::<bool>()) {
        if let Ok(rule) = EgressRule::parse(&entry, private) {
            let host = match &rule.host {
                HostPattern::Exact(host) => host.clone(),
                HostPattern::Suffix(suffix) => format!("a.{suffix}"),
            };
            prop_assert!(!host.contains('*'));
            let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            let url = format!("{}://{bracketed}:{}/", rule.scheme, rule.port);
            if let Ok(uri) = url.parse::<http::Uri>() {
                let policy = EgressPolicy { rules: vec![rule.clone()], ..EgressPolicy::default() };
                let dest = policy.admit(&uri);
                prop_assert!(dest.is_ok(), "{entry} -> {url}: {dest:?}");
            }
        }
    }

    /// Request URLs: whatever the authority looks like, an admitted
    /// destination is one the allowlist names, and it is the host the
    /// request goes to.
    #[test]
    fn egress_urls(url in mutated_text("egress-url.txt")) {
        let Ok(uri) = url.parse::<http::Uri>() else { return Ok(()) };
        if let Ok(dest) = fixed_policy().admit(&uri) {
            prop_assert!(dest.host == "api.example.com" || dest.host.ends_with(".example.org"),
                "{url} admitted as {dest:?}");
            prop_assert_eq!(dest.port, 443);
            let target = uri.host().unwrap().trim_end_matches('.').to_ascii_lowercase();
            prop_assert_eq!(target, dest.host);
        }
    }

    /// The address classifier judges every IPv6 form that carries an IPv4
    /// address as that address.
    #[test]
    fn address_classes(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let class = classify(IpAddr::V4(v4));
        let [a, b, c, d] = v4.octets();
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
        prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), class);
        prop_assert_eq!(classify(IpAddr::V6(nat64)), class);
        prop_assert_eq!(classify(IpAddr::V6(six_to_four)), class);
        if bits > 1 {
            prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_compatible())), class);
        }
    }

    /// The redactor: any K-run of a remembered value, anywhere in any
    /// text, is gone after scrubbing; arbitrary text never panics it.
    #[test]
    fn redactor(
        value in "[!-~]{16,48}",
        start in any::<Index>(),
        before in ".{0,40}",
        after in ".{0,40}",
    ) {
        let redactor = Redactor::default();
        let k = redactor.min_run();
        redactor.remember(&SecretValue::new(value.clone()), &value);
        let start = start.index(value.len() - k + 1);
        let run = &value[start..start + k];
        let text = format!("{before}{run}{after}");
        let scrubbed = redactor.scrubber().scrub_text(&text);
        prop_assert!(!scrubbed.contains(run), "{text:?} -> {scrubbed:?}");
        let _ = redactor.scrubber().scrub_text(&before);
    }
}
