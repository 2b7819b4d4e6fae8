//! Stage two of parsing: resolve the repository, password and named targets from flags, the
//! environment and the config file (config < environment < flags).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backup_core::repository::{InitOptions, Repository};

use crate::cli::Global;

/// The config file model lives in `backup-core` (`backup_core::config::Config`).
pub use backup_core::config::Config as ConfigFile;

pub struct Settings {
    pub repo: String,
    /// --password-file or DBM_PASSWORD_FILE.
    password_file: Option<PathBuf>,
    pub no_lock: bool,
    /// The config file with the environment applied (flags are applied on top here).
    pub config: ConfigFile,
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Settings {
    pub fn resolve(g: &Global) -> Result<Settings> {
        // File < environment (DBM_*) < flags.
        let mut config = ConfigFile::load_with_env(g.config.as_deref())?;
        if let Some(r) = &g.repo {
            config.repository = Some(r.clone());
        }
        let repo = config.repository();
        Ok(Settings {
            repo,
            password_file: g.password_file.clone(),
            no_lock: g.no_lock,
            config,
            json: g.json,
            quiet: g.quiet,
            verbose: g.verbose,
        })
    }

    /// The password: --password-file (or DBM_PASSWORD_FILE), else DBM_PASSWORD, else the
    /// config file's password_file, else a prompt on a terminal.
    pub fn password(&self, confirm: bool) -> Result<Vec<u8>> {
        let file = match (&self.password_file, std::env::var_os("DBM_PASSWORD")) {
            (Some(f), _) => Some(f.as_path()),
            (None, Some(_)) => None,
            (None, None) => self.config.password_file.as_deref(),
        };
        read_password(
            file,
            "DBM_PASSWORD",
            "--password-file",
            "repository password",
            confirm,
        )
    }

    pub async fn open(&self) -> Result<Arc<Repository>> {
        let store = backup_core::store::open_store_with(&self.repo, false, &self.config.storage)?;
        let pw = self.password(false)?;
        let repo = Repository::open(store, &pw).await?;
        repo.set_no_lock(self.no_lock);
        Ok(Arc::new(repo))
    }

    pub async fn init(&self, opts: InitOptions) -> Result<Arc<Repository>> {
        let pw = self.password(true)?;
        let store = backup_core::store::open_store_with(&self.repo, true, &self.config.storage)?;
        Ok(Arc::new(Repository::init(store, &pw, opts).await?))
    }

    /// A progress bar (shown on a terminal unless --json or --quiet); cleared when dropped.
    pub fn bar(&self) -> crate::output::Bar {
        crate::output::Bar::new(!self.json && !self.quiet)
    }

    /// Expands named targets from the config file.
    pub fn target(&self, name: &str) -> String {
        self.config
            .targets
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Opens the catalog: PostgreSQL when DBM_DATABASE_URL / DATABASE_URL / `database_url:`
    /// names one, else the embedded catalog (DBM_CATALOG_DIR, `catalog_dir:`, default
    /// ~/.local/share/data-backup-manager).
    pub async fn catalog(&self) -> Result<Arc<dyn backup_core::catalog::Catalog>> {
        Ok(
            backup_core::catalog::open(&backup_core::catalog::CatalogOptions::from_config(
                &self.config,
            ))
            .await?,
        )
    }

    /// Who is asking, for the audit log: `cli:<user>`.
    pub fn actor(&self) -> String {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            // SAFETY: getuid has no preconditions.
            .unwrap_or_else(|_| format!("uid{}", unsafe { libc::getuid() }));
        format!("cli:{user}")
    }
}

pub fn read_password(
    file: Option<&Path>,
    env: &str,
    file_flag: &str,
    what: &str,
    confirm: bool,
) -> Result<Vec<u8>> {
    if let Some(f) = file {
        let text =
            std::fs::read(f).with_context(|| format!("reading password file {}", f.display()))?;
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            bail!("password file {} is empty", f.display());
        }
        return Ok(line.to_vec());
    }
    if let Some(p) = std::env::var_os(env) {
        if p.is_empty() {
            bail!("{env} is set but empty");
        }
        return Ok(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no {what}: set {env} or use {file_flag} (no terminal to ask on)");
    }
    let p = rpassword::prompt_password(format!("enter {what}: "))?;
    if confirm && rpassword::prompt_password(format!("enter {what} again: "))? != p {
        bail!("the passwords do not match");
    }
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(p.into_bytes())
}
