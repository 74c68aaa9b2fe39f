//! Real request bodies: `tests/fixtures/*.bin` were recorded from kubectl 1.33 (`kubectl create …` against a
//! loopback listener), `*.json` are `kubectl create … --dry-run=client -o json` for the same command, i.e. the JSON of
//! the very Go object kubectl encoded. The decoder must reproduce it (minus `creationTimestamp: null`, which it
//! omits on purpose).

use std::path::PathBuf;

use serde_json::Value;
use skiff_protobuf::{DecodeError, decode};

const FIXTURES: &[&str] = &[
    "create-deployment-web",
    "create-deployment-zero-replicas",
    "create-service-nodeport-web",
    "create-service-clusterip-named",
    "create-service-externalname-ext",
    "create-namespace-team-a",
    "create-configmap-cfg",
    "create-secret-generic-sec",
    "create-serviceaccount-bot",
];

fn fixture(name: &str, ext: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Go prints a zero `metav1.Time` as `null`; the decoder leaves it out.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

#[test]
fn kubectl_bodies_decode_to_kubectls_own_json() {
    for name in FIXTURES {
        let decoded = decode(&fixture(name, "bin")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Value = serde_json::from_slice(&fixture(name, "json")).expect("fixture json");
        assert_eq!(decoded, without_nulls(expected), "{name}");
    }
}

#[test]
fn kubectl_deployment_spot_checks() {
    let web = decode(&fixture("create-deployment-web", "bin")).expect("decode");
    assert_eq!(web["apiVersion"], "apps/v1");
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["spec"]["replicas"], 1);
    assert_eq!(web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);
    // non-pointer zero values that kubectl put on the wire are gone
    assert!(web["metadata"].get("namespace").is_none());
    assert!(web["metadata"].get("generation").is_none());
    assert!(web["spec"].get("minReadySeconds").is_none());
    // `--replicas=0` is a pointer to 0 and must survive
    let zero = decode(&fixture("create-deployment-zero-replicas", "bin")).expect("decode");
    assert_eq!(zero["spec"]["replicas"], 0);
}

#[test]
fn every_truncation_of_a_real_body_is_an_error_not_a_panic() {
    for name in FIXTURES {
        let body = fixture(name, "bin");
        for len in 0..body.len() {
            // Some prefixes end exactly on a field boundary and are valid (shorter) messages; none may panic.
            if let Err(e) = decode(&body[..len]) {
                assert!(!e.to_string().is_empty());
            }
        }
        // Cutting inside typeMeta, or inside `raw` (the envelope ends with 4 bytes of empty contentEncoding and
        // contentType), is always malformed.
        assert!(matches!(decode(&body[..7]), Err(DecodeError::Malformed { .. })), "{name}");
        assert!(matches!(decode(&body[..body.len() - 5]), Err(DecodeError::Malformed { .. })), "{name}");
    }
}

#[test]
fn corrupted_bodies_never_panic() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in FIXTURES {
        let body = fixture(name, "bin");
        for _ in 0..2000 {
            let mut bad = body.clone();
            for _ in 0..1 + next() % 4 {
                let at = 4 + (next() as usize) % (bad.len() - 4);
                bad[at] = next() as u8;
            }
            let _ = decode(&bad);
        }
    }
}

#[test]
fn bad_magic_is_refused() {
    let mut body = fixture("create-namespace-team-a", "bin");
    body[0] = b'K';
    assert!(matches!(decode(&body), Err(DecodeError::BadMagic)));
    assert!(matches!(decode(b"k8s"), Err(DecodeError::BadMagic)));
}
