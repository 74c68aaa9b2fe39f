//! Configuration kinds: upstream's `printConfigMap`, `printSecret` and `printServiceAccount`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, age, len, name, text};
use crate::descriptions as d;

pub const CONFIG_MAP: Printer = Printer {
    columns: &[Column::name(), Column::new("Data", "string", d::CONFIG_MAP_DATA), Column::age()],
    print: print_config_map,
};

fn print_config_map(cm: &Value, now: DateTime<Utc>) -> PrintedRow {
    let entries = len(cm, "/data") + len(cm, "/binaryData");
    vec![json!(name(cm)), json!(entries), json!(age(cm, now))].into()
}

pub const SECRET: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Type", "string", d::SECRET_TYPE),
        Column::new("Data", "string", d::SECRET_DATA),
        Column::age(),
    ],
    print: print_secret,
};

fn print_secret(secret: &Value, now: DateTime<Utc>) -> PrintedRow {
    // `stringData` is merged into `data` on write, so only `data` counts.
    vec![json!(name(secret)), json!(text(secret, "/type")), json!(len(secret, "/data")), json!(age(secret, now))].into()
}

pub const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[Column::name(), Column::new("Secrets", "string", d::SERVICE_ACCOUNT_SECRETS), Column::age()],
    print: print_service_account,
};

fn print_service_account(sa: &Value, now: DateTime<Utc>) -> PrintedRow {
    vec![json!(name(sa)), json!(len(sa, "/secrets")), json!(age(sa, now))].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::tests::{at, now};

    #[test]
    fn config_map_counts_data_and_binary_data() {
        let cm = json!({"metadata": {"name": "app-config", "creationTimestamp": at(300)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(print_config_map(&cm, now()).cells, vec![json!("app-config"), json!(3), json!("5m")]);
        let empty = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": at(59)}});
        assert_eq!(print_config_map(&empty, now()).cells, vec![json!("kube-root-ca.crt"), json!(0), json!("59s")]);
    }

    #[test]
    fn secret_shows_type_and_key_count() {
        let secret = json!({"metadata": {"name": "db", "creationTimestamp": at(2 * 86400)}, "type": "Opaque",
                            "data": {"user": "YWRtaW4=", "password": "c2VjcmV0"}});
        assert_eq!(print_secret(&secret, now()).cells, vec![json!("db"), json!("Opaque"), json!(2), json!("2d")]);
        let tls = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {}});
        assert_eq!(
            print_secret(&tls, now()).cells,
            vec![json!("tls"), json!("kubernetes.io/tls"), json!(0), json!("<unknown>")]
        );
    }

    #[test]
    fn service_account_counts_secrets() {
        let sa = json!({"metadata": {"name": "default", "creationTimestamp": at(90)}});
        assert_eq!(print_service_account(&sa, now()).cells, vec![json!("default"), json!(0), json!("90s")]);
        let with = json!({"metadata": {"name": "builder", "creationTimestamp": at(90)},
                          "secrets": [{"name": "builder-token"}]});
        assert_eq!(print_service_account(&with, now()).cells[1], json!(1));
    }
}
