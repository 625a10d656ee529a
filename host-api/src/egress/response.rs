//! Responses to a tool that holds secrets: read whole (they are already
//! size-capped), refused when compressed in any way the scrubber could not
//! read through, and scrubbed of every known credential in their header
//! names, header values and body before the tool sees a byte.

use std::io::Read as _;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

use crate::secrets::Scrubber;

/// Codings that leave a body as it is.
const PLAIN_CODINGS: &[&str] = &["", "identity", "chunked"];

/// Output a brotli probe may produce before it calls the body compressed.
const BROTLI_PROBE_BYTES: usize = 64 << 10;

/// Reads `response`, refuses it when compressed, and scrubs it.
pub(super) async fn scrub_response(
    response: http::Response<WasiBody>,
    scrubber: &Scrubber,
) -> Result<http::Response<WasiBody>, String> {
    let refuse = |what: String| {
        format!(
            "egress denied: the response is compressed ({what}), and a compressed response \
             to a tool that holds secrets cannot be scrubbed"
        )
    };
    if let Some(coding) = declared_coding(response.headers()) {
        return Err(refuse(coding));
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|err| format!("egress failed: reading the response: {err}"))?
        .to_bytes();
    if let Some(format) = sniff_compression(&bytes) {
        return Err(refuse(format!("{format} data in the body")));
    }
    let body = match scrubber.scrub(&bytes) {
        Some(clean) => Bytes::from(clean),
        None => bytes,
    };
    let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if scrubber.contains(name.as_str().as_bytes()) {
            continue;
        }
        let value = match scrubber.scrub(value.as_bytes()) {
            Some(clean) => http::HeaderValue::from_bytes(&clean)
                .unwrap_or_else(|_| http::HeaderValue::from_static(crate::secrets::REDACTED)),
            None => value.clone(),
        };
        headers.append(name.clone(), value);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    parts.headers = headers;
    let body = http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(http::Response::from_parts(parts, body))
}

/// The first coding other than identity or chunked named by any
/// `Content-Encoding` or `Transfer-Encoding` line.
fn declared_coding(headers: &http::HeaderMap) -> Option<String> {
    for name in [
        http::header::CONTENT_ENCODING,
        http::header::TRANSFER_ENCODING,
    ] {
        for line in headers.get_all(&name) {
            let text = String::from_utf8_lossy(line.as_bytes()).to_ascii_lowercase();
            for coding in text.split(',').map(str::trim) {
                if !PLAIN_CODINGS.contains(&coding) {
                    return Some(format!("{name}: {coding}"));
                }
            }
        }
    }
    None
}

/// The compressed format `body` holds: judged by magic bytes anywhere for
/// the formats whose magic does not occur in text, by the leading header
/// for zlib, and for brotli (which has no magic) by decoding it.
fn sniff_compression(body: &[u8]) -> Option<&'static str> {
    const ANYWHERE: &[(&[u8], &str)] = &[
        (&[0x1f, 0x8b, 0x08], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (b"PK\x03\x04", "zip"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (b"1AY&SY", "bzip2"),
    ];
    for (magic, format) in ANYWHERE {
        if body.windows(magic.len()).any(|w| w == *magic) {
            return Some(format);
        }
    }
    if let [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] = body {
        return Some("zlib");
    }
    is_brotli(body).then_some("brotli")
}

/// Whether `body` decodes as a brotli stream producing some output.
fn is_brotli(body: &[u8]) -> bool {
    if body.len() < 4 {
        return false;
    }
    let mut decoder = brotli_decompressor::Decompressor::new(body, 4096);
    let mut out = vec![0u8; 4096];
    let mut produced = 0;
    loop {
        match decoder.read(&mut out) {
            Ok(0) => return produced > 0,
            Ok(n) => {
                produced += n;
                if produced >= BROTLI_PROBE_BYTES {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_coding_line_is_read() {
        let mut headers = http::HeaderMap::new();
        headers.append("content-encoding", "identity".parse().unwrap());
        headers.append("content-encoding", "gzip".parse().unwrap());
        assert_eq!(
            declared_coding(&headers).as_deref(),
            Some("content-encoding: gzip")
        );
        let mut headers = http::HeaderMap::new();
        headers.append("transfer-encoding", "gzip, chunked".parse().unwrap());
        assert_eq!(
            declared_coding(&headers).as_deref(),
            Some("transfer-encoding: gzip")
        );
        let mut headers = http::HeaderMap::new();
        headers.append("transfer-encoding", "chunked".parse().unwrap());
        headers.append("content-encoding", "identity".parse().unwrap());
        assert_eq!(declared_coding(&headers), None);
    }

    #[test]
    fn compressed_bodies_are_sniffed_and_plain_ones_pass() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0], "gzip"),
            (b"text then \x1f\x8b\x08 gzip", "gzip"),
            (&[0x78, 0x9c, 0x01, 0x02], "zlib"),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0x20], "zstd"),
            (b"BZh91AY&SY....", "bzip2"),
            (b"PK\x03\x04rest", "zip"),
            // "hello hello hello" compressed with brotli at quality 5.
            (
                &[27, 16, 0, 0, 36, 64, 106, 16, 100, 234, 240, 156, 30],
                "brotli",
            ),
        ];
        for (body, format) in cases {
            assert_eq!(sniff_compression(body), Some(*format), "{format}");
        }
        for plain in [
            &b"{\"rows\": [1, 2, 3]}"[..],
            b"ok",
            b"missing or wrong token",
            b"<html><body>hello</body></html>",
            b"status 200\ncontent-type: text/plain\n\nhello",
        ] {
            assert_eq!(sniff_compression(plain), None, "{plain:?}");
        }
    }
}
