//! The seeds' manifests through `kubectl apply`, and what `get`, `describe` and the output formats show.

use super::cluster::{Cluster, example};

#[test]
fn seed_services_apply_and_show_like_upstream() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", &example("ch03/numbers/api-service.yaml"), "-f", &example("ch03/numbers/web-service.yaml")]);
    c.ok(&["apply", "-f", &example("ch03/numbers-services/web-service-nodePort.yaml")]);
    c.ok(&["apply", "-f", &example("ch06/svc.yml")]);

    let table = c.ok(&["get", "svc"]);
    let header = table.lines().next().unwrap();
    for col in ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] {
        assert!(header.contains(col), "missing column {col} in {header}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
            .to_string()
    };
    assert!(row("kubernetes").contains("10.43.0.1"), "{table}");
    assert!(row("kubernetes").contains("443/TCP"));
    assert!(row("numbers-api").contains("ClusterIP"));
    assert!(row("numbers-api").contains("80/TCP"));
    let web = row("numbers-web");
    assert!(web.contains("LoadBalancer") && web.contains("8080:3"), "{web}");
    assert!(row("numbers-web-node").contains("8080:30080/TCP"));
    assert!(row("hello-svc").contains("8080:30001/TCP"));

    // ClusterIPs come from the service CIDR; jsonpath and custom-columns read the stored objects.
    let ip = c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.43."), "{ip}");
    let cols = c.ok(&["get", "svc", "-o", "custom-columns=NAME:.metadata.name,IP:.spec.clusterIP,TYPE:.spec.type"]);
    assert!(cols.lines().any(|l| l.starts_with("numbers-api") && l.contains(&ip)), "{cols}");

    // -o wide adds the selector column.
    let wide = c.ok(&["get", "svc", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("SELECTOR"));
    assert!(wide.lines().any(|l| l.starts_with("numbers-api") && l.contains("app=numbers-api")), "{wide}");

    // yaml, json and name outputs.
    let yaml = c.ok(&["get", "svc", "numbers-web-node", "-o", "yaml"]);
    assert!(yaml.contains("nodePort: 30080") && yaml.contains("externalTrafficPolicy: Cluster"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["get", "svc", "numbers-api", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(json["spec"]["sessionAffinity"], "None");
    assert_eq!(json["spec"]["ipFamilies"][0], "IPv4");
    let names = c.ok(&["get", "svc", "-o", "name"]);
    assert!(names.lines().any(|l| l == "service/numbers-web"), "{names}");

    // describe shows the fields the chapters point at.
    let describe = c.ok(&["describe", "svc", "hello-svc"]);
    for field in
        ["Name:", "Selector:", "Type:", "IP:", "Port:", "NodePort:", "Endpoints:", "app=hello-world", "30001/TCP"]
    {
        assert!(describe.contains(field), "describe lacks {field}:\n{describe}");
    }
}

#[test]
fn apply_twice_patches_only_what_changed() {
    let c = Cluster::start();
    let v1 = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    tier: front\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n  - name: metrics\n    port: 9090\n";
    assert!(c.ok_stdin(&["apply", "-f", "-"], v1).contains("service/web created"));
    let ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(c.ok_stdin(&["apply", "-f", "-"], v1).contains("service/web unchanged"));
    let v2 = v1.replace("port: 9090\n", "port: 9091\n").replace("tier: front", "tier: back");
    assert!(c.ok_stdin(&["apply", "-f", "-"], &v2).contains("service/web configured"));
    let ports = c.ok(&["get", "svc", "web", "-o", "jsonpath={range .spec.ports[*]}{.name}={.port}/{.protocol} {end}"]);
    assert_eq!(ports.trim(), "http=80/TCP metrics=9091/TCP");
    assert_eq!(c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]), ip, "clusterIP survives apply");
    assert_eq!(c.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.labels.tier}"]), "back");

    // managedFields record who set what: the label moves to `kubectl label`'s entry.
    c.ok(&["label", "svc", "web", "--overwrite", "tier=mid"]);
    let svc: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "svc", "web", "-o", "json", "--show-managed-fields"])).unwrap();
    let entries = svc["metadata"]["managedFields"].as_array().expect("managedFields recorded");
    let entry =
        |m: &str| entries.iter().find(|e| e["manager"] == m).unwrap_or_else(|| panic!("no {m} entry in {entries:?}"));
    assert_eq!(entry("kubectl-client-side-apply")["operation"], "Update");
    assert!(entry("kubectl-label")["fieldsV1"]["f:metadata"]["f:labels"].get("f:tier").is_some(), "{entries:?}");
    assert!(entry("kubectl-client-side-apply")["fieldsV1"]["f:metadata"]["f:labels"].get("f:tier").is_none());
    assert!(
        entry("kubectl-client-side-apply")["fieldsV1"]["f:spec"]["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{entries:?}"
    );

    // Switching the same object to server-side apply migrates ownership (kubectl patches managedFields).
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], &v2);
    let svc: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "svc", "web", "-o", "json", "--show-managed-fields"])).unwrap();
    let entries = svc["metadata"]["managedFields"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply"), "{entries:?}");

    // Server-side apply creates and merges, never wiping what it was not given.
    let ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], ssa);
    c.ok(&["label", "configmap", "settings", "owner=me"]);
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], &ssa.replace("a: \"1\"", "a: \"2\""));
    assert_eq!(c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.a} {.metadata.labels.owner}"]), "2 me");
}

#[test]
fn deployments_selectorless_services_and_get_all() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep1.yaml"), "-f", &example("ch03/sleep/sleep2.yaml")]);
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep2-service.yaml")]);
    c.ok(&["apply", "-f", &example("ch03/numbers-services/api-service-headless.yaml")]);
    let ep = c.ok(&["get", "endpoints", "numbers-api"]);
    assert!(ep.contains("192.168.123.234:80"), "{ep}");

    let deploy = c.ok(&["get", "deploy", "sleep-1", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_str(&deploy).unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(d["metadata"]["generation"], 1);

    let all = c.ok(&["get", "all"]);
    assert!(all.contains("service/sleep-2"), "{all}");
    assert!(all.contains("deployment.apps/sleep-1"), "{all}");

    // A spec change bumps the generation; a label change does not.
    c.ok(&["label", "deploy", "sleep-1", "x=y"]);
    assert_eq!(c.ok(&["get", "deploy", "sleep-1", "-o", "jsonpath={.metadata.generation}"]), "1");
    c.ok(&["set", "image", "deploy/sleep-1", "sleep=kiamol/ch03-sleep:v2"]);
    assert_eq!(c.ok(&["get", "deploy", "sleep-1", "-o", "jsonpath={.metadata.generation}"]), "2");

    // Delete by label and --all.
    c.ok(&["label", "svc", "sleep-2", "group=demo"]);
    c.ok(&["delete", "svc", "-l", "group=demo"]);
    assert!(c.fails(&["get", "svc", "sleep-2"]).contains("NotFound"));
    c.ok(&["delete", "deploy", "--all"]);
    assert!(c.ok(&["get", "deploy"]).trim().is_empty());
}
