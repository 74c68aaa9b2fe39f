use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn catalog() -> Catalog {
    Catalog::builtin().with_exe("/usr/bin/skiff")
}

#[test]
fn builtin_images_run_skiff_image_with_their_defaults() {
    let c = catalog();
    let r = c.resolve("kiamol/ch03-numbers-api", &[], &[]).unwrap();
    assert_eq!(r.argv, s(&["/usr/bin/skiff", "image", "numbers-api"]));
    assert_eq!(r.image, "docker.io/kiamol/ch03-numbers-api:latest");
    assert_eq!(r.builtin.as_deref(), Some("numbers-api"));

    // agnhost's default cmd is `pause`; args replace it.
    let r = c.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", &[], &[]).unwrap();
    assert_eq!(r.argv, s(&["/usr/bin/skiff", "image", "agnhost", "pause"]));
    let r = c.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", &[], &s(&["netexec", "--http-port=80"])).unwrap();
    assert_eq!(r.argv, s(&["/usr/bin/skiff", "image", "agnhost", "netexec", "--http-port=80"]));
}

#[test]
fn tags_select_entries_and_untagged_keys_match_every_tag() {
    let c = catalog();
    assert_eq!(c.resolve("kiamol/ch03-numbers-web", &[], &[]).unwrap().builtin.as_deref(), Some("numbers-web"));
    assert_eq!(c.resolve("kiamol/ch03-numbers-web:v2", &[], &[]).unwrap().builtin.as_deref(), Some("numbers-web-v2"));
    assert_eq!(
        c.resolve("docker.io/kiamol/ch03-numbers-web:v2", &[], &[]).unwrap().builtin.as_deref(),
        Some("numbers-web-v2")
    );
    for image in ["nginx", "nginx:1.25-alpine", "docker.io/library/nginx:latest", "index.docker.io/library/nginx"] {
        assert_eq!(c.resolve(image, &[], &[]).unwrap().builtin.as_deref(), Some("nginx"), "{image}");
    }
    let digest = format!("nginx@sha256:{}", "b".repeat(64));
    assert_eq!(c.resolve(&digest, &[], &[]).unwrap().builtin.as_deref(), Some("nginx"));
    assert!(c.contains("registry.k8s.io/pause:3.10"));
    assert!(!c.contains("busybox"));
    // numbers-web carries the API URL in its image environment, as the real image does.
    let env = c.resolve("kiamol/ch03-numbers-web", &[], &[]).unwrap().env;
    assert_eq!(env, vec![("RngApi__Url".to_string(), "http://numbers-api/rng".to_string())]);
}

#[test]
fn command_replaces_the_entrypoint_and_args_the_cmd() {
    let c = catalog();
    // command only: the image's cmd is dropped too.
    let r = c.resolve("kiamol/ch03-sleep", &s(&["sleep", "5"]), &[]).unwrap();
    assert_eq!(r.argv, s(&["sleep", "5"]));
    assert_eq!(r.builtin, None);
    // command and args.
    let r = c.resolve("kiamol/ch03-sleep", &s(&["sh", "-c"]), &s(&["echo hi"])).unwrap();
    assert_eq!(r.argv, s(&["sh", "-c", "echo hi"]));
    // The real sleep image has only a CMD, so args alone replace it.
    let r = c.resolve("kiamol/ch03-sleep", &[], &s(&["sleep", "1"])).unwrap();
    assert_eq!((r.argv, r.builtin), (s(&["sleep", "1"]), None));
    assert_eq!(c.resolve("kiamol/ch03-sleep", &[], &[]).unwrap().argv, s(&["/usr/bin/skiff", "image", "sleep"]));
    // A command naming the real image's entrypoint path runs the built-in.
    let r =
        c.resolve("registry.k8s.io/e2e-test-images/agnhost:2.53", &s(&["/agnhost", "netexec"]), &s(&["--udp-port=-1"]));
    assert_eq!(r.unwrap().argv, s(&["/usr/bin/skiff", "image", "agnhost", "netexec", "--udp-port=-1"]));
    let r = c.resolve("registry.k8s.io/pause:3.10", &s(&["/pause"]), &[]).unwrap();
    assert_eq!(r.argv, s(&["/usr/bin/skiff", "image", "pause"]));
}

