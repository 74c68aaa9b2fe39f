//! End-to-end tests of `skiff server`, each starting the real binary on a free loopback port: the real `kubectl`
//! (the machine's dispatcher runs the kubectl whose minor matches `/version`), kube-rs, and the Python client.

mod e2e {
    pub mod cluster;

    mod agent;
    mod api;
    mod apply;
    mod chapters;
    mod controllers;
    mod controllers_process;
    mod dns;
    mod durability;
    mod errors;
    mod etcd;
    mod imperative;
    mod kube_rs;
    mod kubelet;
    mod multinode;
    mod persistence;
    mod pods;
    mod proxy;
    mod python;
    mod service_types;
    mod traffic;
    mod watch;
}
