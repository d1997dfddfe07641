//! Finding the daemon: which socket or address, and the API token for TCP.
//!
//! Order (first that is set wins): `--socket`, `--addr`, `NM_SOCKET`, `NM_ADDR`, `--config FILE`
//! (`data_dir/nm.sock`), `NM_CONFIG`, `/etc/nm/nm.toml` if it exists. A TCP address needs a token:
//! `--token-file` / `NM_TOKEN_FILE`, else the config's `token_file`, else its `data_dir/api.token`
//! (the config found the same way).

use std::path::{Path, PathBuf};

use nm_api::client::Endpoint;

/// The config file used when nothing else says where the daemon is.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/nm/nm.toml";

/// The socket's file name in the data directory.
const SOCKET_FILE: &str = "nm.sock";

/// The API token's file name in the data directory.
const TOKEN_FILE: &str = "api.token";

/// Everything the command line and the environment say about where the daemon is. Empty
/// environment values count as unset.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hints {
    /// `--socket`.
    pub(crate) socket: Option<PathBuf>,
    /// `--addr`.
    pub(crate) addr: Option<String>,
    /// `NM_SOCKET`.
    pub(crate) env_socket: Option<PathBuf>,
    /// `NM_ADDR`.
    pub(crate) env_addr: Option<String>,
    /// `--config`.
    pub(crate) config: Option<PathBuf>,
    /// `NM_CONFIG`.
    pub(crate) env_config: Option<PathBuf>,
    /// `--token-file`, else `NM_TOKEN_FILE`.
    pub(crate) token_file: Option<PathBuf>,
    /// The fallback config, used only if it exists ([`DEFAULT_CONFIG`] outside tests).
    pub(crate) default_config: PathBuf,
}

/// The daemon could not be located, or its token not read. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// No option, variable or config says where the daemon is.
    #[error(
        "cannot find nm-daemon: pass --socket PATH or --addr HOST:PORT, set NM_SOCKET or NM_ADDR, \
         or pass --config FILE (or set NM_CONFIG); {} does not exist",
        default_config.display()
    )]
    Nowhere {
        /// The fallback config that was looked for.
        default_config: PathBuf,
    },
    /// The config file could not be read, or does not validate (file, line and column).
    #[error("cannot use config {0}")]
    Config(#[from] nm_node::config::ConfigError),
    /// `--addr` without any way to find the token.
    #[error(
        "no API token for {addr}: pass --token-file FILE (or set NM_TOKEN_FILE), or --config FILE \
         to use DATA_DIR/{TOKEN_FILE}"
    )]
    NoToken {
        /// The address.
        addr: String,
    },
    /// The token file is missing, unreadable or empty.
    #[error("cannot read API token for {addr} from {}: {detail}", path.display())]
    Token {
        /// The address.
        addr: String,
        /// The token file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl Hints {
    /// The hints from parsed options and the process environment.
    pub(crate) fn new(
        socket: Option<PathBuf>,
        addr: Option<String>,
        config: Option<PathBuf>,
        token_file: Option<PathBuf>,
    ) -> Self {
        let env = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        Self {
            socket,
            addr,
            env_socket: env("NM_SOCKET").map(PathBuf::from),
            env_addr: env("NM_ADDR").map(|v| v.to_string_lossy().into_owned()),
            config,
            env_config: env("NM_CONFIG").map(PathBuf::from),
            token_file: token_file.or_else(|| env("NM_TOKEN_FILE").map(PathBuf::from)),
            default_config: PathBuf::from(DEFAULT_CONFIG),
        }
    }
}

/// Where the daemon is, by the order in the module doc. Reads the config and token files it needs
/// and nothing else.
///
/// # Errors
/// [`DiscoveryError`], when nothing says where the daemon is or a file it needs is unusable.
pub(crate) fn resolve(h: &Hints) -> Result<Endpoint, DiscoveryError> {
    if let Some(path) = &h.socket {
        return Ok(Endpoint::Unix(path.clone()));
    }
    if let Some(addr) = &h.addr {
        return tcp(h, addr);
    }
    if let Some(path) = &h.env_socket {
        return Ok(Endpoint::Unix(path.clone()));
    }
    if let Some(addr) = &h.env_addr {
        return tcp(h, addr);
    }
    match config_file(h) {
        Some(config) => Ok(Endpoint::Unix(node_files(&config)?.socket)),
        None => Err(DiscoveryError::Nowhere {
            default_config: h.default_config.clone(),
        }),
    }
}