#[test]
fn unknown_images_need_a_command() {
    let c = Catalog::from_text("", "/var/lib/skiff/images.yaml").unwrap();
    let err = c.resolve("alpine", &[], &[]).unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    let msg = err.to_string();
    assert!(msg.contains("\"alpine\"") && msg.contains("/var/lib/skiff/images.yaml"), "{msg}");
    // args alone are not enough: there is no entrypoint to give them to.
    assert!(matches!(c.resolve("alpine", &[], &s(&["-c", "true"])), Err(ResolveError::NotFound { .. })));
    let r = c.resolve("alpine", &s(&["sysctl", "-w", "x=1"]), &[]).unwrap();
    assert_eq!(r.argv, s(&["sysctl", "-w", "x=1"]));
    assert_eq!(r.image, "docker.io/library/alpine:latest");

    let err = c.resolve("Bad Image", &[], &[]).unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName");
}

#[test]
fn file_entries_add_and_override() {
    let text = r#"
images:
  busybox:
    entrypoint: ["/bin/busybox"]
    cmd: ["sh"]
    env: {PS1: "$ "}
    workingDir: /tmp
  example.com/team/api:1.2:
    builtin: numbers-api
  nginx:
    builtin: k8sbook
"#;
    let c = Catalog::from_text(text, "/data/images.yaml").unwrap().with_exe("/skiff");
    let r = c.resolve("busybox:1.36", &[], &[]).unwrap();
    assert_eq!(r.argv, s(&["/bin/busybox", "sh"]));
    assert_eq!(r.env, vec![("PS1".to_string(), "$ ".to_string())]);
    assert_eq!(r.working_dir.as_deref(), Some("/tmp"));
    let r = c.resolve("busybox", &[], &s(&["echo", "x"])).unwrap();
    assert_eq!(r.argv, s(&["/bin/busybox", "echo", "x"]));
    assert_eq!(c.resolve("example.com/team/api:1.2", &[], &[]).unwrap().argv, s(&["/skiff", "image", "numbers-api"]));
    assert!(!c.contains("example.com/team/api:1.3"));
    assert_eq!(c.resolve("nginx", &[], &[]).unwrap().builtin.as_deref(), Some("k8sbook"));
    assert!(c.list().contains(&("busybox".to_string(), "host command [\"/bin/busybox\", \"sh\"]".to_string())));

    // JSON is YAML too.
    let c = Catalog::from_text(r#"{"images": {"tool": {"cmd": ["/usr/bin/env"]}}}"#, "/x.json").unwrap();
    assert_eq!(c.resolve("tool", &[], &[]).unwrap().argv, s(&["/usr/bin/env"]));
}

#[test]
fn bad_files_are_reported() {
    let bad = [
        "images: {x: {builtin: nope}}",
        "images: {x: {builtin: nginx, entrypoint: [a]}}",
        "images: {x: {}}",
        "images: {\"Bad Key\": {cmd: [a]}}",
        "images: {x: {command: [a]}}",
        "imgs: {}",
    ];
    for text in bad {
        assert!(Catalog::from_text(text, "/f").is_err(), "{text}");
    }
}

#[test]
fn load_treats_a_missing_file_as_empty_and_reads_a_present_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.yaml");
    let c = Catalog::load(&path).unwrap();
    assert!(c.contains("nginx") && !c.contains("busybox"));
    std::fs::write(&path, "images:\n  busybox:\n    entrypoint: [/bin/busybox]\n").unwrap();
    let c = Catalog::load(&path).unwrap();
    assert!(c.contains("busybox"));
    assert_eq!(c.file(), Some(path.as_path()));
}
