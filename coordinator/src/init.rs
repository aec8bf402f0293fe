//! `muster-coordinator init`: makes the CA, the server certificate, the secret key and the first
//! admin token, and migrates the database. It refuses an initialized directory and changes nothing
//! there; it reaches the database before it writes any file, so a bad database leaves no half-made
//! directory behind.

use std::path::Path;

use muster_proto::token::AdminToken;
use muster_proto::validate;

use crate::config::{DataDir, RawConfig};
use crate::files::{self, FileError};
use crate::pki::{self, PkiError};
use crate::secrets::{self, SecretBox, SecretError};
use crate::store::{DatabaseUrl, SqlStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0} is already initialized (it holds {1}); nothing was changed. To start over, remove the directory or choose another"
    )]
    AlreadyInitialized(String, &'static str),
    #[error(transparent)]
    InvalidName(#[from] validate::Invalid),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// What `init` made that the operator must see once.
#[derive(Debug)]
pub struct Initialized {
    pub admin_token: AdminToken,
    pub ca_sha256: String,
}

/// Where `init` records the database URL and the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigRecord {
    /// In `DATA_DIR/coordinator.toml`, which `run --data-dir DATA_DIR` then reads.
    DataDir,
    /// Nowhere: they came from a config file (`init --config`), which stays their record and which
    /// `run --config` reads, as the packaged service does.
    ConfigFile,
}

pub async fn init(
    data_dir: &Path,
    database_url: Option<&DatabaseUrl>,
    advertise: &[String],
    record: ConfigRecord,
) -> Result<Initialized, InitError> {
    for name in advertise {
        validate::host("--advertise name", name)?;
    }
    let layout = DataDir::new(data_dir);
    for (path, what) in [
        (layout.ca_certificate(), "ca.pem"),
        (layout.secret_key(), "secret.key"),
        (layout.config(), "coordinator.toml"),
    ] {
        if path.exists() {
            return Err(InitError::AlreadyInitialized(
                data_dir.display().to_string(),
                what,
            ));
        }
    }

    let key_bytes = secrets::random_bytes(secrets::KEY_LEN)?;
    let ca = pki::create_ca()?;
    let server = pki::issue_server_certificate(&ca, advertise)?;
    let ca_sha256 = pki::certificate_sha256(&ca.certificate_pem, "the new CA")?;
    let admin_token = AdminToken {
        id: secrets::random_hex(8)?,
        secret: secrets::random_hex(16)?,
    };

    let created_dir = !data_dir.exists();
    files::create_private_dir(data_dir)?;
    let url = database_url
        .cloned()
        .unwrap_or_else(|| DatabaseUrl::sqlite_file(&data_dir.join("muster.db")));
    let connected = SqlStore::connect(&url, SecretBox::new(&key_bytes)?).await;
    let store = match connected {
        Ok(store) => store,
        Err(error) => {
            if created_dir {
                let _ = std::fs::remove_dir_all(data_dir);
            }
            return Err(error.into());
        }
    };
    let token_hash = secrets::sha256_hex(admin_token.to_string().as_bytes());
    store
        .add_admin_token(&admin_token.id, &token_hash, "created by init")
        .await?;
    store.close().await;

    let config = RawConfig {
        data_dir: Some(data_dir.to_owned()),
        database_url: database_url.map(|url| url.expose().to_owned()),
        ..RawConfig::default()
    };
    let config_text = format!(
        "# Written by muster-coordinator init. Keys: data_dir, database_url, listen, http_listen,\n# heartbeat_ttl, host_certificate_ttl.\n{}",
        toml::to_string(&config).unwrap_or_default()
    );
    files::write_atomic(&layout.ca_key(), ca.key_pem.as_bytes(), 0o600)?;
    files::write_atomic(&layout.server_key(), server.key_pem.as_bytes(), 0o600)?;
    files::write_atomic(
        &layout.server_certificate(),
        server.certificate_pem.as_bytes(),
        0o644,
    )?;
    files::write_atomic(
        &layout.secret_key(),
        hex::encode(&key_bytes).as_bytes(),
        0o600,
    )?;
    files::write_atomic(
        &layout.admin_token(),
        format!("{admin_token}\n").as_bytes(),
        0o600,
    )?;
    if record == ConfigRecord::DataDir {
        files::write_atomic(&layout.config(), config_text.as_bytes(), 0o600)?;
    }
    // Last: its presence is what marks the directory as initialized.
    files::write_atomic(
        &layout.ca_certificate(),
        ca.certificate_pem.as_bytes(),
        0o644,
    )?;
    Ok(Initialized {
        admin_token,
        ca_sha256,
    })
}

/// Reads the coordinator's secret key from the data directory.
pub fn read_secret_box(layout: &DataDir) -> Result<SecretBox, InitError> {
    let text = files::read_to_string(&layout.secret_key())?;
    let bytes = hex::decode(text.trim()).map_err(|_| SecretError::KeyLength(0))?;
    Ok(SecretBox::new(&bytes)?)
}
