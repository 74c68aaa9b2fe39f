//! Prints the JSON for protobuf bodies given as file arguments: `cargo run -p skiff-protobuf --example decode -- f.bin`.
fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| skiff_protobuf::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => println!("{path}: {}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(e) => println!("{path}: error: {e}"),
        }
    }
}
