//! End-to-end tests of `skiff server` through the real `kubectl` (the machine's dispatcher runs the kubectl
//! whose minor matches the server's `/version`). Each test starts its own server on a free loopback port.

mod kubectl {
    pub mod cluster;

    mod apply;
    mod errors;
    mod imperative;
    mod persistence;
    mod watch;
}
