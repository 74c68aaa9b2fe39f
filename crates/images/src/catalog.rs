//! The node's image catalog: where an image reference turns into a process's argv. Skiff pulls no images;
//! an image is either one of the demo programs built into the `skiff` binary (see [`builtins`]) or a host
//! command named in the catalog file, and a container with its own `command` runs from the node's
//! filesystem whatever its image.
//!
//! The file (YAML or JSON, in the data dir) maps image references to a built-in or to an entrypoint:
//!
//! ```yaml
//! images:
//!   example.com/team/api:1.2:          # a key with a tag matches that tag only
//!     builtin: numbers-api
//!   busybox:                           # a key without a tag matches every tag
//!     entrypoint: ["/bin/busybox"]
//!     cmd: ["sh"]
//!     env: {PS1: "$ "}
//!     workingDir: /tmp
//! ```
//!
//! File entries override the built-in defaults with the same key. Resolution follows the Kubernetes rules
//! for `command` and `args` (`command` replaces the image's entrypoint, `args` replace its cmd).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::reference::{ImageRef, ReferenceError};

pub mod builtins;

pub use builtins::{BUILTINS, Builtin, builtin};

/// How one image runs, as written in the catalog file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageConfig {
    /// A built-in program (`skiff image NAME`); excludes `entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// Docker's `ENTRYPOINT`: a host command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Docker's `CMD`: default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The image's environment; the container's `env` wins over it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The image's working directory; the container's `workingDir` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    images: BTreeMap<String, ImageConfig>,
}

/// Why the catalog file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading image catalog {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing image catalog {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("image catalog {path}: key {key:?}")]
    Key {
        path: PathBuf,
        key: String,
        #[source]
        source: ReferenceError,
    },
    #[error("image catalog {path}: image {key:?}: {reason}")]
    Entry { path: PathBuf, key: String, reason: String },
}

/// Why a container's image and command do not give a process to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("failed to parse image name {image:?}: {source}")]
    InvalidImageName {
        image: String,
        #[source]
        source: ReferenceError,
    },
    #[error("{message}")]
    NotFound { image: String, message: String },
    #[error("image {image:?} has no entrypoint or cmd and the container gives no command")]
    NoCommand { image: String },
}

impl ResolveError {
    /// The kubelet's waiting reason for this failure (`InvalidImageName`, `ErrImagePull`,
    /// `CreateContainerError`).
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::InvalidImageName { .. } => "InvalidImageName",
            ResolveError::NotFound { .. } => "ErrImagePull",
            ResolveError::NoCommand { .. } => "CreateContainerError",
        }
    }
}

/// What to run for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The normalised image reference (`docker.io/library/nginx:latest`), for `containerStatuses[].image`.
    pub image: String,
    /// The process's argv; `argv[0]` is a path or a name looked up in the node's `PATH`.
    pub argv: Vec<String>,
    /// The image's environment, to be overridden by the container's `env`.
    pub env: Vec<(String, String)>,
    /// The image's working directory, when the container sets none.
    pub working_dir: Option<String>,
    /// The built-in program that runs, if any.
    pub builtin: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    builtin: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    binaries: Vec<String>,
    /// The built-in is the image's cmd rather than its entrypoint.
    builtin_is_cmd: bool,
}

/// Image references → how they run. Cheap to clone; rebuild it to pick up file changes.
#[derive(Debug, Clone)]
pub struct Catalog {
    file: Option<PathBuf>,
    exe: PathBuf,
    /// Repository name → (tag or `None` for every tag, entry).
    entries: HashMap<String, Vec<(Option<String>, Entry)>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl Catalog {
    /// The built-in defaults only; built-ins run the current executable (`skiff image NAME`).
    pub fn builtin() -> Catalog {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("skiff"));
        let mut catalog = Catalog { file: None, exe, entries: HashMap::new() };
        for d in builtins::DEFAULT_IMAGES {
            let entry = Entry {
                builtin: Some(d.builtin.to_string()),
                entrypoint: Vec::new(),
                cmd: d.cmd.iter().map(|s| s.to_string()).collect(),
                env: d.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                working_dir: None,
                binaries: d.binaries.iter().map(|s| s.to_string()).collect(),
                builtin_is_cmd: d.no_entrypoint,
            };
            // The defaults are known-good references.
            if let Ok(r) = ImageRef::parse(d.image) {
                catalog.insert(&r, entry);
            }
        }
        catalog
    }

