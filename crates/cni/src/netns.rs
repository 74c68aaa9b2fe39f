//! Named network namespaces, made the way `ip netns add` makes them.
//!
//! A namespace is kept alive by bind-mounting `/proc/thread-self/ns/net` of a thread that called
//! `unshare(CLONE_NEWNET)` onto an empty file in a directory (`/run/netns` by default). The directory itself is made a
//! shared mount point first, so the bind mounts propagate into mount namespaces created later (the container runtime
//! gives every container a private mount namespace). Deleting lazily unmounts the file and removes it; the kernel
//! frees the namespace once the last process or socket inside it is gone.
//!
//! Everything that changes the calling task's namespaces runs on a short-lived dedicated thread, so the async
//! runtime's threads never leave the namespace they started in.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

/// Where `ip netns` keeps its named namespaces; [`create_netns`] uses the same place.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Serialises the shared-mount setup of a netns directory between threads of this process.
static DIR_SETUP: Mutex<()> = Mutex::new(());

/// Errors from creating, entering or deleting network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    #[error("network namespace {0} already exists")]
    AlreadyExists(PathBuf),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path}")]
    Sys {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("the namespace thread panicked")]
    ThreadPanicked,
}

/// Creates a named network namespace under [`NETNS_RUN_DIR`] and returns its path (`/run/netns/NAME`).
pub fn create_netns(name: &str) -> Result<PathBuf, NetnsError> {
    create_netns_in(Path::new(NETNS_RUN_DIR), name)
}

/// Creates a named network namespace bind-mounted at `dir/NAME` and returns that path.
pub fn create_netns_in(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    validate_name(name)?;
    prepare_dir(dir)?;
    let path = dir.join(name);
    match OpenOptions::new().write(true).create_new(true).mode(0o000).open(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(NetnsError::AlreadyExists(path)),
        Err(source) => return Err(NetnsError::Io { what: "create netns file", path, source }),
    }
    let target = path.clone();
    let result = on_fresh_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
            what: "unshare network namespace for",
            path: target.clone(),
            source,
        })?;
        mount(Some(Path::new("/proc/thread-self/ns/net")), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|source| NetnsError::Sys {
                what: "bind-mount network namespace onto",
                path: target.clone(),
                source,
            })
    });
    match result {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "created network namespace");
            Ok(path)
        }
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Deletes the named namespace under [`NETNS_RUN_DIR`]. Deleting one that does not exist succeeds.
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    validate_name(name)?;
    delete_netns_at(&Path::new(NETNS_RUN_DIR).join(name))
}

/// Unmounts and removes a namespace file made by [`create_netns_in`]. Idempotent.
pub fn delete_netns_at(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(source) => return Err(NetnsError::Sys { what: "unmount network namespace", path: path.into(), source }),
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(NetnsError::Io { what: "remove netns file", path: path.into(), source }),
    }
    tracing::debug!(path = %path.display(), "deleted network namespace");
    Ok(())
}

/// True when `path` is a live network namespace handle (an nsfs file such as a bind mount or `/proc/PID/ns/net`).
pub fn netns_exists(path: &Path) -> bool {
    statfs(path).map(|s| s.filesystem_type() == NSFS_MAGIC).unwrap_or(false)
}

/// Runs `f` on a fresh thread that has entered the network namespace at `path`, and returns its result.
///
/// Sockets created inside `f` stay in that namespace after it returns, so a test can open a listener in one pod
/// and connect to it from another. Child processes spawned inside `f` start in the namespace too.
pub fn run_in_netns<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path.to_path_buf();
    on_fresh_thread(move || {
        enter(&path)?;
        Ok(f())
    })
}

/// Moves the calling thread into the network namespace at `path`. Only call this on a thread that is thrown away
/// afterwards (see [`run_in_netns`]).
pub(crate) fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = fs::File::open(path).map_err(|source| NetnsError::Io {
        what: "open network namespace",
        path: path.into(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
        what: "enter network namespace",
        path: path.into(),
        source,
    })
}

/// Runs `f` on a new OS thread and joins it, so namespace changes die with the thread.
fn on_fresh_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetnsError> + Send + 'static,
) -> Result<T, NetnsError> {
    std::thread::spawn(f).join().map_err(|_| NetnsError::ThreadPanicked)?
}

/// Makes `dir` exist and be a shared mount point, as `ip netns add` does for `/run/netns`.
fn prepare_dir(dir: &Path) -> Result<(), NetnsError> {
    let _guard = DIR_SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    fs::create_dir_all(dir).map_err(|source| NetnsError::Io { what: "create netns dir", path: dir.into(), source })?;
    let shared = || mount(None::<&str>, dir, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then mark it shared.
        Err(Errno::EINVAL) => {
            mount(Some(dir), dir, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|source| NetnsError::Sys { what: "bind-mount netns dir", path: dir.into(), source })?;
            shared().map_err(|source| NetnsError::Sys { what: "make netns dir shared", path: dir.into(), source })
        }
        Err(source) => Err(NetnsError::Sys { what: "make netns dir shared", path: dir.into(), source }),
    }
}

fn validate_name(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(NetnsError::InvalidName(name.into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("sk-pod_1.a").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(matches!(validate_name(bad), Err(NetnsError::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn create_enter_delete_in_private_dir() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        // create_netns_in turns the directory into a mount point; undo that before the temp dir is removed.
        let _unmount = Unmount(dir.path().to_path_buf());
        let name = format!("sknst{}", std::process::id());
        let path = create_netns_in(dir.path(), &name)?;
        let _ns = DeleteNs(path.clone());
        assert!(netns_exists(&path));
        assert!(matches!(create_netns_in(dir.path(), &name), Err(NetnsError::AlreadyExists(_))));

        let host = fs::read_link("/proc/thread-self/ns/net")?;
        let inside = run_in_netns(&path, || fs::read_link("/proc/thread-self/ns/net"))??;
        assert_ne!(host, inside, "the thread should have moved to the new namespace");
        assert_eq!(fs::read_link("/proc/thread-self/ns/net")?, host, "the caller must stay where it was");

        delete_netns_at(&path)?;
        assert!(!path.exists());
        assert!(!netns_exists(&path));
        delete_netns_at(&path)?; // idempotent
        Ok(())
    }

    #[test]
    fn regular_files_are_not_namespaces() -> Result<(), Box<dyn std::error::Error>> {
        let file = tempfile::NamedTempFile::new()?;
        assert!(!netns_exists(file.path()));
        assert!(!netns_exists(Path::new("/nonexistent/skiff")));
        assert!(netns_exists(Path::new("/proc/self/ns/net")));
        Ok(())
    }

    struct DeleteNs(PathBuf);
    impl Drop for DeleteNs {
        fn drop(&mut self) {
            let _ = delete_netns_at(&self.0);
        }
    }

    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
}
