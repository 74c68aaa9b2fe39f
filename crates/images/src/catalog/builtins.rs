//! The demo programs built into the `skiff` binary, and the image references that map onto them by default.
//! Each is a small, honest stand-in for a public image that the seeds or upstream conformance tests use; none
//! is a copy of that image, and every page they serve says it is a Skiff stand-in.

/// A program that `skiff image NAME` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// The name given to `skiff image`.
    pub name: &'static str,
    /// The public image it stands in for.
    pub stands_in_for: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
}

/// Every built-in program.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "sleep",
        stands_in_for: "kiamol/ch03-sleep",
        summary: "sleeps until SIGTERM or SIGINT, then exits 0; use the node's tools (ping, curl, nslookup) via exec",
    },
    Builtin {
        name: "numbers-api",
        stands_in_for: "kiamol/ch03-numbers-api",
        summary: "HTTP on :80; GET /rng returns a random number 0-99, /healthz, /reset",
    },
    Builtin {
        name: "numbers-web",
        stands_in_for: "kiamol/ch03-numbers-web",
        summary: "HTTP on :80; a page whose Go! button fetches a number from $RngApi__Url (http://numbers-api/rng)",
    },
    Builtin {
        name: "numbers-web-v2",
        stands_in_for: "kiamol/ch03-numbers-web:v2",
        summary: "numbers-web with the v2 look (a different stylesheet)",
    },
    Builtin { name: "k8sbook", stands_in_for: "nigelpoulton/k8sbook", summary: "a hello page on :8080" },
    Builtin {
        name: "nginx",
        stands_in_for: "nginx",
        summary: "static files from /usr/share/nginx/html on :80, else the nginx welcome page",
    },
    Builtin {
        name: "agnhost",
        stands_in_for: "registry.k8s.io/e2e-test-images/agnhost",
        summary: "subcommands netexec, serve-hostname and pause, with upstream's flags",
    },
    Builtin {
        name: "netexec",
        stands_in_for: "agnhost netexec",
        summary: "HTTP :8080 (/hostname, /clientip, /echo, /healthz, /dial, /exit, ...) and UDP :8081",
    },
    Builtin {
        name: "serve-hostname",
        stands_in_for: "agnhost serve-hostname",
        summary: "serves the hostname over HTTP (or raw TCP/UDP) on :9376",
    },
    Builtin {
        name: "pause",
        stands_in_for: "registry.k8s.io/pause",
        summary: "does nothing until SIGTERM or SIGINT, then exits 0",
    },
];

/// Looks a built-in up by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// One default catalog entry: an image reference (a key without a tag matches every tag) and how it runs.
pub(crate) struct DefaultImage {
    pub image: &'static str,
    pub builtin: &'static str,
    /// The image's default arguments (Docker's `CMD`).
    pub cmd: &'static [&'static str],
    /// The image's environment.
    pub env: &'static [(&'static str, &'static str)],
    /// Paths inside the real image that name its entrypoint (`/agnhost`): a container `command` starting with
    /// one of them runs the built-in instead of looking for that file on the node.
    pub binaries: &'static [&'static str],
    /// The real image has no `ENTRYPOINT`, only a `CMD`: the built-in is its cmd, so `args` alone replace it
    /// and run from the node's filesystem.
    pub no_entrypoint: bool,
}

const RNG_URL: &[(&str, &str)] = &[("RngApi__Url", "http://numbers-api/rng")];

pub(crate) const DEFAULT_IMAGES: &[DefaultImage] = &[
    DefaultImage {
        image: "kiamol/ch03-sleep",
        builtin: "sleep",
        cmd: &[],
        env: &[],
        binaries: &[],
        no_entrypoint: true,
    },
    DefaultImage {
        image: "kiamol/ch03-numbers-api",
        builtin: "numbers-api",
        cmd: &[],
        env: &[],
        binaries: &[],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "kiamol/ch03-numbers-web",
        builtin: "numbers-web",
        cmd: &[],
        env: RNG_URL,
        binaries: &[],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "kiamol/ch03-numbers-web:v2",
        builtin: "numbers-web-v2",
        cmd: &[],
        env: RNG_URL,
        binaries: &[],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "nigelpoulton/k8sbook",
        builtin: "k8sbook",
        cmd: &[],
        env: &[],
        binaries: &[],
        no_entrypoint: false,
    },
    DefaultImage { image: "nginx", builtin: "nginx", cmd: &[], env: &[], binaries: &[], no_entrypoint: false },
    DefaultImage {
        image: "registry.k8s.io/e2e-test-images/agnhost",
        builtin: "agnhost",
        cmd: &["pause"],
        env: &[],
        binaries: &["/agnhost"],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "k8s.gcr.io/e2e-test-images/agnhost",
        builtin: "agnhost",
        cmd: &["pause"],
        env: &[],
        binaries: &["/agnhost"],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "registry.k8s.io/pause",
        builtin: "pause",
        cmd: &[],
        env: &[],
        binaries: &["/pause"],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "k8s.gcr.io/pause",
        builtin: "pause",
        cmd: &[],
        env: &[],
        binaries: &["/pause"],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "registry.k8s.io/serve_hostname",
        builtin: "serve-hostname",
        cmd: &[],
        env: &[],
        binaries: &["/serve_hostname"],
        no_entrypoint: false,
    },
    DefaultImage {
        image: "k8s.gcr.io/serve_hostname",
        builtin: "serve-hostname",
        cmd: &[],
        env: &[],
        binaries: &["/serve_hostname"],
        no_entrypoint: false,
    },
];
