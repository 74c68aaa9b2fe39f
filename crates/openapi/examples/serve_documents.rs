//! A throwaway HTTP server answering only discovery, OpenAPI and `/version`, for trying kubectl against the
//! documents: `cargo run -p skiff-openapi --example serve_documents -- 127.0.0.1:18099`, then e.g.
//! `kubectl --server http://127.0.0.1:18099 explain service.spec`. Everything else answers 404.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use skiff_openapi::{AGGREGATED_DISCOVERY_CONTENT_TYPE, Documents};

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18099".to_string());
    let docs = Documents::build();
    let listener = TcpListener::bind(&addr)?;
    eprintln!("serving on http://{addr}");
    for stream in listener.incoming() {
        if let Err(e) = handle(stream?, &docs) {
            eprintln!("connection: {e}");
        }
    }
    Ok(())
}

fn handle(stream: TcpStream, docs: &Documents) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut accept = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("accept:") {
                accept = line[7..].trim().to_string();
            }
            if line.to_ascii_lowercase().starts_with("content-length:") {
                content_length = line[15..].trim().parse().unwrap_or(0);
            }
        }
        // Request bodies (writes) are read and ignored: this server only answers GETs of documents.
        let mut body = vec![0; content_length];
        std::io::Read::read_exact(&mut reader, &mut body)?;
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/");
        eprintln!("{} {target}", request_line.split_whitespace().next().unwrap_or("?"));
        let aggregated = accept.contains("as=APIGroupDiscoveryList");
        let agg_type = AGGREGATED_DISCOVERY_CONTENT_TYPE;
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body: Option<(Vec<u8>, &str)> = match parts.as_slice() {
            ["version"] => Some((
                br#"{"major":"1","minor":"33","gitVersion":"v1.33.0","platform":"linux/amd64"}"#.to_vec(),
                "application/json",
            )),
            ["api"] if aggregated => Some((docs.aggregated_core_bytes().to_vec(), agg_type)),
            ["apis"] if aggregated => Some((docs.aggregated_groups_bytes().to_vec(), agg_type)),
            ["api"] => Some((docs.legacy_api_versions_bytes().to_vec(), "application/json")),
            ["apis"] => Some((docs.legacy_group_list_bytes().to_vec(), "application/json")),
            ["api", v] => docs.legacy_resource_list_bytes("", v).map(|b| (b.to_vec(), "application/json")),
            ["apis", g] => docs.legacy_group_bytes(g).map(|b| (b.to_vec(), "application/json")),
            ["apis", g, v] => docs.legacy_resource_list_bytes(g, v).map(|b| (b.to_vec(), "application/json")),
            ["openapi", "v3"] => Some((docs.openapi_root_bytes().to_vec(), "application/json")),
            ["openapi", "v3", rest @ ..] => {
                docs.openapi_group_version_bytes(&rest.join("/")).map(|(b, _)| (b.to_vec(), "application/json"))
            }
            _ => None,
        };
        let (status, body, content_type) = match body {
            Some((body, ct)) => ("200 OK", body, ct),
            None => (
                "404 Not Found",
                br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#
                    .to_vec(),
                "application/json",
            ),
        };
        write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len())?;
        stream.write_all(&body)?;
    }
}
