//! A server's user config as Zato 3.2 keeps it, for what Muster relies on: at start the server
//! reads every `NAME.ini` and `NAME.conf` of `pickup/incoming/user-conf` (not `env.ini`) into
//! what its services see as `self.config.NAME` (NAME up to the file name's first `.`); the admin
//! service `zato.pickup.on-update-user-conf` (input `data`, `full_path`, `file_name`,
//! `relative_dir`) writes the file and replaces that entry in the one server it runs on. The
//! real Zato's pickup directory watch, which would do the same for a changed file, does nothing
//! in 3.2; the mock has none either.
//!
//! The mock runs no service; `GET /mock/user-config/NAME` answers what a service would read
//! there (the file's text as last loaded; 404 when none or empty), standing in for one.

use std::sync::{Arc, Mutex};

use super::*;

/// Where the server reads its user config (`pickup.conf`'s `[user_conf]`).
const DIRECTORY: &str = "pickup/incoming/user-conf";
/// Where the stand-in for a service reading `self.config.NAME` answers.
pub(crate) const PROBE_PATH: &str = "/mock/user-config/";

/// The server's user config in memory, by name.
#[derive(Clone, Default)]
pub(crate) struct UserConf(Arc<Mutex<BTreeMap<String, String>>>);

fn config_name(file_name: &str) -> String {
    file_name.split('.').next().unwrap_or(file_name).to_owned()
}

impl UserConf {
    /// What the server in `path` reads at start.
    pub(crate) fn read_at_start(path: &Path) -> UserConf {
        let loaded = UserConf::default();
        let Ok(entries) = std::fs::read_dir(path.join(DIRECTORY)) else {
            return loaded;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name == "env.ini"
                || !(file_name.ends_with(".ini") || file_name.ends_with(".conf"))
            {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                say(&format!(
                    "Read user config `{}` from `{file_name}`",
                    config_name(&file_name)
                ));
                loaded.set(&config_name(&file_name), text);
            }
        }
        loaded
    }

    fn set(&self, name: &str, text: String) {
        if let Ok(mut entries) = self.0.lock() {
            entries.insert(name.to_owned(), text);
        }
    }

    /// `zato.pickup.on-update-user-conf`: the file written, its entry replaced.
    pub(crate) fn on_update(&self, input: &serde_json::Value) -> (&'static str, String) {
        let (Some(data), Some(full_path), Some(file_name)) = (
            input["data"].as_str(),
            input["full_path"].as_str(),
            input["file_name"].as_str(),
        ) else {
            return ("400 Bad Request", String::new());
        };
        if let Err(error) = std::fs::write(full_path, data) {
            say(&format!("Could not update file `{full_path}`, e:`{error}`"));
        } else {
            say(&format!(
                "Successfully finished syncing in-RAM contents of `{full_path}` (user config file)"
            ));
            self.set(&config_name(file_name), data.to_owned());
        }
        (
            "200 OK",
            "{\"zato_env\": {\"result\": \"ZATO_OK\"}, \"response\": {}}\n".to_owned(),
        )
    }

    /// The stand-in for a service reading `self.config.NAME`; `None` when `request` is not one.
    pub(crate) fn probe(&self, request: &Request) -> Option<(&'static str, String)> {
        let name = request.path.strip_prefix(PROBE_PATH)?;
        let text = self.0.lock().ok()?.get(name).cloned().unwrap_or_default();
        Some(if text.is_empty() {
            ("404 Not Found", String::new())
        } else {
            ("200 OK", text)
        })
    }
}