/// A TCP endpoint with its token.
fn tcp(h: &Hints, addr: &str) -> Result<Endpoint, DiscoveryError> {
    let path = match (&h.token_file, config_file(h)) {
        (Some(file), _) => file.clone(),
        (None, Some(config)) => node_files(&config)?.token,
        (None, None) => {
            return Err(DiscoveryError::NoToken {
                addr: addr.to_owned(),
            });
        }
    };
    let token_err = |detail: String| DiscoveryError::Token {
        addr: addr.to_owned(),
        path: path.clone(),
        detail,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| token_err(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(token_err("the file is empty".to_owned()));
    }
    Ok(Endpoint::Tcp {
        addr: addr.to_owned(),
        token: token.to_owned(),
    })
}

/// `--config`, else `NM_CONFIG`, else the default config if it exists.
fn config_file(h: &Hints) -> Option<PathBuf> {
    let given = h.config.as_ref().or(h.env_config.as_ref()).cloned();
    given.or_else(|| h.default_config.is_file().then(|| h.default_config.clone()))
}

/// The two paths `nm-cli` takes from a node config, absolute.
#[derive(Debug)]
struct NodeFiles {
    /// `data_dir/nm.sock`.
    socket: PathBuf,
    /// `token_file` if the config sets it, else `data_dir/api.token`.
    token: PathBuf,
}

/// Reads the config with the daemon's own reader (`nm_node::config`): the same checks, the same
/// relative paths (taken from the config file's directory), the same one-line errors.
fn node_files(config: &Path) -> Result<NodeFiles, DiscoveryError> {
    let cfg = nm_node::config::load(config)?;
    Ok(NodeFiles {
        socket: cfg.data_dir.join(SOCKET_FILE),
        token: cfg
            .token_file
            .unwrap_or_else(|| cfg.data_dir.join(TOKEN_FILE)),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use tempfile::TempDir;

    use super::*;

    /// A temp dir with `node.toml` (`data_dir = "data"`), `env.toml` (`data_dir = "env-data"`),
    /// `other.toml` (absolute data_dir),
    /// `data/api.token` and `flag.token`.
    struct World {
        dir: TempDir,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs::write(
                root.join("node.toml"),
                "node = \"n1\"\ndata_dir = \"data\"\n[[server]]\nname = \"web\"\ncommand = [\"web\"]\n",
            )
            .unwrap();
            fs::write(
                root.join("other.toml"),
                format!(
                    "node = \"n\"\ndata_dir = {:?}\n",
                    root.join("abs").display().to_string()
                ),
            )
            .unwrap();
            fs::write(
                root.join("env.toml"),
                "node = \"n\"\ndata_dir = \"env-data\"\n",
            )
            .unwrap();
            fs::create_dir(root.join("data")).unwrap();
            fs::write(root.join("data/api.token"), "  config-token\n").unwrap();
            fs::write(root.join("flag.token"), "flag-token\n").unwrap();
            Self { dir }
        }

        fn p(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// Hints with every source set; each test clears the ones above the one it checks.
        fn all(&self) -> Hints {
            Hints {
                socket: Some(self.p("flag.sock")),
                addr: Some("flag:1".into()),
                env_socket: Some(self.p("env.sock")),
                env_addr: Some("env:2".into()),
                config: Some(self.p("node.toml")),
                env_config: Some(self.p("env.toml")),
                token_file: Some(self.p("flag.token")),
                default_config: self.p("other.toml"),
            }
        }
    }

    fn tcp(addr: &str, token: &str) -> Endpoint {
        Endpoint::Tcp {
            addr: addr.into(),
            token: token.into(),
        }
    }

    #[test]
    fn precedence_is_socket_addr_env_socket_env_addr_config_env_config_default() {
        let w = World::new();
        let mut h = w.all();
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("flag.sock")));
        h.socket = None;
        assert_eq!(resolve(&h).unwrap(), tcp("flag:1", "flag-token"));
        h.addr = None;
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("env.sock")));
        h.env_socket = None;
        assert_eq!(resolve(&h).unwrap(), tcp("env:2", "flag-token"));
        h.env_addr = None;
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("data/nm.sock")));
        h.config = None;
        assert_eq!(
            resolve(&h).unwrap(),
            Endpoint::Unix(w.p("env-data/nm.sock"))
        );
        h.env_config = None;
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("abs/nm.sock")));
        h.default_config = w.p("missing.toml");
        let err = resolve(&h).unwrap_err().to_string();
        assert!(
            err.contains("--socket") && err.contains("--addr") && err.contains("--config"),
            "{err}"
        );
        assert!(
            err.contains("NM_SOCKET") && err.contains("missing.toml") && !err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    fn relative_data_dir_is_taken_from_the_config_files_directory() {
        let w = World::new();
        let h = Hints {
            config: Some(w.p("node.toml")),
            ..Hints::default()
        };
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("data/nm.sock")));
    }

    #[test]
    fn addr_takes_the_token_from_the_config_data_dir_trimmed() {
        let w = World::new();
        let h = Hints {
            addr: Some("127.0.0.1:5556".into()),
            config: Some(w.p("node.toml")),
            ..Hints::default()
        };
        assert_eq!(resolve(&h).unwrap(), tcp("127.0.0.1:5556", "config-token"));
    }

    #[test]
    fn addr_takes_the_token_from_the_default_config_when_it_exists() {
        let w = World::new();
        fs::create_dir(w.p("abs")).unwrap();
        fs::write(w.p("abs/api.token"), "default-token").unwrap();
        let h = Hints {
            addr: Some("a:1".into()),
            default_config: w.p("other.toml"),
            ..Hints::default()
        };
        assert_eq!(resolve(&h).unwrap(), tcp("a:1", "default-token"));
    }

    #[test]
    fn addr_takes_the_configs_token_file_relative_to_the_config() {
        let w = World::new();
        fs::write(
            w.p("tf.toml"),
            "node = \"n\"\ndata_dir = \"data\"\ntoken_file = \"keys/t\"\n",
        )
        .unwrap();
        fs::create_dir(w.p("keys")).unwrap();
        fs::write(w.p("keys/t"), "key-token\n").unwrap();
        let h = Hints {
            addr: Some("a:1".into()),
            config: Some(w.p("tf.toml")),
            ..Hints::default()
        };
        assert_eq!(resolve(&h).unwrap(), tcp("a:1", "key-token"));
        let h = Hints {
            config: Some(w.p("tf.toml")),
            ..Hints::default()
        };
        assert_eq!(resolve(&h).unwrap(), Endpoint::Unix(w.p("data/nm.sock")));
    }

    #[test]
    fn addr_without_a_token_source_is_refused_naming_the_options() {
        let w = World::new();
        let h = Hints {
            addr: Some("a:1".into()),
            default_config: w.p("missing.toml"),
            ..Hints::default()
        };
        let err = resolve(&h).unwrap_err();
        assert!(matches!(err, DiscoveryError::NoToken { .. }));
        assert!(err.to_string().contains("--token-file"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_token_file_is_one_clear_line() {
        let w = World::new();
        let mut h = Hints {
            addr: Some("a:1".into()),
            token_file: Some(w.p("nope.token")),
            ..Hints::default()
        };
        let err = resolve(&h).unwrap_err().to_string();
        assert!(
            err.contains("nope.token") && err.contains("a:1") && !err.contains('\n'),
            "{err}"
        );
        fs::write(w.p("blank.token"), " \n").unwrap();
        h.token_file = Some(w.p("blank.token"));
        assert!(resolve(&h).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn a_bad_config_names_the_file_in_one_line() {
        let w = World::new();
        fs::write(w.p("bad.toml"), "node = \"n1\"\ndata_dir = [\n").unwrap();
        fs::write(w.p("nodir.toml"), "node = \"n1\"\n").unwrap();
        for (file, what) in [
            ("bad.toml", "bad.toml:2:"),
            ("nodir.toml", "data_dir"),
            ("missing.toml", "missing.toml"),
        ] {
            let h = Hints {
                config: Some(w.p(file)),
                ..Hints::default()
            };
            let err = resolve(&h).unwrap_err().to_string();
            assert!(
                err.contains(file) && err.contains(what) && !err.contains('\n'),
                "{err}"
            );
        }
    }

    #[test]
    fn an_explicit_socket_needs_no_files() {
        let h = Hints {
            socket: Some("/nonexistent/nm.sock".into()),
            ..Hints::default()
        };
        assert_eq!(
            resolve(&h).unwrap(),
            Endpoint::Unix("/nonexistent/nm.sock".into())
        );
    }
}
