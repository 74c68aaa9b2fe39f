//! The node agent end to end, in a network namespace of the test's own: pods get IPs on the node's pod network
//! and their containers really run (the demo images answer over HTTP), a replaced pod gets a new IP while the
//! Service's endpoints follow it, resolv.conf and hosts are the pod's own, and teardown leaves nothing behind.

use super::cluster::{Cluster, eventually, example};

#[test]
fn pods_run_in_their_own_namespaces_with_ips_and_files() {
    let c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("ch03/numbers/api.yaml"), "-f", &example("ch03/numbers/api-service.yaml")]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-api", "--timeout=60s"]);
    let ip = c.ok(&["get", "pod", "-l", "app=numbers-api", "-o", "jsonpath={.items[0].status.podIP}"]);
    assert!(ip.starts_with("10.42."), "{ip}");
    // The demo image answers from inside the pod's namespace.
    let rng = eventually(20, "numbers-api to answer", || c.node_curl(&format!("http://{ip}/rng")));
    let n: u32 = rng.trim().trim_matches(|ch: char| !ch.is_ascii_digit()).parse().unwrap_or(1000);
    assert!(n < 100, "{rng}");
    // Endpoints follow the pod; a replaced pod gets a new IP.
    eventually(20, "endpoints with the pod", || {
        c.ok(&["get", "endpoints", "numbers-api"]).contains(&format!("{ip}:80")).then_some(())
    });
    c.ok(&["delete", "pod", "-l", "app=numbers-api", "--timeout=60s"]);
    let new_ip = eventually(60, "a replacement pod", || {
        let out = c.ok(&["get", "pod", "-l", "app=numbers-api", "-o", "jsonpath={.items[*].status.podIP}"]);
        let ips: Vec<&str> = out.split_whitespace().collect();
        (ips.len() == 1 && ips[0] != ip).then(|| ips[0].to_string())
    });
    eventually(20, "numbers-api to answer on its new IP", || c.node_curl(&format!("http://{new_ip}/rng")));
    eventually(20, "endpoints to follow", || {
        c.ok(&["get", "endpoints", "numbers-api"]).contains(&format!("{new_ip}:80")).then_some(())
    });

    // exec runs in the pod's namespaces and returns its exit code; logs read the container's output;
    // pod-to-pod traffic crosses the node's bridge.
    c.ok(&["apply", "-f", &example("ch03/sleep/sleep1.yaml")]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=sleep-1", "--timeout=60s"]);
    let sleeper = c.ok(&["get", "pod", "-l", "app=sleep-1", "-o", "jsonpath={.items[0].metadata.name}"]);
    let out = c.kubectl(&["exec", "deploy/sleep-1", "--", "sh", "-c", "hostname; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), sleeper);
    let answer = c.ok(&["exec", "deploy/sleep-1", "--", "curl", "-s", "-m", "3", &format!("http://{new_ip}/rng")]);
    assert!(answer.chars().any(|ch| ch.is_ascii_digit()), "{answer}");
    let logs = c.ok(&["logs", "deploy/numbers-api"]);
    assert!(logs.contains("listening on port 80"), "{logs}");

    // The pod's own /etc files, seen from a process in it (the node's shell tools through a command).
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: files\nspec:\n  restartPolicy: Never\n  hostAliases:\n  - ip: 127.0.0.2\n    hostnames: [alias.local]\n  containers:\n  - name: c\n    image: busybox-not-in-catalog\n    command: [sh, -c, 'cat /etc/resolv.conf /etc/hosts; hostname; echo SVC=$NUMBERS_API_SERVICE_HOST']\n",
    );
    eventually(30, "the files pod to finish", || {
        (c.ok(&["get", "pod", "files", "-o", "jsonpath={.status.phase}"]) == "Succeeded").then_some(())
    });
    let pod_dir = std::fs::read_dir(c.data_dir().join("agent/pods")).unwrap();
    let uid = c.ok(&["get", "pod", "files", "-o", "jsonpath={.metadata.uid}"]);
    assert!(pod_dir.flatten().any(|e| e.file_name().to_string_lossy() == uid));
    let log = std::fs::read_to_string(c.data_dir().join(format!("agent/pods/{uid}/logs/c/0.log"))).unwrap();
    assert!(log.contains("nameserver 10.43.0.10"), "{log}");
    assert!(log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{log}");
    assert!(log.contains("options ndots:5"), "{log}");
    assert!(log.contains("127.0.0.2\talias.local"), "{log}");
    assert!(log.contains("stdout F files"), "{log}");
    let svc_ip = c.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(log.contains(&format!("SVC={svc_ip}")), "{log}");

    // An image that is neither in the catalog nor given a command waits with ErrImagePull.
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n  - name: c\n    image: example.com/no/such:image\n");
    eventually(30, "ErrImagePull", || {
        let reason =
            c.ok(&["get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"]);
        (reason == "ErrImagePull" || reason == "ImagePullBackOff").then_some(())
    });
}

/// Seed ch03 §3.2: `kubectl port-forward deploy/numbers-web 8080:80`, then browse to localhost:8080 — the page
/// loads, and its Go button reports that http://numbers-api cannot be reached (there is no Service yet).
#[test]
fn seed_ch03_port_forward_to_the_web_deployment() {
    let c = Cluster::start_node(&[]);
    c.ok(&["apply", "-f", &example("ch03/numbers/api.yaml"), "-f", &example("ch03/numbers/web.yaml")]);
    c.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-web", "--timeout=60s"]);
    let mut forward = c
        .kubectl_cmd()
        .args(["port-forward", "deploy/numbers-web", "8080:80"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Stop(&mut forward);
    let page = eventually(20, "the forwarded page", || c.node_curl("http://localhost:8080/"));
    assert!(page.contains("Go"), "{page}");
    // Several connections at once through the one forward.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            c.node_cmd("curl")
                .args(["-s", "-m", "30", "-X", "POST", "http://localhost:8080/"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    for curl in handles {
        let out = curl.wait_with_output().expect("curl");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(answer.contains("http://numbers-api/rng"), "{answer}");
    }
    drop(guard);
}

const CHATTY: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: ticker
    image: kiamol/ch03-sleep
    command: [sh, -c, 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done']
  - name: once
    image: kiamol/ch03-sleep
    volumeMounts: [{name: data, mountPath: /data}]
    command: [sh, -c, 'n=$(cat /data/n 2>/dev/null || echo 0); echo run $n; echo $((n+1)) > /data/n; [ $n = 0 ] && exit 1; exec sleep 3600']
"#;

/// Logs (`-c`, `--tail`, `-f`, `--previous`) and exec (stdin, a terminal, exit codes) against real containers.
#[test]
fn logs_and_exec_reach_real_containers() {
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], CHATTY);
    eventually(60, "the once container's restart", || {
        (c.ok(&[
            "get",
            "pod",
            "chatty",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"once\")].restartCount}",
        ]) == "1")
            .then_some(())
    });
    assert_eq!(c.ok(&["logs", "chatty", "-c", "once", "--previous"]).trim(), "run 0");
    eventually(10, "the second run's log", || {
        (c.ok(&["logs", "chatty", "-c", "once"]).trim() == "run 1").then_some(())
    });

    // --tail and -f: the last line at once, then new ones as they are written.
    let tail = c.ok(&["logs", "chatty", "-c", "ticker", "--tail=2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.lines().all(|l| l.starts_with("tick ")), "{tail}");
    let mut follow = c
        .kubectl_cmd()
        .args(["logs", "-f", "chatty", "-c", "ticker", "--tail=1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().expect("stdout")));
    let tick = |line: Option<std::io::Result<String>>| -> u64 {
        let line = line.expect("a line").expect("utf-8");
        line.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a tick: {line}"))
    };
    let first = tick(lines.next());
    let second = tick(lines.next());
    let third = tick(lines.next());
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(first < second && second < third, "{first} {second} {third}");

    // exec -i carries stdin; -it gets a terminal (under script(1), which gives kubectl one); exit codes come back.
    let upper = c.ok_stdin(&["exec", "-i", "chatty", "-c", "ticker", "--", "tr", "a-z", "A-Z"], "hello pods\n");
    assert_eq!(upper, "HELLO PODS\n");
    let kubectl = c.kubectl_cmd();
    let mut line: Vec<String> = vec![kubectl.get_program().to_string_lossy().into_owned()];
    line.extend(kubectl.get_args().map(|a| a.to_string_lossy().into_owned()));
    line.extend(["exec", "-it", "chatty", "-c", "ticker", "--", "sh", "-c", "'tty; exit 4'"].map(String::from));
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in kubectl.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let out = script.output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "no terminal in the container: {text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
}