    /// The built-in defaults plus the entries of `path` (YAML or JSON). A missing file is an empty one.
    pub fn load(path: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(CatalogError::Read { path: path.to_path_buf(), source }),
        };
        Catalog::from_text(&text, path)
    }

    /// The built-in defaults plus the entries in `text`; `path` names the file in messages.
    pub fn from_text(text: &str, path: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref().to_path_buf();
        let mut catalog = Catalog::builtin();
        catalog.file = Some(path.clone());
        if text.trim().is_empty() {
            return Ok(catalog);
        }
        let file: CatalogFile =
            serde_yaml::from_str(text).map_err(|source| CatalogError::Parse { path: path.clone(), source })?;
        for (key, config) in file.images {
            let r = ImageRef::parse(&key).map_err(|source| CatalogError::Key {
                path: path.clone(),
                key: key.clone(),
                source,
            })?;
            let entry = Catalog::entry_from_config(config).map_err(|reason| CatalogError::Entry {
                path: path.clone(),
                key: key.clone(),
                reason,
            })?;
            catalog.insert(&r, entry);
        }
        Ok(catalog)
    }

    /// Runs built-ins through `exe` instead of the current executable.
    pub fn with_exe(mut self, exe: impl Into<PathBuf>) -> Catalog {
        self.exe = exe.into();
        self
    }

    /// The catalog file this catalog was loaded from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn entry_from_config(config: ImageConfig) -> Result<Entry, String> {
        if let Some(name) = &config.builtin {
            if builtin(name).is_none() {
                let known: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
                return Err(format!("unknown builtin {name:?} (known: {})", known.join(", ")));
            }
            if config.entrypoint.is_some() {
                return Err("builtin and entrypoint are mutually exclusive".to_string());
            }
        } else if config.entrypoint.as_ref().is_none_or(Vec::is_empty) && config.cmd.as_ref().is_none_or(Vec::is_empty)
        {
            return Err("needs builtin, entrypoint or cmd".to_string());
        }
        Ok(Entry {
            builtin: config.builtin,
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            env: config.env.into_iter().collect(),
            working_dir: config.working_dir,
            binaries: Vec::new(),
            builtin_is_cmd: false,
        })
    }

    fn insert(&mut self, r: &ImageRef, entry: Entry) {
        let tag = r.tag().map(str::to_string);
        let slot = self.entries.entry(r.name()).or_default();
        slot.retain(|(t, _)| *t != tag);
        slot.push((tag, entry));
    }

    fn lookup(&self, r: &ImageRef) -> Option<&Entry> {
        let slot = self.entries.get(&r.name())?;
        let exact = r.effective_tag().and_then(|tag| slot.iter().find(|(t, _)| t.as_deref() == Some(tag)));
        exact.or_else(|| slot.iter().find(|(t, _)| t.is_none())).map(|(_, e)| e)
    }

    /// Whether `image` is in the catalog (a container with this image needs no `command`).
    pub fn contains(&self, image: &str) -> bool {
        ImageRef::parse(image).is_ok_and(|r| self.lookup(&r).is_some())
    }

    /// Every catalog key (familiar form, `name` or `name:tag`) with a one-line description, sorted.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, slot) in &self.entries {
            for (tag, entry) in slot {
                let key = ImageRef::parse(&match tag {
                    Some(tag) => format!("{name}:{tag}"),
                    None => name.clone(),
                })
                .map(|r| r.familiar())
                .unwrap_or_else(|_| name.clone());
                let what = match &entry.builtin {
                    Some(b) => format!("builtin {b}"),
                    None => format!("host command {:?}", [&entry.entrypoint[..], &entry.cmd[..]].concat()),
                };
                out.push((key, what));
            }
        }
        out.sort();
        out
    }

    /// The process for a container with `image`, `command` and `args` (already `$(VAR)`-expanded, see
    /// [`crate::expand_command_args`]), with Kubernetes semantics: neither → the image's entrypoint + cmd;
    /// `args` only → entrypoint + `args`; `command` (with or without `args`) → `command` + `args`, which for an
    /// image outside the catalog runs from the node's filesystem.
    pub fn resolve(&self, image: &str, command: &[String], args: &[String]) -> Result<Resolved, ResolveError> {
        let r = ImageRef::parse(image)
            .map_err(|source| ResolveError::InvalidImageName { image: image.to_string(), source })?;
        let normalised = r.to_string();
        let Some(entry) = self.lookup(&r) else {
            if command.is_empty() {
                return Err(ResolveError::NotFound { image: image.to_string(), message: self.not_found(image) });
            }
            return Ok(Resolved {
                image: normalised,
                argv: [command, args].concat(),
                env: Vec::new(),
                working_dir: None,
                builtin: None,
            });
        };
        let builtin_argv = |name: &str| vec![self.exe.to_string_lossy().into_owned(), "image".into(), name.into()];
        let (entrypoint, cmd) = match &entry.builtin {
            Some(name) if entry.builtin_is_cmd => (Vec::new(), [builtin_argv(name), entry.cmd.clone()].concat()),
            Some(name) => (builtin_argv(name), entry.cmd.clone()),
            None => (entry.entrypoint.clone(), entry.cmd.clone()),
        };
        let (argv, builtin) = match command.split_first() {
            Some((first, rest)) => match &entry.builtin {
                Some(name) if entry.binaries.iter().any(|b| b == first) => {
                    ([builtin_argv(name), rest.to_vec(), args.to_vec()].concat(), Some(name.clone()))
                }
                _ => ([command, args].concat(), None),
            },
            None if !args.is_empty() => {
                let builtin = if entrypoint.is_empty() { None } else { entry.builtin.clone() };
                ([&entrypoint[..], args].concat(), builtin)
            }
            None => ([entrypoint, cmd].concat(), entry.builtin.clone()),
        };
        if argv.is_empty() {
            return Err(ResolveError::NoCommand { image: image.to_string() });
        }
        Ok(Resolved {
            image: normalised,
            argv,
            env: entry.env.clone(),
            working_dir: entry.working_dir.clone(),
            builtin,
        })
    }

    fn not_found(&self, image: &str) -> String {
        let file = self.file.as_ref().map_or_else(|| "the image catalog file".to_string(), |p| p.display().to_string());
        format!(
            "image {image:?} is not in this node's image catalog and the container has no command (Skiff pulls no \
             images): add it to {file}, e.g. `images: {{\"{image}\": {{entrypoint: [/path/to/program]}}}}` or \
             `{{builtin: nginx}}`, or give the container a command"
        )
    }
}

#[cfg(test)]
mod tests;
